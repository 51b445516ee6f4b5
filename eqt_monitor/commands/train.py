"""``eqt-monitor train``: train a variant on a STEAD-format set (from scratch or fine-tuned)."""
from __future__ import annotations

import argparse
from pathlib import Path

NAME = "train"
HELP = "train a variant on a STEAD-format HDF5 + CSV (EqT's labels, augmentations and schedule); resumable"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Flags of ``train``."""
    parser.add_argument("--model", required=True, help="variant to train (see 'models list')")
    parser.add_argument("--hdf5", required=True, type=Path, help="STEAD-format waveform file")
    parser.add_argument("--csv", required=True, type=Path, help="STEAD-format metadata CSV")
    parser.add_argument("--out", required=True, type=Path, help="output folder (re-running with it resumes)")
    parser.add_argument("--epochs", type=int, default=200, help="maximum epochs (default 200)")
    parser.add_argument("--batch-size", type=int, default=200, help="windows per batch (default 200, EqT's)")
    parser.add_argument("--patience", type=int, default=12, help="epochs without validation improvement before stopping")
    parser.add_argument("--seed", type=int, default=0, help="seed of the split, the initial weights and the augmentations")
    parser.add_argument("--split", type=float, nargs=3, default=(0.85, 0.05, 0.10), metavar=("TRAIN", "VALID", "TEST"),
                        help="split fractions (default 0.85 0.05 0.10)")
    start = parser.add_mutually_exclusive_group()
    start.add_argument("--weights", help="fine-tune from this weights file (.h5 or .keras)")
    start.add_argument("--pretrained", action="store_true", help="fine-tune from the variant's published weights")
    parser.add_argument("--learning-rate", type=float, default=1e-3, help="initial Adam learning rate (default 1e-3)")
    parser.add_argument("--no-augment", action="store_true", help="train on the traces as stored")


def run(args: argparse.Namespace) -> int:
    """Train and print where the result is."""
    from eqt_monitor.model.backend import configure

    configure(None)
    from eqt_monitor.training.augment import AugmentationRates
    from eqt_monitor.training.trainer import TrainConfig, train  # Keras: imported only when training

    config = TrainConfig(
        model=args.model,
        hdf5=args.hdf5,
        csv=args.csv,
        out=args.out,
        epochs=args.epochs,
        batch_size=args.batch_size,
        patience=args.patience,
        seed=args.seed,
        fractions=tuple(args.split),
        augment=not args.no_augment,
        rates=AugmentationRates(),
        init_weights="published" if args.pretrained else args.weights,
        learning_rate=args.learning_rate,
    )
    result = train(config)
    loss = result.history.get("loss", [])
    print(f"trained {args.model} for {result.epochs_run} epochs (loss {loss[0]:.4f} -> {loss[-1]:.4f})" if loss else
          f"{args.model}: nothing left to train in {args.out}")
    print(f"weights {result.model_path}  sha256 {result.sha256}")
    print(f"spec {result.spec_path}; use: --model {args.model} --weights {result.model_path}")
    return 0
