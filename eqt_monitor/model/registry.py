"""Published weight sets (``eqt_monitor/zoo/registry.yaml``): finding them locally, downloading, verifying."""
from __future__ import annotations

import functools
import hashlib
import importlib.resources
import logging
import os
import tempfile
import urllib.error
import urllib.request
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import yaml

from eqt_monitor.errors import ConfigError, UserError, WeightsError

log = logging.getLogger(__name__)
DOWNLOAD_TIMEOUT_S = 60
CHUNK = 1 << 20


@dataclass(frozen=True)
class WeightSet:
    """One published weights file: where it comes from and what its bytes must hash to."""

    name: str
    file: str  # name in the cache
    sha256: str
    size: int
    format: str
    urls: tuple[str, ...]
    also_known_as: tuple[str, ...] = ()
    published_in: tuple[str, ...] = ()

    @property
    def file_names(self) -> tuple[str, ...]:
        """Every name the file may have in a weights directory, the cache name first."""
        return (self.file, *self.also_known_as)


@functools.cache
def registry() -> dict[str, WeightSet]:
    """All published weight sets by name."""
    source = importlib.resources.files("eqt_monitor.zoo") / "registry.yaml"
    data = yaml.safe_load(source.read_text(encoding="utf-8"))
    sets = {}
    for name, entry in data.items():
        try:
            sets[name] = WeightSet(name=name, file=entry["file"], sha256=entry["sha256"], size=int(entry["size"]),
                                   format=entry["format"], urls=tuple(entry["urls"]),
                                   also_known_as=tuple(entry.get("also_known_as", ())),
                                   published_in=tuple(entry.get("published_in", ())))
        except (KeyError, TypeError) as exc:
            raise ConfigError(f"{source}: weight set {name!r}: missing or bad field {exc}") from None
    return sets


def get_weight_set(name: str) -> WeightSet:
    """The weight set ``name``; ``UserError`` naming the known ones otherwise."""
    sets = registry()
    if name not in sets:
        raise UserError(f"no published weights called {name!r} (known: {', '.join(sets)})")
    return sets[name]


def cache_dir() -> Path:
    """``$EQT_MONITOR_CACHE``, default ``~/.cache/eqt-monitor``."""
    return Path(os.environ.get("EQT_MONITOR_CACHE") or Path.home() / ".cache" / "eqt-monitor")


def sha256_file(path: str | Path) -> str:
    """Hex sha256 of a file, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in _read_chunks(f):
            digest.update(chunk)
    return digest.hexdigest()


def verify(path: str | Path, weight_set: WeightSet) -> str:
    """Return the file's sha256; ``WeightsError`` naming expected and found sha256 when it is not the published one."""
    found = sha256_file(path)
    if found != weight_set.sha256:
        raise WeightsError(f"{path}: sha256 mismatch for {weight_set.name!r} weights: "
                           f"expected {weight_set.sha256}, found {found}")
    return found


def search_dirs() -> list[Path]:
    """Where published weights are looked for: ``$EQT_MONITOR_WEIGHTS`` (a directory), the cache,
    then ``$EQT_SHARED/models`` (``EQT_SHARED`` defaults to ``../shared``, the project's data folder
    beside a checkout, so the bundled example runs offline from the repository root)."""
    dirs = []
    env = os.environ.get("EQT_MONITOR_WEIGHTS")
    if env and Path(env).is_dir():
        dirs.append(Path(env))
    dirs.append(cache_dir())
    dirs.append(Path(os.environ.get("EQT_SHARED", "../shared")) / "models")
    return dirs


def find_local(name: str) -> Path | None:
    """The first local copy of weight set ``name`` in ``search_dirs()``, its sha256 verified
    (a copy with other bytes is refused with ``WeightsError``); ``None`` when there is none."""
    weight_set = get_weight_set(name)
    for directory in search_dirs():
        for file_name in weight_set.file_names:
            candidate = directory / file_name
            if candidate.is_file():
                verify(candidate, weight_set)
                return candidate
    return None


def _read_chunks(stream) -> Iterator[bytes]:
    return iter(lambda: stream.read(CHUNK), b"")


def _store(chunks: Iterable[bytes], target: Path, weight_set: WeightSet, origin: str) -> None:
    """Write ``chunks`` to a temporary file beside ``target``, check the sha256, then rename it into
    place (atomic: ``target`` is either the old file or the complete verified new one)."""
    fd, tmp_name = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".part")
    tmp = Path(tmp_name)
    try:
        digest = hashlib.sha256()
        with os.fdopen(fd, "wb") as out:
            for chunk in chunks:
                digest.update(chunk)
                out.write(chunk)
        if digest.hexdigest() != weight_set.sha256:
            raise WeightsError(f"{origin}: sha256 mismatch for {weight_set.name!r} weights: "
                               f"expected {weight_set.sha256}, found {digest.hexdigest()}")
        os.chmod(tmp, 0o644)  # mkstemp makes it private; the cache is an ordinary shared file
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)


def _cache_target(weight_set: WeightSet, cache: str | Path | None) -> Path:
    directory = Path(cache) if cache else cache_dir()
    directory.mkdir(parents=True, exist_ok=True)
    return directory / weight_set.file


def install(name: str, source: str | Path, cache: str | Path | None = None) -> Path:
    """Copy a local file into the cache as weight set ``name`` (offline ``pull``), refusing it
    with ``WeightsError`` when its sha256 is not the published one."""
    weight_set = get_weight_set(name)
    target = _cache_target(weight_set, cache)
    try:
        f = open(source, "rb")
    except OSError as exc:
        raise WeightsError(f"{source}: cannot read weights file: {exc.strerror}") from None
    with f:
        _store(_read_chunks(f), target, weight_set, str(source))
    return target


def pull(name: str, cache: str | Path | None = None, url: str | None = None) -> Path:
    """Download weight set ``name`` into the cache (``url`` overrides the registry's URLs) and
    return its path. An existing verified copy is kept; a download whose sha256 differs is
    refused with ``WeightsError`` naming expected and found sha256 and leaves nothing behind."""
    weight_set = get_weight_set(name)
    target = _cache_target(weight_set, cache)
    if target.is_file():
        if sha256_file(target) == weight_set.sha256:
            return target
        log.warning("%s: cached copy does not match the published sha256; downloading it again", target)
    errors = []
    for candidate in (url,) if url else weight_set.urls:
        try:
            with urllib.request.urlopen(candidate, timeout=DOWNLOAD_TIMEOUT_S) as response:
                _store(_read_chunks(response), target, weight_set, candidate)
            log.info("downloaded %s weights from %s to %s", name, candidate, target)
            return target
        except urllib.error.HTTPError as exc:
            errors.append(f"{candidate}: HTTP {exc.code} {exc.reason}")
        except (urllib.error.URLError, OSError) as exc:
            errors.append(f"{candidate}: {getattr(exc, 'reason', exc)}")
    raise WeightsError(f"cannot download {name!r} weights: {'; '.join(errors)}; {_offline_routes(weight_set)}")


def _offline_routes(weight_set: WeightSet) -> str:
    """How to get ``weight_set`` without the network, naming a verified local copy if one is known."""
    routes = (f"offline: 'eqt-monitor models pull {weight_set.name} --weights PATH' installs a local copy "
              f"(sha256 {weight_set.sha256[:12]}…), or set EQT_MONITOR_WEIGHTS to a folder holding "
              f"{' or '.join(weight_set.file_names)}")
    try:
        known = find_local(weight_set.name)
    except WeightsError:
        known = None
    return routes + (f"; a verified copy is already at {known}" if known else "")
