"""The README.md of a model folder, rendered from its card."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from medview.disclaimers import AI_MODEL_CARD
from medview.modelcards import METADATA_FILE


def _scope_lines(meta: dict[str, Any]) -> list[str]:
    """The card's structured intended use (and retraining origin) as Markdown lines."""
    sc = meta.get("intended_use_scope") or {}
    lines: list[str] = []
    if sc:
        age = sc.get("age_years") or {}
        lines += [
            f"- modalities: {', '.join(sc.get('modalities', [])) or 'any'}",
            f"- body parts: {', '.join(sc.get('body_parts', [])) or 'any'}",
            f"- projections: {', '.join(sc.get('projections', [])) or 'any'}",
            f"- patient age: {age.get('min', 0)}-{age.get('max', '')} years" if age else "",
            "",
            str(sc.get("note", "")),
            "",
        ]
    rf = meta.get("retrained_from")
    if rf:
        lines += [
            f"Retrained from {rf.get('name')} {rf.get('version')} "
            f"(weights sha256 `{rf.get('sha256')}`): these weights differ from the bundled model.",
            "",
        ]
    return [x for x in lines if x is not None]


def _ood_lines(meta: dict[str, Any]) -> list[str]:
    """The in-distribution check, when the card declares one."""
    b = meta.get("in_distribution")
    if not isinstance(b, dict):
        return []
    return [
        "## In-distribution check",
        "",
        f"- detectors: {', '.join(b.get('detectors', []))}; {b.get('method')}",
        f"- calibrated on: {b.get('calibration')} (`{b.get('command')}`), threshold "
        f"{b.get('threshold')} at the train quantile {b.get('train_quantile')}",
        f"- val split accepted: {b.get('val_accept_rate')} "
        f"(by class: {b.get('val_accept_rate_by_class')})",
        *[f"- refused, {k}: {v}" for k, v in (b.get("measured_refusal") or {}).items()],
        f"- note: {b.get('note')}" if b.get("note") else "",
        "",
    ]


def intro_lines(meta: dict[str, Any]) -> list[str]:
    """Title, disclaimer, description and intended use: the start of every card README."""
    return [
        f"# {meta['name']} {meta['version']} (model card)",
        "",
        f"**{meta.get('disclaimer', AI_MODEL_CARD)}**",
        "",
        meta.get("description", ""),
        "",
        "## Intended use",
        "",
        meta.get("intended_use", ""),
        "",
    ]


def limitation_lines(meta: dict[str, Any]) -> list[str]:
    return ["## Limitations", "", *[f"- {x}" for x in meta.get("limitations", [])], ""]


def training_lines(tr: dict[str, Any], schedule: str, threads: str) -> list[str]:
    """The "Training" section; ``schedule`` says how long (epochs or steps) and the batch."""
    return [
        "## Training",
        "",
        f"- data: {tr.get('data')}",
        f"- command: `{tr.get('command')}`",
        f"- seed {tr.get('seed')}, {schedule}, "
        f"{tr.get('train_seconds')} s on {tr.get('device')} "
        f"({tr.get('environment', {}).get('threads')} {threads})",
        f"- optimiser: {tr.get('optimizer')}; loss: {tr.get('loss')}",
        f"- augmentation: {tr.get('augmentation')}",
        "",
    ]


def closing_lines(meta: dict[str, Any], manifest: bool = False) -> list[str]:
    """The "Weights" section (with the manifest's sha256 when asked) and the licence and
    citations: the end of every card README."""
    lines = [
        "## Weights",
        "",
        f"`{meta['weights']['file']}` (safetensors, {meta['weights'].get('parameters')} "
        f"parameters), sha256 `{meta['weights']['sha256']}`; verified before every load.",
        "",
    ]
    if manifest:
        lines += [
            "Manifest (one sha256 over this card's metadata.json and, through the sha256s it "
            f"holds, the weights): `{(meta.get('manifest') or {}).get('sha256', '')}`.",
            "",
        ]
    return [
        *lines,
        "## License and citations",
        "",
        *[f"- {k}: {val}" for k, val in meta.get("license", {}).items()],
        "",
        *[f"- {c}" for c in meta.get("citations", [])],
        "",
    ]


def write_card_readme(folder: str | Path) -> Path:
    """Render ``README.md`` of a model folder from its metadata.json."""
    folder = Path(folder)
    meta = json.loads((folder / METADATA_FILE).read_text(encoding="utf-8"))
    v = meta.get("validation", {})
    lines = [
        *intro_lines(meta),
        *_scope_lines(meta),
        *limitation_lines(meta),
        "## Input",
        "",
        "```json",
        json.dumps(meta["input"], indent=2),
        "```",
        "",
        "## Output",
        "",
        "```json",
        json.dumps(meta["output"], indent=2),
        "```",
        "",
        "## Validation (official PneumoniaMNIST val split)",
        "",
        "| metric | value |",
        "|---|---|",
        *[f"| {k} | {val} |" for k, val in v.items() if not isinstance(val, dict)],
        "",
    ]
    perf = meta.get("performance")
    if perf:
        lines += ["## Performance", "", "```json", json.dumps(perf, indent=2), "```", ""]
    tr = meta.get("training", {})
    schedule = f"{tr.get('epochs')} epochs, batch {tr.get('batch_size')}"
    lines += [
        *training_lines(tr, schedule, "threads"),
        *_ood_lines(meta),
        *closing_lines(meta, manifest=True),
    ]
    path = folder / "README.md"
    path.write_text("\n".join(lines), encoding="utf-8")
    return path
