"""``medview cgm``: the Ambulatory Glucose Profile (AGP) report of a CGM file."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from medview.commands._args import add_cgm_unit, add_json, add_out, add_patient

HELP = "AGP report of a CGM CSV (consensus metrics, MAGE, percentile plot) per patient"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("file", metavar="FILE.csv", help="CGM export (id,time,gl or time,value)")
    add_patient(parser, "only this patient id of the file")
    add_json(parser, "print JSON (one object per patient)")
    add_out(
        parser,
        "agp.png|pdf",
        "write the AGP page (metrics, 5-95 %% percentile plot, daily profiles); with "
        "several patients and no --patient, one file per patient (ID inserted before the suffix)",
    )
    add_cgm_unit(parser, "unit when the file names none (mg/dL or mmol/L)")


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from medview.commands._common import error, print_json
    from medview.errors import MedviewError, one_line
    from medview.forecast.agp import AGPRefused, agp_metrics, write_agp_figure
    from medview.forecast.cgmdata import load_patients
    from medview.forecast.sparse import ForecastRefused

    prog = "medview cgm"
    out = Path(args.out) if args.out else None
    if out is not None and out.suffix.lower() not in (".png", ".pdf"):
        return error(out, "--out must end in .png or .pdf", prog=prog)
    try:
        series, quality, warnings = load_patients(args.file, args.patient, args.unit)
    except (MedviewError, ForecastRefused) as exc:
        return error(exc, prog=prog)
    except (OSError, ValueError) as exc:
        return error(args.file, one_line(exc), prog=prog)
    for w in warnings:
        print(f"warning: {w}", file=sys.stderr)
    reports: list[dict[str, Any]] = []
    refused: list[str] = []
    for s in series:
        try:
            m = agp_metrics(s)
        except AGPRefused as exc:
            refused.append(str(exc))
            continue
        reports.append(m.as_json())
        if out is not None:
            target = (
                out if len(series) == 1 else out.with_name(f"{out.stem}_{s.patient}{out.suffix}")
            )
            try:
                write_agp_figure(s, m, target)
            except ImportError:
                return error(target, "matplotlib is needed to draw the AGP page", prog=prog)
            except OSError as exc:
                return error(target, one_line(exc), prog=prog)
    for r in refused:
        print(f"warning: {r}", file=sys.stderr)
    if not reports:
        return error(args.file, refused[0] if refused else "no patient to report", prog=prog)
    if args.json:
        print_json(reports if len(reports) > 1 or args.patient is None else reports[0], indent=2)
        return 0
    _print_text(reports, quality)
    return 0


def _print_text(reports: list[dict[str, Any]], quality: dict[str, Any]) -> None:
    from medview.disclaimers import FORECAST_MODEL_CARD

    for r in reports:
        mage = "-" if r["mage"] is None else f"{r['mage']:.1f}"
        print(
            f"{r['id']}: {r['days']:.1f} days, active {r['active_percent']:.1f} %, mean "
            f"{r['mean']:.1f} mg/dL, GMI {r['gmi']:.2f} %, CV {r['cv']:.1f} %, MAGE {mage}"
        )
        print(
            f"  <54 {r['tbr_54']:.1f} %  54-69 {r['tbr_70']:.1f} %  70-180 {r['tir_70_180']:.1f} %"
            f"  181-250 {r['tar_180']:.1f} %  >250 {r['tar_250']:.1f} %"
        )
        q = quality.get(r["id"])
        if q is not None:
            for line in q.lines()[1:]:
                print(f"  note: {line}")
    print(f"NOTE: AGP metrics of past CGM readings. {FORECAST_MODEL_CARD}")
