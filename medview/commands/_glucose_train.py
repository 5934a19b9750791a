"""``medview train glucose``: the glucose network trained on real CGM (issue 15).

``medview train glucose --cgm FILE [--cgm FILE ...] [--out DIR] [--sim-days D]
[--folds K] [--epochs N] [--seed S]`` runs :func:`medview.forecast.realtrain.train_real`:
leave-patients-out cross-validation (the held-out figures and interval table of the
card), then the shipped weights on every patient. Progress lines go to stdout, a bad
input is one line on stderr and exit 2.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from medview.commands._common import error


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options only ``glucose`` reads (the others ignore them)."""
    parser.add_argument(
        "--cgm",
        metavar="FILE.csv",
        action="append",
        help="glucose: real CGM file(s), id,time,gl (repeat for several files)",
    )
    parser.add_argument(
        "--sim-days",
        type=float,
        default=None,
        help="glucose: simulated days per simglucose training patient added (default 2; 0: none)",
    )
    parser.add_argument(
        "--folds",
        type=int,
        default=None,
        help="glucose: leave-patients-out folds for the card's held-out figures (default 3; "
        "below 2: none)",
    )


def run(args: argparse.Namespace) -> int:
    """Train, write the model folder, print the held-out figures."""
    from medview.errors import MedviewError
    from medview.forecast.realnet import MODEL_NAME
    from medview.forecast.realtrain import EPOCHS, FOLDS, SIM_DAYS, train_real
    from medview.paths import bundled_models_dir

    if not args.cgm:
        return error("glucose needs --cgm FILE.csv (real CGM, id,time,gl)", prog="medview train")
    missing = [f for f in args.cgm if not Path(f).is_file()]
    if missing:
        return error(f"{missing[0]}: no such file", prog="medview train")
    out = Path(args.out) if args.out else bundled_models_dir() / MODEL_NAME
    try:
        meta = train_real(
            args.cgm,
            out,
            sim_days=SIM_DAYS if args.sim_days is None else args.sim_days,
            folds=FOLDS if args.folds is None else args.folds,
            epochs=args.epochs or EPOCHS,
            seed=args.seed or 0,
            log=lambda msg: print(msg, flush=True),
        )
    except (MedviewError, ValueError) as exc:
        return error(exc, prog="medview train")
    for name, block in meta["validation"].get("sets", {}).items():
        for minutes, row in block["per_horizon"].items():
            parts = [
                f"{m} {r['rmse']:.2f}"
                for m, r in row.items()
                if m in ("persistence", "ar", "selected")
                or m.endswith(meta["architecture"]["name"])
            ]
            print(f"{name} held-out RMSE @{minutes} min (mg/dL): " + ", ".join(parts))
    print(f"wrote {out} in {meta['training']['time_s']:.0f} s")
    return 0
