"""``medview info PATH``: what a file, folder or DICOMDIR holds."""

from __future__ import annotations

import argparse

from medview.commands._args import add_json, add_paths

HELP = "list the series in a file, folder or DICOMDIR (headers only)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_paths(parser, "file, folder or DICOMDIR")
    add_json(parser, "print JSON: {series: [...], errors: [...]}")


def run(args: argparse.Namespace) -> int:
    import sys

    from medview.commands._common import error, nothing_found, print_json
    from medview.errors import json_safe
    from medview.errors import printable as p
    from medview.io import scan

    result = scan(args.paths)
    if args.json:
        print_json(json_safe(result.as_dict()))  # NaN/Infinity are not JSON: null
    else:
        for s in result.series:
            sp = ", ".join(f"{v:.4g}" for v in s.spacing)
            print(f"{p(s.modality) or '--'} {p(s.series_uid)}")
            print(
                f"  {p(s.description) or '(no description)'} | patient {p(s.patient_id) or '-'} | "
                f"{s.columns}x{s.rows} x {s.slices} slice(s), {s.frames} frame(s)/file | spacing {sp} mm"
            )
            print(f"  {p(s.photometric) or '-'} | transfer syntax {p(s.transfer_syntax) or '-'}")
            for w in s.warnings:
                print(f"  warning: {p(w)}")
    for e in result.errors:
        # "empty" would be wrong for a folder of CSV/JSON records: say what it holds
        print(f"medview: {p(nothing_found(e.path, e.reason))}", file=sys.stderr)
    if not result.series and not result.errors:
        return error(f"no images found in {', '.join(args.paths)}")
    return 0 if result.series else 2
