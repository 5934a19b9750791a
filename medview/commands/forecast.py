"""``medview forecast``: forecast a patient's observation or a CGM CSV, with backtests."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from medview.disclaimers import FORECAST as DISCLAIMER

HELP = "forecast a lab/vital from patient records, or glucose from a CGM CSV, with baselines"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    src = parser.add_mutually_exclusive_group(required=True)
    src.add_argument(
        "--records",
        metavar="PATH",
        help="FHIR bundle/NDJSON, Synthea CSV folder, or a timestamp,value CSV (CGM)",
    )
    src.add_argument("--cgm", metavar="FILE.csv", help="CGM export: timestamp, value[, unit]")
    parser.add_argument(
        "--patient", metavar="ID", help="patient id in the records (with --records)"
    )
    parser.add_argument(
        "--code", metavar="LOINC", help="observation code, e.g. 4548-4 (with --records)"
    )
    parser.add_argument(
        "--horizon",
        metavar="MINUTES",
        help="how far ahead, in minutes (suffixes h, d, y accepted: 6h, 90d, 1y); "
        "default 60 for CGM, 1 year for sparse labs",
    )
    parser.add_argument(
        "--unit", default="mg/dL", help="CGM unit when the file names none (mg/dL or mmol/L)"
    )
    parser.add_argument("--json", action="store_true", help="print JSON instead of text")
    parser.add_argument(
        "--evaluate",
        action="store_true",
        help="with --cgm: rolling-origin backtest of the LSTM and baselines over the whole file "
        "(RMSE and MAE at 30 and 60 minutes)",
    )
    parser.add_argument("--model", metavar="DIR", help="glucose LSTM folder (default: bundled)")


def _fail(msg: object) -> int:
    """One line on stderr, exit 2 (the common CLI error helper)."""
    from medview.commands._common import error

    return error(str(msg), prog="medview forecast")


def run(args: argparse.Namespace) -> int:
    from medview.errors import MedviewError, one_line
    from medview.forecast.api import (
        backtest_dense,
        forecast_records,
        forecast_series,
        parse_horizon,
    )
    from medview.forecast.series import series_from_observations, to_grid

    try:
        horizon = parse_horizon(args.horizon)
        if args.cgm:
            from medview.records.cgm import CGM_LOINC, load_cgm_csv

            records = load_cgm_csv(args.cgm, default_unit=args.unit)
            for p in records.problems:
                print(f"warning: {p}", file=sys.stderr)
            pid = next(iter(records.patients))
            series = series_from_observations(records.observations, CGM_LOINC, pid)
            if args.evaluate:
                grid_s, grid_v = to_grid(series.seconds, series.values)
                bt = backtest_dense(grid_v, horizons=(30, 60), model_dir=args.model)
                return _print_evaluation(args, series, bt)
            result = forecast_series(series, horizon, model_dir=args.model)
        else:
            if args.evaluate:
                return _fail("--evaluate works with --cgm FILE.csv")
            if not args.patient or not args.code:
                return _fail("--records needs --patient ID and --code LOINC")
            records = _load_records(args.records, args.unit)
            result = forecast_records(
                records, args.patient, args.code, horizon, model_dir=args.model
            )
    except MedviewError as exc:  # ModelError included
        return _fail(str(exc))  # "path: reason" when the error names a file
    except (OSError, ValueError) as exc:
        return _fail(one_line(exc))

    if args.json:
        out = result.as_json()
        out["disclaimer"] = DISCLAIMER
        print(json.dumps(out, indent=2))
        return 0
    _print_text(result)
    return 0


def _load_records(path: str, unit: str) -> Any:
    """FHIR / Synthea via ``load_records``; a plain timestamp,value CSV as CGM."""
    from pathlib import Path

    from medview.records import load_records

    p = Path(path)
    if (
        p.is_file()
        and p.suffix.lower() in (".csv", ".txt")
        and not (p.parent / "patients.csv").exists()
    ):
        from medview.records.cgm import load_cgm_csv

        records = load_cgm_csv(p, default_unit=unit)
    else:
        records = load_records(p)
    for problem in records.problems[:20]:
        print(f"warning: {problem}", file=sys.stderr)
    if len(records.problems) > 20:
        print(f"warning: ... {len(records.problems) - 20} more skipped records", file=sys.stderr)
    return records


def _print_text(r: Any) -> None:
    print(
        f"patient {r.patient}  LOINC {r.code} {r.display}  ({len(r.history_values)} points, {r.unit})"
    )
    print(f"method: {r.method}, 80% prediction interval")
    for t, v, lo, hi in zip(r.times, r.values, r.lower, r.upper, strict=True):
        print(f"  {t:%Y-%m-%d %H:%M}  {v:8.2f}  [{lo:.2f}, {hi:.2f}]")
    if r.backtest:
        print(f"backtest ({r.backtest_what}):")
        for m, row in sorted(r.backtest.items(), key=lambda kv: kv[1]["rmse"]):
            mark = "  <- best" if m == r.winner else ""
            print(f"  {m:12s} RMSE {row['rmse']:8.3f}  MAE {row['mae']:8.3f}{mark}")
    for note in r.notes:
        print(f"note: {note}")
    print(f"NOTE: {DISCLAIMER}")


def _print_evaluation(args: argparse.Namespace, series: Any, bt: dict[str, Any]) -> int:
    if args.json:
        out = {
            "patient": series.patient,
            "code": series.code,
            "unit": series.unit,
            "history_points": len(series),
            "origins": bt["origins"],
            "backtest": {
                h: {
                    m: {k: (round(v, 3) if isinstance(v, float) else v) for k, v in r.items()}
                    for m, r in row.items()
                }
                for h, row in bt["per_horizon"].items()
            },
            "notes": bt["notes"],
            "disclaimer": DISCLAIMER,
        }
        print(json.dumps(out, indent=2))
        return 0
    print(
        f"{series.patient}: {len(series)} CGM readings, {bt['origins']} backtest origins (rolling origin)"
    )
    for h, row in bt["per_horizon"].items():
        print(f"{h} min ahead:")
        methods = [m for m in row if m != "lstm_interval80"]
        for m in sorted(methods, key=lambda m: row[m]["rmse"]):
            print(f"  {m:12s} RMSE {row[m]['rmse']:7.2f}  MAE {row[m]['mae']:7.2f} mg/dL")
        cov = row["lstm_interval80"]
        print(
            f"  LSTM 80% interval: coverage {cov['coverage']:.1%}, mean width {cov['mean_width_mgdl']:.1f} mg/dL"
        )
    for note in bt["notes"]:
        print(f"note: {note}")
    print(f"NOTE: {DISCLAIMER}")
    return 0
