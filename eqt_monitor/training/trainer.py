"""Train any variant on a STEAD-format set, from scratch or from published weights, EqT's way.

Adam with EqT's learning-rate steps, binary cross-entropy on [D, P, S] weighted [0.05, 0.40, 0.55],
early stopping on the validation loss, and a checkpoint after every epoch that a re-run resumes.
The result in ``out/`` is ``<model>.keras`` + ``<model>.yaml`` (the spec) + ``<model>.keras.sha256``,
``history.json``, ``loss.png`` and ``split.json``.
"""
from __future__ import annotations

import importlib.resources
import json
import logging
import sys
from dataclasses import dataclass, field
from pathlib import Path

import keras
import yaml

from eqt_monitor.errors import UserError
from eqt_monitor.training.augment import AugmentationRates
from eqt_monitor.training.generator import TrainingBatches
from eqt_monitor.training.splits import DEFAULT_FRACTIONS, load_split, make_split, save_split
from eqt_monitor.training.stead import SteadDataset

log = logging.getLogger(__name__)

LOSS_WEIGHTS = (0.05, 0.40, 0.55)
CHECKPOINT = "checkpoint.keras"
STATE = "checkpoint.json"
BEST_WEIGHTS = "best.weights.h5"


def eqt_learning_rate(epoch: int, base: float = 1e-3) -> float:
    """EQTransformer's step schedule: ×0.1 after epoch 20, ×0.01 after 40, ×0.001 after 60, ×0.0005 after 90."""
    for after, factor in ((90, 0.5e-3), (60, 1e-3), (40, 1e-2), (20, 1e-1)):
        if epoch > after:
            return base * factor
    return base


@dataclass
class TrainConfig:
    """What ``train`` needs; defaults are EQTransformer's trainer defaults."""

    model: str
    hdf5: Path
    csv: Path
    out: Path
    epochs: int = 200
    batch_size: int = 200
    patience: int = 12
    seed: int = 0
    fractions: tuple[float, float, float] = DEFAULT_FRACTIONS
    augment: bool = True
    rates: AugmentationRates = field(default_factory=AugmentationRates)
    init_weights: str | None = None  # None: from scratch; "published": the registry's; else a weights file
    learning_rate: float = 1e-3
    loss_weights: tuple[float, float, float] = LOSS_WEIGHTS
    verbose: int | None = None  # Keras fit verbosity; None: progress bar on a terminal, a line per epoch otherwise
    run_eagerly: bool = False  # skip tf.function tracing (~40 s CPU per model): faster only for a handful of steps (tests)


@dataclass
class TrainResult:
    """Where ``train`` put its outputs, and the per-epoch history."""

    model_path: Path
    spec_path: Path
    sha256: str
    history: dict[str, list[float]]
    split_path: Path
    epochs_run: int


class ResumableStopping(keras.callbacks.Callback):
    """Early stopping on ``monitor`` that survives restarts: after every epoch it saves the model
    (with optimizer state) and its own state, and keeps the best weights so far."""

    def __init__(self, out: Path, monitor: str, patience: int, state: dict):
        super().__init__()
        self.out, self.monitor, self.patience = out, monitor, patience
        self.best = state.get("best", float("inf"))
        self.wait = state.get("wait", 0)
        self.history: dict[str, list[float]] = state.get("history", {})

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        logs = dict(logs or {})
        logs["learning_rate"] = float(keras.ops.convert_to_numpy(self.model.optimizer.learning_rate))
        for key, value in logs.items():
            self.history.setdefault(key, []).append(float(value))
        current = logs.get(self.monitor)
        if current is not None and current < self.best:
            self.best, self.wait = float(current), 0
            self.model.save_weights(self.out / BEST_WEIGHTS)
        else:
            self.wait += 1
        self.model.save(self.out / CHECKPOINT)
        state = {"epoch": epoch + 1, "best": self.best, "wait": self.wait, "monitor": self.monitor, "history": self.history}
        (self.out / STATE).write_text(json.dumps(state) + "\n", encoding="utf-8")
        if self.wait >= self.patience:
            log.info("no %s improvement for %d epochs: stopping after epoch %d", self.monitor, self.wait, epoch + 1)
            self.model.stop_training = True


def _split(config: TrainConfig, dataset: SteadDataset) -> dict[str, list[str]]:
    path = config.out / "split.json"
    if path.exists():
        split = load_split(path)
        unknown = sorted(set().union(*split.values()) - set(dataset.names))
        if unknown:
            raise UserError(f"{path}: trace {unknown[0]!r} is not in {config.csv} (a split from another data set?)")
        return split
    split = make_split(dataset.names, config.fractions, config.seed)
    if not split["train"]:
        raise UserError(f"{config.csv}: no traces left to train on ({len(dataset)} readable)")
    save_split(split, path)
    return split


def _initial_model(config: TrainConfig) -> keras.Model:
    from eqt_monitor.model.eqt import build_model
    from eqt_monitor.model.load import load_model
    from eqt_monitor.model.spec import get_spec

    if config.init_weights is None:
        return build_model(get_spec(config.model))
    weights = None if config.init_weights == "published" else config.init_weights
    return load_model(config.model, weights).model


def _compile(model: keras.Model, config: TrainConfig) -> None:
    model.compile(
        optimizer=keras.optimizers.Adam(config.learning_rate),
        loss=["binary_crossentropy"] * 3,
        loss_weights=list(config.loss_weights),
        jit_compile=False,  # XLA-compiling these graphs costs ~40 s on CPU and made steps no faster
    )


def _spec_copy(config: TrainConfig, sha256: str) -> Path:
    """The variant's spec beside the trained file, so the file can be rebuilt and listed."""
    source = importlib.resources.files("eqt_monitor.zoo") / f"{config.model}.yaml"
    spec = yaml.safe_load(source.read_text(encoding="utf-8"))
    spec["weights"] = None
    spec["description"] = (
        f"{spec.get('description', '').strip()} Trained by eqt-monitor train on {config.hdf5.name} "
        f"(seed {config.seed}, {'fine-tuned from ' + config.init_weights if config.init_weights else 'from scratch'}); "
        f"weights {config.model}.keras sha256 {sha256}."
    ).strip()
    path = config.out / f"{config.model}.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False), encoding="utf-8")
    return path


def plot_history(history: dict[str, list[float]], path: Path, title: str) -> None:
    """Loss curves (total and per output, training solid, validation dashed) as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    for key in ("loss", "detector_loss", "picker_P_loss", "picker_S_loss"):
        for prefix, style in (("", "-"), ("val_", "--")):
            values = history.get(prefix + key)
            if values:
                ax.plot(range(1, len(values) + 1), values, style, label=prefix + key)
    ax.set(xlabel="epoch", ylabel="loss", title=title)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize="small")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def train(config: TrainConfig) -> TrainResult:
    """Train (or resume training) ``config.model`` and write the result into ``config.out``."""
    from eqt_monitor.model.registry import sha256_file
    from eqt_monitor.model.trained import record as record_trained

    if config.epochs < 1 or config.batch_size < 2:
        raise UserError("--epochs must be >= 1 and --batch-size >= 2")
    config.out.mkdir(parents=True, exist_ok=True)
    with SteadDataset(config.hdf5, config.csv) as dataset:
        split = _split(config, dataset)
        keras.utils.set_random_seed(config.seed)
        state_path = config.out / STATE
        if (config.out / CHECKPOINT).exists() and state_path.exists():
            state = json.loads(state_path.read_text(encoding="utf-8"))
            model = keras.saving.load_model(config.out / CHECKPOINT)
            log.info("resuming %s from epoch %d (%s)", config.model, state["epoch"], config.out / CHECKPOINT)
        else:
            state = {"epoch": 0}
            model = _initial_model(config)
            _compile(model, config)
        model.run_eagerly = config.run_eagerly
        train_batches = TrainingBatches(
            dataset, split["train"], config.batch_size, augment=config.augment, rates=config.rates, seed=config.seed
        )
        train_batches.epoch = state["epoch"]
        valid_batches = (
            TrainingBatches(dataset, split["valid"], config.batch_size, augment=False, shuffle=False)
            if split["valid"]
            else None
        )
        stopper = ResumableStopping(config.out, "val_loss" if valid_batches else "loss", config.patience, state)
        if state["epoch"] < config.epochs and stopper.wait < config.patience:
            verbose = config.verbose if config.verbose is not None else (1 if sys.stdout.isatty() else 2)
            model.fit(
                train_batches,
                validation_data=valid_batches,
                epochs=config.epochs,
                initial_epoch=state["epoch"],
                callbacks=[
                    keras.callbacks.LearningRateScheduler(lambda e: eqt_learning_rate(e, config.learning_rate)),
                    stopper,
                ],
                verbose=verbose,
            )
    if (config.out / BEST_WEIGHTS).exists():
        model.load_weights(config.out / BEST_WEIGHTS)
    model_path = config.out / f"{config.model}.keras"
    model.save(model_path)
    sha256 = sha256_file(model_path)
    (config.out / f"{config.model}.keras.sha256").write_text(f"{sha256}  {model_path.name}\n", encoding="utf-8")
    spec_path = _spec_copy(config, sha256)
    record_trained(config.model, model_path, sha256)
    history = stopper.history
    (config.out / "history.json").write_text(json.dumps(history, indent=1) + "\n", encoding="utf-8")
    plot_history(history, config.out / "loss.png", f"{config.model} on {config.hdf5.name}")
    return TrainResult(model_path, spec_path, sha256, history, config.out / "split.json", len(history.get("loss", [])))
