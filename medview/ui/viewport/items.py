"""What the viewport paints over its image: measurements, crosshair, AI heat map, its
caption and colour legend, corner texts and orientation letters.

Each painter is a function of a :class:`QPainter` and the viewport it paints
(``vp``, a :class:`~medview.ui.viewport.canvas.Viewport`): it reads the viewport's
state and never changes it. Colours and the heat-map alpha rule come from
:mod:`medview.imaging.colormap`, the same as the CLI's PNGs.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
from PySide6.QtCore import QPointF, QRectF, Qt
from PySide6.QtGui import (
    QColor,
    QFontMetrics,
    QImage,
    QPainter,
    QPainterPath,
    QPen,
    QPolygonF,
    QTransform,
)

from medview.disclaimers import AI as AI_DEFAULT_LABEL
from medview.imaging import colormap, measure
from medview.imaging.geometry import orientation_letters, plane_axes_lps, voxel_to_pixel
from medview.imaging.measure import Measurement

if TYPE_CHECKING:
    from medview.ui.viewport.canvas import Viewport

TEXT = QColor(230, 230, 230)
PLANE_COLORS = {
    "axial": QColor(255, 80, 80),
    "coronal": QColor(80, 200, 80),
    "sagittal": QColor(80, 140, 255),
}


# ---------------------------------------------------------------------------
# images
# ---------------------------------------------------------------------------
def qimage(arr: np.ndarray) -> QImage:
    """Wrap a contiguous uint8 array as a QImage (the array is kept alive on it):
    (H, W) grey, (H, W, 3) RGB or (H, W, 4) BGRA (ARGB32 in memory)."""
    arr = np.ascontiguousarray(arr)
    h, w = arr.shape[:2]
    if arr.ndim == 2:
        img = QImage(arr.data, w, h, arr.strides[0], QImage.Format.Format_Grayscale8)
    elif arr.shape[2] == 3:
        img = QImage(arr.data, w, h, arr.strides[0], QImage.Format.Format_RGB888)
    else:
        img = QImage(arr.data, w, h, arr.strides[0], QImage.Format.Format_ARGB32)
    img._keep = arr  # noqa: SLF001 - QImage does not own the buffer
    return img


def heatmap_image(heat: np.ndarray, name: str, opacity: float = 1.0) -> QImage:
    """Heat map in [0, 1] -> ARGB image with the one colour and alpha rule
    (:func:`medview.imaging.colormap.heat_rgba`: transparent below 0.1)."""
    rgba = colormap.heat_rgba(heat, name, opacity)
    return qimage(np.ascontiguousarray(rgba[..., [2, 1, 0, 3]]))  # ARGB32 is BGRA in memory


def paint_image(p: QPainter, vp: Viewport, t: QTransform) -> None:
    """The rendered slice and, over it, the AI heat map when it belongs to this slice."""
    p.save()
    p.setTransform(t)
    if vp.zoom * vp.image_spacing()[1] < 3.0:
        p.setRenderHint(QPainter.RenderHint.SmoothPixmapTransform, True)
    p.drawImage(QPointF(0, 0), vp.qimg)
    ov, heat = vp.ai_overlay, vp.ai_image
    if (
        heat is not None
        and ov is not None
        and (ov.index is None or (ov.index == vp.index and vp.plane == "axial"))
        and (heat.height(), heat.width()) == vp.qimg_shape
    ):
        p.drawImage(QPointF(0, 0), heat)  # the opacity is in the image's alpha
    p.restore()


EMPTY_HINT = (
    "No image\n\nOpen a file (Ctrl+O) or a folder (Ctrl+Shift+O),\n"
    "drop files here, or try File > Open sample study (Ctrl+Shift+S)"
)


def centre_text(vp: Viewport) -> str:
    """The centred text: the viewport's message (loading, errors), else how to open a
    study when it shows nothing."""
    return vp.message or ("" if vp.volume is not None else EMPTY_HINT)


def paint_message_and_border(p: QPainter, vp: Viewport) -> None:
    """The centred message (loading, errors; how to open a study when empty) and the frame
    (orange when active)."""
    text = centre_text(vp)
    if text:
        p.setPen(TEXT if vp.message else QColor(140, 140, 140))
        flags = Qt.AlignmentFlag.AlignCenter | Qt.TextFlag.TextWordWrap
        p.drawText(vp.rect(), flags, text)
    border = QColor(255, 170, 0) if vp.active else QColor(60, 60, 60)
    p.setPen(QPen(border, 2 if vp.active else 1))
    p.setBrush(Qt.BrushStyle.NoBrush)
    p.drawRect(vp.rect().adjusted(0, 0, -1, -1))


# ---------------------------------------------------------------------------
# text
# ---------------------------------------------------------------------------
def shadow_text(p: QPainter, at: QPointF, s: str, color: QColor) -> None:
    """Text with a one-pixel black shadow (readable on any image)."""
    p.setPen(QColor(0, 0, 0))
    p.drawText(at + QPointF(1, 1), s)
    p.setPen(color)
    p.drawText(at, s)


def measure_name(kind: str) -> str:
    """How a measurement kind is named in menus."""
    names = {"ruler": "ruler", "angle": "angle", "rect": "rectangle ROI", "ellipse": "ellipse ROI"}
    return names.get(kind, kind)


def paint_corners(p: QPainter, vp: Viewport) -> None:
    """Corner texts (below the AI caption when there is one) and orientation letters."""
    fm = QFontMetrics(vp.text_font)
    lh = fm.height()
    lines = vp.overlay_lines()
    m = 6
    top = m + lh + (ai_label_rect(vp).height() + 2 if vp.ai_overlay is not None else 0)
    for i, s in enumerate(lines["tl"]):
        shadow_text(p, QPointF(m, top - lh + fm.ascent() + i * lh), s, TEXT)
    for i, s in enumerate(lines["tr"]):
        x = vp.width() - m - fm.horizontalAdvance(s)
        shadow_text(p, QPointF(x, top - lh + fm.ascent() + i * lh), s, TEXT)
    bl, br = lines["bl"], lines["br"]
    for i, s in enumerate(bl):
        y = vp.height() - m - (len(bl) - 1 - i) * lh - fm.descent()
        shadow_text(p, QPointF(m, y), s, TEXT)
    for i, s in enumerate(br):
        y = vp.height() - m - (len(br) - 1 - i) * lh - fm.descent()
        shadow_text(p, QPointF(vp.width() - m - fm.horizontalAdvance(s), y), s, TEXT)
    paint_orientation(p, vp, fm)


KEY_MARK = QColor(255, 200, 0)


def paint_key_marker(p: QPainter, vp: Viewport) -> None:
    """A yellow star and "KEY" under the top-right corner text when the image in view is
    flagged as a key image (``vp.key_image_check(key, frame)``, set by the window)."""
    check = getattr(vp, "key_image_check", None)
    if check is None or vp.volume is None or vp.plane != "axial" or not check(*vp.image_key()):
        return
    fm = QFontMetrics(vp.text_font)
    lines = len(vp.overlay_lines()["tr"]) if vp.overlays_visible else 0
    top = 6 + (ai_label_rect(vp).height() + 2 if vp.ai_overlay is not None else 0)
    s = "\N{BLACK STAR} KEY"
    x = vp.width() - 6 - fm.horizontalAdvance(s)
    shadow_text(p, QPointF(x, top + fm.ascent() + lines * fm.height()), s, KEY_MARK)


def paint_orientation(p: QPainter, vp: Viewport, fm: QFontMetrics) -> None:
    """Patient direction letters at the middle of each edge (images with geometry only)."""
    vol = vp.volume
    if vol is None or not vol.spacing_known or not vp.has_geometry():
        return
    col, row = plane_axes_lps(vol, vp.plane)
    # the image directions that point screen-right / screen-down through flips and rotation
    (rx, ry), (dx, dy) = vp.view.screen_axes()
    right = col * rx + row * ry
    down = col * dx + row * dy
    color = QColor(255, 200, 120)
    w, h = vp.width(), vp.height()
    right_text = orientation_letters(right)
    for text, pos in (
        (right_text, QPointF(w - 6 - fm.horizontalAdvance(right_text), h / 2)),
        (orientation_letters(-right), QPointF(6, h / 2)),
        (orientation_letters(down), QPointF(w / 2, h - 6 - fm.descent())),
        (orientation_letters(-down), QPointF(w / 2, 6 + fm.ascent())),
    ):
        if text:
            shadow_text(p, pos, text, color)


def text_block(p: QPainter, vp: Viewport, at: QPointF, lines: list[str], color: QColor) -> None:
    """Measurement label on a dark box, kept inside the viewport."""
    fm = QFontMetrics(vp.text_font)
    w = max(fm.horizontalAdvance(line) for line in lines) + 6
    h = fm.height() * len(lines) + 4
    x, top = at.x(), at.y() - fm.ascent() - 2
    if x + w > vp.width() - 2:
        x = max(2.0, at.x() - w - 16)
    top = min(max(2.0, top), vp.height() - h - 2)
    p.fillRect(QRectF(x - 3, top, w, h), QColor(0, 0, 0, 150))
    y = top + 2 + fm.ascent()
    for line in lines:
        shadow_text(p, QPointF(x, y), line, color)
        y += fm.height()


# ---------------------------------------------------------------------------
# AI caption and legend
# ---------------------------------------------------------------------------
def ai_label_rect(vp: Viewport) -> QRectF:
    """Where the AI caption goes: top centre, wrapped to the viewport's width."""
    text = vp.ai_overlay.label or AI_DEFAULT_LABEL
    fm = QFontMetrics(vp.text_font)
    avail = max(80, vp.width() - 16)
    br = fm.boundingRect(0, 0, avail, 10000, int(Qt.TextFlag.TextWordWrap), text)
    w = min(avail, br.width()) + 12
    return QRectF((vp.width() - w) / 2, 4, w, br.height() + 6)


def paint_ai_label(p: QPainter, vp: Viewport) -> None:
    """The red "not for diagnostic use" caption and the heat map's colour legend."""
    text = vp.ai_overlay.label or AI_DEFAULT_LABEL
    r = ai_label_rect(vp)
    p.fillRect(r, QColor(160, 0, 0, 200))
    p.setPen(QColor(255, 255, 255))
    p.drawText(r, Qt.AlignmentFlag.AlignCenter | Qt.TextFlag.TextWordWrap, text)
    paint_ai_legend(p, vp)


def paint_ai_legend(p: QPainter, vp: Viewport) -> None:
    """Colour bar of the AI heat map (right edge) with its low/high ends labelled."""
    lut = colormap.colormap_lut(vp.ai_overlay.colormap)
    fm = QFontMetrics(vp.text_font)
    bar_h = int(min(160, max(60, vp.height() * 0.3)))
    x = vp.width() - 22
    y0 = (vp.height() - bar_h) / 2
    for k in range(bar_h):  # top = high (1.0), bottom = low (0.0)
        r, g, b = (int(c) for c in lut[int(round(255 * (1 - k / max(bar_h - 1, 1))))])
        p.fillRect(QRectF(x, y0 + k, 12, 1), QColor(r, g, b))
    p.setPen(TEXT)
    p.drawRect(QRectF(x, y0, 12, bar_h))
    for text, y in (("high", y0 + fm.ascent()), ("low", y0 + bar_h)):
        shadow_text(p, QPointF(x - 4 - fm.horizontalAdvance(text), y), text, TEXT)


# ---------------------------------------------------------------------------
# crosshair and measurements
# ---------------------------------------------------------------------------
def paint_crosshair(p: QPainter, vp: Viewport, t: QTransform) -> None:
    """The MPR crosshair: each line in the colour of the plane it stands for."""
    _, x, y = voxel_to_pixel(vp.volume, vp.plane, *vp.crosshair)
    rows, cols = vp.image_size()
    others = [pl for pl in ("axial", "coronal", "sagittal") if pl != vp.plane]
    # vertical image line (constant x) belongs to the plane indexed by the column axis
    col_plane = {"axial": "sagittal", "coronal": "sagittal", "sagittal": "coronal"}[vp.plane]
    row_plane = [pl for pl in others if pl != col_plane][0]
    p.setPen(QPen(PLANE_COLORS[col_plane], 1, Qt.PenStyle.DashLine))
    p.drawLine(t.map(QPointF(x, 0)), t.map(QPointF(x, rows)))
    p.setPen(QPen(PLANE_COLORS[row_plane], 1, Qt.PenStyle.DashLine))
    p.drawLine(t.map(QPointF(0, y)), t.map(QPointF(cols, y)))


def _shape_path(t: QTransform, m: Measurement) -> QPainterPath:
    """Screen outline of a rectangle or ellipse ROI."""
    (x0, y0), (x1, y1) = m.points[0], m.points[1]
    path = QPainterPath()
    if m.kind == "rect":
        corners = [QPointF(x0, y0), QPointF(x1, y0), QPointF(x1, y1), QPointF(x0, y1)]
        path.addPolygon(t.map(QPolygonF(corners)))
        path.closeSubpath()
        return path
    path.addEllipse(QRectF(QPointF(min(x0, x1), min(y0, y1)), QPointF(max(x0, x1), max(y0, y1))))
    return t.map(path)


def paint_measurement(p: QPainter, vp: Viewport, t: QTransform, m: Measurement) -> None:
    """One measurement (selected in cyan) with its handles and label."""
    color = QColor(255, 220, 0) if m is not vp.selected else QColor(0, 255, 255)
    p.setPen(QPen(color, 1.5))
    p.setBrush(Qt.BrushStyle.NoBrush)
    pts = [t.map(QPointF(x, y)) for x, y in m.points]
    if not pts:
        return
    if m.kind == "ruler" and len(pts) >= 2:
        p.drawLine(pts[0], pts[1])
    elif m.kind == "angle":
        for a, b in zip(pts, pts[1:], strict=False):
            p.drawLine(a, b)
    elif m.kind in ("rect", "ellipse") and len(pts) >= 2:
        p.drawPath(_shape_path(t, m))
    for q in pts:
        p.drawRect(QRectF(q.x() - 2.5, q.y() - 2.5, 5, 5))
    lines = measure.label(m, vp.unit(), vp.spacing_known(), vp.spacing_note())
    if lines:
        anchor = max(pts, key=lambda q: q.x())
        text_block(p, vp, anchor + QPointF(8, -4), lines, color)


# ---------------------------------------------------------------------------
# presentation states (GSPS)
# ---------------------------------------------------------------------------
GSPS_COLOR = QColor(255, 215, 0)


def _gsps_points(vp: Viewport, g) -> list[QPointF]:
    rows, cols = vp.image_size()
    sx, sy = (cols, rows) if g.display_units else (1.0, 1.0)
    return [QPointF(x * sx, y * sy) for x, y in g.points]


def paint_gsps(p: QPainter, vp: Viewport, t: QTransform) -> None:
    """The presentation state's shutter (black outside it), graphics and text on this
    slice, and its label; image coordinates map through ``t`` like the image."""
    pr = vp.gsps
    sop = vp.image_key()[0]
    if sop not in pr.referenced:
        return
    rows, cols = vp.image_size()
    p.save()
    p.setTransform(t)
    sh = pr.shutter
    if sh is not None:
        outside = QPainterPath()
        outside.addRect(QRectF(0, 0, cols, rows))
        keep = QPainterPath()
        keep.addRect(QRectF(0, 0, cols, rows))
        if sh.rect is not None:
            left, right, upper, lower = sh.rect  # 1-based, inclusive
            shape = QPainterPath()
            shape.addRect(QRectF(left - 1, upper - 1, right - left + 1, lower - upper + 1))
            keep = keep.intersected(shape)
        if sh.circle is not None:
            c, r, rad = sh.circle
            shape = QPainterPath()
            shape.addEllipse(QPointF(c - 0.5, r - 0.5), rad, rad)
            keep = keep.intersected(shape)
        if sh.polygon:
            shape = QPainterPath()
            shape.addPolygon(QPolygonF([QPointF(c - 0.5, r - 0.5) for c, r in sh.polygon]))
            shape.closeSubpath()
            keep = keep.intersected(shape)
        p.fillPath(outside.subtracted(keep), QColor(0, 0, 0))
    pen = QPen(GSPS_COLOR, 1.5)
    pen.setCosmetic(True)
    p.setPen(pen)
    texts = []
    for g in pr.graphics_for(sop):
        pts = _gsps_points(vp, g)
        if not pts:
            continue
        if g.kind == "TEXT":
            texts.append((t.map(pts[0]), g.text))
        elif g.kind == "POINT":
            for q in pts:
                p.drawEllipse(q, 1.5, 1.5)
        elif g.kind == "CIRCLE" and len(pts) >= 2:
            d = pts[1] - pts[0]
            rad = (d.x() ** 2 + d.y() ** 2) ** 0.5
            p.drawEllipse(pts[0], rad, rad)
        elif g.kind == "ELLIPSE" and len(pts) >= 4:
            _draw_gsps_ellipse(p, pts)
        elif g.filled:
            p.setBrush(QColor(255, 215, 0, 80))
            p.drawPolygon(QPolygonF(pts))
            p.setBrush(Qt.BrushStyle.NoBrush)
        else:
            p.drawPolyline(QPolygonF(pts))
    p.restore()
    p.setPen(GSPS_COLOR)
    for at, text in texts:
        p.drawText(at, text)
    p.drawText(QRectF(0, 4, vp.width(), 20), Qt.AlignmentFlag.AlignHCenter, f"PR: {pr.label}")


def _draw_gsps_ellipse(p: QPainter, pts: list[QPointF]) -> None:
    """ELLIPSE: the major axis' two ends, then the minor axis' (C.10.5.1.2)."""
    a0, a1, b0, b1 = pts[:4]
    centre = (a0 + a1) / 2
    major = a1 - a0
    minor = b1 - b0
    rx = (major.x() ** 2 + major.y() ** 2) ** 0.5 / 2
    ry = (minor.x() ** 2 + minor.y() ** 2) ** 0.5 / 2
    angle = float(np.degrees(np.arctan2(major.y(), major.x())))
    p.save()
    p.translate(centre)
    p.rotate(angle)
    p.drawEllipse(QPointF(0, 0), rx, ry)
    p.restore()
