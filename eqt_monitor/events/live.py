"""Live association over sliding slices of a pick feed (the daemon), with PyOcto as in replay.

An event is committed only once its origin time is more than the longest travel time in the
search volume behind the complete-data horizon, so no later pick can belong to it; each event is
committed in exactly one slice (the one whose horizon range holds its origin time). With a store
attached, the horizon is stored in the same transaction as the events, which makes it
restart-safe.

Late picks (fed after the complete-data time of an earlier ``advance`` passed them: a station that
catches up) can change committed events. With a store, the next ``advance`` re-associates the
origins they can belong to, ``[first late pick - max travel time, min(last late pick, horizon))``,
from the stored picks in ``[start, end + max travel time)`` less those of stored events outside that
range, and hands the result to ``add_events(..., span=...)``: same picks change nothing, changed
ones give the event a new version, events left without support are rejected (see DESIGN.md).
"""
from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Protocol

from eqt_monitor.events.associator import AssociatorConfig, Coordinates, PyOctoLocator, pick_key
from eqt_monitor.records import Event, Pick

HORIZON_KEY = "associator.horizon"


class EventStore(Protocol):
    """What live association needs of the catalog (``catalog.store.Catalog`` is one)."""

    def get_state(self, key: str, default: str | None = None) -> str | None: ...

    def set_state(self, key: str, value: str) -> None: ...

    def add_events(self, events: Iterable[Event], *, state: Mapping[str, str] | None = None,
                   span: tuple[float, float] | None = None) -> list[Event]: ...

    def events(self, start: float | None = None, end: float | None = None) -> list[Event]: ...

    def associated_pick_ids(self, start: float | None = None) -> set[str]: ...

    def picks(self, start: float | None = None, end: float | None = None) -> list[Pick]: ...


class LiveAssociator:
    """Live association over sliding slices; feed picks, then :meth:`advance` as data completes.

    With a ``store`` (the catalog), committed events and the horizon are stored together (picks must
    be stored, and carry their ids, before they are fed), and a new ``LiveAssociator`` on the same
    store resumes where the last one stopped: it reloads the unassociated picks it still needs.
    """

    def __init__(self, stations: Coordinates, config: AssociatorConfig = AssociatorConfig(),
                 store: EventStore | None = None, horizon_key: str = HORIZON_KEY):
        self._octo = PyOctoLocator(stations, config)
        self.store = store
        self._pending: dict[tuple[str, str, int], Pick] = {}
        self.horizon = -math.inf  # events with origin time before this are settled
        self.horizon_key = horizon_key  # the state key the horizon is stored under (one per feed)
        self._late: tuple[float, float] | None = None  # times of the first and last late pick fed
        if store is not None:
            saved = store.get_state(horizon_key)
            if saved is not None:
                self.horizon = float(saved)
                self._reload()

    @property
    def max_travel_time(self) -> float:
        """Longest travel time (s, S wave plus tolerance) in the search volume: the slice overlap."""
        return self._octo.max_travel_time

    def _reload(self) -> None:
        """Pending = the stored picks the uncommitted events may still use (not in a stored event)."""
        floor = self.horizon - self.max_travel_time
        used = self.store.associated_pick_ids(start=floor)
        self._pending = {pick_key(p): p for p in self.store.picks(start=floor) if p.id not in used}

    def feed(self, picks: Iterable[Pick]) -> None:
        """Add picks (any order, repeats ignored); picks older than the settled horizon are dropped
        from the pending ones, and with a store, picks the complete data had passed are late."""
        floor = self.horizon - self.max_travel_time
        complete = self.horizon + self.max_travel_time  # what the last advance was told was complete
        for p in picks:
            key = pick_key(p)
            if p.time < complete and self.store is not None and key not in self._pending:
                lo, hi = self._late or (p.time, p.time)
                self._late = (min(lo, p.time), max(hi, p.time))
            if p.time >= floor:
                self._pending.setdefault(key, p)

    def advance(self, complete_until: float) -> list[Event]:
        """Commit the events settled now that every pick before ``complete_until`` has been fed; returns
        the events stored or changed (new ones, and updated or rejected ones after late picks)."""
        return self._commit(complete_until - self.max_travel_time)

    def flush(self) -> list[Event]:
        """Commit every remaining event (the data has ended)."""
        return self._commit(math.inf)

    def _commit(self, new_horizon: float) -> list[Event]:
        changed = self._reassociate() if self._late is not None else []
        return changed + self._commit_slice(new_horizon)

    def _reassociate(self) -> list[Event]:
        """Re-associate the committed origins the late picks can belong to (see the module docstring)."""
        first, last = self._late
        start, end = first - self.max_travel_time, min(last, self.horizon)
        if start >= end:
            self._late = None
            return []
        stop = end + self.max_travel_time
        outside = [e for e in self.store.events(start - self.max_travel_time, stop)
                   if e.status != "rejected" and not start <= e.origin.time < end]
        taken = {a.pick_id for e in outside for a in e.arrivals}
        picks = [p for p in self.store.picks(start, stop) if p.id not in taken]
        found = self._octo.run(sorted(picks, key=lambda p: (p.time, p.station, p.phase)), between=(start, end))
        changed = self.store.add_events([e for e in found if start <= e.origin.time < end], span=(start, end))
        self._late = None  # only once stored: a failed write is tried again at the next advance
        if changed:
            self._reload()  # picks moved between events: pending is what no stored event uses
        return changed

    def _commit_slice(self, new_horizon: float) -> list[Event]:
        if new_horizon <= self.horizon or not self._pending:
            self._set_horizon(new_horizon)
            return []
        found = self._octo.run(sorted(self._pending.values(), key=lambda p: (p.time, p.station, p.phase)),
                               between=(self.horizon, new_horizon))
        settled = [e for e in found if self.horizon <= e.origin.time < new_horizon]
        if self.store is not None:
            state = {self.horizon_key: repr(new_horizon)} if math.isfinite(new_horizon) else {}
            committed = self.store.add_events(settled, state=state)
        else:
            committed = settled
        for event in settled:
            for a in event.arrivals:
                self._pending.pop(pick_key(a.pick), None)
        self.horizon = max(self.horizon, new_horizon)
        floor = self.horizon - self.max_travel_time
        self._pending = {k: p for k, p in self._pending.items() if p.time >= floor}
        return committed

    def _set_horizon(self, new_horizon: float) -> None:
        if new_horizon > self.horizon and math.isfinite(new_horizon):
            self.horizon = new_horizon
            if self.store is not None:
                self.store.set_state(self.horizon_key, repr(new_horizon))
