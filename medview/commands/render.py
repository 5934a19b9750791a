"""``medview render PATH --out FILE.png``: one slice through the viewer's display pipeline."""

from __future__ import annotations

import argparse

HELP = "render one slice to PNG exactly as the viewer shows it"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("path", metavar="PATH", help="file, folder or DICOMDIR")
    parser.add_argument("--out", required=True, metavar="FILE.png", help="PNG to write")
    parser.add_argument("--series", metavar="UID", help="series to render (default: the first)")
    parser.add_argument("--index", type=int, help="slice index in the plane (default: the middle)")
    parser.add_argument("--plane", default="axial", choices=["axial", "coronal", "sagittal"])
    parser.add_argument(
        "--window", metavar="CENTER,WIDTH", help="window (default: from file, else auto)"
    )
    parser.add_argument(
        "--preset",
        help="CT window preset (Hounsfield units; refused for images that are not CT): "
        "lung, mediastinum, soft tissue, bone, brain, abdomen, liver",
    )


def run(args: argparse.Namespace) -> int:
    import sys

    from medview.commands._common import error, nothing_found, parse_window
    from medview.errors import MedviewError
    from medview.imaging.display import (
        CT_PRESETS,
        ct_preset,
        hu_preset_problem,
        plane_size,
        render_slice,
    )
    from medview.io import load_path

    try:
        window = parse_window(args.window)
    except ValueError as exc:
        return error(str(exc))
    preset = None
    if args.preset:
        preset = ct_preset(args.preset)
        if preset is None:
            return error(f"unknown preset {args.preset!r}; choose from {', '.join(CT_PRESETS)}")
    try:
        vol = load_path(args.path, series_uid=args.series)
        if args.plane != "axial" and vol.shape[0] < 2:
            return error(
                f"{args.path}: a single image has no {args.plane} reformat; use --plane axial"
            )
        if preset is not None and window is None:
            # a CT window on a radiograph writes a white (or black) image: refuse it
            applies, note = hu_preset_problem(vol)
            if not applies:
                return error(
                    f"{args.path}: preset {args.preset!r} is a CT window in Hounsfield units; "
                    f"{note}. Use --window CENTER,WIDTH or no preset"
                )
            if note:
                print(f"medview: {args.path}: {note}", file=sys.stderr)
            window = preset
        n = plane_size(vol, args.plane)
        index = n // 2 if args.index is None else args.index
        if not 0 <= index < n:
            return error(
                f"{args.path}: --index {index} out of range 0..{n - 1} for the {args.plane} plane"
            )
        img = render_slice(vol, index, args.plane, window=window)
    except MedviewError as exc:
        return error(nothing_found(exc.path, exc.reason) if exc.path else str(exc))
    from medview.imaging.png import write_png

    try:
        write_png(args.out, img)
    except OSError as exc:
        return error(f"{args.out}: cannot write ({exc.strerror or exc})")
    print(f"wrote {args.out} ({img.shape[1]}x{img.shape[0]}, {args.plane} slice {index} of {n})")
    return 0
