"""The source URI schemes, in one table: what each builds for replay and plot (a bounded
``Source``) and for the live service (a ``LiveSource``, or none)."""
from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from eqt_monitor.errors import UserError
from eqt_monitor.records import StationKey
from eqt_monitor.sources.archive import FileSource, SDSSource
from eqt_monitor.sources.base import LiveOptions, LiveSource, Put, Source
from eqt_monitor.sources.fdsn import FDSNSource, LiveFDSN
from eqt_monitor.sources.seedlink import LiveSeedLink, SeedLinkSource


@dataclass(frozen=True)
class Scheme:
    """One URI scheme ``NAME://REST``."""

    name: str
    path: bool  # REST is a path (a relative one is resolved against the config's folder), else HOST[:PORT]
    source: Callable[[str, str], Source]  # (uri, REST) -> the bounded source
    live: type[LiveSource] | None = None  # the live source, None: for replay and plot only


SCHEMES: dict[str, Scheme] = {s.name: s for s in (
    Scheme("sds", True, SDSSource),
    Scheme("file", True, FileSource),
    Scheme("fdsn", False, lambda uri, _: FDSNSource(uri), LiveFDSN),
    Scheme("fdsns", False, lambda uri, _: FDSNSource(uri), LiveFDSN),
    Scheme("seedlink", False, lambda uri, _: SeedLinkSource(uri), LiveSeedLink),
)}


def path_schemes() -> list[str]:
    """The schemes whose URIs name files (archives)."""
    return [s.name for s in SCHEMES.values() if s.path]


def resolve_source(uri: str, base: Path) -> str:
    """Make an archive URI's path absolute (relative to ``base``); leave network URIs alone.

    Raises ``ValueError`` for text that is not ``scheme://…`` or names an unknown scheme.
    """
    name, sep, rest = uri.partition("://")
    if not sep:
        raise ValueError(f"not a source URI (scheme://…): {uri!r}")
    if name not in SCHEMES:
        raise ValueError(f"unknown source scheme {name!r} in {uri!r} (expected one of: {', '.join(SCHEMES)})")
    if SCHEMES[name].path and not rest.startswith("/"):
        rest = str((base / rest).resolve())
    return f"{name}://{rest}"


def open_source(uri: str) -> Source:
    """The bounded source a URI names: ``sds://PATH``, ``file://PATH-OR-GLOB``, ``fdsn://HOST:PORT``
    (http), ``fdsns://HOST:PORT`` (https) or ``seedlink://HOST[:PORT]``.

    ``PATH`` may be absolute (``sds:///data/sds``) or relative (``sds://../archive``). Raises
    ``UserError`` naming the URI for an unknown scheme or a path that does not exist.
    """
    name, sep, rest = uri.partition("://")
    scheme = SCHEMES.get(name.lower())
    if not sep or scheme is None or not rest:
        raise UserError(f"source {uri!r}: expected one of {', '.join(s + '://' for s in SCHEMES)} followed by a "
                        "path or host:port")
    return scheme.source(uri, rest)


def open_live(uri: str, keys: Sequence[StationKey], put: Put, options: LiveOptions,
              resume: Mapping[StationKey, float]) -> LiveSource:
    """The live source for ``uri`` serving ``keys``: ``seedlink://`` streams, ``fdsn://``/``fdsns://`` polls.

    ``resume``: per station, where the caller's own progress says to restart.
    """
    scheme = SCHEMES.get(uri.partition("://")[0].lower())
    if scheme is None or scheme.live is None:
        raise UserError(f"source {uri!r}: not a live source (use seedlink:// or fdsn://; archives are for replay)")
    return scheme.live(uri, keys, put, options, resume)
