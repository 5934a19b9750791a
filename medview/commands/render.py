"""``medview render PATH --out FILE.png``: one slice, a slab projection (MIP, MinIP,
average) or a cine loop (GIF/MP4) through the viewer's display pipeline, or (``--rotate``)
a full turn of the 3D volume rendering as GIF/MP4."""

from __future__ import annotations

import argparse
from typing import Any

from medview.commands import _args

HELP = (
    "render one slice, a MIP/MinIP/average slab or a cine loop exactly as the viewer shows "
    "it, or a 3D rotation"
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    _args.add_path(parser, "file, folder or DICOMDIR")
    _args.add_out(
        parser, "FILE.png", "PNG (or .jpg) to write; with --cine a .gif or .mp4", required=True
    )
    _args.add_series(parser, "series to render (default: the first)")
    parser.add_argument(
        "--index",
        type=int,
        help="slice index in the plane, 0-based (default: the middle); with --slab the "
        "slab's centre slice",
    )
    parser.add_argument("--plane", default="axial", choices=["axial", "coronal", "sagittal"])
    parser.add_argument(
        "--window", metavar="CENTER,WIDTH", help="window (default: from file, else auto)"
    )
    parser.add_argument(
        "--preset",
        help="CT window preset (Hounsfield units; refused for images that are not CT): "
        "lung, mediastinum, soft tissue, bone, brain, abdomen, liver",
    )
    _args.add_projection(
        parser,
        "maximum, minimum or average intensity over a slab (default: one slice)",
        "slab thickness in mm centred on --index (with --projection; default: the whole volume)",
    )
    _args.add_flag(
        parser, "--cine", "write every slice of the plane, in order, as an animated GIF or an MP4"
    )
    parser.add_argument("--fps", type=float, default=10.0, help="cine frame rate (default 10)")
    parser.add_argument(
        "--rotate",
        type=int,
        metavar="FRAMES",
        help="write a full turn of the 3D volume rendering (VTK) in FRAMES frames as an "
        "animated GIF or an MP4",
    )
    parser.add_argument(
        "--preset3d",
        default="bone",
        choices=["bone", "lung", "soft tissue", "angio"],
        help="3D transfer-function preset with --rotate (default: bone)",
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
    problem = _option_problem(args)
    if problem:
        return error(problem)
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
        if args.cine:
            return _cine(args, vol, window)
        if args.rotate is not None:
            return _rotate(args, vol)
        n = plane_size(vol, args.plane)
        index = n // 2 if args.index is None else args.index
        if not 0 <= index < n:
            return error(
                f"{args.path}: --index {index} out of range 0..{n - 1} for the {args.plane} plane"
            )
        if args.projection:
            from medview.imaging.projection import render_projection, slab_range

            if vol.is_color:
                return error(args.path, "a projection needs a greyscale image, not colour")
            img = render_projection(vol, index, args.plane, args.projection, args.slab, window)
            slab = slab_range(vol, args.plane, index, args.slab)
            what = (
                f"{args.projection} of {args.plane} slices {slab.first}..{slab.last} "
                f"({slab.thickness_mm:g} mm) of {n}"
            )
        else:
            img = render_slice(vol, index, args.plane, window=window)
            what = f"{args.plane} slice {index} of {n}"
    except MedviewError as exc:
        return error(nothing_found(exc.path, exc.reason) if exc.path else str(exc))
    try:
        _write_image(args.out, img)
    except OSError as exc:
        return error(f"{args.out}: cannot write ({exc.strerror or exc})")
    print(f"wrote {args.out} ({img.shape[1]}x{img.shape[0]}, {what})")
    return 0


def _option_problem(args: argparse.Namespace) -> str:
    """Why the options do not go together ("" when they do)."""
    import os

    suffix = os.path.splitext(args.out)[1].lower()
    if args.slab is not None and not args.projection:
        return "--slab needs --projection mip|minip|avg"
    if args.slab is not None and not args.slab > 0:
        return f"--slab must be a thickness in mm above 0, not {args.slab:g}"
    if args.rotate is not None:
        if suffix not in (".gif", ".mp4"):
            return f"{args.out}: a rotation is written as .gif or .mp4"
        if args.cine or args.index is not None or args.projection or args.window or args.preset:
            return (
                "--rotate renders the whole volume in 3D (--preset3d): leave out --cine, "
                "--index, --projection, --window and --preset"
            )
        if not 1 <= args.rotate <= 3600:
            return f"--rotate takes 1 to 3600 frames, not {args.rotate}"
        if not 0 < args.fps <= 120:
            return f"--fps must be above 0 and at most 120, not {args.fps:g}"
    elif args.cine:
        if suffix not in (".gif", ".mp4"):
            return f"{args.out}: a cine is written as .gif or .mp4"
        if args.index is not None:
            return "--cine writes every slice; leave out --index"
        if not 0 < args.fps <= 120:
            return f"--fps must be above 0 and at most 120, not {args.fps:g}"
    elif suffix not in (".png", ".jpg", ".jpeg"):
        return f"{args.out}: an image is written as .png or .jpg (a cine needs --cine or --rotate)"
    return ""


def _write_image(path: str, img: object) -> None:
    import numpy as np

    arr = np.asarray(img)
    if path.lower().endswith(".png"):
        from medview.imaging.png import write_png

        write_png(path, arr)
    else:
        from medview.viewer.export import write_image

        write_image(path, arr)


def _cine(args: argparse.Namespace, vol: Any, window: tuple[float, float] | None) -> int:
    """``--cine``: every slice of the plane, in order, written as GIF or MP4."""
    from medview.commands._common import error
    from medview.viewer import export

    if args.out.lower().endswith(".mp4") and not export.mp4_available():
        return error(f"{args.out}: MP4 needs the imageio-ffmpeg package; write a .gif instead")
    try:
        frames = list(export.cine_frames(vol, args.plane, window, args.projection, args.slab))
        count = export.write_cine(args.out, frames, args.fps)
    except ValueError as exc:
        return error(f"{args.out}: {exc}")
    except OSError as exc:
        return error(f"{args.out}: cannot write ({exc.strerror or exc})")
    h, w = frames[0].shape[:2]
    print(f"wrote {args.out} ({count} frames, {w}x{h}, {args.plane}, {args.fps:g} fps)")
    return 0


def _rotate(args: argparse.Namespace, vol: Any) -> int:
    """``--rotate FRAMES``: a full turn of the 3D rendering, written as GIF or MP4."""
    from medview.commands._common import error
    from medview.viewer import export, volume3d

    if args.out.lower().endswith(".mp4") and not export.mp4_available():
        return error(f"{args.out}: MP4 needs the imageio-ffmpeg package; write a .gif instead")
    if not volume3d.vtk_available():
        return error("--rotate needs VTK for 3D rendering: pip install 'medview[3d]'")
    view = volume3d.View3D(preset=args.preset3d)
    try:
        count = export.write_rotation(args.out, vol, view, args.rotate, args.fps)
    except ValueError as exc:
        return error(f"{args.path}: {exc}")
    except OSError as exc:
        return error(f"{args.out}: cannot write ({exc.strerror or exc})")
    w, h = view.size
    print(f"wrote {args.out} ({count} frames, {w}x{h}, 3D {args.preset3d}, {args.fps:g} fps)")
    return 0
