"""``medview forecast``: forecast a patient's observation or a CGM CSV, with backtests."""

from __future__ import annotations

import argparse
import json
import sys
from functools import partial
from typing import Any

from medview.commands import _args
from medview.commands._common import error
from medview.disclaimers import FORECAST as DISCLAIMER

HELP = "forecast a lab/vital from patient records, or glucose from a CGM CSV, with baselines"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    src = parser.add_mutually_exclusive_group(required=True)
    _args.add_records(src, "FHIR bundle/NDJSON, Synthea CSV folder, or a timestamp,value CSV (CGM)")
    src.add_argument(
        "--cgm",
        metavar="FILE.csv",
        action="append",
        help="CGM export: timestamp,value[,unit] or the multi-patient id,time,gl layout "
        "(repeat --cgm with --calibrate to pool several files)",
    )
    _args.add_patient(
        parser,
        "patient id in the records or in a multi-patient CGM file "
        "(--cgm: default the first patient; --evaluate without it reports every patient)",
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
    _args.add_cgm_unit(parser, "CGM unit when the file names none (mg/dL or mmol/L)")
    _args.add_json(parser, "print JSON instead of text")
    _args.add_flag(
        parser,
        "--evaluate",
        "with --cgm: rolling-origin backtest of every method per patient and pooled "
        "(RMSE, MAE, Clarke zones, time lag, calibrated 80%% interval at 30 and 60 minutes)",
    )
    _args.add_flag(
        parser,
        "--calibrate",
        "with --cgm (repeatable): calibrate the 80%% intervals on every patient of the "
        "files and store the table in the model card (--model DIR, default the bundled one)",
    )
    parser.add_argument("--model", metavar="DIR", help="glucose LSTM folder (default: bundled)")


_fail = partial(error, prog="medview forecast")  # one line on stderr, exit 2


def run(args: argparse.Namespace) -> int:
    from medview.errors import MedviewError, one_line
    from medview.forecast.api import forecast_records, forecast_series, parse_horizon

    try:
        horizon = parse_horizon(args.horizon)
        if args.cgm:
            if len(args.cgm) > 1 and not args.calibrate:
                return _fail("give one --cgm FILE (several only with --calibrate)")
            if args.calibrate:
                return _calibrate(args)
            if args.evaluate:
                return _evaluate(args)
            from medview.forecast.cgmdata import check_for_forecast, load_patients

            series, quality, warnings = load_patients(args.cgm[0], args.patient, args.unit)
            if len(series) > 1:
                warnings.append(
                    f"{args.cgm[0]}: {len(series)} patients; forecasting the first, "
                    f"{series[0].patient!r} (choose one with --patient ID)"
                )
            for w in warnings:
                print(f"warning: {w}", file=sys.stderr)
            check_for_forecast(series[0], quality[series[0].patient])
            result = forecast_series(series[0], horizon, model_dir=args.model)
            result.notes[:0] = quality[series[0].patient].lines()[1:]
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


def _evaluate(args: argparse.Namespace) -> int:
    """``--evaluate``: every patient of the file (or ``--patient``) and the pooled figures."""
    from medview.forecast.cgmdata import load_patients
    from medview.forecast.evaluation import evaluate_patients
    from medview.forecast.lstm import load_model
    from medview.forecast.realnet import conformal_methods, installed_real_model

    series, quality, warnings = load_patients(args.cgm[0], args.patient, args.unit)
    for w in warnings:
        print(f"warning: {w}", file=sys.stderr)
    model = load_model(args.model)
    real = installed_real_model()  # the network trained on real CGM (issue 15)
    fallback = model.metadata.get("output", {}).get("conformal_real", {}).get("methods")
    fallback = {**(fallback or {}), **conformal_methods(real)}
    ev = evaluate_patients(series, model, fallback=fallback, real=real)
    if not ev["patients"]:
        reason = next(iter(ev["skipped"].values()), "no patient to evaluate")
        return _fail(f"{args.cgm[0]}: {reason}")
    for pid in ev["patients"]:
        ev["patients"][pid]["quality"] = quality[pid].lines()
    if args.json:
        out = evaluation_json(args.cgm[0], ev)
        out["file_problems"] = warnings  # skipped rows (sensor errors, duplicates...), time checks
        print(json.dumps(out, indent=2))
        return 0
    _print_evaluation(ev)
    return 0


def _rounded(obj: Any) -> Any:
    if isinstance(obj, float):
        return round(obj, 3)
    if isinstance(obj, dict):
        return {k: _rounded(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_rounded(v) for v in obj]
    return obj


def _split(per_horizon: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    """(backtest without zones, clarke zones, interval) per horizon."""
    bt: dict[str, Any] = {}
    clarke: dict[str, Any] = {}
    interval: dict[str, Any] = {}
    for h, row in per_horizon.items():
        interval[h] = row.get("interval80", {})
        bt[h] = {
            m: {k: v for k, v in r.items() if k != "clarke"}
            for m, r in row.items()
            if m != "interval80"
        }
        clarke[h] = {m: r["clarke"] for m, r in row.items() if m != "interval80"}
    return bt, clarke, interval


def evaluation_json(path: str, ev: dict[str, Any]) -> dict[str, Any]:
    """The ``--evaluate --json`` document: per patient and pooled, ``clarke`` apart."""
    patients = {}
    for pid, p in ev["patients"].items():
        bt, clarke, interval = _split(p["per_horizon"])
        patients[pid] = {
            "group": p["group"],
            "origins": p["origins"],
            "quality": p["quality"],
            "backtest": bt,
            "clarke": clarke,
            "interval80": interval,
            "notes": p["notes"],
        }
    bt, clarke, interval = _split(ev["pooled"])
    return _rounded(
        {
            "file": path,
            "unit": "mg/dL",
            "patients": patients,
            "pooled": {"backtest": bt, "clarke": clarke, "interval80": interval},
            "skipped": ev["skipped"],
            "clarke_zones": "Clarke et al. 1987: A+B clinically acceptable; % of forecasts",
            "disclaimer": DISCLAIMER,
        }
    )


def _print_evaluation(ev: dict[str, Any]) -> None:
    for pid, p in ev["patients"].items():
        print(f"{pid}: {p['origins']} backtest origins, {p['group']} variability")
        for line in p["quality"]:
            print(f"  {line}")
        _print_rows(p["per_horizon"], "  ")
    for pid, why in ev["skipped"].items():
        print(f"{pid}: skipped: {why}")
    print(f"pooled over {len(ev['patients'])} patients:")
    _print_rows(ev["pooled"], "  ")
    print(f"NOTE: {DISCLAIMER}")


def _print_rows(per_horizon: dict[str, Any], pad: str) -> None:
    for h, row in per_horizon.items():
        print(f"{pad}{h} min ahead (RMSE, MAE mg/dL; Clarke A/B/C/D/E %; lag):")
        methods = [m for m in row if m != "interval80"]
        for m in sorted(methods, key=lambda m: row[m]["rmse"]):
            r = row[m]
            z = "/".join(f"{r['clarke'][k]:.1f}" for k in "ABCDE")
            lag = "-" if r.get("lag_min") is None else f"{r['lag_min']:.0f} min"
            worse = r.get("patients_worse_than_persistence")
            extra = "" if worse is None else f"  worse than persistence: {worse}"
            if m == "selected":
                extra += f"  (persistence on the same origins {r['persistence_rmse']:.2f})"
            print(f"{pad}  {m:12s} {r['rmse']:7.2f} {r['mae']:7.2f}  Clarke {z}  lag {lag}{extra}")
        cov = row.get("interval80") or {}
        if cov:
            print(
                f"{pad}  80% interval (selected method): coverage {cov['coverage']:.1%}, "
                f"mean width {cov['mean_width_mgdl']:.1f} mg/dL"
            )


def _calibrate(args: argparse.Namespace) -> int:
    """``--calibrate``: the interval table from every patient of the files, into the card."""
    from medview.forecast.cgmdata import load_patients
    from medview.forecast.evaluation import (
        calibration_block,
        patient_backtest,
        write_calibration,
    )
    from medview.forecast.lstm import default_model_dir, load_model

    model = load_model(args.model)
    bts = []
    for path in args.cgm:
        series, _, _ = load_patients(path, None, args.unit)
        bts += [b for s in series if (b := patient_backtest(s, model)) is not None]
    if not bts:
        return _fail("no patient with enough CGM to calibrate on")
    from pathlib import Path

    block = calibration_block(bts, [Path(p).name for p in args.cgm])
    written = write_calibration(args.model or default_model_dir(), block)
    print(f"calibrated on {len(bts)} patients {block['patients']}: {written}")
    return 0
