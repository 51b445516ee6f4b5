"""Independent Keras 2 reference outputs of the published EQTransformer weights.

Runs in its own environment, not the project's (Keras 2 API through ``tf_keras``)::

    python3 -m venv /work/refvenv
    /work/refvenv/bin/pip install tensorflow==2.21.* tf_keras keras-self-attention h5py
    TF_USE_LEGACY_KERAS=1 /work/refvenv/bin/python tests/reference/keras2_reference.py \\
        --shared ../shared --out tests/data/original_reference.npz

It rebuilds each model from the HDF5 file's own saved Keras 2 config (nothing from
``eqt_monitor``): the custom layers below are written from EQTransformer's published
``EqT_utils.py`` definitions, SpatialDropout1D's saved ``training=True`` call argument is
removed (deterministic inference), and the weights are read by Keras 2's own HDF5 loader.
Inputs are regenerated from seeds and stead50 trace names, so the output file only holds
those, a checksum of each input and the reference outputs ``[D, P, S]``.
"""
from __future__ import annotations

import argparse
import csv
import json
import os
import sys
from pathlib import Path

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_KERAS", "1")  # keras-self-attention: use tf.keras (= tf_keras here)

import h5py  # noqa: E402
import numpy as np  # noqa: E402
import tf_keras as keras  # noqa: E402
from tf_keras import backend as K  # noqa: E402

WINDOW = 6000
_EMPTY = np.zeros((WINDOW, 3), np.float32)  # lets np.stack take an empty list


class LayerNormalization(keras.layers.Layer):
    """EqT_utils' layer norm: ``(x - mean) / sqrt(var + epsilon) * gamma + beta`` over the last axis."""

    def __init__(self, center=True, scale=True, epsilon=None, gamma_initializer="ones",
                 beta_initializer="zeros", **kwargs):
        super().__init__(**kwargs)
        assert center and scale
        self.epsilon = K.epsilon() ** 2 if epsilon is None else epsilon

    def build(self, input_shape):
        self.gamma = self.add_weight(shape=input_shape[-1:], initializer="ones", name="gamma")
        self.beta = self.add_weight(shape=input_shape[-1:], initializer="zeros", name="beta")
        super().build(input_shape)

    def call(self, inputs):
        mean = K.mean(inputs, axis=-1, keepdims=True)
        variance = K.mean(K.square(inputs - mean), axis=-1, keepdims=True)
        return (inputs - mean) / K.sqrt(variance + self.epsilon) * self.gamma + self.beta


class FeedForward(keras.layers.Layer):
    """EqT_utils' position-wise feed-forward ``act(x W1 + b1) W2 + b2`` (its dropout is training only)."""

    def __init__(self, units, activation="relu", use_bias=True, kernel_initializer="glorot_normal",
                 bias_initializer="zeros", dropout_rate=0.0, **kwargs):
        super().__init__(**kwargs)
        assert use_bias
        self.units = units
        self.activation = keras.activations.get(activation)

    def build(self, input_shape):
        dim = int(input_shape[-1])
        self.W1 = self.add_weight(shape=(dim, self.units), name=f"{self.name}_W1")
        self.b1 = self.add_weight(shape=(self.units,), name=f"{self.name}_b1")
        self.W2 = self.add_weight(shape=(self.units, dim), name=f"{self.name}_W2")
        self.b2 = self.add_weight(shape=(dim,), name=f"{self.name}_b2")
        super().build(input_shape)

    def call(self, x):
        return K.bias_add(K.dot(self.activation(K.bias_add(K.dot(x, self.W1), self.b1)), self.W2), self.b2)


class SeqSelfAttention(keras.layers.Layer):
    """EqT_utils' additive self-attention (its own copy of an early keras-self-attention).

    ``e = Wa . tanh(x_t Wt + x_t' Wx + bh) + ba``; ``exp(e - rowmax(e))`` over the whole row, THEN
    the local window as a 0/1 factor, ``a = e / (sum + K.epsilon())``; returns ``[a x, a]``.
    (keras-self-attention >= 0.4x masks with ``-10000`` before the max and has no epsilon.)
    """

    def __init__(self, units=32, attention_width=None, attention_type="additive", return_attention=False,
                 history_only=False, use_additive_bias=True, use_attention_bias=True,
                 attention_activation=None, **kwargs):
        for key in ("kernel_initializer", "bias_initializer", "kernel_regularizer", "bias_regularizer",
                    "kernel_constraint", "bias_constraint", "attention_regularizer_weight"):
            kwargs.pop(key, None)
        super().__init__(**kwargs)
        assert attention_type == "additive" and not history_only and use_additive_bias and use_attention_bias
        assert attention_activation in (None, "linear")
        self.units = units
        self.attention_width = attention_width
        self.return_attention = return_attention

    def build(self, input_shape):
        dim = int(input_shape[2])
        self.Wt = self.add_weight(shape=(dim, self.units), name=f"{self.name}_Add_Wt")
        self.Wx = self.add_weight(shape=(dim, self.units), name=f"{self.name}_Add_Wx")
        self.bh = self.add_weight(shape=(self.units,), name=f"{self.name}_Add_bh")
        self.Wa = self.add_weight(shape=(self.units, 1), name=f"{self.name}_Add_Wa")
        self.ba = self.add_weight(shape=(1,), name=f"{self.name}_Add_ba")
        super().build(input_shape)

    def call(self, inputs):
        batch, length = K.shape(inputs)[0], K.shape(inputs)[1]
        q = K.expand_dims(K.dot(inputs, self.Wt), 2)
        k = K.expand_dims(K.dot(inputs, self.Wx), 1)
        e = K.reshape(K.dot(K.tanh(q + k + self.bh), self.Wa) + self.ba, (batch, length, length))
        e = K.exp(e - K.max(e, axis=-1, keepdims=True))
        if self.attention_width is not None:
            lower = K.expand_dims(K.arange(0, length) - self.attention_width // 2, axis=-1)
            indices = K.expand_dims(K.arange(0, length), axis=0)
            e = e * K.cast(lower <= indices, K.floatx()) * K.cast(indices < lower + self.attention_width, K.floatx())
        a = e / (K.sum(e, axis=-1, keepdims=True) + K.epsilon())
        v = K.batch_dot(a, inputs)
        return [v, a] if self.return_attention else v

    def compute_output_shape(self, input_shape):
        if self.return_attention:
            return [input_shape, (input_shape[0], input_shape[1], input_shape[1])]
        return input_shape


def _strip_training(config):
    """The saved config with every call-time ``training`` argument removed (SpatialDropout1D's)."""
    if isinstance(config, dict):
        return {k: _strip_training(v) for k, v in config.items() if k != "training"}
    if isinstance(config, list):
        return [_strip_training(v) for v in config]
    return config


def load_reference(path: Path, attention: str = "eqt_utils") -> keras.Model:
    """The Keras 2 model saved in ``path``, rebuilt from its own config, dropout off, weights loaded.

    ``attention='keras_self_attention'`` uses the pip package's ``SeqSelfAttention`` instead.
    """
    with h5py.File(path, "r") as f:
        config = json.loads(f.attrs["model_config"])
    objects = {"LayerNormalization": LayerNormalization, "FeedForward": FeedForward,
               "SeqSelfAttention": SeqSelfAttention}
    if attention == "keras_self_attention":
        from keras_self_attention import SeqSelfAttention as PackageAttention
        objects["SeqSelfAttention"] = PackageAttention
    model = keras.models.model_from_json(json.dumps(_strip_training(config)), custom_objects=objects)
    model.load_weights(str(path))
    return model


def normalize(data: np.ndarray) -> np.ndarray:
    """EqT's ``std`` normalisation per window and channel (in float64), as float32."""
    x = np.asarray(data, dtype=np.float64)
    x = x - x.mean(axis=-2, keepdims=True)
    std = x.std(axis=-2, keepdims=True)
    std[std == 0] = 1.0
    return (x / std).astype(np.float32)


def white_noise(n: int, seed: int) -> np.ndarray:
    """``n`` raw windows drawn in sequence from ``default_rng(seed).normal(0, 1000)``, as float32."""
    rng = np.random.default_rng(seed)
    return np.stack([rng.normal(0, 1000, (WINDOW, 3)).astype(np.float32) for _ in range(n)] or [_EMPTY])[:n]


def stead_windows(shared: Path, n: int) -> tuple[list[str], np.ndarray]:
    """The first ``n`` traces of stead50's metadata.csv (raw float32 E, N, Z)."""
    folder = shared / "data" / "stead50"
    with open(folder / "metadata.csv", newline="") as fh:
        names = [row["trace_name"] for row in csv.DictReader(fh)][:n]
    with h5py.File(folder / "waveforms.hdf5", "r") as f:
        data = np.stack([np.asarray(f[f"earthquake/local/{name}"], dtype=np.float32) for name in names] or [_EMPTY])
    return names, data[:len(names)]


def predict(model: keras.Model, x: np.ndarray, batch: int = 4) -> np.ndarray:
    """``(n, 6000, 3)`` inputs -> ``(n, 6000, 3)`` float32 [D, P, S]."""
    out = []
    for i in range(0, len(x), batch):
        d, p, s = model.predict_on_batch(x[i:i + batch])
        out.append(np.concatenate([d, p, s], axis=-1))
    return np.concatenate(out).astype(np.float32)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shared", type=Path, default=Path(os.environ.get("EQT_SHARED", "../shared")))
    parser.add_argument("--model", default="original", help="original | conservative (eqt_<model>.h5)")
    parser.add_argument("--noise", type=int, default=3, help="white-noise windows (seed --seed)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--stead", type=int, default=3, help="first N stead50 traces")
    parser.add_argument("--inputs", type=Path, help="also run the normalised windows 'x' of this .npz")
    parser.add_argument("--attention", choices=("eqt_utils", "keras_self_attention"), default="eqt_utils")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)

    weights = args.shared / "models" / f"eqt_{args.model}.h5"
    model = load_reference(weights, args.attention)
    names, quakes = stead_windows(args.shared, args.stead)
    x = normalize(np.concatenate([white_noise(args.noise, args.seed), quakes]))
    extra = np.load(args.inputs)["x"].astype(np.float32) if args.inputs else np.zeros((0, WINDOW, 3), np.float32)
    y = predict(model, np.concatenate([x, extra]))
    np.savez_compressed(
        args.out, model=args.model, attention=args.attention, noise=args.noise, seed=args.seed,
        stead_names=np.array(names), input_sums=np.abs(x.astype(np.float64)).sum(axis=1),
        outputs=y[:len(x)], extra_outputs=y[len(x):],
    )
    noise_d = y[:args.noise, :, 0].max(axis=1) if args.noise else np.zeros(0)
    print(f"{args.model} ({args.attention}): {len(y)} windows -> {args.out}; "
          f"max D on noise {np.round(noise_d, 3).tolist()}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
