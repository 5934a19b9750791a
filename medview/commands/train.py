"""``medview train TARGET``: the project's reproducible training commands."""

from __future__ import annotations

import argparse
import importlib

HELP = "train a bundled model reproducibly (fixed seeds) and write it under models/"

# target -> module providing add_train_arguments(parser) and run_cli(args) -> int
TARGETS = {
    "classifier": "medview.ai.train",
    "autoencoder": "medview.ai.train",
    "glucose-lstm": "medview.forecast.train",
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("target", choices=sorted(TARGETS), help="which model to train")
    parser.add_argument("--out", help="output model folder (default: models/<name>/)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    parser.add_argument("--epochs", type=int, help="override the number of epochs")
    parser.add_argument("--data", help="training data (default: ../shared/data/...)")
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda", "auto"])


def run(args: argparse.Namespace) -> int:
    mod = importlib.import_module(TARGETS[args.target])
    return int(mod.run_cli(args) or 0)
