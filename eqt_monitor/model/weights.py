"""Reading saved weights into our Keras 3 model: Keras 2 HDF5 files and Keras 3 ``.keras`` / ``.weights.h5``.

Keras 2 files and foreign ``.keras`` files are read as data (h5py, json, zipfile: no saved code is
ever run) into ``{layer name: [arrays]}`` and assigned to our layers by name, shapes checked.
"""
from __future__ import annotations

import io
import json
import re
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import h5py
import keras
import numpy as np

from eqt_monitor.errors import WeightsError, one_line

HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"
ZIP_SIGNATURE = b"PK\x03\x04"
# Keras 2 recurrent activation names -> ours (Keras 2's hard_sigmoid is clip(0.2x + 0.5, 0, 1))
KERAS2_RECURRENT_ACTIVATIONS = {"sigmoid": "sigmoid", "hard_sigmoid": "hard_sigmoid_keras2"}
SavedWeights = dict[str, list[np.ndarray]]


def _signature(path: Path) -> bytes:
    try:
        with open(path, "rb") as f:
            return f.read(8)
    except OSError as exc:
        raise WeightsError(f"{path}: cannot read weights file: {exc.strerror}") from None


@contextmanager
def _open_h5(path: Path) -> Iterator[h5py.File]:
    """``h5py.File(path)``; a truncated or corrupt file (h5py's ``OSError``, anywhere in the block)
    becomes a one-line ``WeightsError``."""
    try:
        with h5py.File(path, "r") as f:
            yield f
    except OSError as exc:
        raise WeightsError(one_line(f"{path}: unreadable HDF5 weights file (truncated or corrupt?): {exc}")) from None


def _keras2_root(f: h5py.File, path: Path) -> h5py.Group:
    """The group holding per-layer weights in a Keras 2 whole-model or weights-only HDF5 file."""
    root = f["model_weights"] if "model_weights" in f else f
    if "layer_names" not in root.attrs:
        raise WeightsError(f"{path}: not a Keras 2 HDF5 weights file (no 'layer_names')")
    return root


def _text(value) -> str:
    return value.decode("utf-8") if isinstance(value, bytes) else str(value)


def read_keras2_h5(path: str | Path) -> SavedWeights:
    """``{layer name: arrays in saved order}`` from a Keras 2 HDF5 file (layers without weights left out)."""
    path = Path(path)
    with _open_h5(path) as f:
        root = _keras2_root(f, path)
        saved = {}
        for layer in map(_text, root.attrs["layer_names"]):
            names = [_text(n) for n in root[layer].attrs.get("weight_names", [])]
            if names:
                saved[layer] = [np.asarray(root[layer][n]) for n in names]
    return saved


def saved_recurrent_activation(path: str | Path) -> str | None:
    """The recurrent activation a Keras 2 whole-model HDF5 file's LSTMs/GRUs were saved with
    (``sigmoid`` or ``hard_sigmoid_keras2``); ``None`` for other files or models without RNNs."""
    path = Path(path)
    if _signature(path) != HDF5_SIGNATURE:
        return None
    with _open_h5(path) as f:
        if "model_config" not in f.attrs:
            return None
        config = json.loads(_text(f.attrs["model_config"]))
    found = set(re.findall(r'"recurrent_activation":\s*"([^"]+)"', json.dumps(config)))
    if not found:
        return None
    if len(found) > 1 or not found <= set(KERAS2_RECURRENT_ACTIVATIONS):
        raise WeightsError(f"{path}: unsupported recurrent activations {sorted(found)} in the saved model config")
    return KERAS2_RECURRENT_ACTIVATIONS[found.pop()]


def _snake_case(name: str) -> str:
    """Keras 3's ``to_snake_case`` for class names (``SeqSelfAttention`` -> ``seq_self_attention``)."""
    name = re.sub(r"(.)([A-Z][a-z]+)", r"\1_\2", name)
    return re.sub(r"([a-z])([A-Z])", r"\1_\2", name).lower()


def _variable_order(path: str) -> tuple:
    """Sort key putting a layer's saved variables in ``layer.weights`` order (forward before backward)."""
    parts = path.split("/")
    rank = {"forward_layer": "0", "backward_layer": "1"}
    return tuple(int(p) if p.isdigit() else rank.get(p, p) for p in parts)


def read_keras3(path: str | Path) -> SavedWeights:
    """``{layer name: arrays}`` from a Keras 3 ``.keras`` zip, read as data (never deserialised).

    Keras 3 stores a model's layers in ``model.weights.h5`` under ``layers/<snake class name>[_n]``
    in the order of ``config.json``; the config gives each of them its layer name.
    """
    path = Path(path)
    try:
        with zipfile.ZipFile(path) as archive:
            config = json.loads(archive.read("config.json"))
            weights_bytes = archive.read("model.weights.h5")
    except (zipfile.BadZipFile, KeyError, json.JSONDecodeError) as exc:
        raise WeightsError(f"{path}: not a Keras 3 .keras model file ({exc})") from None
    layer_configs = config.get("config", {}).get("layers")
    if not isinstance(layer_configs, list):
        raise WeightsError(f"{path}: config.json describes no functional model (no 'layers')")
    used: dict[str, int] = {}
    saved = {}
    with h5py.File(io.BytesIO(weights_bytes), "r") as f:
        for layer in layer_configs:
            group_name = _snake_case(layer["class_name"])
            used[group_name] = used.get(group_name, -1) + 1
            if used[group_name]:
                group_name = f"{group_name}_{used[group_name]}"
            group = f.get(f"layers/{group_name}")
            if group is None:
                continue
            arrays: dict[str, np.ndarray] = {}
            group.visititems(lambda name, obj: arrays.__setitem__(name, np.asarray(obj))
                             if isinstance(obj, h5py.Dataset) else None)
            if arrays:
                saved[layer["config"]["name"]] = [arrays[k] for k in sorted(arrays, key=_variable_order)]
    return saved


def assign_weights(model: keras.Model, saved: SavedWeights, source: str | Path) -> None:
    """Set every weighted layer of ``model`` from ``saved`` by layer name; ``WeightsError`` on any
    missing, extra or mis-shaped layer (a file for a different architecture)."""
    remaining = dict(saved)
    for layer in model.layers:
        if not layer.weights:
            continue
        arrays = remaining.pop(layer.name, None)
        if arrays is None:
            raise WeightsError(f"{source}: no weights for layer {layer.name!r} of model {model.name!r} "
                               "(weights of a different architecture?)")
        expected = [tuple(w.shape) for w in layer.weights]
        found = [tuple(a.shape) for a in arrays]
        if expected != found:
            raise WeightsError(f"{source}: layer {layer.name!r} has weights of shapes {found}, "
                               f"model {model.name!r} expects {expected}")
        layer.set_weights(arrays)
    if remaining:
        raise WeightsError(f"{source}: weights for layers model {model.name!r} does not have: "
                           f"{', '.join(sorted(remaining)[:5])} (weights of a different architecture?)")


def load_weights(model: keras.Model, path: str | Path) -> None:
    """Load a weights file into ``model``: Keras 2 HDF5 (whole model or weights only), Keras 3
    ``.keras``, or a Keras 3 ``.weights.h5`` saved from this same architecture."""
    path = Path(path)
    signature = _signature(path)
    if signature.startswith(ZIP_SIGNATURE):
        assign_weights(model, read_keras3(path), path)
    elif signature == HDF5_SIGNATURE:
        with _open_h5(path) as f:
            keras3_weights = "layers" in f and "layer_names" not in f.attrs and "model_weights" not in f
        if keras3_weights:
            try:
                model.load_weights(path)
            except ValueError as exc:
                raise WeightsError(f"{path}: does not fit model {model.name!r}: {exc}".replace("\n", " ")) from None
        else:
            assign_weights(model, read_keras2_h5(path), path)
    else:
        raise WeightsError(f"{path}: not a weights file (expected Keras 2 HDF5, .keras or .weights.h5)")
