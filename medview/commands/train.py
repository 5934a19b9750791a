"""``medview train TARGET``: the project's reproducible training commands.

``classifier``, ``ensemble`` (of trained classifiers, ``--members DIR ...``) and
``autoencoder`` run :mod:`medview.ai.training`; ``glucose-lstm``
runs :mod:`medview.forecast.train`; ``glucose`` (the network trained on real CGM,
``--cgm FILE ...``) runs :mod:`medview.forecast.realtrain`. Progress lines go to stderr
(imaging) or stdout (glucose), the result summary to stdout; a bad input is one line
and exit 2.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

from medview.commands import _glucose_train
from medview.commands._common import error, print_json

HELP = "train a bundled model reproducibly (fixed seeds) and write it under models/"

TARGETS = ("autoencoder", "classifier", "ensemble", "glucose-lstm", "glucose", "ct-seg")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("target", choices=TARGETS, help="which model to train")
    parser.add_argument("--out", help="output model folder (default: models/<name>/)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    parser.add_argument("--epochs", type=int, help="override the number of epochs")
    parser.add_argument("--data", help="training data (default: ../shared/data/...)")
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda", "auto"])
    parser.add_argument(
        "--members",
        nargs="+",
        metavar="DIR",
        help="ensemble: trained classifier folders (medview train classifier --seed S --out DIR)",
    )
    _glucose_train.add_arguments(parser)


def run(args: argparse.Namespace) -> int:
    if args.target == "ct-seg":  # the CT volume model (medview.ai.training.ct_seg)
        from medview.commands._volume import run_train

        return run_train(args)
    if args.target == "glucose-lstm":
        return _run_glucose(args)
    if args.target == "glucose":
        return _glucose_train.run(args)
    return _run_imaging(args)


def _stderr_log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def _run_imaging(args: argparse.Namespace) -> int:
    """``medview train classifier|ensemble|autoencoder``."""
    from medview.ai import training
    from medview.ai.training.ood import refit_after_training
    from medview.errors import MedviewError
    from medview.paths import bundled_models_dir

    data = Path(args.data) if args.data else training.default_data_path()
    target = args.target
    name = training.AUTOENCODER_NAME if target == "autoencoder" else training.CLASSIFIER_NAME
    out = Path(args.out) if args.out else bundled_models_dir() / name
    seed = int(args.seed or 0)
    device = args.device or "cpu"
    cmd = (
        "medview train " + " ".join(sys.argv[2:])
        if len(sys.argv) > 2
        else f"medview train {target}"
    )
    kw: dict[str, Any] = {"seed": seed, "device": device, "command": cmd, "log": _stderr_log}
    try:
        if target == "classifier":
            meta = training.train_classifier(data, out, epochs=args.epochs or 16, **kw)
        elif target == "ensemble":
            from medview.ai.training.ensemble import train_ensemble

            meta = train_ensemble(data, list(args.members or []), out, command=cmd)
        else:
            meta = training.train_autoencoder(data, out, epochs=args.epochs or 30, **kw)
        # the in-distribution checks depend on the new weights: refit (train split only)
        kind = "autoencoder" if target == "autoencoder" else "classifier"
        refit = refit_after_training(kind, out, data, log=_stderr_log)
    except (MedviewError, ValueError) as exc:  # ValueError: e.g. --device cuda without CUDA
        return error(exc, prog="medview train")
    summary = {
        "model": str(out),
        "name": meta["name"],
        "version": meta["version"],
        "retrained_from": meta.get("retrained_from"),
        "validation": meta["validation"],
        "in_distribution": {
            folder: {k: b[k] for k in ("threshold", "sha256", "val_accept_rate")}
            for folder, b in refit.items()
        },
    }
    print_json(summary, indent=2)
    return 0


def _run_glucose(args: argparse.Namespace) -> int:
    """``medview train glucose-lstm``."""
    from medview.forecast.lstm import MODEL_NAME
    from medview.forecast.train import EPOCHS, train
    from medview.paths import bundled_models_dir

    out = Path(args.out) if args.out else bundled_models_dir() / MODEL_NAME
    if args.data:
        os.environ["MEDVIEW_SIM_CACHE"] = str(args.data)
    meta = train(
        out, seed=args.seed or 0, epochs=args.epochs or EPOCHS, device=args.device, log=print
    )
    for minutes, row in meta["validation"]["per_horizon"].items():
        parts = [f"{m} {v['rmse']:.2f}" for m, v in row.items() if "rmse" in v]
        cov = row["lstm_interval80"]["coverage"]
        print(
            f"held-out RMSE @{minutes} min (mg/dL): "
            + ", ".join(parts)
            + f"; 80% interval coverage {cov:.3f}"
        )
    print(f"wrote {out} in {meta['training']['time_s']:.0f} s")
    return 0
