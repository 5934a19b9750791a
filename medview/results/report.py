"""PDF report of a series (reportlab): patient/study header, key images with their
measurements drawn, the measurements table, AI findings with a model card summary, and the
disclaimer on every page.

Images go through :func:`medview.imaging.display.render_slice`, the viewer's display pipeline,
and measurements are drawn and labelled with :mod:`medview.imaging.measure`, so the report shows
what the viewer shows. :func:`build_report` takes a :class:`~medview.tasks.TaskState`.
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from medview.tasks import TaskState, ensure_state

#: the most key images a report shows
MAX_KEY_IMAGES = 6
COLOURS = {
    "ruler": (255, 220, 0),
    "angle": (0, 220, 255),
    "rect": (80, 255, 80),
    "ellipse": (255, 120, 60),
}


@dataclass
class ReportInput:
    """Everything a report shows (gathered by :func:`gather`; a GUI can fill it directly)."""

    series: Any  # medview.io SeriesInfo
    volume: Any  # medview.io Volume
    measurements: list[dict[str, Any]] = field(default_factory=list)  # database rows
    ai_results: list[Any] = field(default_factory=list)  # medview.ai AIResult
    key_indices: list[int] = field(default_factory=list)  # slices flagged as key images
    header: dict[str, str] = field(default_factory=dict)
    records: Any = None  # medview.results.report_records.RecordsSection (linked records)


def _header(path: str) -> dict[str, str]:
    import pydicom

    try:
        ds = pydicom.dcmread(path, stop_before_pixels=True)
    except Exception:
        return {}

    def get(k: str) -> str:
        return " ".join(str(ds.get(k, "") or "").split())

    return {
        "Patient": get("PatientName").replace("^", " ").strip(),
        "Patient ID": get("PatientID"),
        "Birth date": get("PatientBirthDate"),
        "Sex": get("PatientSex"),
        "Study date": get("StudyDate"),
        "Accession": get("AccessionNumber"),
        "Study": get("StudyDescription"),
        "Series": get("SeriesDescription"),
        "Modality": get("Modality"),
        "Institution": get("InstitutionName"),
    }


def gather(
    series: Any,
    db: Any | None,
    models: list[str] | None = None,
    device: str = "auto",
    state: TaskState | None = None,
) -> ReportInput:
    """Load the series, its stored measurements and (with ``models``) run the AI on it."""
    from medview.io import load_series

    st = ensure_state(state)
    st.progress(0.05, "loading the series")
    vol = load_series(series)
    rows: list[dict[str, Any]] = []
    if db is not None:
        for inst in series.instances:
            rows += db.measurements(inst.sop_uid)
    results: list[Any] = []
    if models:
        from medview.ai.inference import run_on_volume

        st.progress(0.3, "running the AI")
        n = int(vol.array.shape[0])
        results = run_on_volume(vol, list(range(n)), models, device=device, heatmaps=False)
    first = str(series.instances[0].path) if series.instances else ""
    return ReportInput(series, vol, rows, results, header=_header(first) if first else {})


def _slice_of(vol: Any, row: dict[str, Any]) -> int | None:
    sops = [getattr(i, "sop_uid", "") for i in vol.instances]
    multi = len(sops) != vol.array.shape[0]
    if multi:
        return int((row.get("data") or {}).get("frame", 0) or 0)
    try:
        return sops.index(row.get("sop_uid"))
    except ValueError:
        return None


def key_images(inp: ReportInput) -> list[int]:
    """Slices to show: the flagged ones, else those with measurements or an AI result
    (highest probability first), else the middle slice."""
    n = int(inp.volume.array.shape[0])
    keys = [k for k in inp.key_indices if 0 <= k < n]
    for row in inp.measurements:
        k = _slice_of(inp.volume, row)
        if k is not None and k not in keys:
            keys.append(k)
    ranked = sorted(inp.ai_results, key=lambda r: -max((r.probabilities or {"": 0.0}).values()))
    for r in ranked:
        if r.index not in keys and len(keys) < MAX_KEY_IMAGES:
            keys.append(int(r.index))
    if not keys:
        keys = [n // 2]
    return keys[:MAX_KEY_IMAGES]


def draw_image(inp: ReportInput, k: int) -> Any:
    """Slice ``k`` rendered by the viewer's pipeline with its measurements drawn (PIL RGB)."""
    from PIL import Image, ImageDraw, ImageFont

    from medview.imaging.display import render_slice
    from medview.imaging.measure import Measurement, compute, label

    vol = inp.volume
    img = render_slice(vol, k, aspect=False)
    pil = Image.fromarray(img).convert("RGB")
    draw = ImageDraw.Draw(pil)
    spacing = (float(vol.spacing[1]), float(vol.spacing[0]))
    known = getattr(vol, "spacing_source", "unknown") != "unknown"
    width = max(1, pil.width // 256)
    try:
        font: Any = ImageFont.load_default(size=max(10, pil.width // 40))
    except TypeError:  # Pillow < 10.1: fixed-size bitmap font
        font = ImageFont.load_default()
    for row in inp.measurements:
        if _slice_of(vol, row) != k:
            continue
        data = row.get("data") or {}
        m = Measurement(
            kind=row["kind"], points=[tuple(p) for p in data.get("points", [])], index=k
        )
        compute(m, vol.modality_values(k), spacing)
        colour = COLOURS.get(m.kind, (255, 255, 0))
        pts = m.points
        if m.kind in ("ruler", "angle"):
            draw.line(pts, fill=colour, width=width)
        elif m.kind == "rect":
            draw.rectangle(_box(pts), outline=colour, width=width)
        elif m.kind == "ellipse":
            draw.ellipse(_box(pts), outline=colour, width=width)
        text = "  ".join(label(m, getattr(vol, "unit", ""), known))
        x, y = pts[-1]
        draw.text(
            (x + 4, y + 4), text, fill=colour, font=font, stroke_width=1, stroke_fill=(0, 0, 0)
        )
    return pil


def _box(pts: list[tuple[float, float]]) -> list[float]:
    (x0, y0), (x1, y1) = pts[0], pts[1]
    return [min(x0, x1), min(y0, y1), max(x0, x1), max(y0, y1)]


def model_card_summary(name: str) -> str:
    """One paragraph from a model card: intended use, validation figures, limitations."""
    from medview.ai.registry import get_model

    meta = get_model(name).meta
    v = meta.get("validation", {}) or {}
    figures = ", ".join(
        f"{label} {v[key]:.3f}"
        for key, label in (
            ("auc", "AUC"),
            ("sensitivity", "sensitivity"),
            ("specificity", "specificity"),
            ("accuracy", "accuracy"),
        )
        if isinstance(v.get(key), (int, float))
    )
    limits = meta.get("limitations") or []
    parts = [f"{meta.get('name', name)} {meta.get('version', '')}: {meta.get('description', '')}"]
    if meta.get("intended_use"):
        parts.append(f"Intended use: {meta['intended_use']}")
    if figures:
        parts.append(f"Validation ({v.get('split', 'validation set')}): {figures}.")
    if limits:
        parts.append(f"Limitations: {limits[0]}")
    return " ".join(parts)


def build_report(inp: ReportInput, out: str | Path, state: TaskState | None = None) -> Path:
    """Write the PDF; returns its path."""
    from reportlab.lib import colors
    from reportlab.lib.pagesizes import A4
    from reportlab.lib.styles import getSampleStyleSheet
    from reportlab.lib.units import mm
    from reportlab.platypus import (
        Image,
        Paragraph,
        SimpleDocTemplate,
        Spacer,
        Table,
        TableStyle,
    )

    from medview import disclaimers

    st = ensure_state(state)
    styles = getSampleStyleSheet()
    path = Path(out)
    path.parent.mkdir(parents=True, exist_ok=True)
    doc = SimpleDocTemplate(
        str(path), pagesize=A4, topMargin=18 * mm, bottomMargin=20 * mm, title="medview report"
    )
    disclaimer = disclaimers.APP

    def on_page(canvas: Any, doc_: Any) -> None:
        canvas.saveState()
        canvas.setFont("Helvetica-Bold", 8)
        canvas.setFillColor(colors.darkred)
        canvas.drawString(15 * mm, 10 * mm, disclaimer)
        canvas.setFillColor(colors.black)
        canvas.setFont("Helvetica", 8)
        canvas.drawRightString(A4[0] - 15 * mm, 10 * mm, f"medview report, page {doc_.page}")
        canvas.restoreState()

    story: list[Any] = [Paragraph("medview imaging report", styles["Title"])]
    rows = [[k, v] for k, v in inp.header.items() if v]
    if rows:
        t = Table(rows, colWidths=[35 * mm, 130 * mm])
        t.setStyle(
            TableStyle(
                [("FONTSIZE", (0, 0), (-1, -1), 9), ("FONTNAME", (0, 0), (0, -1), "Helvetica-Bold")]
            )
        )
        story += [t, Spacer(1, 6 * mm)]
    keys = key_images(inp)
    story.append(Paragraph("Key images", styles["Heading2"]))
    for n, k in enumerate(keys):
        st.progress(0.5 + 0.4 * n / max(len(keys), 1), f"rendering image {n + 1}/{len(keys)}")
        pil = draw_image(inp, k)
        buf = io.BytesIO()
        pil.save(buf, format="PNG")
        buf.seek(0)
        w = 120 * mm
        h = w * pil.height / pil.width
        if h > 120 * mm:
            h, w = 120 * mm, 120 * mm * pil.width / pil.height
        story += [
            Image(buf, width=w, height=h),
            Paragraph(f"Image {k + 1} of {inp.volume.array.shape[0]}", styles["Italic"]),
            Spacer(1, 4 * mm),
        ]
    story += _measurement_table(inp, styles)
    story += _ai_section(inp, styles)
    if inp.records is not None:
        from medview.results import report_records

        story += report_records.story(inp.records, styles)
    doc.build(story, onFirstPage=on_page, onLaterPages=on_page)
    st.progress(1.0, "report written")
    return path


def _measurement_table(inp: ReportInput, styles: Any) -> list[Any]:
    from reportlab.platypus import Paragraph, Table

    from medview.imaging.measure import Measurement, compute, label

    if not inp.measurements:
        return [Paragraph("No measurements stored for this series.", styles["Normal"])]
    vol = inp.volume
    spacing = (float(vol.spacing[1]), float(vol.spacing[0]))
    known = getattr(vol, "spacing_source", "unknown") != "unknown"
    data = [["Image", "Kind", "Values"]]
    for row in inp.measurements:
        k = _slice_of(vol, row)
        if k is None:
            continue
        d = row.get("data") or {}
        m = Measurement(kind=row["kind"], points=[tuple(p) for p in d.get("points", [])], index=k)
        compute(m, vol.modality_values(k), spacing)
        data.append([str(k + 1), m.kind, "; ".join(label(m, getattr(vol, "unit", ""), known))])
    return [Paragraph("Measurements", styles["Heading2"]), Table(data)]


def _ai_section(inp: ReportInput, styles: Any) -> list[Any]:
    from reportlab.platypus import Paragraph, Spacer, Table

    if not inp.ai_results:
        return []
    out: list[Any] = [Paragraph("AI findings", styles["Heading2"])]
    data = [["Image", "Model", "Probability", "Threshold", "Label", "In scope"]]
    for r in inp.ai_results:
        p = max((r.probabilities or {"": float("nan")}).items(), key=lambda kv: kv[1])
        prob = ", ".join(f"{k} {v:.3f}" for k, v in (r.probabilities or {}).items()) or "-"
        data.append(
            [
                str(r.index + 1),
                f"{r.model} {r.version}",
                prob if p else "-",
                "-" if r.threshold is None else f"{r.threshold:g}",
                r.predicted or "-",
                "yes" if r.in_scope else "no",
            ]
        )
    out.append(Table(data))
    for name in sorted({r.model for r in inp.ai_results}):
        out += [Spacer(1, 3), Paragraph(model_card_summary(name), styles["Normal"])]
    reasons = sorted({x for r in inp.ai_results for x in r.scope_reasons})
    if reasons:
        out.append(Paragraph("Scope: " + "; ".join(reasons), styles["Italic"]))
    return out
