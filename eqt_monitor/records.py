"""Plain data records passed between the pipeline stages, and the ``Recorder`` stages report to.

Times are POSIX seconds (UTC) as ``float``: exact to well under a microsecond for
the dates seismology deals with, cheap in the hot path, and converted to
``obspy.UTCDateTime`` only at the edges (catalog export, plots, logs).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from statistics import NormalDist
from typing import Protocol

import numpy as np

SAMPLING_RATE = 100.0  # Hz, what every EqT variant expects
WINDOW_SAMPLES = 6000  # 60 s windows


@dataclass(frozen=True, order=True)
class StationKey:
    """A station as the pipeline sees it: network, station, location and band+instrument code."""

    network: str
    station: str
    location: str = ""
    channel_prefix: str = ""  # e.g. "HH", "EH"

    @property
    def id(self) -> str:
        """``NET.STA.LOC`` (the key stations are stored and reported under)."""
        return f"{self.network}.{self.station}.{self.location}"

    def __str__(self) -> str:
        return f"{self.id}.{self.channel_prefix}?"


@dataclass(frozen=True)
class Pick:
    """A P or S arrival picked on a station's stacked probability trace."""

    station: StationKey
    phase: str  # "P" or "S"
    time: float  # POSIX seconds, UTC
    probability: float
    snr: float | None = None  # EqT's definition, in dB
    amplitude: float | None = None  # peak absolute amplitude of the raw data around the pick, in counts
    probability_std: float | None = None  # Monte-Carlo dropout: std of the probability at the pick
    time_uncertainty: float | None = None  # Monte-Carlo dropout: seconds (picker.time_uncertainty)
    id: str = field(default="", compare=False)  # resource id, set once the weights that made it are known


@dataclass(frozen=True)
class EarlyOutcome:
    """What became of a preliminary pick (``picks: early``) once the picks around it were final:
    the final pick that replaces it, or None when it is retracted."""

    early: Pick
    final: Pick | None


@dataclass(frozen=True)
class EarlyPickRecord:
    """A stored preliminary pick: its QuakeML evaluationStatus ("preliminary", then "final" or
    "rejected"), the final pick that replaced it, and the wall-clock times it was created and resolved."""

    pick: Pick
    status: str
    final_pick_id: str | None
    created: float
    resolved: float | None


@dataclass(frozen=True)
class Detection:
    """An earthquake signal on one station: a run of detection probability above threshold."""

    station: StationKey
    start: float
    end: float
    probability: float  # mean detection probability over the run
    probability_std: float | None = None  # Monte-Carlo dropout: mean std of D over the run


@dataclass
class ProbabilitySegment:
    """A stretch of final (no later window can change it) stacked model output for one station.

    ``detection``, ``p`` and ``s`` are float32 arrays of equal length, sample ``i`` at
    ``start + i / sampling_rate``.
    """

    station: StationKey
    start: float
    detection: np.ndarray
    p: np.ndarray
    s: np.ndarray
    sampling_rate: float = SAMPLING_RATE
    meta: dict = field(default_factory=dict)

    @property
    def end(self) -> float:
        """Time of the last sample."""
        return self.start + (len(self.detection) - 1) / self.sampling_rate


@dataclass
class Segment:
    """Contiguous 100 Hz three-component data for one station, as the buffer hands it on.

    ``data`` is ``(n, 3)`` float32 in channel order [E, N, Z], raw counts (not normalised);
    sample ``i`` is at ``start + i / SAMPLING_RATE``. Consecutive segments of one stretch are
    contiguous. ``stretch_start`` marks the first samples after the start of the data or a gap
    too long to fill; ``stretch_end`` the last samples before such a gap or the end of the data.
    ``filled`` counts samples in ``data`` that were interpolated or zero-filled; ``blind`` (``None``:
    none) marks zero-filled samples whose step to or from real data could make picks: the engine
    zeroes the model output within ``EngineConfig.fill_blinding`` samples of them.
    """

    station: StationKey
    start: float
    data: np.ndarray
    stretch_start: bool = False
    stretch_end: bool = False
    filled: int = 0
    blind: np.ndarray | None = None  # (n,) bool

    @property
    def end(self) -> float:
        """Time just after the last sample (``start + n / rate``)."""
        return self.start + len(self.data) / SAMPLING_RATE


# Located events: what association, location and magnitude make and the catalog stores.


@dataclass(frozen=True)
class Arrival:
    """A pick used by an origin, with its travel-time residual (observed - predicted, s)."""

    pick: Pick
    residual: float
    distance_km: float  # epicentral
    azimuth: float | None = None  # degrees from the epicentre to the station

    @property
    def pick_id(self) -> str:
        """The resource id of the pick (picks carry theirs from the writer or the catalog)."""
        return self.pick.id


@dataclass(frozen=True)
class OriginUncertainty:
    """How well an origin is constrained (QuakeML ``originUncertainty`` and ``quality``): a confidence
    ellipse of the epicentre, depth and time errors at ``confidence_level`` percent, and the geometry."""

    confidence_level: float  # percent covered by the uncertainties below, e.g. 90.0
    horizontal_km: float  # semi-major axis of the epicentral ellipse (QuakeML maxHorizontalUncertainty)
    min_horizontal_km: float  # semi-minor axis (QuakeML minHorizontalUncertainty)
    azimuth_max_horizontal: float  # degrees east of north of the semi-major axis
    depth_km: float | None  # None when the depth was not resolved (fixed)
    time_s: float
    azimuthal_gap: float  # degrees, largest gap in station azimuths seen from the epicentre
    used_phase_count: int
    used_station_count: int
    minimum_distance_km: float  # epicentral distance to the nearest station used

    def axis_km(self, azimuth: float) -> float:
        """The 1-D error (km, at ``confidence_level``) of the epicentre along ``azimuth`` (degrees east
        of north: 0 for latitude, 90 for longitude), the marginal of the ellipse's Gaussian."""
        one, two = confidence_scales(self.confidence_level)
        turn = math.radians(azimuth - self.azimuth_max_horizontal)
        return one / two * math.hypot(self.horizontal_km * math.cos(turn), self.min_horizontal_km * math.sin(turn))


def confidence_scales(confidence: float) -> tuple[float, float]:
    """The multiples of sigma whose Gaussian regions cover ``confidence`` percent in one and in two
    dimensions (``√χ²₁``, ``√χ²₂``: 1.645 and 2.146 at 90 %; a 1-sigma ellipse covers only 39 %)."""
    p = confidence / 100.0
    return NormalDist().inv_cdf((1.0 + p) / 2.0), math.sqrt(-2.0 * math.log(1.0 - p))


@dataclass(frozen=True)
class Origin:
    """A hypocentre: POSIX time, WGS84 position, depth below sea level in km."""

    time: float
    latitude: float
    longitude: float
    depth_km: float
    rms: float | None
    method: str  # e.g. "PyOcto 0.2.2, 0D vp=6.00 vs=3.50 km/s"
    uncertainty: OriginUncertainty | None = None


@dataclass(frozen=True)
class StationMagnitude:
    """One station's magnitude with the Wood-Anderson peak amplitude it came from."""

    station: StationKey
    value: float
    amplitude_m: float
    distance_km: float  # hypocentral


@dataclass(frozen=True)
class Magnitude:
    """A network magnitude (median of station values) or, when ``value`` is None, the reason why not."""

    type: str
    value: float | None
    uncertainty: float | None  # spread of the station values
    station_count: int
    method: str
    reason: str | None = None
    station_magnitudes: tuple[StationMagnitude, ...] = ()


@dataclass(frozen=True)
class Event:
    """A located event: its origin, the arrivals that located it and (optionally) a magnitude."""

    origin: Origin
    arrivals: tuple[Arrival, ...]
    magnitude: Magnitude | None = None
    id: str = ""  # filled when read from (or stored in) the catalog
    version: int = 1  # of the preferred origin: 1 at first commit, +1 each time late picks change it
    status: str = "preliminary"  # QuakeML evaluationStatus; "rejected" once the event lost its support
    updated: float | None = None  # POSIX wall-clock time the catalog last changed the event

    @property
    def short_id(self) -> str:
        """The hash part of the resource id (what ``eqt-monitor plot`` accepts)."""
        return self.id.rsplit("/", 1)[-1]


@dataclass
class Run:
    """One replay or daemon run: where data came from and which model made the picks."""

    started: float
    source: str
    model: str
    weights_sha256: str
    settings: dict = field(default_factory=dict)


# What sources report while they run (errors, data, reconnects, lost data); the live service
# passes a metrics-backed recorder (``live.metrics.RECORDER``), bounded runs a ``NullRecorder``.


class Recorder(Protocol):
    """Where sources report what they see (the live service counts it in its metrics).

    ``station`` is ``NET.STA.LOC``; stages take a recorder instead of importing the metrics.
    """

    def error(self, kind: str, n: int = 1) -> None:
        """``n`` errors of ``kind`` (e.g. ``seedlink_connect``, ``fdsn_poll``)."""

    def data(self, station: str, samples: int, end: float) -> None:
        """One record of ``samples`` samples received, ending at ``end`` (POSIX s)."""

    def reconnect(self, source: str) -> None:
        """Source ``source`` (its URI) connected again after losing its connection."""

    def data_lost(self, station: str, seconds: float) -> None:
        """``seconds`` of a station's data that the source could not get."""


class NullRecorder:
    """A ``Recorder`` that keeps nothing (sources used outside the live service)."""

    def error(self, kind: str, n: int = 1) -> None:
        pass

    def data(self, station: str, samples: int, end: float) -> None:
        pass

    def reconnect(self, source: str) -> None:
        pass

    def data_lost(self, station: str, seconds: float) -> None:
        pass
