"""``medview models import|list|show|remove``: the models medview knows, and bringing your own."""

from __future__ import annotations

import argparse
from typing import Any

from medview.commands._args import add_actions, add_flag, add_json

PROG = "medview models"
HELP = "import your own ONNX / PyTorch models; list, show and remove models"

EPILOG = (
    "import FILE --card CARD.json: FILE is .onnx (run by onnxruntime: pip install "
    "'medview[onnx]'), a PyTorch checkpoint (.pt/.pth/.ckpt/.bin, read only with "
    "torch.load(weights_only=True): a pickle carrying code is refused, never run) of a "
    "known architecture (resnet18, densenet121, small_resnet, conv_autoencoder), or "
    ".safetensors. CARD.json is a model card (name, version, task, architecture, input, "
    "output with labels; see docs/ai.md); the weights block and the manifest hash are "
    "written by medview. The model goes to the user models folder ($MEDVIEW_MODELS)."
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = add_actions(parser)
    imp = sub.add_parser("import", help="import a model file with its card")
    imp.add_argument("file", metavar="FILE", help=".onnx, .pt/.pth/.ckpt/.bin or .safetensors")
    imp.add_argument("--card", required=True, metavar="CARD.json", help="the model card")
    imp.add_argument("--name", help="model name (default: the card's name)")
    add_flag(imp, "--force", "replace a user model of that name")
    add_json(imp, "print the imported model as JSON")
    ls = sub.add_parser("list", help="every model (bundled and user) and every broken one")
    add_json(ls, "one JSON object per model")
    show = sub.add_parser("show", help="a model's card")
    show.add_argument("name", metavar="NAME")
    add_json(show, "the whole card as JSON")
    rm = sub.add_parser("remove", help="delete a user model (bundled ones cannot be removed)")
    rm.add_argument("name", metavar="NAME")


def _row(info: Any, device: str = "cpu") -> dict[str, Any]:
    """What `list` shows of one model (kind: image 2D, volume 3D, forecast; how to run it)."""
    from medview.ai.registry import model_use

    return {
        "name": info.name,
        "version": info.version,
        "task": info.task,
        **model_use(info, device),
        "source": info.source,
        "format": info.weights.format,
        "architecture": info.architecture.get("name"),
        "labels": info.labels,
        "manifest_sha256": info.manifest_sha256,
        "in_distribution_check": bool(info.meta.get("in_distribution")),
        "folder": str(info.folder),
    }


def _list(args: argparse.Namespace) -> int:
    from medview.ai.registry import kind_label, scan_models, torch_device_for
    from medview.commands._common import error, print_json

    found, broken = scan_models()
    device = torch_device_for(found.values())
    for info in sorted(found.values(), key=lambda m: m.name):
        row = _row(info, device)
        if args.json:
            print_json(row)
        else:
            print(
                f"{row['name']:<20} {row['version']:<12} {kind_label(row):<10} {row['task']:<15} "
                f"{row['source']:<8} {row['format']:<12} {row['architecture']:<16} "
                f"{row['runs_on']}"
            )
    seen: set[str] = set()
    for exc in broken.values():  # loud: a broken model is never silently skipped
        if str(exc) not in seen:
            seen.add(str(exc))
            error(exc, prog=PROG, status=1)
    return 1 if broken else 0


def _show(args: argparse.Namespace) -> int:
    from medview.ai.registry import scan_models, torch_device_for
    from medview.commands._common import error, print_json

    found, broken = scan_models()
    if args.name not in found:
        if args.name in broken:
            return error(broken[args.name], prog=PROG)
        return error(
            f"unknown model {args.name!r} (available: {', '.join(sorted(found))})", prog=PROG
        )
    info = found[args.name]
    if args.json:
        print_json({**info.meta, "source": info.source, "folder": str(info.folder)}, indent=2)
        return 0
    row = _row(info, torch_device_for([info]))
    for key in ("name", "version", "kind", "dims", "task", "runs_on", "command", "source"):
        print(f"{key}: {row[key]}")
    for key in ("format", "architecture", "folder"):
        print(f"{key}: {row[key]}")
    print(f"labels: {', '.join(row['labels']) or '-'}")
    print(f"input: {info.meta['input']}")
    print(f"weights sha256: {info.weights.sha256}")
    print(f"manifest sha256: {info.manifest_sha256}")
    ood = info.meta.get("in_distribution")
    print(
        "in-distribution check: "
        + (
            f"{', '.join(ood.get('detectors', []))} (threshold {ood.get('threshold')})"
            if ood
            else "none"
        )
    )
    if info.meta.get("imported"):
        print(f"imported: {info.meta['imported']}")
    if info.meta.get("description"):
        print(f"description: {info.meta['description']}")
    return 0


def run(args: argparse.Namespace) -> int:
    from medview.commands._common import error, print_json

    if args.action is None:
        return error("an action is required: import, list, show or remove", prog=PROG)
    if args.action == "list":
        return _list(args)
    if args.action == "show":
        return _show(args)
    from medview.ai.importer import import_model, remove_model
    from medview.errors import MedviewError

    try:
        if args.action == "remove":
            folder = remove_model(args.name)
            print(f"removed {args.name} ({folder})")
            return 0
        info = import_model(args.file, args.card, name=args.name, force=args.force)
    except MedviewError as exc:
        return error(exc, prog=PROG)
    if args.json:
        print_json(_row(info))
    else:
        print(f"imported {info.name} {info.version} ({info.weights.format}) into {info.folder}")
    return 0
