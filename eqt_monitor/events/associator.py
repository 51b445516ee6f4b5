"""Picks from many stations → located events, with PyOcto.

Stations are given as ``NET.STA.LOC -> (lat, lon, elevation_m)`` and projected to km on a
transverse Mercator plane centred on the network. The velocity model is homogeneous (0D, ``vp``
and ``vs``) by default, or 1D layered (``layers``, see ``events.velocity``). PyOcto associates;
each event is then relocated by least squares and its outlying arrivals dropped; the origin's
uncertainty comes from the fit's covariance (``events.uncertainty``).

:func:`associate` runs over a whole span (replay); ``events.live.LiveAssociator`` runs the same
association over sliding slices of a live feed.
"""
from __future__ import annotations

import logging
import math
import tempfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, fields
from pathlib import Path

import numpy as np
import pandas as pd
import pyocto
from obspy.geodetics import gps2dist_azimuth
from pyproj import CRS, Transformer
from scipy.optimize import least_squares

from eqt_monitor.errors import ConfigError, FieldError
from eqt_monitor.events.uncertainty import origin_uncertainty
from eqt_monitor.events.velocity import Layer, TravelTimeTable, layered_travel_times
from eqt_monitor.records import Arrival, Event, Origin, Pick

log = logging.getLogger(__name__)

Coordinates = Mapping[str, tuple[float, float, float]]  # NET.STA.LOC -> (lat, lon, elevation_m)
MAX_LAYERS = 50
ZLIM_RANGE = (-10.0, 700.0)  # km: search depths PyOcto is asked about (deepest earthquakes ~700 km)
# field -> (lowest, highest, lowest excluded): values outside are typos that crash, hang or fill memory
_BOUNDS: dict[str, tuple[float, float, bool]] = {
    "vp": (0.0, 20.0, True), "vs": (0.0, 20.0, True),
    "tolerance": (0.0, 60.0, True), "margin_km": (0.0, 1000.0, False),
    "n_picks": (1, 1000, False), "n_p_picks": (0, 1000, False), "n_s_picks": (0, 1000, False),
    "n_p_and_s_picks": (0, 1000, False), "pick_match_tolerance": (0.0, 60.0, True),
    "min_node_size_location": (0.01, 100.0, False), "max_residual": (0.0, 60.0, True),
    "min_interevent_time": (0.0, 3600.0, False), "min_pick_fraction": (0.0, 1.0, False),
    "table_spacing_km": (0.05, 50.0, False), "n_threads": (1, 256, False),
}


@dataclass(frozen=True)
class AssociatorConfig:
    """Association settings; PyOcto's names where they are PyOcto's parameters."""

    vp: float = 6.0  # km/s, 0D model
    vs: float = 3.5
    layers: tuple[Layer, ...] = ()  # non-empty: 1D layered model instead of vp/vs
    tolerance: float = 0.5  # s, velocity model tolerance
    margin_km: float = 30.0  # search volume: station bounding box plus this margin
    zlim: tuple[float, float] = (0.0, 30.0)  # km below sea level
    n_picks: int = 6
    n_p_picks: int = 3
    n_s_picks: int = 2
    n_p_and_s_picks: int = 2
    pick_match_tolerance: float = 1.0  # s
    min_node_size_location: float = 0.25  # km
    max_residual: float = 0.5  # s; arrivals beyond this after relocation are dropped as outliers
    min_interevent_time: float = 3.0  # s
    min_pick_fraction: float = 0.25
    table_spacing_km: float = 0.5  # 1D travel-time table grid
    n_threads: int = 1  # one thread keeps the output deterministic

    def __post_init__(self) -> None:
        """Refuse settings PyOcto would crash, hang or silently misread on (``FieldError`` naming the field)."""
        self._check_numbers()
        if not self.layers and not (0 < self.vs < self.vp):
            raise ConfigError(f"associator: need 0 < vs < vp, got vp={self.vp} vs={self.vs}")
        if self.layers:
            tops = [layer.top_km for layer in self.layers]
            if tops != sorted(tops) or len(set(tops)) != len(tops) or tops[0] > self.zlim[0]:
                raise FieldError("layers", "tops must increase and the first must cover the search depth")
            if any(not (0 < layer.vs < layer.vp) for layer in self.layers):
                raise FieldError("layers", "every layer needs 0 < vs < vp")
            if self.zlim[0] < 0:
                raise FieldError("zlim", "PyOcto's 1D model cannot search above sea level")

    def _check_numbers(self) -> None:
        """Every number finite and within `_BOUNDS` (typos there crash PyOcto, hang it or fill memory)."""
        if len(self.layers) > MAX_LAYERS:
            raise FieldError("layers", f"at most {MAX_LAYERS} layers, got {len(self.layers)}")
        values = [("zlim", z) for z in self.zlim] + [("layers", v) for la in self.layers for v in (la.top_km, la.vp, la.vs)]
        values += [(f.name, getattr(self, f.name)) for f in fields(self) if f.name not in ("zlim", "layers")]
        for name, value in values:
            if not math.isfinite(value):
                raise FieldError(name, f"must be a finite number, got {value}")
        top, bottom = self.zlim
        if not ZLIM_RANGE[0] <= top < bottom <= ZLIM_RANGE[1]:
            raise FieldError("zlim", f"need {ZLIM_RANGE[0]:g} <= top_km < bottom_km <= {ZLIM_RANGE[1]:g}, got [{top:g}, {bottom:g}]")
        for name, (low, high, low_open) in _BOUNDS.items():
            value = getattr(self, name)
            if value < low or (low_open and value == low) or value > high:
                raise FieldError(name, f"must be in {'(' if low_open else '['}{low:g}, {high:g}], got {value:g}")
        if self.n_picks < max(self.n_p_picks, self.n_s_picks):
            raise FieldError("n_picks", f"must be at least n_p_picks and n_s_picks, got {self.n_picks}")

    def describe(self) -> str:
        """The velocity model in words, for the origin's method id."""
        if self.layers:
            body = "; ".join(f"{la.top_km:g} km {la.vp:.2f}/{la.vs:.2f}" for la in self.layers)
            return f"PyOcto {pyocto.__version__} + least squares, 1D layers (top vp/vs km/s) {body}"
        return f"PyOcto {pyocto.__version__} + least squares, 0D vp={self.vp:.2f} vs={self.vs:.2f} km/s"


class PyOctoLocator:
    """PyOcto set up for one station set and configuration."""

    def __init__(self, stations: Coordinates, config: AssociatorConfig):
        if not stations:
            raise ConfigError("associator: no station coordinates given")
        self.config = config
        self.coordinates = dict(stations)
        frame = pd.DataFrame(
            [{"id": k, "latitude": v[0], "longitude": v[1], "elevation": v[2]} for k, v in sorted(stations.items())]
        )
        crs = pyocto.OctoAssociator.get_crs(frame)  # transverse Mercator in km, centred on the network
        self._to_km = Transformer.from_crs(CRS.from_epsg(4326), crs)
        frame["x"], frame["y"] = self._to_km.transform(frame["latitude"].to_numpy(), frame["longitude"].to_numpy())
        frame["z"] = -frame["elevation"] / 1000.0
        self._xyz = {r.id: (r.x, r.y, r.z) for r in frame.itertuples()}
        self._bounds = None
        m = config.margin_km
        xlim = (frame["x"].min() - m, frame["x"].max() + m)
        ylim = (frame["y"].min() - m, frame["y"].max() + m)
        self._tables = None
        self._table: TravelTimeTable | None = None
        if config.layers:
            self._tables = tempfile.TemporaryDirectory(prefix="eqt-monitor-tt-")
            path = Path(self._tables.name) / "model.bin"
            diagonal = math.hypot(xlim[1] - xlim[0], ylim[1] - ylim[0])
            zdist = config.zlim[1] + max(0.0, frame["elevation"].max() / 1000) + 5.0
            self._table = TravelTimeTable.build(config.layers, diagonal + 10.0, zdist, config.table_spacing_km)
            self._table.write(path)
            model = pyocto.VelocityModel1D(str(path), config.tolerance,
                                           surface_p_velocity=config.layers[0].vp,
                                           surface_s_velocity=config.layers[0].vs)
        else:
            model = pyocto.VelocityModel0D(config.vp, config.vs, config.tolerance)
        self.max_travel_time = self._max_s_time(frame, xlim, ylim) + config.tolerance
        self._bounds = ([xlim[0], ylim[0], config.zlim[0]], [xlim[1], ylim[1], config.zlim[1]])
        self.octo = pyocto.OctoAssociator(
            xlim, ylim, config.zlim, model, time_before=self.max_travel_time, crs=crs,
            n_picks=config.n_picks, n_p_picks=config.n_p_picks, n_s_picks=config.n_s_picks,
            n_p_and_s_picks=config.n_p_and_s_picks, pick_match_tolerance=config.pick_match_tolerance,
            min_interevent_time=config.min_interevent_time, min_pick_fraction=config.min_pick_fraction,
            n_threads=config.n_threads, min_node_size_location=config.min_node_size_location,
        )
        self.frame = frame
        self._warned: set[str] = set()

    def _max_s_time(self, frame: pd.DataFrame, xlim, ylim) -> float:
        """Longest S travel time from any corner of the search volume to any station."""
        corners = np.array([(x, y) for x in xlim for y in ylim])
        dx = corners[:, None, 0] - frame["x"].to_numpy()[None, :]
        dy = corners[:, None, 1] - frame["y"].to_numpy()[None, :]
        horizontal = float(np.hypot(dx, dy).max())
        depth = self.config.zlim[1] + max(0.0, frame["elevation"].max() / 1000)
        if self.config.layers:
            return float(layered_travel_times(self.config.layers, "S", np.array([horizontal]), np.array([depth]))[0, 0])
        return math.hypot(horizontal, depth) / self.config.vs

    def travel_times(self, picks: list[Pick], x: float, y: float, z: float) -> np.ndarray:
        """Predicted travel times (s) of ``picks`` from a source at ``(x, y)`` km and depth ``z`` km."""
        sx, sy, sz = (np.array([self._xyz[p.station.id][i] for p in picks]) for i in range(3))
        is_p = np.array([p.phase == "P" for p in picks])
        if not self.config.layers:
            r = np.sqrt((sx - x) ** 2 + (sy - y) ** 2 + (sz - z) ** 2)
            return r / np.where(is_p, self.config.vp, self.config.vs)
        # the table starts at the top of the model; the path above it is vertical at the top layer's speed
        top = self.config.layers[0]
        offsets = np.hypot(sx - x, sy - y)
        depth = np.full(len(picks), max(z - top.top_km, 0.0))
        above = np.maximum(top.top_km - sz, 0.0) / np.where(is_p, top.vp, top.vs)
        return self._table.lookup(is_p, offsets, depth) + above

    def _locate(self, picks: list[Pick], start: tuple[float, float, float, float]) -> tuple[Event, np.ndarray] | None:
        """Refine a preliminary origin ``(x, y, z, t)`` by robust least squares, dropping outlying arrivals.

        Returns the event and its ``(x, y, z, t)``, or None when fewer picks than the configured
        minimums survive.
        """
        cfg = self.config
        if not self._enough(picks):
            return None
        observed = np.array([p.time for p in picks])
        t_ref = float(np.min(observed))
        lower = np.array(self._bounds[0] + [-np.inf])
        upper = np.array(self._bounds[1] + [np.inf])
        # PyOcto's node plus the same epicentre at a few depths: its depth can sit in a local minimum
        starts = [np.array([start[0], start[1], z, start[3] - t_ref])
                  for z in (start[2], *np.linspace(cfg.zlim[0], cfg.zlim[1], 5)[1:-1])]
        fit = None
        while True:
            def residuals(m: np.ndarray) -> np.ndarray:
                return observed - t_ref - m[3] - self.travel_times(picks, m[0], m[1], m[2])

            fits = [least_squares(residuals, np.clip(x0, lower, upper), bounds=(lower, upper), loss="soft_l1",
                                  f_scale=cfg.max_residual / 3, x_scale=[1.0, 1.0, 1.0, 0.2])
                    for x0 in (starts if fit is None else [fit.x])]
            fit = min(fits, key=lambda f: f.cost)
            res = residuals(fit.x)
            worst = int(np.argmax(np.abs(res)))
            if abs(res[worst]) <= cfg.max_residual:
                break
            picks = picks[:worst] + picks[worst + 1:]
            observed = np.delete(observed, worst)
            if not self._enough(picks):
                return None
        if not self._enough(picks):
            return None
        lat, lon = self._to_km.transform(fit.x[0], fit.x[1], direction="INVERSE")
        arrivals = []
        for pick, r in zip(picks, res):
            slat, slon, _ = self.coordinates[pick.station.id]
            dist_m, az, _ = gps2dist_azimuth(lat, lon, slat, slon)
            arrivals.append(Arrival(pick, float(r), dist_m / 1000.0, az))
        arrivals.sort(key=lambda a: (a.pick.time, a.pick.station, a.pick.phase))
        rms = float(np.sqrt(np.mean(res**2)))
        # a depth held at a bound of the search volume is not resolved: no depth error for it
        uncertainty = origin_uncertainty(self._jacobian([a.pick for a in arrivals], fit.x), arrivals,
                                         depth_resolved=fit.active_mask[2] == 0)
        origin = Origin(t_ref + float(fit.x[3]), float(lat), float(lon), float(fit.x[2]), rms, self.config.describe(),
                        uncertainty)
        return Event(origin, tuple(arrivals)), np.array([*fit.x[:3], origin.time])

    def _jacobian(self, picks: list[Pick], m: np.ndarray, step_km: float = 0.01) -> np.ndarray:
        """Derivatives of the predicted arrival times of ``picks`` with respect to the origin's
        ``(x, y, z)`` km (central differences, valid for the 1D tables too) and its time."""
        columns = [(self.travel_times(picks, *(m[:3] + d)) - self.travel_times(picks, *(m[:3] - d))) / (2 * step_km)
                   for d in np.eye(3) * step_km]
        return np.column_stack([*columns, np.ones(len(picks))])

    def _enough(self, picks: list[Pick]) -> bool:
        """Whether ``picks`` still meet the configured minimum pick counts."""
        cfg = self.config
        p = {x.station for x in picks if x.phase == "P"}
        s = {x.station for x in picks if x.phase == "S"}
        return (len(picks) >= cfg.n_picks and len(p) >= cfg.n_p_picks and len(s) >= cfg.n_s_picks
                and len(p & s) >= cfg.n_p_and_s_picks)

    def run(self, picks: list[Pick], between: tuple[float, float] = (-math.inf, math.inf)) -> list[Event]:
        """Associate and locate ``picks``; events sorted by origin time.

        Only PyOcto events whose preliminary time is within ``between`` (widened by the tolerance
        and the outlier limit) are located: the live associator needs no others.
        """
        usable = []
        for p in picks:
            if p.station.id in self.coordinates:
                usable.append(p)
            elif p.station.id not in self._warned:
                self._warned.add(p.station.id)
                log.warning("no coordinates for station %s: its picks are not associated", p.station.id)
        if not usable:
            return []
        table = pd.DataFrame({"station": [p.station.id for p in usable], "time": [p.time for p in usable],
                              "phase": [p.phase for p in usable]})
        events, assignments = self.octo.associate(table, self.frame)
        if len(events) == 0:
            return []
        times = np.array([p.time for p in usable])  # sorted: callers pass picks by time
        claimed: set[int] = set()
        out = []
        slack = self.config.tolerance + self.config.max_residual
        for row in events.sort_values("time").itertuples():
            if not between[0] - slack <= row.time < between[1] + slack:
                continue
            members = [int(i) for i in assignments.loc[assignments["event_idx"] == row.idx, "pick_idx"]
                       if int(i) not in claimed]
            located = self._locate([usable[i] for i in members], (row.x, row.y, row.z, row.time))
            if located is None:
                continue
            # take in the unclaimed picks that fit the refined origin (PyOcto misses some when events
            # overlap in time), then locate again with them
            chosen: list[int] = []
            for _ in range(3):
                m = located[1]
                lo, hi = np.searchsorted(times, [m[3] - self.config.max_residual, m[3] + self.max_travel_time])
                again = self._best_per_phase(usable, [i for i in range(lo, hi) if i not in claimed], m)
                if again == chosen:
                    break
                chosen = again
                located = self._locate([usable[i] for i in chosen], tuple(m))
                if located is None:
                    break
            if located is None:
                continue
            event = located[0]
            claimed.update(i for i in chosen if usable[i] in {a.pick for a in event.arrivals})
            out.append(event)
        out.sort(key=lambda e: e.origin.time)
        return out

    def _best_per_phase(self, picks: list[Pick], candidates: list[int], m: np.ndarray) -> list[int]:
        """Of ``candidates``, per station and phase the pick closest to the time predicted by origin ``m``.

        Only picks within ``max_residual`` of the prediction are kept.
        """
        if not candidates:
            return []
        predicted = m[3] + self.travel_times([picks[i] for i in candidates], m[0], m[1], m[2])
        best: dict[tuple[str, str], tuple[float, int]] = {}
        for i, t in zip(candidates, predicted):
            miss = abs(picks[i].time - t)
            slot = (picks[i].station.id, picks[i].phase)
            if miss <= self.config.max_residual and miss < best.get(slot, (math.inf, -1))[0]:
                best[slot] = (miss, i)
        return sorted(i for _, i in best.values())


def associate(picks: Iterable[Pick], stations: Coordinates, config: AssociatorConfig = AssociatorConfig()) -> list[Event]:
    """Associate and locate all ``picks`` of a bounded span at once (replay)."""
    return PyOctoLocator(stations, config).run(_unique(picks))


def pick_key(p: Pick) -> tuple[str, str, int]:
    """What makes two picks the same pick: station, phase, time to 10 ms."""
    return p.station.id, p.phase, int(round(p.time * 100))


def _unique(picks: Iterable[Pick]) -> list[Pick]:
    seen: dict[tuple[str, str, int], Pick] = {}
    for p in picks:
        seen.setdefault(pick_key(p), p)
    return sorted(seen.values(), key=lambda p: (p.time, p.station, p.phase))
