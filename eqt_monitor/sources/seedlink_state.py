"""SeedLink resume points: per ``NET.STA`` the sequence number and end time of the last record
handed on (or committed), kept in a JSON file written atomically.

Records handed on wait in memory until ``save`` commits them, all or up to a time, so a caller
that processes data later than it arrives commits only what it has durably processed.
"""
from __future__ import annotations

import json
import logging
import os
import tempfile
import threading
from collections import deque
from collections.abc import Mapping
from pathlib import Path

import obspy

from eqt_monitor.sources.base import SourceError

log = logging.getLogger(__name__)

DELIVERED_KEPT = 20_000  # per station: delivered records remembered for save(until=...)


class SeedLinkState:
    """The resume points of one source (``uri``, server ``address``) in ``path`` (None: kept in memory only)."""

    def __init__(self, path: Path | None, uri: str, address: str) -> None:
        self.path, self.uri, self.address = path, uri, address
        self._lock = threading.Lock()
        self.committed: dict[str, tuple[int, str]] = self._load()  # "NET.STA" -> (seq, record end, ISO)
        self._delivered: dict[str, deque] = {}  # "NET.STA" -> (seq, end) of records handed on

    def _load(self) -> dict[str, tuple[int, str]]:
        if self.path is None or not self.path.exists():
            return {}
        try:
            doc = json.loads(self.path.read_text())
            state = {k: (int(v["seq"]), str(v["end"])) for k, v in doc["stations"].items()}
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise SourceError(f"SeedLink state file {str(self.path)!r} is unreadable ({exc}); "
                              "move it away to start from new data") from exc
        if doc.get("server") != self.address:
            log.warning("%s: state file %s is for server %s, not %s: ignoring its sequence numbers",
                        self.uri, self.path, doc.get("server"), self.address)
            return {}
        log.info("%s: resuming %d station(s) from %s", self.uri, len(state), self.path)
        return state

    def delivered(self, sta: str, seq: int, end: float) -> None:
        """Record ``sta``'s record ``seq`` (ending at ``end``, POSIX s) as handed on."""
        with self._lock:
            self._delivered.setdefault(sta, deque(maxlen=DELIVERED_KEPT)).append((seq, end))

    def save(self, until: float | Mapping[str, float] | None = None) -> None:
        """Write the resume points atomically: per station the last record handed on, or with
        ``until`` (POSIX s, or per ``NET.STA``) the last one before the first record ending after it."""
        if self.path is None:
            return
        with self._lock:
            for sta, records in self._delivered.items():
                limit = until.get(sta) if isinstance(until, Mapping) else until
                while records and (limit is None or records[0][1] <= limit):
                    seq, end = records.popleft()
                    self.committed[sta] = (seq, obspy.UTCDateTime(end).isoformat())
            doc = {"server": self.address,
                   "stations": {k: {"seq": s, "end": e} for k, (s, e) in sorted(self.committed.items())}}
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=self.path.name + ".", dir=self.path.parent)
        try:
            with os.fdopen(fd, "w") as fh:
                json.dump(doc, fh, indent=1)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, self.path)
        except BaseException:
            os.unlink(tmp)
            raise
