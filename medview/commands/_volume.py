"""``medview analyze PATH --model ct_seg``: a volume (3D) model on a CT/MR series.

Called by :mod:`medview.commands.analyze` when every ``--model`` names a volume model
(card task ``segmentation``, ``input.dims`` 3). Prints, per series of PATH, each label's
volume (mL) and modality statistics (HU for CT: mean, sd, min, max), as text or one JSON
object per series (``--json``); ``--labels-out FILE.nii.gz`` writes the label map in the
series' geometry (a folder of several series gets ``FILE_2.nii.gz``...). Heavy imports
inside the functions.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from medview.commands._common import error, print_json

PROG = "medview analyze"


def wants_volume_models(names: list[str] | None) -> bool:
    """True when every ``--model`` is a volume model (then this module runs the command)."""
    if not names:
        return False
    from medview.ai.volume_inference import get_volume_model
    from medview.modelcards import ModelError

    try:
        for n in names:
            get_volume_model(n)
    except ModelError:
        return False
    return True


def _labels_path(base: str, k: int) -> Path:
    p = Path(base)
    if k == 0:
        return p
    name = p.name
    stem, ext = (name[:-7], ".nii.gz") if name.endswith(".nii.gz") else (p.stem, p.suffix)
    return p.with_name(f"{stem}_{k + 1}{ext}")


def _text(res: Any, path: str) -> list[str]:
    verdict = "in intended use" if res.in_scope else "OUTSIDE INTENDED USE"
    if res.scope_reasons:
        verdict += ": " + "; ".join(res.scope_reasons)
    lines = [
        f"{path}  {res.model} {res.version}  {res.device} {res.elapsed_s:.1f} s, "
        f"{res.windows} windows  [{verdict}]"
    ]
    for s in res.stats:
        hu = (
            f"mean {s.mean:.1f} sd {s.sd:.1f} min {s.min:.0f} max {s.max:.0f} {s.unit}".rstrip()
            if s.voxels
            else "empty"
        )
        lines.append(f"  {s.label} {s.name:<12} {s.ml:10.1f} mL  {hu}")
    return lines


def _series_volumes(path: str) -> list[Any]:
    """(series, volume | error) of every series of PATH."""
    from medview.io import load_series, scan

    res = scan(path)
    for problem in res.errors:
        error(problem.path, problem.reason, prog=PROG)
    out: list[Any] = []
    for s in res.series:
        try:
            out.append(load_series(s))
        except Exception as exc:  # noqa: BLE001 - a series that does not load is its own line
            error(exc, prog=PROG)
    return out


def run_volume(args: argparse.Namespace) -> int:
    """The volume-model branch of ``medview analyze``."""
    from medview.ai.volume_analysis import segment_volume
    from medview.ai.volume_grid import write_labels
    from medview.disclaimers import AI as DISCLAIMER
    from medview.errors import MedviewError

    if not args.path or not Path(args.path).exists():
        return error(args.path or "PATH", "no such file or folder", prog=PROG)
    vols = _series_volumes(args.path)
    if not args.json:
        print(f"# {DISCLAIMER}")
    done = 0
    for k, vol in enumerate(v for v in vols if v.array.ndim == 3):
        for name in args.model:
            out = None
            try:
                res = segment_volume(vol, name, device=args.device)
                if getattr(args, "labels_out", None):
                    out = write_labels(_labels_path(args.labels_out, k), res.labels, vol)
            except (MedviewError, ValueError) as exc:
                named = isinstance(exc, MedviewError) and exc.path is not None
                error(exc if named else f"{args.path}: {exc}", prog=PROG)
                continue
            done += 1
            where = str(args.path)
            if args.json:
                obj = res.as_json(where)
                obj["labels_out"] = None if out is None else str(out)
                print_json(obj)
            else:
                print("\n".join(_text(res, where)))
                if out is not None:
                    print(f"# label map written to {out}")
    if done == 0:
        return error(args.path, "no volume could be analysed", prog=PROG)
    return 0


def run_train(args: argparse.Namespace) -> int:
    """``medview train ct-seg [--data CT_DIR] [--out DIR] [--seed N] [--epochs STEPS]``.

    ``--data`` is the folder ``../shared/data/ct``; ``--epochs`` sets the number of
    training steps (default 600). Progress on stderr, the card's held-out Dice on stdout.
    """
    import sys

    from medview.ai.training import ct_seg
    from medview.errors import MedviewError
    from medview.paths import bundled_models_dir

    out = Path(args.out) if args.out else bundled_models_dir() / ct_seg.NAME
    if args.device not in (None, "cpu"):
        return error("ct-seg trains on the CPU only (reproducible weights)", prog="medview train")
    cmd = "medview train " + " ".join(sys.argv[2:]) if len(sys.argv) > 2 else "medview train ct-seg"
    try:
        meta = ct_seg.train_ct_seg(
            args.data,
            out,
            seed=int(args.seed or 0),
            steps=int(args.epochs or ct_seg.STEPS),
            command=cmd,
            log=lambda m: print(m, file=sys.stderr, flush=True),
        )
    except (MedviewError, ValueError) as exc:
        return error(exc, prog="medview train")
    summary = {
        "model": str(out),
        "name": meta["name"],
        "version": meta["version"],
        "sha256": meta["weights"]["sha256"],
        "validation": meta["validation"],
    }
    print_json(summary, indent=2)
    return 0
