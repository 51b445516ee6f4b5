"""The typed settings a ``stations.yaml`` becomes: stations, model, and the stage settings
(``GapPolicy``, ``AssociatorConfig``) the config carries to the pipeline and the associator."""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from eqt_monitor.events.associator import AssociatorConfig
from eqt_monitor.pipeline.buffer import GapPolicy
from eqt_monitor.records import StationKey

# SEED 2.4 codes (what miniSEED 2 records, SDS paths and SeedLink carry): upper-case letters and
# digits only, so no wildcard or path character can reach a file name or a request.
CODE_PATTERNS = {
    "network": (re.compile(r"^[A-Z0-9]{1,2}$"), "1-2 upper-case letters or digits"),
    "station": (re.compile(r"^[A-Z0-9]{1,5}$"), "1-5 upper-case letters or digits"),
    "location": (re.compile(r"^[A-Z0-9]{0,2}$"), "0-2 upper-case letters or digits, or '--' for none"),
}
ELEVATION_RANGE_M = (-12000.0, 9000.0)
MAX_BATCH_SIZE = 1024  # windows per model call: ~74 MB of input, several GB of activations on CPU
MAX_MC_DROPOUT = 200  # Monte-Carlo passes per window: each costs one model call
BACKENDS = ("tensorflow", "jax", "torch")


@dataclass(frozen=True)
class StationConfig:
    """One station to monitor, with the coordinates association needs."""

    key: StationKey
    latitude: float | None = None
    longitude: float | None = None
    elevation: float = 0.0  # metres
    source: str | None = None  # overrides the config-wide sources for this station
    # channel code -> (azimuth, dip) in degrees from the inventory (the latest epoch); None: unknown
    orientation: dict[str, tuple[float, float]] | None = field(default=None, hash=False)

    @property
    def channels(self) -> str:
        """The channel pattern, e.g. ``HH?``."""
        return f"{self.key.channel_prefix}?"

    @property
    def has_coordinates(self) -> bool:
        return self.latitude is not None and self.longitude is not None


PICK_MODES = ("final", "early")  # ``picks:``: final picks only, or preliminary picks first as well


@dataclass(frozen=True)
class ModelConfig:
    """Which model runs and how its outputs become picks."""

    name: str = "original"
    weights: str | None = None  # a path; None = the registry's published weights for ``name``
    detection_threshold: float = 0.3
    p_threshold: float = 0.1
    s_threshold: float = 0.1
    step: int = 3000  # samples between window starts (30 s)
    batch_size: int = 64
    backend: str = "tensorflow"
    mc_dropout: int = 0  # Monte-Carlo dropout passes per window (0: off, the deterministic model)
    mc_seed: int = 0  # seed of the dropout masks


@dataclass
class MonitorConfig:
    """Everything ``run`` and ``replay`` need, from one ``stations.yaml``."""

    path: Path | None
    stations: list[StationConfig]
    sources: list[str] = field(default_factory=list)
    model: ModelConfig = field(default_factory=ModelConfig)
    buffer: GapPolicy = field(default_factory=GapPolicy)
    catalog: Path | str = Path("catalog.sqlite")  # an SQLite file, or a postgresql:// URI (catalog.backend)
    state_dir: Path = Path("state")
    metrics_addr: str = "127.0.0.1:9108"
    serve_events: bool = False  # the daemon's HTTP endpoint serves the FDSN event service (/fdsnws/event/1/) too
    association: AssociatorConfig = field(default_factory=AssociatorConfig)
    inventories: list[Path] = field(default_factory=list)  # StationXML files: coordinates and responses (ML)
    agency: str = "XX"
    cluster: str | None = None  # replay on Dask: local, local:N or tcp://HOST:PORT (see cluster_spec_problem)
    picks: str = "final"  # "early": the daemon also writes preliminary picks (pipeline.early), see PICK_MODES

    def coordinates(self) -> dict[str, tuple[float, float, float]]:
        """``NET.STA.LOC -> (lat, lon, elevation_m)`` for every station with coordinates."""
        return {
            s.key.id: (s.latitude, s.longitude, s.elevation) for s in self.stations if s.has_coordinates
        }


def code_problem(kind: str, code: str | None) -> str | None:
    """What is wrong with a ``network``/``station``/``location`` code (see ``CODE_PATTERNS``), else ``None``."""
    pattern, rule = CODE_PATTERNS[kind]
    return None if code is not None and pattern.match(code) else f"expected {rule}"


def cluster_spec_problem(spec: str) -> str | None:
    """What is wrong with a cluster spec (``local``, ``local:N``, ``tcp://HOST:PORT``), else ``None``."""
    if spec == "local":
        return None
    if spec.startswith("local:"):
        n = spec[len("local:"):]
        return None if n.isdigit() and 0 < int(n) <= 1024 else f"expected local:N with 1 <= N <= 1024, got {spec!r}"
    if spec.startswith("tcp://"):
        host, _, port = spec[len("tcp://"):].rpartition(":")
        return None if host and port.isdigit() and 0 < int(port) <= 65535 else f"expected tcp://HOST:PORT, got {spec!r}"
    return f"expected local, local:N or tcp://HOST:PORT, got {spec!r}"
