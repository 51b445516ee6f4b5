"""Load and validate ``stations.yaml`` into typed settings.

Every error is one line naming the file, the line and the field, e.g.
``stations.yaml:14: stations[1].latitude: expected a number, got 'north'``.
Relative paths in the file (archive sources, StationXML, catalog) are resolved against the
file's own folder, so an example config works from any working directory.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import yaml

from .buffer import GapPolicy
from .errors import ConfigError, UserError
from .associator import AssociatorConfig, Layer
from .stream import MAX_STEP
from .types import StationKey

ARCHIVE_SCHEMES = ("sds", "file")
NETWORK_SCHEMES = ("fdsn", "fdsns", "seedlink")
_CHANNEL_PATTERN = re.compile(r"^[A-Z0-9]{2}[?*]$")


@dataclass(frozen=True)
class StationConfig:
    """One station to monitor, with the coordinates association needs."""

    key: StationKey
    latitude: float | None = None
    longitude: float | None = None
    elevation: float = 0.0  # metres
    source: str | None = None  # overrides the config-wide sources for this station

    @property
    def channels(self) -> str:
        """The channel pattern, e.g. ``HH?``."""
        return f"{self.key.channel_prefix}?"

    @property
    def has_coordinates(self) -> bool:
        return self.latitude is not None and self.longitude is not None


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


@dataclass
class MonitorConfig:
    """Everything ``run`` and ``replay`` need, from one ``stations.yaml``."""

    path: Path | None
    stations: list[StationConfig]
    sources: list[str] = field(default_factory=list)
    model: ModelConfig = field(default_factory=ModelConfig)
    buffer: GapPolicy = field(default_factory=GapPolicy)
    catalog: Path = Path("catalog.sqlite")
    state_dir: Path = Path("state")
    metrics_addr: str = "127.0.0.1:9108"
    association: AssociatorConfig = field(default_factory=AssociatorConfig)
    inventories: list[Path] = field(default_factory=list)  # StationXML files: coordinates and responses (ML)
    agency: str = "XX"

    def coordinates(self) -> dict[str, tuple[float, float, float]]:
        """``NET.STA.LOC -> (lat, lon, elevation_m)`` for every station with coordinates."""
        return {
            s.key.id: (s.latitude, s.longitude, s.elevation) for s in self.stations if s.has_coordinates
        }


class _Located:
    """Walks the composed YAML node tree so each value keeps its line for error messages."""

    def __init__(self, path: Path, text: str):
        self.path = path
        try:
            self.root = yaml.compose(text, Loader=yaml.SafeLoader)
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            line = mark.line + 1 if mark else 0
            problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
            raise ConfigError(f"{path}:{line}: invalid YAML: {problem}") from None

    def error(self, node: yaml.Node | None, where: str, message: str) -> ConfigError:
        line = node.start_mark.line + 1 if node is not None else 1
        return ConfigError(f"{self.path}:{line}: {where}: {message}")

    def mapping(self, node: yaml.Node | None, where: str) -> dict[str, tuple[yaml.Node, yaml.Node]]:
        """A mapping node as ``key -> (key node, value node)``."""
        if node is None:
            return {}
        if not isinstance(node, yaml.MappingNode):
            raise self.error(node, where, "expected a mapping")
        out: dict[str, tuple[yaml.Node, yaml.Node]] = {}
        for key_node, value_node in node.value:
            key = str(key_node.value)
            if key in out:
                raise self.error(key_node, f"{where}.{key}" if where else key, "duplicate key")
            out[key] = (key_node, value_node)
        return out

    def value(self, node: yaml.Node) -> Any:
        """The plain Python value of a node."""
        return yaml.SafeLoader(yaml.serialize(node)).get_single_data()


def _check_keys(doc: _Located, items: dict, allowed: set[str], where: str) -> None:
    for key, (key_node, _) in items.items():
        if key not in allowed:
            hint = ", ".join(sorted(allowed))
            raise doc.error(key_node, f"{where}.{key}" if where else key, f"unknown field (expected one of: {hint})")


def _typed(doc: _Located, node: yaml.Node, where: str, kind: type) -> Any:
    value = doc.value(node)
    if kind is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise doc.error(node, where, f"expected a number, got {value!r}")
        return float(value)
    if kind is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise doc.error(node, where, f"expected an integer, got {value!r}")
        return value
    if kind is str:
        if value is None or isinstance(value, (dict, list)):
            raise doc.error(node, where, f"expected a string, got {value!r}")
        return str(value)
    raise TypeError(kind)


def _dataclass_section(doc: _Located, node: yaml.Node | None, where: str, cls: type, renames: dict[str, str]):
    """Fill dataclass ``cls`` from a mapping; ``renames`` maps YAML keys to field names."""
    items = doc.mapping(node, where)
    types = {f.name: f.type if isinstance(f.type, str) else f.type.__name__ for f in fields(cls)}
    allowed = {yaml_key for yaml_key in renames} | {name for name in types if name not in renames.values()}
    _check_keys(doc, items, allowed, where)
    kwargs = {}
    for key, (_, value_node) in items.items():
        name = renames.get(key, key)
        kind = {"float": float, "int": int, "str": str, "str | None": str}[types[name]]
        if types[name] == "str | None" and doc.value(value_node) is None:
            kwargs[name] = None
            continue
        kwargs[name] = _typed(doc, value_node, f"{where}.{key}", kind)
    return cls(**kwargs)


def _association(doc: _Located, node: yaml.Node) -> AssociatorConfig:
    """The ``association:`` section: PyOcto settings, a 0D (vp, vs) or 1D (``layers``) velocity model."""
    items = doc.mapping(node, "association")
    special = {"layers", "zlim"}
    plain = {k: v for k, v in items.items() if k not in special}
    simple = {f.name for f in fields(AssociatorConfig)} - special
    _check_keys(doc, plain, simple, "association")
    kwargs: dict[str, Any] = {}
    for key, (_, value_node) in plain.items():
        kind = int if key.startswith("n_") else float
        kwargs[key] = _typed(doc, value_node, f"association.{key}", kind)
    if "zlim" in items:
        zlim = doc.value(items["zlim"][1])
        if not (isinstance(zlim, list) and len(zlim) == 2 and all(isinstance(z, (int, float)) for z in zlim)):
            raise doc.error(items["zlim"][1], "association.zlim", f"expected [top_km, bottom_km], got {zlim!r}")
        kwargs["zlim"] = (float(zlim[0]), float(zlim[1]))
    if "layers" in items:
        layers_node = items["layers"][1]
        if not isinstance(layers_node, yaml.SequenceNode):
            raise doc.error(layers_node, "association.layers", "expected a list of {top_km, vp, vs}")
        layers = []
        for i, layer_node in enumerate(layers_node.value):
            layer = doc.mapping(layer_node, f"association.layers[{i}]")
            _check_keys(doc, layer, {"top_km", "vp", "vs"}, f"association.layers[{i}]")
            if len(layer) != 3:
                raise doc.error(layer_node, f"association.layers[{i}]", "needs top_km, vp and vs")
            layers.append(Layer(**{k: _typed(doc, v, f"association.layers[{i}].{k}", float) for k, (_, v) in layer.items()}))
        kwargs["layers"] = tuple(layers)
    try:
        return AssociatorConfig(**kwargs)
    except UserError as exc:
        raise doc.error(node, "association", str(exc)) from None


def resolve_source(uri: str, base: Path) -> str:
    """Make an archive URI's path absolute (relative to ``base``); leave network URIs alone."""
    scheme, sep, rest = uri.partition("://")
    if not sep:
        raise ValueError(f"not a source URI (scheme://…): {uri!r}")
    if scheme not in ARCHIVE_SCHEMES + NETWORK_SCHEMES:
        raise ValueError(f"unknown source scheme {scheme!r} in {uri!r} (expected one of: {', '.join(ARCHIVE_SCHEMES + NETWORK_SCHEMES)})")
    if scheme in ARCHIVE_SCHEMES and not rest.startswith("/"):
        rest = str((base / rest).resolve())
    return f"{scheme}://{rest}"


def _parse_station(doc: _Located, node: yaml.Node, where: str, base: Path, inventories: list[Path]) -> list[StationConfig]:
    items = doc.mapping(node, where)
    allowed = {"network", "station", "location", "channels", "latitude", "longitude", "elevation", "source", "inventory"}
    _check_keys(doc, items, allowed, where)
    if "inventory" in items:
        extra = set(items) - {"inventory", "source"}
        if extra:
            raise doc.error(items[sorted(extra)[0]][0], f"{where}.{sorted(extra)[0]}", "not allowed beside 'inventory'")
        inv_node = items["inventory"][1]
        inv_path = (base / _typed(doc, inv_node, f"{where}.inventory", str)).resolve()
        inventories.append(inv_path)
        source = _station_source(doc, items, where, base)
        try:
            return [StationConfig(s.key, s.latitude, s.longitude, s.elevation, source) for s in stations_from_inventory(inv_path)]
        except ConfigError as exc:
            raise doc.error(inv_node, f"{where}.inventory", str(exc)) from None
    for required in ("network", "station", "channels"):
        if required not in items:
            raise doc.error(node, where, f"missing field '{required}'")
    network = _typed(doc, items["network"][1], f"{where}.network", str)
    station = _typed(doc, items["station"][1], f"{where}.station", str)
    location = "" if "location" not in items else str(doc.value(items["location"][1]) or "")
    channels = _typed(doc, items["channels"][1], f"{where}.channels", str)
    if not _CHANNEL_PATTERN.match(channels):
        raise doc.error(items["channels"][1], f"{where}.channels", f"expected a pattern like 'HH?' or 'EH?', got {channels!r}")
    coords = {}
    for name in ("latitude", "longitude", "elevation"):
        if name in items:
            coords[name] = _typed(doc, items[name][1], f"{where}.{name}", float)
    if ("latitude" in coords) != ("longitude" in coords):
        raise doc.error(node, where, "give both latitude and longitude, or neither")
    if "latitude" in coords and not -90 <= coords["latitude"] <= 90:
        raise doc.error(items["latitude"][1], f"{where}.latitude", f"out of range: {coords['latitude']}")
    if "longitude" in coords and not -180 <= coords["longitude"] <= 360:
        raise doc.error(items["longitude"][1], f"{where}.longitude", f"out of range: {coords['longitude']}")
    key = StationKey(network, station, location, channels[:2])
    return [StationConfig(key, coords.get("latitude"), coords.get("longitude"), coords.get("elevation", 0.0),
                          _station_source(doc, items, where, base))]


def _station_source(doc: _Located, items: dict, where: str, base: Path) -> str | None:
    if "source" not in items:
        return None
    node = items["source"][1]
    try:
        return resolve_source(_typed(doc, node, f"{where}.source", str), base)
    except ValueError as exc:
        raise doc.error(node, f"{where}.source", str(exc)) from None


def load_config(path: str | Path) -> MonitorConfig:
    """Read and validate a ``stations.yaml``; raises ``ConfigError`` with file, line and field."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read config: {exc.strerror}") from None
    doc = _Located(path, text)
    base = path.resolve().parent
    top = doc.mapping(doc.root, "")
    allowed = {"source", "sources", "stations", "model", "buffer", "catalog", "state_dir", "metrics", "association",
               "inventory", "agency"}
    _check_keys(doc, top, allowed, "")
    if "stations" not in top:
        raise doc.error(doc.root, "stations", "missing: list the stations to monitor")
    stations_node = top["stations"][1]
    if not isinstance(stations_node, yaml.SequenceNode) or not stations_node.value:
        raise doc.error(stations_node, "stations", "expected a non-empty list")
    stations: list[StationConfig] = []
    inventories: list[Path] = []
    seen: dict[StationKey, int] = {}
    for i, node in enumerate(stations_node.value):
        for cfg in _parse_station(doc, node, f"stations[{i}]", base, inventories):
            if cfg.key in seen:
                raise doc.error(node, f"stations[{i}]", f"{cfg.key} is listed twice (also stations[{seen[cfg.key]}])")
            seen[cfg.key] = i
            stations.append(cfg)

    sources: list[str] = []
    for name in ("source", "sources"):
        if name in top:
            node = top[name][1]
            entries = node.value if isinstance(node, yaml.SequenceNode) else [node]
            for j, entry in enumerate(entries):
                where = f"{name}[{j}]" if isinstance(node, yaml.SequenceNode) else name
                try:
                    sources.append(resolve_source(_typed(doc, entry, where, str), base))
                except ValueError as exc:
                    raise doc.error(entry, where, str(exc)) from None

    model = _dataclass_section(doc, top.get("model", (None, None))[1], "model", ModelConfig,
                               {"detection": "detection_threshold", "p": "p_threshold", "s": "s_threshold"})
    if model.weights is not None:
        model = ModelConfig(**{**model.__dict__, "weights": str((base / model.weights).resolve())})
    model_items = doc.mapping(top.get("model", (None, None))[1], "model")

    def model_error(yaml_key: str, message: str) -> ConfigError:
        return doc.error(model_items[yaml_key][1], f"model.{yaml_key}", message)

    if not 0 < model.step <= MAX_STEP:
        raise model_error("step", f"must be between 1 and {MAX_STEP} samples (larger steps leave samples no unblinded window covers), got {model.step}")
    if model.batch_size <= 0:
        raise model_error("batch_size", f"must be positive, got {model.batch_size}")
    for yaml_key, name in (("detection", "detection_threshold"), ("p", "p_threshold"), ("s", "s_threshold")):
        if not 0 < getattr(model, name) < 1:
            key = yaml_key if yaml_key in model_items else name
            raise model_error(key, f"must be between 0 and 1, got {getattr(model, name)}")
    try:
        buffer = _dataclass_section(doc, top.get("buffer", (None, None))[1], "buffer", GapPolicy, {})
    except UserError as exc:
        raise doc.error(top["buffer"][1], "buffer", str(exc)) from None

    if "inventory" in top:
        inv_node = top["inventory"][1]
        inv_path = (base / _typed(doc, inv_node, "inventory", str)).resolve()
        if not inv_path.is_file():
            raise doc.error(inv_node, "inventory", f"StationXML file not found: {inv_path}")
        inventories.append(inv_path)
    config = MonitorConfig(path=path, stations=stations, sources=sources, model=model, buffer=buffer,
                           inventories=inventories)
    for name in ("catalog", "state_dir"):
        if name in top:
            setattr(config, name, (base / _typed(doc, top[name][1], name, str)).resolve())
        else:
            setattr(config, name, (base / getattr(config, name)).resolve())
    if "metrics" in top:
        metrics = doc.mapping(top["metrics"][1], "metrics")
        _check_keys(doc, metrics, {"addr"}, "metrics")
        if "addr" in metrics:
            config.metrics_addr = _typed(doc, metrics["addr"][1], "metrics.addr", str)
    if "association" in top:
        config.association = _association(doc, top["association"][1])
    if "agency" in top:
        config.agency = _typed(doc, top["agency"][1], "agency", str)
    return config


def stations_from_inventory(path: str | Path) -> list[StationConfig]:
    """Every station and band+instrument group in a StationXML file, with coordinates.

    A station with several groups (e.g. ``HH?`` broadband and ``HN?`` strong motion) gives
    one entry per group; channels whose third letter is not Z/N/E/1/2 are ignored.
    """
    from obspy import read_inventory

    path = Path(path)
    try:
        inventory = read_inventory(str(path))
    except FileNotFoundError:
        raise ConfigError(f"{path}: StationXML file not found") from None
    except Exception as exc:  # ObsPy raises many kinds on a malformed file
        raise ConfigError(f"{path}: not a readable StationXML file ({type(exc).__name__}: {exc})") from None
    groups: dict[StationKey, StationConfig] = {}
    for network in inventory:
        for station in network:
            for channel in station.channels:
                if len(channel.code) != 3 or channel.code[2] not in "ZNE12":
                    continue
                key = StationKey(network.code, station.code, channel.location_code or "", channel.code[:2])
                lat = channel.latitude if channel.latitude is not None else station.latitude
                lon = channel.longitude if channel.longitude is not None else station.longitude
                elev = channel.elevation if channel.elevation is not None else station.elevation
                groups.setdefault(key, StationConfig(key, float(lat), float(lon), float(elev or 0.0)))
    if not groups:
        raise ConfigError(f"{path}: no channels with Z/N/E or Z/1/2 components found")
    return sorted(groups.values(), key=lambda s: s.key)


def config_from_inventory(path: str | Path, sources: list[str] | None = None) -> MonitorConfig:
    """A ``MonitorConfig`` with defaults for every station in a StationXML file (``replay --inventory``)."""
    return MonitorConfig(path=None, stations=stations_from_inventory(path), sources=list(sources or []),
                         inventories=[Path(path).resolve()])
