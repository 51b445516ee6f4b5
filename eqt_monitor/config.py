"""Load and validate ``stations.yaml`` into typed settings.

Every error is one line naming the file, the line and the field, e.g.
``stations.yaml:14: stations[1].latitude: expected a number, got 'north'``.
Relative paths in the file (archive sources, StationXML, catalog) are resolved against the
file's own folder, so an example config works from any working directory.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import yaml

from eqt_monitor.errors import ConfigError, FieldError, UserError, one_line, show
from eqt_monitor.events.associator import AssociatorConfig
from eqt_monitor.events.velocity import Layer
from eqt_monitor.model.spec import get_spec
from eqt_monitor.pipeline.buffer import GapPolicy
from eqt_monitor.pipeline.engine import MAX_STEP
from eqt_monitor.records import StationKey
from eqt_monitor.sources.registry import resolve_source

_CHANNEL_PATTERN = re.compile(r"^[A-Z0-9]{2}[?*]$")
# SEED 2.4 codes (what miniSEED 2 records, SDS paths and SeedLink carry): upper-case letters and
# digits only, so no wildcard or path character can reach a file name or a request.
CODE_PATTERNS = {
    "network": (re.compile(r"^[A-Z0-9]{1,2}$"), "1-2 upper-case letters or digits"),
    "station": (re.compile(r"^[A-Z0-9]{1,5}$"), "1-5 upper-case letters or digits"),
    "location": (re.compile(r"^[A-Z0-9]{0,2}$"), "0-2 upper-case letters or digits, or '--' for none"),
}
ELEVATION_RANGE_M = (-12000.0, 9000.0)
MAX_BATCH_SIZE = 1024  # windows per model call: ~74 MB of input, several GB of activations on CPU
BACKENDS = ("tensorflow", "jax", "torch")
MAX_CONFIG_BYTES = 1 << 20  # read at most this much of a config file
MAX_DEPTH = 32  # nesting levels of the YAML tree
MAX_ALIASES = 100  # YAML aliases (``*name``) in one file
MAX_NODES = 200_000  # YAML values, aliases expanded (10 000 stations take 130 000; "billion laughs" 10^9)
_PLAIN_TAGS = frozenset(tag for tag in yaml.SafeLoader.yaml_constructors if tag)


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


class _Refused(yaml.MarkedYAMLError):
    """A YAML construct the config loader does not accept (too deep, too many aliases, a tag)."""


class _BoundedLoader(yaml.SafeLoader):
    """``SafeLoader`` composing at most ``MAX_DEPTH`` levels and ``MAX_NODES`` nodes (aliases
    expanded), ``MAX_ALIASES`` aliases and only the plain YAML tags; nothing is constructed here."""

    def __init__(self, stream: str):
        super().__init__(stream)
        self._depth = 0
        self._aliases = 0
        self._total = 0  # values composed so far, aliases expanded
        self._sizes: dict[int, int] = {}  # id(node) -> nodes under it, aliases expanded

    def _refuse(self, problem: str) -> _Refused:
        return _Refused(problem=problem, problem_mark=self.peek_event().start_mark)

    def compose_node(self, parent: yaml.Node | None, index: Any) -> yaml.Node:
        if self.check_event(yaml.AliasEvent):
            self._aliases += 1
            if self._aliases > MAX_ALIASES:
                raise self._refuse(f"more than {MAX_ALIASES} YAML aliases")
            anchored = self.anchors.get(self.peek_event().anchor)
            if anchored is not None and id(anchored) not in self._sizes:
                raise self._refuse("a YAML alias refers to its own anchor")
            self._count(self._sizes[id(anchored)] if anchored is not None else 0)
        else:
            if self._depth >= MAX_DEPTH:
                raise self._refuse(f"nested more than {MAX_DEPTH} levels deep")
            self._count(1)
        self._depth += 1
        try:
            node = super().compose_node(parent, index)
        finally:
            self._depth -= 1
        if id(node) not in self._sizes:
            if isinstance(node, yaml.ScalarNode):
                children = []
            elif isinstance(node, yaml.SequenceNode):
                children = node.value
            else:
                children = [n for pair in node.value for n in pair]
            self._sizes[id(node)] = 1 + sum(self._sizes[id(child)] for child in children)
            if node.tag not in _PLAIN_TAGS:
                raise _Refused(problem=f"tag {show(node.tag)} not allowed (plain YAML values only: nothing in a "
                               "config is ever run)", problem_mark=node.start_mark)
        return node

    def _count(self, values: int) -> None:
        """Count ``values`` more values of the expanded tree; refuse past ``MAX_NODES``."""
        self._total += values
        if self._total > MAX_NODES:
            raise self._refuse(f"more than {MAX_NODES} YAML values once aliases are expanded")


def _read_text(path: Path) -> str:
    """The config's text: at most ``MAX_CONFIG_BYTES``, UTF-8, not binary; ``ConfigError`` otherwise."""
    try:
        with open(path, "rb") as f:
            data = f.read(MAX_CONFIG_BYTES + 1)
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read config: {exc.strerror}") from None
    if len(data) > MAX_CONFIG_BYTES:
        raise ConfigError(f"{path}: config larger than {MAX_CONFIG_BYTES >> 20} MiB: not a stations.yaml?")
    if b"\0" in data:
        line = data[:data.index(b"\0")].count(b"\n") + 1
        raise ConfigError(f"{path}:{line}: binary data (a NUL byte): not a YAML text file")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[:exc.start].count(b"\n") + 1
        raise ConfigError(f"{path}:{line}: not UTF-8 text (byte 0x{data[exc.start]:02x} at offset {exc.start})") from None


class _Located:
    """Walks the composed YAML node tree so each value keeps its line for error messages."""

    def __init__(self, path: Path, text: str):
        self.path = path
        try:
            self.root = _BoundedLoader(text).get_single_node()
        except _Refused as exc:
            raise ConfigError(f"{path}:{exc.problem_mark.line + 1}: refused: {exc.problem}") from None
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            if mark is not None:
                line = mark.line + 1
            else:  # a ReaderError (forbidden character) knows only its position
                line = text[:getattr(exc, "position", 0)].count("\n") + 1
            problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
            raise ConfigError(f"{path}:{line}: invalid YAML: {one_line(problem)}") from None

    def error(self, node: yaml.Node | None, where: str, message: str) -> ConfigError:
        """A ``ConfigError`` naming the file, the node's line and ``where``; one line, bounded."""
        line = node.start_mark.line + 1 if node is not None else 1
        return ConfigError(one_line(f"{self.path}:{line}: {where or '(top level)'}: {message}", 500))

    def mapping(self, node: yaml.Node | None, where: str) -> dict[str, tuple[yaml.Node, yaml.Node]]:
        """A mapping node as ``key -> (key node, value node)``."""
        if node is None:
            return {}
        if not isinstance(node, yaml.MappingNode):
            raise self.error(node, where, "expected a mapping")
        out: dict[str, tuple[yaml.Node, yaml.Node]] = {}
        for key_node, value_node in node.value:
            if not isinstance(key_node, yaml.ScalarNode):
                raise self.error(key_node, where, "keys must be plain names, not lists or mappings")
            key = str(key_node.value)
            if key in out:
                raise self.error(key_node, f"{where}.{key}" if where else key, "duplicate key")
            out[key] = (key_node, value_node)
        return out

    def value(self, node: yaml.Node, where: str) -> Any:
        """The plain Python value of a node (``where`` names it in the error if it has none)."""
        try:
            return yaml.SafeLoader("").construct_document(node)
        except (yaml.YAMLError, ValueError, OverflowError) as exc:  # e.g. a timestamp like 2014-13-45
            raise self.error(node, where, f"unreadable value ({one_line(str(exc), 80)})") from None

    def code(self, items: dict, name: str, where: str) -> str:
        """A network, station or location code, taken as written (``00`` stays ``00``)."""
        if name not in items:
            return ""
        node = items[name][1]
        value = self.value(node, f"{where}.{name}")
        text = "" if value is None else node.value if isinstance(node, yaml.ScalarNode) else None
        if name == "location" and text == "--":
            text = ""
        problem = code_problem(name, text)
        if problem:
            raise self.error(node, f"{where}.{name}", f"{problem}, got {show(value)}")
        return text


def code_problem(kind: str, code: str | None) -> str | None:
    """What is wrong with a ``network``/``station``/``location`` code (see ``CODE_PATTERNS``), else ``None``."""
    pattern, rule = CODE_PATTERNS[kind]
    return None if code is not None and pattern.match(code) else f"expected {rule}"


def _check_keys(doc: _Located, items: dict, allowed: set[str], where: str) -> None:
    for key, (key_node, _) in items.items():
        if key not in allowed:
            hint = ", ".join(sorted(allowed))
            raise doc.error(key_node, f"{where}.{key}" if where else key, f"unknown field (expected one of: {hint})")


def _typed(doc: _Located, node: yaml.Node, where: str, kind: type) -> Any:
    """The node's value as ``kind`` (float: finite only); ``ConfigError`` naming ``where`` otherwise."""
    value = doc.value(node, where)
    if kind is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise doc.error(node, where, f"expected a number, got {show(value)}")
        try:
            number = float(value)
        except OverflowError:  # an integer beyond float range
            number = math.inf
        if not math.isfinite(number):
            raise doc.error(node, where, f"expected a finite number, got {show(value)}")
        return number
    if kind is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise doc.error(node, where, f"expected an integer, got {show(value)}")
        return value
    if kind is str:
        if value is None or isinstance(value, (dict, list, set)):
            raise doc.error(node, where, f"expected a string, got {show(value)}")
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
        if types[name] == "str | None" and doc.value(value_node, f"{where}.{key}") is None:
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
        zlim_node = items["zlim"][1]
        if not (isinstance(zlim_node, yaml.SequenceNode) and len(zlim_node.value) == 2):
            raise doc.error(zlim_node, "association.zlim", f"expected [top_km, bottom_km], got {show(doc.value(zlim_node, 'association.zlim'))}")
        kwargs["zlim"] = tuple(_typed(doc, z, "association.zlim", float) for z in zlim_node.value)
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
    except FieldError as exc:
        raise doc.error(items.get(exc.field, (None, node))[1], f"association.{exc.field}", exc.problem) from None
    except UserError as exc:
        raise doc.error(node, "association", str(exc)) from None


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
    network, station, location = (doc.code(items, name, where) for name in ("network", "station", "location"))
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
    low, high = ELEVATION_RANGE_M
    if "elevation" in coords and not low <= coords["elevation"] <= high:
        raise doc.error(items["elevation"][1], f"{where}.elevation",
                        f"must be between {low:g} and {high:g} m, got {coords['elevation']:g}")
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
    doc = _Located(path, _read_text(path))
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
    if not 0 < model.batch_size <= MAX_BATCH_SIZE:
        raise model_error("batch_size", f"must be between 1 and {MAX_BATCH_SIZE} windows per model call (each costs "
                          f"~72 kB of input and several MB of activations), got {model.batch_size}")
    if model.backend not in BACKENDS:
        raise model_error("backend", f"expected one of {', '.join(BACKENDS)}, got {show(model.backend)}")
    try:
        get_spec(model.name)
    except UserError as exc:
        raise model_error("name", str(exc)) from None
    if model.weights is not None and not Path(model.weights).is_file():
        raise model_error("weights", f"weights file not found: {model.weights}")
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
        problem = stationxml_problem(inv_path)
        if problem:
            raise doc.error(inv_node, "inventory", problem)
        inventories.append(inv_path)
    config = MonitorConfig(path=path, stations=stations, sources=sources, model=model, buffer=buffer,
                           inventories=inventories)
    for name, is_dir in (("catalog", False), ("state_dir", True)):
        node = top.get(name, (None, doc.root))[1]
        folder = (base / (_typed(doc, node, name, str) if name in top else getattr(config, name))).resolve()
        if folder.exists() and folder.is_dir() != is_dir:
            raise doc.error(node, name, f"{folder} is {'a file' if is_dir else 'a folder'}, expected {'a folder' if is_dir else 'an SQLite file'}")
        setattr(config, name, folder)
    if "metrics" in top:
        metrics = doc.mapping(top["metrics"][1], "metrics")
        _check_keys(doc, metrics, {"addr"}, "metrics")
        if "addr" in metrics:
            addr = _typed(doc, metrics["addr"][1], "metrics.addr", str)
            host, _, port = addr.rpartition(":")
            if not (host and port.isdigit() and 0 <= int(port) <= 65535):
                raise doc.error(metrics["addr"][1], "metrics.addr", f"expected HOST:PORT, got {show(addr)}")
            config.metrics_addr = addr
    if "association" in top:
        config.association = _association(doc, top["association"][1])
    if "agency" in top:
        config.agency = _typed(doc, top["agency"][1], "agency", str)
    return config


def stationxml_problem(path: Path) -> str | None:
    """Why ``path`` is not a StationXML file (missing, or no ``<FDSNStationXML`` near its start), else ``None``."""
    try:
        with open(path, "rb") as f:
            head = f.read(4096)
    except OSError as exc:
        return f"{path}: {'StationXML file not found' if isinstance(exc, FileNotFoundError) else exc.strerror}"
    if b"FDSNStationXML" not in head or not head.lstrip(b"\xef\xbb\xbf \t\r\n").startswith(b"<"):
        return f"{path}: not a StationXML file (no <FDSNStationXML> element at its start)"
    return None


def read_stationxml(path: Path):
    """The ``obspy.Inventory`` in a StationXML file; a one-line ``ConfigError`` for anything else."""
    from obspy import read_inventory

    problem = stationxml_problem(path)
    if problem:
        raise ConfigError(problem)
    try:
        return read_inventory(str(path), format="STATIONXML")
    except Exception as exc:  # ObsPy raises many kinds on a malformed file
        raise ConfigError(one_line(f"{path}: not a readable StationXML file ({type(exc).__name__}: {exc})")) from None


def stations_from_inventory(path: str | Path) -> list[StationConfig]:
    """Every station and band+instrument group in a StationXML file, with coordinates.

    A station with several groups (e.g. ``HH?`` broadband and ``HN?`` strong motion) gives
    one entry per group; channels whose third letter is not Z/N/E/1/2 are ignored.
    """
    path = Path(path)
    inventory = read_stationxml(path)
    groups: dict[StationKey, StationConfig] = {}
    for network in inventory:
        for station in network:
            for channel in station.channels:
                if len(channel.code) != 3 or channel.code[2] not in "ZNE12":
                    continue
                key = StationKey(network.code, station.code, channel.location_code or "", channel.code[:2])
                for kind, code in zip(CODE_PATTERNS, (key.network, key.station, key.location)):
                    if code_problem(kind, code):
                        raise ConfigError(f"{path}: {kind} code {show(code)}: {code_problem(kind, code)}")
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
