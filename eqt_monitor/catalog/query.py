"""Selecting events from the catalog: the time, box, depth, magnitude, id, update time, order and
paging of an ``EventQuery`` become one SQL statement over events, their preferred origin and its
magnitude; a radius around a
point is a latitude band in SQL and the exact great-circle distance in Python (SQLite has no
trigonometry), so paging moves to Python only for radius queries. Only ids and epicentres come back
from SQL; the store reads the full events of the page alone.
"""
from __future__ import annotations

from dataclasses import dataclass

from obspy.geodetics import locations2degrees

from eqt_monitor.catalog.ids import ID_PREFIX

ORDERS = {  # FDSN ``orderby`` -> SQL; events without a magnitude come last when ordering by magnitude
    "time": "e.time DESC, e.id",
    "time-asc": "e.time, e.id",
    "magnitude": "(m.value IS NULL), m.value DESC, e.time DESC, e.id",
    "magnitude-asc": "(m.value IS NULL), m.value, e.time, e.id",
}


@dataclass(frozen=True)
class EventQuery:
    """Which events, in which order, which page. Bounds are inclusive; ``None`` leaves one open.

    Times are POSIX seconds of the origin; longitudes with ``min_longitude > max_longitude`` cross
    the antimeridian; a magnitude bound (or ``magnitude_type``, case-insensitive) keeps only events
    with such a magnitude; ``radius`` is ``(latitude, longitude, min_degrees, max_degrees)`` of the
    epicentre's great-circle distance; ``event_id`` is a resource id or its hash; ``offset`` counts
    from 0.
    """

    start: float | None = None
    end: float | None = None
    min_latitude: float | None = None
    max_latitude: float | None = None
    min_longitude: float | None = None
    max_longitude: float | None = None
    radius: tuple[float, float, float, float] | None = None
    min_depth_km: float | None = None
    max_depth_km: float | None = None
    min_magnitude: float | None = None
    max_magnitude: float | None = None
    magnitude_type: str | None = None
    event_id: str | None = None
    updated_after: float | None = None  # wall-clock POSIX time the event last changed (Event.updated)
    rejected: bool | None = None  # only rejected events (True), only the others (False), or both (None)
    order: str = "time"
    limit: int | None = None
    offset: int = 0

    def __post_init__(self) -> None:
        if self.order not in ORDERS:
            raise ValueError(f"order {self.order!r}: not one of {', '.join(ORDERS)}")

    def sql(self) -> tuple[str, list]:
        """The statement selecting ``(event id, latitude, longitude)`` rows, and its arguments."""
        clauses: list[tuple[str, object]] = [
            ("e.time >= ?", self.start), ("e.time <= ?", self.end),
            ("o.latitude >= ?", self.min_latitude), ("o.latitude <= ?", self.max_latitude),
            ("o.depth_km >= ?", self.min_depth_km), ("o.depth_km <= ?", self.max_depth_km),
            ("m.value >= ?", self.min_magnitude), ("m.value <= ?", self.max_magnitude),
            ("lower(m.type) = ?", None if self.magnitude_type is None else self.magnitude_type.lower()),
            ("e.updated >= ?", self.updated_after),
        ]
        if self.rejected is not None:
            clauses.append(("e.status = ?" if self.rejected else "e.status != ?", "rejected"))
        lo, hi = self.min_longitude, self.max_longitude
        if lo is not None and hi is not None and lo > hi:
            clauses.append(("(o.longitude >= ? OR o.longitude <= ?)", (lo, hi)))
        else:
            clauses += [("o.longitude >= ?", lo), ("o.longitude <= ?", hi)]
        if self.radius is not None:  # the band of latitudes the circle can reach; exact test in select()
            lat, _, _, max_degrees = self.radius
            clauses += [("o.latitude >= ?", lat - max_degrees), ("o.latitude <= ?", lat + max_degrees)]
        if self.magnitude_type is not None or self.min_magnitude is not None or self.max_magnitude is not None:
            clauses.append(("m.value IS NOT NULL", ()))
        if self.event_id is not None:
            full = self.event_id if "/" in self.event_id else f"{ID_PREFIX}/event/{self.event_id}"
            clauses.append(("e.id = ?", full))
        used = [(c, v) for c, v in clauses if v is not None]
        where = " AND ".join(c for c, _ in used)
        args: list = []
        for _, v in used:
            args.extend(v if isinstance(v, tuple) else [v])
        sql = ("SELECT e.id, o.latitude, o.longitude FROM events e JOIN origins o ON o.id = e.preferred_origin_id "
               "LEFT JOIN magnitudes m ON m.origin_id = o.id AND m.value IS NOT NULL"
               + (f" WHERE {where}" if where else "") + f" ORDER BY {ORDERS[self.order]}")
        if self._pages_in_sql:
            sql += " LIMIT ? OFFSET ?"
            args += [self.limit, self.offset]
        return sql, args

    @property
    def _pages_in_sql(self) -> bool:
        return self.radius is None and self.limit is not None

    def select(self, rows: list[tuple[str, float, float]]) -> list[str]:
        """The ids of the page among the rows :meth:`sql` returned: the radius test and, where SQL
        could not page, the offset and limit."""
        if self.radius is not None:
            lat, lon, min_degrees, max_degrees = self.radius
            rows = [r for r in rows if min_degrees <= locations2degrees(lat, lon, r[1], r[2]) <= max_degrees]
        ids = [r[0] for r in rows]
        if self._pages_in_sql:
            return ids
        return ids[self.offset:None if self.limit is None else self.offset + self.limit]
