"""Where the original model's time goes on this CPU: each stage of EqT run on its own real input.

    python benchmarks/profile_model.py [--batch 64] [--repeats 5] [--json F]

Each stage (encoder, ResCNN, BiLSTMs, transformers, the three decoders, the P/S LSTM +
local attention) becomes its own Keras sub-model of the loaded published model and is timed
after warm-up on the real intermediate tensors of preprocessed chile_2014 windows, as a plain
TensorFlow graph and XLA-compiled; then the whole model as built and the inference graph with
polyphase decoders (``eqt_monitor.model.fast``) that ``LoadedModel.predict`` runs. Times are per window; CPU seconds of this process are shown
beside wall seconds because the machine may be shared. FLOPs count multiply-adds of the
convolutions, LSTMs and attention (2 per MAC).
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import chile_windows, load_original, timed  # noqa: E402

# (stage, first layer's input comes from, last layer) for the original model's layer names
STAGES = [
    ("encoder: 7 conv + pool", None, "max_pooling1d_7"),
    ("ResCNN: 14 conv k3/k2", "max_pooling1d_7", "add_7"),
    ("BiLSTM x2 + conv1x1 + BN", "add_7", "batch_normalization_16"),
    ("transformer x2 (attention 47x47)", "batch_normalization_16", "layer_normalization_4"),
    ("detector decoder: 7 up + conv", "layer_normalization_4", "detector"),
    ("P: LSTM + local attention", "layer_normalization_4", "attentionP"),
    ("P decoder", "attentionP", "picker_P"),
    ("S: LSTM + local attention", "layer_normalization_4", "attentionS"),
    ("S decoder", "attentionS", "picker_S"),
]


def layer_flops(layer) -> int:
    """FLOPs (2 per multiply-add) of one window through ``layer``: Conv1D, LSTM (inside
    Bidirectional too) and additive self-attention; 0 for cheap element-wise layers."""
    import keras

    from eqt_monitor.model.layers import FeedForward, SeqSelfAttention

    out = layer.output.shape
    if isinstance(layer, keras.layers.Conv1D):
        k, cin = layer.kernel.shape[0], layer.kernel.shape[1]
        return 2 * out[1] * k * cin * layer.filters
    if isinstance(layer, keras.layers.Bidirectional):
        return 2 * layer_flops_lstm(layer.forward_layer, layer.input.shape)
    if isinstance(layer, keras.layers.LSTM):
        return layer_flops_lstm(layer, layer.input.shape)
    if isinstance(layer, SeqSelfAttention):
        t, d, u = out[1], out[2], layer.units
        return 2 * (2 * t * d * u + t * t * u + t * t * d)  # projections, scores Wa, weighted sum
    if isinstance(layer, FeedForward):
        return 2 * out[1] * 2 * out[2] * layer.units
    return 0


def layer_flops_lstm(lstm, input_shape) -> int:
    t, d, u = input_shape[1], input_shape[2], lstm.units
    return 2 * t * 4 * u * (d + u)


def polyphase_flops(layer) -> int:
    """FLOPs of one window through an ``UpsampleConv1D`` (its polyphase kernel on the input length)."""
    taps, cin, cout2 = layer.kernel.shape
    return 2 * layer.input.shape[1] * taps * cin * cout2


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)

    import keras
    import numpy as np
    import tensorflow as tf

    from eqt_monitor.model.fast import UpsampleConv1D, inference_model
    from eqt_monitor.pipeline.windows import preprocess

    loaded = load_original()
    model = loaded.model
    x = preprocess(chile_windows(args.batch))
    tensors = {None: x}
    for _, _, last in STAGES:  # the real intermediate inputs of every stage
        tensors[last] = np.asarray(keras.Model(model.input, model.get_layer(last).output)(x, training=False))

    def row(name: str, sub, data, flops: int) -> dict:
        out = {"stage": name, "mflop_per_window": flops / 1e6}
        for mode, jit in (("graph", False), ("xla", True)):
            fn = tf.function(lambda b, sub=sub: sub(b, training=False), jit_compile=jit)
            wall, cpu = timed(lambda: fn(data), repeats=args.repeats)
            out[f"{mode}_ms"] = wall / args.batch * 1e3
            out[f"{mode}_cpu_ms"] = cpu / args.batch * 1e3
        return out

    rows = []
    for name, first, last in STAGES:
        inp = model.input if first is None else model.get_layer(first).output
        sub = keras.Model(inp, model.get_layer(last).output)
        rows.append(row(name, sub, tf.constant(tensors[first]), sum(layer_flops(layer) for layer in sub.layers)))
    total = {k: sum(r[k] for r in rows) for k in rows[0] if k != "stage"}
    fast = inference_model(model)
    flops = sum(layer_flops(layer) for layer in fast.layers if not isinstance(layer, UpsampleConv1D))
    flops += sum(polyphase_flops(layer) for layer in fast.layers if isinstance(layer, UpsampleConv1D))
    wholes = [row("whole model as built", model, tf.constant(x), total["mflop_per_window"] * 1e6),
              row("whole model, polyphase decoders", fast, tf.constant(x), flops)]
    print(f"batch {args.batch}, per window; cpu = CPU time of this process")
    print(f"{'stage':36s} {'MFLOP':>7s} {'graph ms':>9s} {'cpu':>6s} {'xla ms':>7s} {'cpu':>6s}")
    for r in rows + [{"stage": "sum", **total}] + wholes:
        print(f"{r['stage']:36s} {r['mflop_per_window']:7.1f} {r['graph_ms']:9.3f} {r['graph_cpu_ms']:6.3f} "
              f"{r['xla_ms']:7.3f} {r['xla_cpu_ms']:6.3f}")
    if args.json:
        args.json.write_text(json.dumps({"batch": args.batch, "stages": rows, "sum": total, "whole": wholes}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
