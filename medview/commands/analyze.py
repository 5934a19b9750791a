"""``medview analyze PATH``: run the local AI models on a file or folder."""

from __future__ import annotations

import argparse
import sys

HELP = "run local AI models (pneumonia classifier, anomaly autoencoder) on images"

EPILOG = (
    "AI output, not for diagnostic use. Each --json line: "
    '{"path", "index" (0-based), "slice" (1-based), "model", "version", "device", "probabilities", "predicted", '
    '"threshold", "anomaly_score", "elapsed_ms", "disclaimer", "warnings", "in_scope", '
    '"scope_reasons", "heatmap_label"} (null where not applicable). in_scope is false when a known DICOM value '
    "(modality, body part, projection, patient age) is outside the model card's intended use; "
    "scope_reasons names those values and every criterion that could not be checked. "
    "--device cuda/mps when that device is missing is an error (exit 2); auto falls back."
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.epilog = EPILOG
    parser.add_argument("path", nargs="?", metavar="PATH", help="image file or folder")
    parser.add_argument(
        "--model",
        action="append",
        metavar="NAME",
        help="model name or model folder (repeatable; default: all registered models)",
    )
    parser.add_argument(
        "--device",
        default="auto",
        choices=["auto", "cpu", "cuda", "mps"],
        help="where to run (default auto: cuda, else mps, else cpu); an explicit cuda/mps "
        "that is not available is an error (exit 2)",
    )
    parser.add_argument("--json", action="store_true", help="one JSON object per image per line")
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
        help="write one DICOM SR (TID 1500) per analysed DICOM series into DIR",
    )
    parser.add_argument("--batch-size", type=int, default=32, help="images per batch (default 32)")
    parser.add_argument(
        "--list-models", action="store_true", help="list registered models as JSON and exit"
    )


def _overlay_name(res, index_in_series: bool) -> str:
    from pathlib import Path

    stem = Path(res.path).name.replace(".", "_") or "image"
    frame = f"_slice{res.index + 1:04d}" if index_in_series else ""  # 1-based, as the viewer
    return f"{stem}{frame}_{res.model}_{res.heatmap_kind}.png"


def run(args: argparse.Namespace) -> int:
    import json

    from medview.ai.registry import ModelError, default_models, discover, get_model
    from medview.errors import MedviewError

    if args.list_models:
        errors: list[str] = []
        models = discover(errors)
        for m in sorted(models.values(), key=lambda m: m.name):
            print(json.dumps(m.summary()))
        for e in errors:
            print(f"medview analyze: {e}", file=sys.stderr)
        return 0
    if not args.path:
        print("medview analyze: PATH is required", file=sys.stderr)
        return 2
    from pathlib import Path

    if not Path(args.path).exists():
        print(f"medview analyze: {args.path}: no such file or folder", file=sys.stderr)
        return 2
    if args.batch_size < 1:
        print("medview analyze: --batch-size must be at least 1", file=sys.stderr)
        return 2
    try:
        infos = [get_model(n) for n in args.model] if args.model else default_models()
    except ModelError as exc:
        print(f"medview analyze: {exc}", file=sys.stderr)
        return 2
    if not infos:
        print(
            "medview analyze: no models found (models/ or the user models folder)", file=sys.stderr
        )
        return 2

    from medview.ai.inference import DISCLAIMER, load_model, run_batch
    from medview.ai.preprocess import iter_path_images

    try:
        loaded = [load_model(m, args.device) for m in infos]  # verifies every sha256
    except (ModelError, ValueError) as exc:
        print(f"medview analyze: {exc}", file=sys.stderr)
        return 2

    want_maps = bool(args.heatmap_out)
    collected: list = []  # results for --sr-out
    n_images = 0
    n_errors = 0
    if not args.json:
        print(f"# {DISCLAIMER}")

    def emit(batch) -> None:
        nonlocal n_images
        n_images += len(batch)
        multi = any(s.index > 0 for s in batch) or len({s.path for s in batch}) < len(batch)
        for lm in loaded:
            try:
                results = run_batch(lm, batch, heatmaps=want_maps)
            except Exception as exc:  # noqa: BLE001 - a model failing is reported, not fatal
                print(f"medview analyze: {lm.info.name}: {exc}", file=sys.stderr)
                continue
            if args.sr_out:
                collected.extend(results)
            for src, res in zip(batch, results, strict=True):
                if args.json:
                    print(json.dumps(res.as_json()), flush=True)
                else:
                    if res.probabilities is not None:
                        probs = " ".join(f"{k}={v:.3f}" for k, v in res.probabilities.items())
                        what = f"{probs} -> {res.predicted} (threshold {res.threshold})"
                    else:
                        what = (
                            f"anomaly_score={res.anomaly_score:.4f} -> {res.predicted} "
                            f"(threshold {res.threshold})"
                        )
                    idx = f" [slice {res.index + 1}]" if multi else ""  # 1-based, as the viewer
                    other = [w for w in res.warnings if w not in res.scope_reasons]
                    if other:
                        what += "  (" + "; ".join(other) + ")"
                    verdict = "in intended use" if res.in_scope else "OUTSIDE INTENDED USE"
                    if res.scope_reasons:
                        verdict += ": " + "; ".join(res.scope_reasons)
                    print(
                        f"{res.path}{idx}  {res.model} {res.version}  {what}  "
                        f"{res.device} {res.elapsed_ms:.1f} ms  [{verdict}]",
                        flush=True,
                    )
                if want_maps and res.heatmap is not None:
                    from pathlib import Path

                    from medview.ai.overlay import save_overlay_png

                    heat = res.overlay_heatmap()
                    out = Path(args.heatmap_out) / _overlay_name(res, src.key != src.path)
                    cap = f"{res.model}: {res.heatmap_label or res.heatmap_kind}"
                    if not res.in_scope:
                        cap = "OUTSIDE INTENDED USE | " + cap
                    save_overlay_png(out, src.image, heat, cmap=args.colormap, caption=cap)

    batch = []
    try:
        for item in iter_path_images(args.path):
            if isinstance(item, Exception):
                n_errors += 1
                print(f"medview analyze: {item}", file=sys.stderr)
                continue
            batch.append(item)
            if len(batch) >= args.batch_size:
                emit(batch)
                batch = []
        if batch:
            emit(batch)
    except MedviewError as exc:
        print(f"medview analyze: {exc}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # e.g. piped into `head`: stop quietly
        import os

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    if n_images == 0:
        print(f"medview analyze: {args.path}: no image could be analysed", file=sys.stderr)
        return 2
    if args.sr_out:
        from medview.results.sr_analysis import write_analysis_srs

        written, problems = write_analysis_srs(collected, args.path, args.sr_out)
        for line in problems:
            print(f"medview analyze: {line}", file=sys.stderr)
        if not args.json:
            print(f"# {len(written)} SR file(s) written to {args.sr_out}")
    return 0
