"""``load_model``: a named variant with its weights, ready for inference."""
from __future__ import annotations

import dataclasses
import hashlib
import logging
import os
import threading
from dataclasses import dataclass, field
from pathlib import Path

import keras
import numpy as np

from eqt_monitor.errors import UserError, WeightsError
from eqt_monitor.inference import compile_forward
from eqt_monitor.model import registry
from eqt_monitor.model.eqt import build_model
from eqt_monitor.model.fast import inference_model
from eqt_monitor.model.layers import MonteCarloSpatialDropout1D
from eqt_monitor.model.registry import sha256_file
from eqt_monitor.model.spec import N_CHANNELS, ModelSpec, get_spec
from eqt_monitor.model.weights import load_weights, saved_recurrent_activation
from eqt_monitor.records import WINDOW_SAMPLES

log = logging.getLogger(__name__)


@dataclass
class LoadedModel:
    """A built model, the spec it was built from, and where its weights came from.

    ``predict`` runs the fast path: the polyphase inference graph (``fast.inference_model``)
    compiled for the backend (``eqt_monitor.inference.compile_forward``, XLA on TensorFlow), built on first use.
    ``predict_reference`` runs ``model`` as built, uncompiled; both agree within float rounding.
    A Monte-Carlo dropout model always takes the reference path (its dropout stays random).
    """

    model: keras.Model
    spec: ModelSpec
    weights_path: Path | None
    weights_sha256: str | None
    _forward: object = field(default=None, init=False, repr=False, compare=False)

    def predict(self, batch: np.ndarray) -> np.ndarray:
        """``(n, 6000, 3)`` normalised [E,N,Z] windows -> ``(n, 6000, 3)`` float32 [D, P, S] probabilities.

        One model call for the whole batch (the caller chooses the batch size; each new size is
        compiled once); dropout is off unless the model was loaded with ``mc_dropout``.
        """
        if self._forward is None:
            mc = any(isinstance(layer, MonteCarloSpatialDropout1D) for layer in self.model.layers)
            self._forward = self.model.predict_on_batch if mc else compile_forward(inference_model(self.model))
        return self._run(self._forward, batch)

    def predict_reference(self, batch: np.ndarray) -> np.ndarray:
        """As ``predict``, through the model as built (``predict_on_batch``): the reference the
        fast path is tested against."""
        return self._run(self.model.predict_on_batch, batch)

    @staticmethod
    def _run(forward, batch: np.ndarray) -> np.ndarray:
        batch = np.asarray(batch, dtype=np.float32)
        if batch.ndim != 3 or batch.shape[1:] != (WINDOW_SAMPLES, N_CHANNELS):
            raise ValueError(f"expected windows of shape (n, {WINDOW_SAMPLES}, {N_CHANNELS}), got {batch.shape}")
        if not len(batch):
            return np.zeros((0, WINDOW_SAMPLES, 3), dtype=np.float32)
        outputs = forward(batch)
        return np.concatenate([np.asarray(o, dtype=np.float32) for o in outputs], axis=-1)


def resolve_weights(spec: ModelSpec, weights: str | Path | None) -> Path | None:
    """The weights file for ``spec``: ``weights`` if given, else ``$EQT_MONITOR_WEIGHTS`` when it
    names a file, else the spec's published weight set found locally (``registry.find_local``).
    ``None`` for a variant without published weights; ``WeightsError`` when a file is missing."""
    env = os.environ.get("EQT_MONITOR_WEIGHTS")
    if weights is None and env and Path(env).is_file():
        weights = env
    if weights is not None:
        path = Path(weights).expanduser()
        if not path.is_file():
            raise WeightsError(f"{path}: weights file not found")
        return path
    if spec.weights is None:
        return None
    path = registry.find_local(spec.weights)
    if path is None:
        searched = ", ".join(str(d) for d in registry.search_dirs())
        raise WeightsError(f"no {spec.weights!r} weights found in {searched}: run "
                           f"'eqt-monitor models pull {spec.weights}' or pass --weights PATH")
    return path


def load_model(name: str, weights: str | Path | None = None, *, mc_dropout: bool = False,
               allow_random: bool = False, seed: int = 0) -> LoadedModel:
    """Build variant ``name`` and load its weights (see ``resolve_weights``).

    A Keras 2 file's saved LSTM recurrent activation overrides the spec's (the published files
    differ). A variant without weights gets random initial weights (seeded with ``seed``, which
    seeds Keras globally) only with ``allow_random``; otherwise ``UserError``. With ``mc_dropout``
    the dropout masks are seeded with ``seed`` too: the same calls give the same samples.
    """
    spec = get_spec(name)
    path = resolve_weights(spec, weights)
    if mc_dropout:  # the dropout layers' seed generators are seeded from the global seed when built
        keras.utils.set_random_seed(seed)
    if path is None:
        if not allow_random:
            raise UserError(f"model {name!r} has no published weights: pass --weights PATH (a trained .keras or .h5 file)")
        keras.utils.set_random_seed(seed)
        return LoadedModel(build_model(spec, mc_dropout=mc_dropout), spec, None, None)
    activation = saved_recurrent_activation(path)
    if activation and activation != spec.recurrent_activation:
        log.info("%s: LSTMs saved with recurrent activation %s; building %s with it", path, activation, name)
        spec = dataclasses.replace(spec, recurrent_activation=activation)
    model = build_model(spec, mc_dropout=mc_dropout)
    load_weights(model, path)
    return LoadedModel(model, spec, path, sha256_file(path))


def monte_carlo(loaded: LoadedModel, samples: int, seed: int = 0):
    """A predict function running ``samples`` stochastic passes of a Monte-Carlo dropout model per
    window, as EqT's ``estimate_uncertainty``: ``(n, 6000, 3)`` windows -> ``(n, 6000, 6)`` float32,
    the mean [D, P, S] over the passes, then their standard deviations.

    Each window's passes run as one batch of ``samples`` copies of it, after the dropout layers'
    seed generators are set from ``seed`` and the window's bytes (:func:`window_seed`): a window's
    output depends on nothing else — not on its batch, nor on the calls before — so replay, the
    daemon (whose batches depend on timing) and cluster chunks give the same output for the same
    data. One lock keeps threads sharing the model from interleaving seed and call.
    """
    if samples < 1:
        raise ValueError(f"samples must be positive, got {samples}")
    dropouts = [layer for layer in loaded.model.layers if isinstance(layer, MonteCarloSpatialDropout1D)]
    lock = threading.Lock()

    def predict(batch: np.ndarray) -> np.ndarray:
        batch = np.asarray(batch, dtype=np.float32)
        out = np.zeros((len(batch), WINDOW_SAMPLES, 6), dtype=np.float32)
        with lock:
            for i, window in enumerate(batch):
                state = window_seed(seed, window)
                for j, layer in enumerate(dropouts):
                    layer.seed_generator.state.assign(np.array([state[0] + j, state[1]], dtype=np.uint32))
                runs = loaded.predict(np.repeat(window[None], samples, axis=0))
                out[i, :, :3], out[i, :, 3:] = runs.mean(axis=0), runs.std(axis=0)
        return out

    return predict


def window_seed(seed: int, window: np.ndarray) -> tuple[int, int]:
    """Two 32-bit words from ``seed`` and ``window``'s float32 bytes (BLAKE2b): the dropout masks' seed."""
    digest = hashlib.blake2b(np.ascontiguousarray(window, dtype=np.float32).tobytes(), digest_size=8,
                             key=str(seed).encode()).digest()
    return int.from_bytes(digest[:4], "little") >> 1, int.from_bytes(digest[4:], "little")


def load_predictor(name: str, weights: str | Path | None = None, *, mc_dropout: int = 0,
                   seed: int = 0) -> tuple[LoadedModel, object]:
    """``load_model`` and the predict function a run uses: ``loaded.predict`` (deterministic), or with
    ``mc_dropout`` N > 0 :func:`monte_carlo` over N seeded passes (the engine then takes 6 outputs)."""
    loaded = load_model(name, weights, mc_dropout=mc_dropout > 0, seed=seed)
    return loaded, (monte_carlo(loaded, mc_dropout, seed) if mc_dropout > 0 else loaded.predict)
