"""Icon source: draws the medview icon and writes resources/icons/medview.{svg,png,ico,icns}.

The drawing: a rounded dark-blue tile holding a grey axial CT "slice" (an ellipse
with a brighter spine and two dark lungs) under a cyan window/level bar. The SVG is
the vector master; the raster files are drawn with Pillow from the same geometry.

    python packaging/make_icon.py
"""

from __future__ import annotations

import sys
from pathlib import Path

from PIL import Image, ImageDraw

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "resources" / "icons"
S = 1024  # master raster size; geometry below is in a 256 grid

BG = (22, 52, 92, 255)
BODY = (170, 176, 184, 255)
LUNG = (34, 38, 46, 255)
BONE = (240, 240, 236, 255)
BAR = (0, 190, 220, 255)

# (x0, y0, x1, y1) boxes in the 256 grid
TILE = (8, 8, 248, 248)
TILE_R = 44
BODY_BOX = (36, 62, 220, 206)
LUNG_L = (56, 86, 122, 178)
LUNG_R = (134, 86, 200, 178)
SPINE = (114, 168, 142, 196)
BAR_BOX = (56, 222, 200, 232)


def svg() -> str:
    def ell(box, fill):
        x0, y0, x1, y1 = box
        cx, cy, rx, ry = (x0 + x1) / 2, (y0 + y1) / 2, (x1 - x0) / 2, (y1 - y0) / 2
        return f'<ellipse cx="{cx}" cy="{cy}" rx="{rx}" ry="{ry}" fill="{_hex(fill)}"/>'

    x0, y0, x1, y1 = TILE
    bx0, by0, bx1, by1 = BAR_BOX
    return (
        '<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 256 256" width="256" height="256">\n'
        f'  <rect x="{x0}" y="{y0}" width="{x1 - x0}" height="{y1 - y0}" rx="{TILE_R}" '
        f'fill="{_hex(BG)}"/>\n'
        f"  {ell(BODY_BOX, BODY)}\n  {ell(LUNG_L, LUNG)}\n  {ell(LUNG_R, LUNG)}\n"
        f"  {ell(SPINE, BONE)}\n"
        f'  <rect x="{bx0}" y="{by0}" width="{bx1 - bx0}" height="{by1 - by0}" rx="5" '
        f'fill="{_hex(BAR)}"/>\n'
        "</svg>\n"
    )


def _hex(c) -> str:
    return "#{:02x}{:02x}{:02x}".format(*c[:3])


def raster() -> Image.Image:
    k = S / 256

    def sc(box):
        return tuple(v * k for v in box)

    im = Image.new("RGBA", (S, S), (0, 0, 0, 0))
    d = ImageDraw.Draw(im)
    d.rounded_rectangle(sc(TILE), radius=TILE_R * k, fill=BG)
    for box, fill in ((BODY_BOX, BODY), (LUNG_L, LUNG), (LUNG_R, LUNG), (SPINE, BONE)):
        d.ellipse(sc(box), fill=fill)
    d.rounded_rectangle(sc(BAR_BOX), radius=5 * k, fill=BAR)
    return im


def main() -> int:
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "medview.svg").write_text(svg(), encoding="utf-8")
    master = raster()
    master.resize((256, 256), Image.Resampling.LANCZOS).save(OUT / "medview.png")
    master.save(OUT / "medview.ico", sizes=[(s, s) for s in (16, 24, 32, 48, 64, 128, 256)])
    try:
        master.resize((512, 512), Image.Resampling.LANCZOS).save(OUT / "medview.icns")
    except (OSError, ValueError) as exc:  # ICNS writing needs a recent Pillow
        print(f"make_icon: no .icns ({exc})", file=sys.stderr)
    for p in sorted(OUT.glob("medview.*")):
        print(p.relative_to(ROOT), p.stat().st_size, "bytes")
    return 0


if __name__ == "__main__":
    sys.exit(main())
