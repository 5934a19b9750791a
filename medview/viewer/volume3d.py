"""3D volume rendering of a CT or MR volume with VTK, offscreen, to an RGB array (Qt-free).

:class:`VolumeRenderer` keeps one VTK pipeline per volume: the stored int16 array is
handed to VTK without a float copy (every ``step``-th row and column, at most every 4th,
then every ``zstep``-th slice, when the volume has more than :data:`MAX_VOXELS` voxels,
so rotating stays interactive), placed in patient
space with its origin, spacing and direction. Transfer-function presets
(:data:`PRESETS`: bone, lung, soft tissue, angio) are defined in Hounsfield units and
converted to stored values with the rescale slope and intercept; for volumes that are
not CT they are spread over the volume's automatic window. A clipping box (fractions
of the volume along its three axes), rotation (azimuth about the patient's head-foot
axis, elevation) and zoom are :class:`View3D` fields.

``vtkSmartVolumeMapper`` ray casts on the GPU through OpenGL when the OpenGL renderer
is a real GPU, and on the CPU (VTK's multi-threaded fixed-point ray caster) when it is
a software rasteriser such as Mesa's llvmpipe (measured 3-10x faster there) or when
``mode="cpu"``; :attr:`VolumeRenderer.backend` says which ran. The render window is offscreen (EGL or
OSMesa when there is no display), so the same code runs headless, in tests and under
a GUI. VTK's OpenGL context belongs to one thread: every VTK call runs on the
renderer's own single worker thread, and :meth:`VolumeRenderer.render` may be called
from any thread (a GUI worker). VTK is imported on first use only.
"""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field, replace
from typing import TYPE_CHECKING, Any

import numpy as np

from medview.tasks import TaskState, ensure_state

if TYPE_CHECKING:
    from medview.io.model import Volume

#: most voxels handed to VTK: larger volumes are subsampled in-plane by an integer step
MAX_VOXELS = 6_000_000
#: OpenGL renderers that are software rasterisers: VTK's CPU ray caster is faster there
SOFTWARE_GL = ("llvmpipe", "softpipe", "swrast", "SWR", "Software Rasterizer")

# (value in HU, (r, g, b), opacity) control points of each preset
PRESETS: dict[str, tuple[tuple[float, tuple[float, float, float], float], ...]] = {
    "bone": (
        (200.0, (0.55, 0.25, 0.15), 0.0),
        (400.0, (0.9, 0.7, 0.5), 0.25),
        (800.0, (1.0, 0.95, 0.85), 0.8),
        (1500.0, (1.0, 1.0, 1.0), 0.95),
    ),
    "lung": (
        (-1000.0, (0.0, 0.0, 0.0), 0.0),
        (-900.0, (0.55, 0.45, 0.4), 0.0),
        (-650.0, (0.85, 0.7, 0.65), 0.12),
        (-350.0, (0.95, 0.85, 0.8), 0.0),
        (200.0, (1.0, 0.9, 0.85), 0.0),
        (600.0, (1.0, 1.0, 1.0), 0.4),
    ),
    "soft tissue": (
        (-150.0, (0.0, 0.0, 0.0), 0.0),
        (-50.0, (0.75, 0.45, 0.3), 0.02),
        (40.0, (0.85, 0.4, 0.35), 0.12),
        (200.0, (1.0, 0.85, 0.7), 0.35),
        (1000.0, (1.0, 1.0, 0.95), 0.7),
    ),
    "angio": (
        (120.0, (0.5, 0.0, 0.0), 0.0),
        (200.0, (0.85, 0.15, 0.1), 0.25),
        (350.0, (1.0, 0.6, 0.4), 0.6),
        (1200.0, (1.0, 1.0, 0.95), 0.85),
    ),
}
#: the HU span each preset is spread over for volumes without Hounsfield units
_PRESET_SPAN = {name: (pts[0][0], pts[-1][0]) for name, pts in PRESETS.items()}


@dataclass
class View3D:
    """What the 3D view shows: preset, camera and clipping box."""

    preset: str = "bone"
    azimuth: float = 0.0  # degrees about the patient's head-foot axis (0: from the front)
    elevation: float = 0.0  # degrees up (+) / down (-)
    zoom: float = 1.0  # 1: the whole volume fits
    clip: tuple[float, float, float, float, float, float] = (0.0, 1.0, 0.0, 1.0, 0.0, 1.0)
    size: tuple[int, int] = (512, 512)  # (width, height) in pixels
    mode: str = "auto"  # "auto": GPU ray casting where available, else CPU; "cpu"
    extra: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        """Plain data (the screenshot JSON's ``view3d``)."""
        d = asdict(self)
        d.pop("extra", None)
        d["clip"], d["size"] = list(self.clip), list(self.size)
        return d


def vtk_available() -> bool:
    """True when VTK can be imported (the ``vtk`` package)."""
    try:
        import vtkmodules.vtkRenderingCore  # noqa: F401
    except ImportError:
        return False
    return True


def transfer_points(
    volume: Volume, preset: str
) -> list[tuple[float, tuple[float, float, float], float]]:
    """``preset``'s control points in ``volume``'s stored values (see the module docstring)."""
    from medview.imaging.display import volume_auto_window

    pts = PRESETS[preset]
    if volume.unit == "HU":
        values = [p[0] for p in pts]
    else:  # spread the preset's HU span over the volume's automatic window
        c, w = volume_auto_window(volume) or (0.0, 1.0)
        lo, hi = _PRESET_SPAN[preset]
        values = [c - w / 2 + (p[0] - lo) / (hi - lo) * w for p in pts]
    slope = volume.rescale_slope or 1.0
    stored = [(v - volume.rescale_intercept) / slope for v in values]
    return [(s, p[1], p[2]) for s, p in zip(stored, pts, strict=True)]


class _Pipeline:
    """The VTK objects of one volume (made and used on the renderer's thread only)."""

    def __init__(self, volume: Volume, mode: str) -> None:
        import vtkmodules.vtkRenderingOpenGL2  # noqa: F401  (registers the OpenGL factories)
        from vtkmodules.vtkRenderingCore import (
            vtkRenderer,
            vtkRenderWindow,
            vtkVolume,
            vtkVolumeProperty,
        )
        from vtkmodules.vtkRenderingVolumeOpenGL2 import vtkSmartVolumeMapper

        z, y, x = volume.shape
        factor = x * y * z / MAX_VOXELS
        step = min(4, max(1, int(np.ceil(np.sqrt(factor)))))  # in-plane, at most every 4th
        zstep = max(1, int(np.ceil(factor / (step * step))))  # then slices
        arr = volume.array[::zstep, ::step, ::step]
        # int16 handed over without a float copy (a compact copy only when subsampled)
        self.array = np.ascontiguousarray(arr)
        self.volume_info = volume
        self.step, self.zstep = step, zstep
        self.image = self._image_data(self.array, (step, step, zstep))
        self.draft_array: np.ndarray | None = None
        self.draft_image: Any = None
        self.mapper = vtkSmartVolumeMapper()
        self.mapper.SetInputData(self.image)
        self.input = self.image
        self.prop = vtkVolumeProperty()
        self.prop.SetInterpolationTypeToLinear()
        self.prop.ShadeOn()
        self.prop.SetAmbient(0.45)  # brighter than VTK's 0.1: shaded CT reads dark otherwise
        self.prop.SetDiffuse(0.75)
        self.prop.SetSpecular(0.15)
        self.actor = vtkVolume()
        self.actor.SetMapper(self.mapper)
        self.actor.SetProperty(self.prop)
        self.renderer = vtkRenderer()
        self.renderer.SetBackground(0.0, 0.0, 0.0)
        self.renderer.AddVolume(self.actor)
        self.window = vtkRenderWindow()
        self.window.SetOffScreenRendering(1)
        self.window.SetSize(16, 16)
        self.window.Render()  # an empty frame: the OpenGL context, to ask what renders
        gl = str(self.window.ReportCapabilities() or "")
        software = any(name.lower() in gl.lower() for name in SOFTWARE_GL)
        self.backend = "cpu" if mode == "cpu" or software else "gpu"
        if self.backend == "cpu":
            self.mapper.SetRequestedRenderModeToRayCast()
        else:
            self.mapper.SetRequestedRenderModeToGPU()
        self.window.AddRenderer(self.renderer)
        self.preset = ""
        self.bounds = self.image.GetBounds()

    def _image_data(self, array: np.ndarray, steps: tuple[int, int, int]) -> Any:
        """``array`` (z, y, x int16, C-contiguous, kept alive by the caller) as vtkImageData
        placed in patient space; ``steps``: its (x, y, z) subsampling of the volume."""
        from vtkmodules.util.numpy_support import numpy_to_vtk
        from vtkmodules.vtkCommonDataModel import vtkImageData

        volume = self.volume_info
        img = vtkImageData()
        img.SetDimensions(array.shape[2], array.shape[1], array.shape[0])
        sx, sy, sz = volume.spacing
        img.SetSpacing(float(sx) * steps[0], float(sy) * steps[1], float(sz) * steps[2])
        img.SetOrigin(*(float(v) for v in volume.origin))
        img.SetDirectionMatrix(*(float(v) for v in np.asarray(volume.direction, float).ravel()))
        img.GetPointData().SetScalars(numpy_to_vtk(array.ravel(), deep=False))
        return img

    def set_draft(self, draft: bool) -> None:
        """Ray cast the volume at half its resolution on each axis (the first frame, see
        :meth:`VolumeRenderer.render_progressive`) or at the full one. The mapper keeps
        one input's gradients: switching costs a recomputation, so drafts are rare."""
        draft = draft and min(self.array.shape) >= 8  # a thin volume: no coarser copy
        if draft and self.draft_image is None:
            self.draft_array = np.ascontiguousarray(self.array[::2, ::2, ::2])
            steps = (self.step * 2, self.step * 2, self.zstep * 2)
            self.draft_image = self._image_data(self.draft_array, steps)
        image = self.draft_image if draft else self.image
        if image is not self.input:
            self.mapper.SetInputData(image)
            self.input = image

    def set_preset(self, name: str) -> None:
        from vtkmodules.vtkCommonDataModel import vtkPiecewiseFunction
        from vtkmodules.vtkRenderingCore import vtkColorTransferFunction

        if name == self.preset:
            return
        colour, opacity = vtkColorTransferFunction(), vtkPiecewiseFunction()
        for value, rgb, alpha in transfer_points(self.volume_info, name):
            colour.AddRGBPoint(value, *rgb)
            opacity.AddPoint(value, alpha)
        self.prop.SetColor(colour)
        self.prop.SetScalarOpacity(opacity)
        self.preset = name

    def set_clip(self, clip: tuple[float, ...]) -> None:
        from vtkmodules.vtkCommonDataModel import vtkPlane, vtkPlanes

        x0, x1, y0, y1, z0, z1 = self.image.GetExtent()
        if tuple(clip) == (0.0, 1.0, 0.0, 1.0, 0.0, 1.0):
            self.mapper.RemoveAllClippingPlanes()
            return
        planes = vtkPlanes()
        self.mapper.RemoveAllClippingPlanes()
        for axis, (lo, hi) in enumerate(zip(clip[0::2], clip[1::2], strict=True)):
            n = (x1, y1, z1)[axis]
            for frac, sign in ((lo, 1.0), (hi, -1.0)):
                ijk = [0.0, 0.0, 0.0]
                ijk[axis] = frac * n
                p = [0.0, 0.0, 0.0]
                self.image.TransformContinuousIndexToPhysicalPoint(ijk, p)
                d = np.asarray(self.volume_info.direction, float)[:, axis] * sign
                plane = vtkPlane()
                plane.SetOrigin(*p)
                plane.SetNormal(*d)
                self.mapper.AddClippingPlane(plane)
        del planes

    def set_camera(self, view: View3D) -> None:
        cam = self.renderer.GetActiveCamera()
        b = self.bounds
        centre = ((b[0] + b[1]) / 2, (b[2] + b[3]) / 2, (b[4] + b[5]) / 2)
        cam.SetFocalPoint(*centre)
        cam.SetPosition(centre[0], centre[1] - 1000.0, centre[2])  # from the front (-y: anterior)
        cam.SetViewUp(0.0, 0.0, 1.0)  # head up
        self.renderer.ResetCamera()
        cam.Azimuth(view.azimuth)
        cam.Elevation(view.elevation)
        cam.OrthogonalizeViewUp()
        cam.Zoom(max(0.05, view.zoom))
        self.renderer.ResetCameraClippingRange()

    def render(self, view: View3D) -> np.ndarray:
        from vtkmodules.util.numpy_support import vtk_to_numpy
        from vtkmodules.vtkRenderingCore import vtkWindowToImageFilter

        self.set_preset(view.preset)
        self.set_clip(view.clip)
        self.set_camera(view)
        w, h = (max(16, int(v)) for v in view.size)
        self.window.SetSize(w, h)
        self.window.Render()
        grab = vtkWindowToImageFilter()
        grab.SetInput(self.window)
        grab.ReadFrontBufferOff()
        grab.Update()
        out = grab.GetOutput()
        rgb = vtk_to_numpy(out.GetPointData().GetScalars())
        ow, oh, _ = out.GetDimensions()
        img = rgb.reshape(oh, ow, -1)[::-1, :, :3]  # VTK's rows run bottom-up
        return np.ascontiguousarray(img)

    def close(self) -> None:
        self.window.Finalize()


class VolumeRenderer:
    """Renders one volume in 3D; every VTK call runs on this object's own thread."""

    def __init__(self, volume: Volume) -> None:
        if volume.is_color:
            raise ValueError("3D rendering needs a greyscale volume, not colour")
        if volume.shape[0] < 2:
            raise ValueError("3D rendering needs a volume: this series has a single image")
        self.volume = volume
        self._exec = ThreadPoolExecutor(max_workers=1, thread_name_prefix="medview-vtk")
        self._pipeline: _Pipeline | None = None
        self._lock = threading.Lock()
        self._generation = 0
        self.first_frame_s: float | None = None
        self.backend = ""  # "gpu" or "cpu" once the first frame is made

    def render(
        self, view: View3D, state: TaskState | None = None, draft: bool = False
    ) -> np.ndarray | None:
        """The volume seen as ``view``: uint8 (height, width, 3). None when a newer
        request arrived before this one started (rotating queues many). ``draft``: the
        volume at half resolution in a half-size frame (the quick first frame)."""
        with self._lock:
            self._generation += 1
            mine = self._generation
        future = self._exec.submit(self._render, view, mine, draft)
        return future.result()

    def render_progressive(self, view: View3D, state: TaskState | None = None) -> np.ndarray | None:
        """A worker function for the first frame: a draft first (handed to
        ``state.partial``, see :meth:`render`), then the full frame (returned)."""
        state = ensure_state(state)
        quick = self.render(view, draft=True)
        if quick is not None:
            state.partial(quick)
        state.check()
        return self.render(view)

    def _render(self, view: View3D, generation: int, draft: bool = False) -> np.ndarray | None:
        if generation != self._generation:
            return None
        return self._frame(view, draft)

    def _frame(self, view: View3D, draft: bool = False) -> np.ndarray:
        """One frame, on the VTK thread (the pipeline is built with the first)."""
        import time

        t0 = time.perf_counter()
        if self._pipeline is None:
            self._pipeline = _Pipeline(self.volume, view.mode)
            self.backend = self._pipeline.backend
        self._pipeline.set_draft(draft)
        if draft:
            view = replace(view, size=(max(16, view.size[0] // 2), max(16, view.size[1] // 2)))
        out = self._pipeline.render(view)
        if self.first_frame_s is None:
            self.first_frame_s = time.perf_counter() - t0
        return out

    def render_all(self, views: list[View3D], state: TaskState | None = None) -> list[np.ndarray]:
        """Every view in order, as one job on the VTK thread: an interactive request made
        meanwhile waits for it and drops none of its frames (a rotation export)."""
        state = ensure_state(state)

        def job() -> list[np.ndarray]:
            out = []
            for n, view in enumerate(views):
                state.progress(n / max(1, len(views)), f"3D frame {n + 1}/{len(views)}")
                out.append(self._frame(view))
            return out

        return self._exec.submit(job).result()

    def close(self, state: TaskState | None = None) -> None:
        """Release the VTK objects and stop the thread (a worker function too)."""

        def _drop() -> None:
            if self._pipeline is not None:
                self._pipeline.close()
                self._pipeline = None

        try:
            self._exec.submit(_drop).result()
        finally:
            self._exec.shutdown(wait=True)


def rotation_views(view: View3D, frames: int = 36, degrees: float = 360.0) -> list[View3D]:
    """``frames`` views turning by ``degrees`` about the head-foot axis from ``view``'s
    azimuth, evenly (a full turn does not repeat its first frame, so it loops smoothly);
    preset, elevation, zoom, clipping box and size as in ``view``."""
    if not 1 <= frames <= 3600:
        raise ValueError(f"a rotation has 1 to 3600 frames, not {frames}")
    step = degrees / frames
    return [replace(view, azimuth=view.azimuth + n * step) for n in range(frames)]


def render_volume(volume: Volume, view: View3D | None = None) -> np.ndarray:
    """One frame of ``volume`` (convenience: a renderer made and closed around it)."""
    renderer = VolumeRenderer(volume)
    try:
        out = renderer.render(view or View3D())
    finally:
        renderer.close()
    assert out is not None
    return out


__all__ = [
    "MAX_VOXELS",
    "PRESETS",
    "View3D",
    "VolumeRenderer",
    "render_volume",
    "rotation_views",
    "transfer_points",
    "vtk_available",
]
