"""``medview analyze PATH``: run the local AI models on a file or folder."""

from __future__ import annotations

import argparse
import sys
from functools import partial
from typing import Any

from medview.commands._args import add_db, add_device, add_flag, add_json, add_model, add_path
from medview.commands._common import error, need_paths, print_json
from medview.disclaimers import AI as DISCLAIMER

PROG = "medview analyze"

HELP = "run local AI models (pneumonia classifier, anomaly autoencoder) on images"

EPILOG = (
    f"{DISCLAIMER}. Each --json line: "
    '{"path", "index" (0-based), "slice" (1-based), "model", "version", "device", "probabilities", "predicted", '
    '"threshold", "anomaly_score", "elapsed_ms", "disclaimer", "warnings", "in_scope", '
    '"scope_reasons", "heatmap_label", "in_distribution", "in_distribution_reason", "uncertainty"} '
    "(null where not applicable). in_scope is false when a known DICOM value "
    "(modality, body part, projection, patient age) is outside the model card's intended use; "
    "scope_reasons names those values and every criterion that could not be checked. "
    "in_distribution is false when the image is unlike the model's training data (the card's "
    "check, calibrated on the training split); the raw figure is still printed for research "
    "use. uncertainty: spread (std) of each figure over slightly shifted copies of the image. "
    "--device cuda/mps when that device is missing is an error (exit 2); auto falls back. "
    "A volume (3D) model such as --model ct_seg runs alone on each CT/MR series of PATH: "
    'one JSON object per series {"path", "model", "version", "device", "elapsed_s", '
    '"shape_zyx", "model_grid_zyx", "windows", "batches", "labels": [{"label", "name", '
    '"color", "voxels", "ml", "mean", "sd", "min", "max", "unit"}], "in_scope", '
    '"scope_reasons", "disclaimer", "labels_out"}. --list-models shows every model\'s kind.'
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_path(parser, "image file or folder", "?")
    add_model(parser, "model name or model folder (repeatable; default: all registered models)")
    add_device(
        parser,
        "where to run (default auto: cuda, else mps, else cpu); an explicit cuda/mps "
        "that is not available is an error (exit 2)",
        ["auto", "cpu", "cuda", "mps"],
    )
    add_json(parser, "one JSON object per image per line")
    parser.add_argument(
        "--heatmap-out",
        metavar="DIR",
        help="write Grad-CAM / anomaly-map overlays as PNG files into DIR",
    )
    parser.add_argument(
        "--colormap", default="jet", choices=["jet", "hot", "viridis"], help="heat-map colours"
    )
    parser.add_argument(
        "--sr-out",
        metavar="DIR",
        help="write one DICOM SR (TID 1500) per analysed DICOM series and each heat map as a "
        "Secondary Capture (disclaimer burnt in) into DIR",
    )
    parser.add_argument("--batch-size", type=int, default=32, help="images per batch (default 32)")
    add_flag(parser, "--index", "store each image's embedding and findings for 'medview similar'")
    add_db(parser, "database for --index (default: the study one)")
    add_flag(
        parser,
        "--list-models",
        "list every installed model (2D image, 3D volume, forecast) with where it runs and "
        "the command that runs it, and exit (--json: one object per model)",
    )
    parser.add_argument(
        "--labels-out",
        metavar="FILE.nii.gz",
        help="volume (3D) models such as ct_seg: write the label map in the series' geometry",
    )


def _overlay_name(res: Any, index_in_series: bool) -> str:
    from pathlib import Path

    stem = Path(res.path).name.replace(".", "_") or "image"
    frame = f"_slice{res.index + 1:04d}" if index_in_series else ""  # 1-based, as the viewer
    return f"{stem}{frame}_{res.model}_{res.heatmap_kind}.png"


_fail = partial(error, prog=PROG)  # one line on stderr, exit 2


def _list_models(as_json: bool) -> int:
    """``--list-models``: every installed model (2D image, 3D volume, forecast), how it runs.

    One JSON object per model with ``--json`` (the card summary plus ``kind``, ``dims``,
    ``runs_on``, ``command``), else a table; broken cards on stderr (exit 1).
    """
    from medview.ai.registry import discover_cards, kind_label, model_use, torch_device_for

    errors: list[str] = []
    models = sorted(discover_cards(errors).values(), key=lambda m: m.name)
    device = torch_device_for(models)
    if not as_json:
        print(f"{'name':<16} {'version':<9} {'kind':<9} {'task':<15} {'runs on':<10} run with")
    for m in models:
        row = {**m.summary(), **model_use(m, device)}
        if as_json:
            print_json(row)
        else:
            print(
                f"{m.name:<16} {m.version:<9} {kind_label(row):<9} {m.task:<15} {row['runs_on']:<10} "
                f"{row['command'] or '-'}"
            )
    for e in errors:
        error(e, prog=PROG, status=1)
    return 1 if errors else 0


def _load_models(args: argparse.Namespace) -> list[Any] | int:
    """The loaded models (every sha256 verified), or the exit status of a bad input."""

    from medview.ai.registry import ModelError, default_models, get_model

    if not args.path:
        return _fail("PATH is required")
    need_paths(args.path, prog=PROG)
    if args.batch_size < 1:
        return _fail("--batch-size must be at least 1")
    refused: list[str] = []
    try:
        infos = [get_model(n) for n in args.model] if args.model else default_models(refused)
    except ModelError as exc:
        return _fail(exc)
    for line in refused:  # a broken (user) model is refused loudly, never replaced
        _fail(line)
    if not infos:
        return _fail("no models found (models/ or the user models folder)")
    from medview.ai.inference import load_model

    try:
        return [load_model(m, args.device) for m in infos]  # verifies every sha256
    except (ModelError, ValueError) as exc:
        return _fail(exc)


def _text_line(res: Any, multi: bool) -> str:
    """One result as the plain-text line (values, verdict on intended use)."""
    unc = res.uncertainty or {}
    if res.probabilities is not None:
        probs = " ".join(
            f"{k}={v:.3f}" + (f"\u00b1{unc[k]:.3f}" if k in unc else "")
            for k, v in res.probabilities.items()
        )
        what = f"{probs} -> {res.predicted} (threshold {res.threshold})"
    else:
        what = (
            f"anomaly_score={res.anomaly_score:.4f} -> {res.predicted} (threshold {res.threshold})"
        )
    idx = f" [slice {res.index + 1}]" if multi else ""  # 1-based, as the viewer
    other = [w for w in res.warnings if w not in res.scope_reasons]
    if other:
        what += "  (" + "; ".join(other) + ")"
    verdict = "in intended use" if res.in_scope else "OUTSIDE INTENDED USE"
    if res.scope_reasons:
        verdict += ": " + "; ".join(res.scope_reasons)
    if res.in_distribution is False:  # the figure is printed, but flagged
        verdict = (
            f"OUT OF DISTRIBUTION, do not use the figure: {res.distribution_reason}] [" + verdict
        )
    return (
        f"{res.path}{idx}  {res.model} {res.version}  {what}  "
        f"{res.device} {res.elapsed_ms:.1f} ms  [{verdict}]"
    )


def _save_heatmap(args: argparse.Namespace, src: Any, res: Any) -> None:
    """The heat-map overlay PNG of one result (caption: map label, scope verdict first)."""
    from pathlib import Path

    from medview.ai.overlay import save_overlay_png

    heat = res.overlay_heatmap()
    out = Path(args.heatmap_out) / _overlay_name(res, src.key != src.path)
    cap = f"{res.model}: {res.heatmap_label or res.heatmap_kind}"
    if not res.in_scope:
        cap = "OUTSIDE INTENDED USE | " + cap
    save_overlay_png(out, src.image, heat, cmap=args.colormap, caption=cap)


class _Emitter:
    """Runs every model on a batch and prints (and saves) what comes out."""

    def __init__(self, args: argparse.Namespace, loaded: list[Any]) -> None:
        self.args = args
        self.loaded = loaded
        self.want_maps = bool(args.heatmap_out or args.sr_out)
        self.collected: list[Any] = []  # results for --sr-out
        self.images: dict[int, Any] = {}  # id(result) -> display image, for --sr-out maps
        self.n_images = 0

    def __call__(self, batch: list[Any]) -> None:
        import json

        from medview.ai.inference import run_batch

        self.n_images += len(batch)
        multi = any(s.index > 0 for s in batch) or len({s.path for s in batch}) < len(batch)
        every: list[Any] = []  # all models' results: indexed together (findings per image)
        for lm in self.loaded:
            try:
                results = run_batch(lm, batch, heatmaps=self.want_maps)
            except Exception as exc:  # noqa: BLE001 - a model failing is reported, not fatal
                error(lm.info.name, str(exc), prog=PROG)
                continue
            every.extend(results)
            if self.args.sr_out:
                self.collected.extend(results)
                self.images.update({id(r): s.image for s, r in zip(batch, results, strict=True)})
            for src, res in zip(batch, results, strict=True):
                if self.args.json:
                    print(json.dumps(res.as_json()), flush=True)
                else:
                    print(_text_line(res, multi), flush=True)
                if self.args.heatmap_out and res.heatmap is not None:
                    _save_heatmap(self.args, src, res)
        if self.args.index and every:
            from medview.ai.similar import index_results

            index_results(every, db=self.args.db)


def _analyse_all(args: argparse.Namespace, emit: _Emitter) -> int | None:
    """Feed the images of PATH to ``emit`` in batches; an exit status when it must stop."""
    import os

    from medview.ai.preprocess import iter_path_images
    from medview.errors import MedviewError

    batch = []
    try:
        for item in iter_path_images(args.path):
            if isinstance(item, Exception):
                _fail(item)
                continue
            batch.append(item)
            if len(batch) >= args.batch_size:
                emit(batch)
                batch = []
        if batch:
            emit(batch)
    except MedviewError as exc:
        return _fail(exc)
    except BrokenPipeError:  # e.g. piped into `head`: stop quietly
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    return None


def run(args: argparse.Namespace) -> int:
    if args.list_models:
        return _list_models(bool(args.json))
    from medview.commands._volume import run_volume, wants_volume_models

    if wants_volume_models(args.model):  # 3D models: label map, mL and HU per label
        return run_volume(args)
    loaded = _load_models(args)
    if isinstance(loaded, int):
        return loaded
    if not args.json:
        print(f"# {DISCLAIMER}")
    emit = _Emitter(args, loaded)
    stop = _analyse_all(args, emit)
    if stop is not None:
        return stop
    if emit.n_images == 0:
        return error(args.path, "no image could be analysed", prog=PROG)
    if args.sr_out:
        from medview.results.sr_analysis import write_analysis_srs

        written, problems = write_analysis_srs(
            emit.collected, args.path, args.sr_out, images=emit.images
        )
        for line in problems:
            _fail(line)
        if not args.json:
            print(
                f"# {len(written)} DICOM file(s) (SRs, heat-map captures) written to {args.sr_out}"
            )
    return 0
