"""Weights made by ``eqt-monitor train``, remembered in ``$EQT_MONITOR_CACHE/trained.yaml`` so that
``models list`` shows them beside the published ones (``--weights PATH`` uses them)."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import yaml

from eqt_monitor.model.registry import cache_dir, sha256_file

INDEX = "trained.yaml"


@dataclass(frozen=True)
class TrainedWeights:
    """One trained ``.keras`` file of a variant and the sha256 it had when training wrote it."""

    model: str
    path: Path
    sha256: str

    def status(self) -> str:
        """``"ok"``, ``"missing"`` or ``"changed"`` (the bytes are no longer what training wrote)."""
        if not self.path.is_file():
            return "missing"
        return "ok" if sha256_file(self.path) == self.sha256 else "changed"


def _index_path() -> Path:
    return cache_dir() / INDEX


def _read() -> list[TrainedWeights]:
    path = _index_path()
    if not path.is_file():
        return []
    entries = yaml.safe_load(path.read_text(encoding="utf-8")) or []
    return [TrainedWeights(e["model"], Path(e["path"]), e["sha256"]) for e in entries]


def record(model: str, path: str | Path, sha256: str) -> None:
    """Remember (or update) a trained weights file; one entry per path."""
    path = Path(path).resolve()
    entries = [e for e in _read() if e.path != path] + [TrainedWeights(model, path, sha256)]
    index = _index_path()
    index.parent.mkdir(parents=True, exist_ok=True)
    rows = [{"model": e.model, "path": str(e.path), "sha256": e.sha256} for e in entries]
    tmp = index.with_suffix(".tmp")
    tmp.write_text(yaml.safe_dump(rows, sort_keys=False), encoding="utf-8")
    tmp.replace(index)


def trained(model: str) -> list[TrainedWeights]:
    """The trained weights of ``model`` whose file still exists, oldest first."""
    return [e for e in _read() if e.model == model and e.path.is_file()]
