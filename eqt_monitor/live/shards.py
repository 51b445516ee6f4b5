"""Many writers, one associator: daemons that share one PostgreSQL catalog, each with a shard of the stations.

Every daemon writes its own picks (idempotently), its progress under its shard's name, and, at
each association step, its horizon ``daemon.horizon.<shard>`` = ``{"until": t, "heartbeat": wall
time}``, ``t`` the time before which every pick of its stations is written
(``Daemon.complete_until``). Exactly one daemon associates: the holder of the catalog's association
lock (``catalog.lock.AdvisoryLock``), which another daemon takes at its next step once the holder's
database session ends. The holder reads the picks of all shards from the catalog and associates up
to the least ``until`` over the live shards. A shard whose heartbeat is older than ``stale_after``
seconds counts as dead and no longer holds association back; the picks it makes before the
association horizon once it runs again stay in the catalog unassociated.
"""
from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Callable

from eqt_monitor.catalog.lock import AdvisoryLock
from eqt_monitor.catalog.store import Catalog
from eqt_monitor.events.associator import AssociatorConfig, Coordinates
from eqt_monitor.events.live import LiveAssociator

log = logging.getLogger(__name__)

HORIZON_PREFIX = "daemon.horizon."
DEFAULT_SHARD = "default"


class SharedAssociation:
    """This daemon's part in association over a shared catalog (see the module's docstring)."""

    def __init__(self, catalog: Catalog, uri: str, shard: str | None, coordinates: Coordinates,
                 config: AssociatorConfig, stale_after: float, clock: Callable[[], float] = time.time) -> None:
        self.catalog, self.shard = catalog, shard or DEFAULT_SHARD
        self.coordinates, self.config, self.stale_after, self._clock = coordinates, config, stale_after, clock
        self.lock = AdvisoryLock(uri)
        self.associator: LiveAssociator | None = None  # while this daemon associates
        self._stations: Coordinates = {}
        self._fed_until = -math.inf
        self._held = False

    def step(self, own_until: float | None) -> float | None:
        """Publish this shard's horizon; while holding the lock, feed every shard's new picks from the
        catalog to ``associator`` and return the time it may advance to (None: another daemon
        associates, or a live shard has no horizon yet)."""
        self.catalog.set_state(HORIZON_PREFIX + self.shard,
                               json.dumps({"until": own_until, "heartbeat": self._clock()}))
        held = self.lock.held()
        if held != self._held:
            self._held = held
            log.info("association: shard %s %s", self.shard, "holds the association lock: it associates the picks "
                     "of all shards" if held else "no longer holds the association lock")
        if not held:
            self.associator = None
            return None
        until = self.until()
        if until is None:
            return None
        stations = {**self.catalog.stations(), **self.coordinates}  # every shard records its stations at start
        if self.associator is None or stations != self._stations:
            self.associator = LiveAssociator(stations, self.config, store=self.catalog)  # resumes from the catalog
            self._stations = stations
            self._fed_until = self.associator.horizon - self.associator.max_travel_time
        start = self._fed_until if math.isfinite(self._fed_until) else None
        used = self.catalog.associated_pick_ids(start=start)
        self.associator.feed(p for p in self.catalog.picks(start, until) if p.id not in used)
        self._fed_until = max(self._fed_until, until)
        return until

    def until(self) -> float | None:
        """The least published horizon over the shards with a recent heartbeat (None while one of
        them has none yet)."""
        now, live = self._clock(), []
        for value in self.catalog.states(HORIZON_PREFIX).values():
            shard = json.loads(value)
            if now - shard["heartbeat"] <= self.stale_after:
                if shard["until"] is None:
                    return None
                live.append(shard["until"])
        return min(live) if live else None

    def close(self) -> None:
        """Give the association lock up (at shutdown)."""
        self.lock.close()
