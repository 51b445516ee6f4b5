"""Load and validate ``stations.yaml`` into a ``MonitorConfig``.

Every error is one line naming the file, the line and the field, e.g.
``stations.yaml:14: stations[1].latitude: expected a number, got 'north'``.
Relative paths in the file (archive sources, StationXML, catalog) are resolved against the
file's own folder, so an example config works from any working directory.
"""
from __future__ import annotations

import dataclasses
import re
from dataclasses import fields
from pathlib import Path
from typing import Any

import yaml

from eqt_monitor.catalog.backend import is_server
from eqt_monitor.config.document import YamlDocument, check_keys, dataclass_section, read_text, typed
from eqt_monitor.config.settings import (
    BACKENDS, ELEVATION_RANGE_M, MAX_BATCH_SIZE, MAX_MC_DROPOUT, PICK_MODES, ModelConfig, MonitorConfig, StationConfig,
    cluster_spec_problem, code_problem,
)
from eqt_monitor.config.stationxml import (
    channel_orientations, read_stationxml, stationxml_problem, stations_from_inventory,
)
from eqt_monitor.errors import ConfigError, FieldError, UserError, show
from eqt_monitor.events.associator import AssociatorConfig
from eqt_monitor.events.velocity import Layer
from eqt_monitor.model.spec import get_spec
from eqt_monitor.pipeline.buffer import GapPolicy
from eqt_monitor.pipeline.engine import MAX_STEP
from eqt_monitor.records import NullRecorder, Recorder, StationKey
from eqt_monitor.sources.registry import resolve_source
from eqt_monitor.sources.stationservice import fetch_inventory, is_station_service

_CHANNEL_PATTERN = re.compile(r"^[A-Z0-9]{2}[?*]$")


def _association(doc: YamlDocument, node: yaml.Node) -> AssociatorConfig:
    """The ``association:`` section: PyOcto settings, a 0D (vp, vs) or 1D (``layers``) velocity model."""
    items = doc.mapping(node, "association")
    special = {"layers", "zlim"}
    plain = {k: v for k, v in items.items() if k not in special}
    simple = {f.name for f in fields(AssociatorConfig)} - special
    check_keys(doc, plain, simple, "association")
    kwargs: dict[str, Any] = {}
    for key, (_, value_node) in plain.items():
        kind = int if key.startswith("n_") else float
        kwargs[key] = typed(doc, value_node, f"association.{key}", kind)
    if "zlim" in items:
        zlim_node = items["zlim"][1]
        if not (isinstance(zlim_node, yaml.SequenceNode) and len(zlim_node.value) == 2):
            raise doc.error(zlim_node, "association.zlim", f"expected [top_km, bottom_km], got {show(doc.value(zlim_node, 'association.zlim'))}")
        kwargs["zlim"] = tuple(typed(doc, z, "association.zlim", float) for z in zlim_node.value)
    if "layers" in items:
        layers_node = items["layers"][1]
        if not isinstance(layers_node, yaml.SequenceNode):
            raise doc.error(layers_node, "association.layers", "expected a list of {top_km, vp, vs}")
        layers = []
        for i, layer_node in enumerate(layers_node.value):
            layer = doc.mapping(layer_node, f"association.layers[{i}]")
            check_keys(doc, layer, {"top_km", "vp", "vs"}, f"association.layers[{i}]")
            if len(layer) != 3:
                raise doc.error(layer_node, f"association.layers[{i}]", "needs top_km, vp and vs")
            layers.append(Layer(**{k: typed(doc, v, f"association.layers[{i}].{k}", float) for k, (_, v) in layer.items()}))
        kwargs["layers"] = tuple(layers)
    try:
        return AssociatorConfig(**kwargs)
    except FieldError as exc:
        raise doc.error(items.get(exc.field, (None, node))[1], f"association.{exc.field}", exc.problem) from None
    except UserError as exc:
        raise doc.error(node, "association", str(exc)) from None


class _Inventories:
    """The config's ``inventory:`` values as local StationXML files: a path is resolved against the
    config's folder, an ``fdsn://`` station service is fetched into (or read from) ``state_dir``."""

    def __init__(self, doc: YamlDocument, base: Path, state_dir: Path, recorder: Recorder) -> None:
        self.doc, self.base, self.state_dir, self.recorder = doc, base, state_dir, recorder
        self.paths: list[Path] = []

    def add(self, node: yaml.Node, where: str) -> Path:
        text = typed(self.doc, node, where, str)
        if is_station_service(text):
            try:
                path = fetch_inventory(text, self.state_dir, self.recorder)
            except UserError as exc:
                raise self.doc.error(node, where, str(exc)) from None
        else:
            path = (self.base / text).resolve()
        self.paths.append(path)
        return path


def _parse_station(doc: YamlDocument, node: yaml.Node, where: str, base: Path, inventories: _Inventories) -> list[StationConfig]:
    items = doc.mapping(node, where)
    allowed = {"network", "station", "location", "channels", "latitude", "longitude", "elevation", "source", "inventory"}
    check_keys(doc, items, allowed, where)
    if "inventory" in items:
        extra = set(items) - {"inventory", "source"}
        if extra:
            raise doc.error(items[sorted(extra)[0]][0], f"{where}.{sorted(extra)[0]}", "not allowed beside 'inventory'")
        inv_node = items["inventory"][1]
        inv_path = inventories.add(inv_node, f"{where}.inventory")
        source = _station_source(doc, items, where, base)
        try:
            return [dataclasses.replace(s, source=source) for s in stations_from_inventory(inv_path)]
        except ConfigError as exc:
            raise doc.error(inv_node, f"{where}.inventory", str(exc)) from None
    for required in ("network", "station", "channels"):
        if required not in items:
            raise doc.error(node, where, f"missing field '{required}'")
    network, station, location = (_code(doc, items, name, where) for name in ("network", "station", "location"))
    channels = typed(doc, items["channels"][1], f"{where}.channels", str)
    if not _CHANNEL_PATTERN.match(channels):
        raise doc.error(items["channels"][1], f"{where}.channels", f"expected a pattern like 'HH?' or 'EH?', got {channels!r}")
    coords = {}
    for name in ("latitude", "longitude", "elevation"):
        if name in items:
            coords[name] = typed(doc, items[name][1], f"{where}.{name}", float)
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


def _station_source(doc: YamlDocument, items: dict, where: str, base: Path) -> str | None:
    if "source" not in items:
        return None
    node = items["source"][1]
    try:
        return resolve_source(typed(doc, node, f"{where}.source", str), base)
    except ValueError as exc:
        raise doc.error(node, f"{where}.source", str(exc)) from None


def load_config(path: str | Path, recorder: Recorder | None = None) -> MonitorConfig:
    """Read and validate a ``stations.yaml``; raises ``ConfigError`` with file, line and field.

    ``recorder`` counts an ``inventory_fetch`` error when a station service is down and its
    cached StationXML is used instead."""
    path = Path(path)
    doc = YamlDocument(path, read_text(path))
    base = path.resolve().parent
    top = doc.mapping(doc.root, "")
    allowed = {"source", "sources", "stations", "model", "buffer", "catalog", "state_dir", "metrics", "association",
               "inventory", "agency", "cluster", "picks"}
    check_keys(doc, top, allowed, "")
    if "stations" not in top:
        raise doc.error(doc.root, "stations", "missing: list the stations to monitor")
    stations_node = top["stations"][1]
    if not isinstance(stations_node, yaml.SequenceNode) or not stations_node.value:
        raise doc.error(stations_node, "stations", "expected a non-empty list")
    folders: dict[str, Path] = {}
    for name, is_dir in (("catalog", False), ("state_dir", True)):
        node = top.get(name, (None, doc.root))[1]
        if name == "catalog" and name in top and is_server(typed(doc, node, name, str)):
            folders[name] = typed(doc, node, name, str)  # a PostgreSQL database, not a file
            continue
        folder = (base / (typed(doc, node, name, str) if name in top else MonitorConfig.__dataclass_fields__[name].default)).resolve()
        if folder.exists() and folder.is_dir() != is_dir:
            raise doc.error(node, name, f"{folder} is {'a file' if is_dir else 'a folder'}, expected {'a folder' if is_dir else 'an SQLite file'}")
        folders[name] = folder
    stations: list[StationConfig] = []
    inventories = _Inventories(doc, base, folders["state_dir"], recorder or NullRecorder())
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
                    sources.append(resolve_source(typed(doc, entry, where, str), base))
                except ValueError as exc:
                    raise doc.error(entry, where, str(exc)) from None

    model = dataclass_section(doc, top.get("model", (None, None))[1], "model", ModelConfig,
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
    if not 0 <= model.mc_dropout <= MAX_MC_DROPOUT:
        raise model_error("mc_dropout", f"must be between 0 (off) and {MAX_MC_DROPOUT} passes per window, got {model.mc_dropout}")
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
        buffer = dataclass_section(doc, top.get("buffer", (None, None))[1], "buffer", GapPolicy, {})
    except UserError as exc:
        raise doc.error(top["buffer"][1], "buffer", str(exc)) from None

    if "inventory" in top:
        inv_node = top["inventory"][1]
        inv_path = inventories.add(inv_node, "inventory")
        problem = stationxml_problem(inv_path)
        if problem:
            raise doc.error(inv_node, "inventory", problem)
        try:
            orientations = channel_orientations(read_stationxml(inv_path))
        except ConfigError as exc:
            raise doc.error(inv_node, "inventory", str(exc)) from None
        stations = [s if s.orientation is not None else dataclasses.replace(s, orientation=orientations.get(s.key))
                    for s in stations]
    config = MonitorConfig(path=path, stations=stations, sources=sources, model=model, buffer=buffer,
                           inventories=inventories.paths, **folders)
    if "metrics" in top:
        metrics = doc.mapping(top["metrics"][1], "metrics")
        check_keys(doc, metrics, {"addr", "serve_events"}, "metrics")
        if "addr" in metrics:
            addr = typed(doc, metrics["addr"][1], "metrics.addr", str)
            host, _, port = addr.rpartition(":")
            if not (host and port.isdigit() and 0 <= int(port) <= 65535):
                raise doc.error(metrics["addr"][1], "metrics.addr", f"expected HOST:PORT, got {show(addr)}")
            config.metrics_addr = addr
        if "serve_events" in metrics:
            config.serve_events = typed(doc, metrics["serve_events"][1], "metrics.serve_events", bool)
    if "association" in top:
        config.association = _association(doc, top["association"][1])
    if "agency" in top:
        config.agency = typed(doc, top["agency"][1], "agency", str)
    if "picks" in top:
        config.picks = typed(doc, top["picks"][1], "picks", str)
        if config.picks not in PICK_MODES:
            raise doc.error(top["picks"][1], "picks", f"expected one of {', '.join(PICK_MODES)}, got {show(config.picks)}")
    if "cluster" in top:
        config.cluster = typed(doc, top["cluster"][1], "cluster", str)
        problem = cluster_spec_problem(config.cluster)
        if problem:
            raise doc.error(top["cluster"][1], "cluster", problem)
    return config


def _code(doc: YamlDocument, items: dict, name: str, where: str) -> str:
    """A network, station or location code, taken as written (``00`` stays ``00``)."""
    if name not in items:
        return ""
    node = items[name][1]
    value = doc.value(node, f"{where}.{name}")
    text = "" if value is None else node.value if isinstance(node, yaml.ScalarNode) else None
    if name == "location" and text == "--":
        text = ""
    problem = code_problem(name, text)
    if problem:
        raise doc.error(node, f"{where}.{name}", f"{problem}, got {show(value)}")
    return text
