"""The one decoder pool (medview.io.decoders), the scan's fallback when it breaks, and
the io package's import structure (no cycles, no private names across modules)."""

from __future__ import annotations

import ast
import importlib
import os
import types
from concurrent.futures import Future
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path

import numpy as np
import pytest
from pydicom.data import get_testdata_file

from medview.io import decoders, load_path, load_series, scan
from medview.io.dicom import decode_file

ROOT = Path(__file__).resolve().parents[2]
PKG = ROOT / "medview"


def tf(name: str) -> str:
    path = get_testdata_file(name)
    if path is None:
        pytest.skip(f"pydicom test file {name} not available")
    return str(path)


class BreakingPool:
    """Stands in for the process pool: runs the first ``ok`` submissions here, then every
    later future fails with BrokenProcessPool, as when a worker process is killed."""

    def __init__(self, ok: int) -> None:
        self.ok = ok
        self.submitted = 0
        self.shut_down = False

    def submit(self, fn, *args):
        fut: Future = Future()
        self.submitted += 1
        if self.submitted <= self.ok:
            fut.set_result(fn(*args))
        else:
            fut.set_exception(BrokenProcessPool("a worker process died"))
        return fut

    def shutdown(self, wait: bool = True, cancel_futures: bool = False) -> None:
        self.shut_down = True


@pytest.fixture()
def pool_state(fresh_pool):
    """Two workers, no pool started, not broken; all restored after the test (conftest)."""
    return fresh_pool


@pytest.fixture(scope="module")
def hundred_slices(tmp_path_factory) -> Path:
    """100 slices of one CT series (pydicom's CT_small, moved along z)."""
    import pydicom

    root = tmp_path_factory.mktemp("hundred")
    src = pydicom.dcmread(tf("CT_small.dcm"))
    for n in range(100):
        src.SOPInstanceUID = f"1.2.826.0.1.3680043.8.498.{n + 1}"
        src.InstanceNumber = n + 1
        src.ImagePositionPatient = [0.0, 0.0, 2.0 * n]
        src.save_as(root / f"{n:03d}.dcm")
    return root


@pytest.mark.parametrize("ok_chunks", [0, 1, 3])
def test_scan_resumes_after_the_pool_breaks(pool_state, hundred_slices, ok_chunks):
    pool = BreakingPool(ok_chunks)
    pool_state.setattr(decoders, "_pool", pool)
    res = scan(hundred_slices)
    assert pool.submitted >= 1, "the scan did not use the pool"
    expected = sorted(str(p) for p in hundred_slices.iterdir())
    got = [i.path for s in res.series for i in s.instances]
    assert len(got) == len(expected) == 100  # before the fix: 116 with ok_chunks=1
    assert sorted(got) == expected
    assert not res.errors
    assert len(res.series) == 1
    assert not any("share" in w for w in res.series[0].warnings), res.series[0].warnings
    # the broken pool is stopped and replaced by a fresh one (issue 18: crash isolation)
    assert pool.shut_down
    fresh = decoders.decoder_pool()
    assert fresh is not None and fresh is not pool


def test_scan_through_a_working_pool_matches_in_process(pool_state, hundred_slices):
    pool = BreakingPool(ok=10**6)
    pool_state.setattr(decoders, "_pool", pool)
    via_pool = scan(hundred_slices)
    assert pool.submitted > 1
    pool_state.setenv("MEDVIEW_DECODE_WORKERS", "0")
    here = scan(hundred_slices)
    assert [i.path for i in via_pool.series[0].instances] == [
        i.path for i in here.series[0].instances
    ]
    assert via_pool.series[0].spacing == here.series[0].spacing


def test_load_resumes_after_the_pool_breaks(pool_state, tmp_path):
    import pydicom

    src = pydicom.dcmread(tf("MR_small_RLE.dcm"))  # compressed: decoded on the pool
    for n in range(6):
        src.SOPInstanceUID = f"1.2.826.0.1.3680043.8.498.{n + 1}"
        src.ImagePositionPatient = [0.0, 0.0, 3.0 * n]
        src.save_as(tmp_path / f"{n}.dcm")
    series = scan(tmp_path).series[0]
    pool = BreakingPool(ok=2)
    pool_state.setattr(decoders, "_pool", pool)
    vol = load_series(series, processes=True)
    assert pool.submitted >= 3 and pool.shut_down
    ref, _ = decode_file(str(tmp_path / "0.dcm"))
    assert vol.shape[0] == 6
    for k in range(6):
        assert np.array_equal(vol.array[k], ref[0].astype(vol.array.dtype))
    assert not any("not decoded" in w for w in vol.warnings)


def test_decoder_pool_is_one_shared_pool(pool_state):
    pool_state.setenv("MEDVIEW_DECODE_WORKERS", "0")
    assert decoders.decoder_pool() is None
    pool_state.setenv("MEDVIEW_DECODE_WORKERS", "2")
    pool = decoders.decoder_pool()
    try:
        assert pool is not None and decoders.decoder_pool() is pool
        parent = os.nice(0)
        child = pool.submit(os.nice, 0).result(timeout=120)
        assert child == min(19, parent + decoders.NICE_INCREMENT)
        decoders.shutdown()
        again = decoders.decoder_pool()
        assert again is not None and again is not pool
    finally:
        decoders.shutdown()
    decoders.mark_broken()  # one break: replaced; two with no task finished: in-process
    decoders.mark_broken()
    assert decoders.decoder_pool() is None


# -- LUT sequences that cannot be used become warnings on the volume ----------------


def _corrupt_modality_lut(src: str, dst: Path, how: str) -> Path:
    import pydicom

    ds = pydicom.dcmread(src)
    item = ds.ModalityLUTSequence[0]
    if how == "short table":
        item.LUTData = item.LUTData[:10]
    elif how == "no table":
        del item.LUTData
    else:  # descriptor with one value instead of three
        item.LUTDescriptor = [4096]
    ds.save_as(dst)
    return dst


@pytest.mark.parametrize("how", ["short table", "no table", "bad descriptor"])
def test_corrupt_modality_lut_sequence_is_a_warning(tmp_path, how):
    path = _corrupt_modality_lut(tf("mlut_18.dcm"), tmp_path / "mlut.dcm", how)
    vol = load_path(path)
    found = [w for w in vol.warnings if "Modality LUT Sequence" in w]
    assert len(found) == 1 and "stored values" in found[0], vol.warnings
    assert "\n" not in found[0]
    # the stored values are still shown
    import pydicom

    stored = pydicom.dcmread(path).pixel_array
    assert np.array_equal(vol.array[0].astype(np.int64), stored.astype(np.int64))


def test_intact_modality_lut_sequence_gives_no_warning():
    vol = load_path(tf("mlut_18.dcm"))
    assert not any("LUT" in w for w in vol.warnings), vol.warnings


def test_corrupt_voi_lut_sequence_is_a_warning(tmp_path):
    import pydicom

    ds = pydicom.dcmread(tf("vlut_04.dcm"))
    del ds.VOILUTSequence[0].LUTDescriptor
    ds.save_as(tmp_path / "vlut.dcm")
    vol = load_path(tmp_path / "vlut.dcm")
    assert vol.voi_lut is None
    assert any(w.startswith("VOI LUT Sequence not applied") for w in vol.warnings), vol.warnings
    assert load_path(tf("vlut_04.dcm")).voi_lut is not None


def test_modality_values_match_the_display_pipeline(tmp_path):
    from medview.imaging.display import apply_modality_lut

    vol = load_path(tf("MR_small.dcm"))
    vol.rescale_slope, vol.rescale_intercept = 2.5, -1024.0
    got = vol.modality_values(0)
    assert got.dtype == np.float32
    assert np.array_equal(got, apply_modality_lut(vol.array[0], 2.5, -1024.0))


# -- import structure --------------------------------------------------------------


def test_scanning_is_a_module_and_scan_the_function():
    mod = importlib.import_module("medview.io.scanning")
    assert isinstance(mod, types.ModuleType)
    import medview.io

    assert medview.io.scan is mod.scan and callable(medview.io.scan)
    assert isinstance(importlib.import_module("medview.io.decoders"), types.ModuleType)


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _edges(path: Path) -> set[str]:
    """Modules ``path`` imports anywhere in its body (lazy imports included)."""
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            for a in node.names:  # `from pkg import submodule` depends on the submodule only
                sub = f"{node.module}.{a.name}"
                sub_path = ROOT / Path(*sub.split("."))
                is_module = sub_path.with_suffix(".py").exists() or sub_path.is_dir()
                out.add(sub if is_module else node.module)
    return {m for m in out if m.startswith("medview")}


def test_no_import_cycles_in_io_and_display():
    files = sorted((PKG / "io").glob("*.py")) + [PKG / "imaging" / "display.py"]
    graph = {_module_name(p): _edges(p) for p in files}
    graph = {m: {d for d in deps if d in graph and d != m} for m, deps in graph.items()}
    # the package __init__ re-exports its modules; a module importing the package
    # from inside would be a cycle through it, so keep it in the graph
    cycles = []

    def visit(node: str, stack: list[str]) -> None:
        if node in stack:
            cycles.append(stack[stack.index(node) :] + [node])
            return
        for dep in sorted(graph.get(node, ())):
            visit(dep, stack + [node])

    for start in graph:
        visit(start, [])
    assert not cycles, " ; ".join(" -> ".join(c) for c in cycles)


def test_no_private_names_across_modules():
    """Nothing reaches into another medview module's private names (``from x import _y``
    or ``module._y`` on an imported medview module)."""
    offenders = []
    for py in sorted(PKG.rglob("*.py")):
        tree = ast.parse(py.read_text(encoding="utf-8"))
        aliases: set[str] = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("medview"):
                for a in node.names:
                    if a.name.startswith("_") and not a.name.startswith("__"):
                        offenders.append(
                            f"{py.relative_to(ROOT)}: from {node.module} import {a.name}"
                        )
                    aliases.add(a.asname or a.name)
            elif isinstance(node, ast.Import):
                for a in node.names:
                    if a.name.startswith("medview") and a.asname:
                        aliases.add(a.asname)
        for node in ast.walk(tree):
            if (
                isinstance(node, ast.Attribute)
                and isinstance(node.value, ast.Name)
                and node.value.id in aliases
                and node.attr.startswith("_")
                and not node.attr.startswith("__")
            ):
                offenders.append(f"{py.relative_to(ROOT)}: {node.value.id}.{node.attr}")
    io_offenders = [o for o in offenders if o.startswith("medview/io/")]
    assert not io_offenders, io_offenders
    pool_offenders = [o for o in offenders if "pool" in o or "decoder" in o]
    assert not pool_offenders, pool_offenders


def test_modality_lut_output_is_not_wrapped():
    """mlut_18: signed 12-bit stored values through a 16-bit Modality LUT Sequence
    (outputs up to 65535) must keep the LUT's values, not wrap them into int16."""
    import pydicom
    from pydicom.pixels import apply_modality_lut

    path = tf("mlut_18.dcm")
    ds = pydicom.dcmread(path)
    expected = np.asarray(apply_modality_lut(ds.pixel_array, ds)).astype(np.int64)
    assert expected.max() > 32767  # the case that wrapped
    vol = load_path(path)
    assert np.array_equal(vol.array[0].astype(np.int64), expected)
    assert np.array_equal(vol.modality_values(0), expected.astype(np.float32))


def test_thumbnails_of_compressed_series_render_in_decoder_processes(monkeypatch, ct_dir):
    """A JPEG 2000 thumbnail decoded on a thread would hold the GIL (GUI stall)."""
    from medview.imaging import thumbnails as thumbs
    from medview.io import decoders, scan
    from medview.tasks import TaskState

    series = scan(str(ct_dir)).series[0]
    expected = thumbs.render_thumbnail(series)  # in this process
    monkeypatch.setenv("MEDVIEW_DECODE_WORKERS", "2")
    got = []
    try:
        assert decoders.decoder_pool() is not None
        n = thumbs.make_thumbnails([("k", series)], TaskState(on_partial=got.append))
    finally:
        decoders.shutdown()
    assert n == 1 and got[0][0] == "k"
    assert got[0][1].shape == expected.shape and max(expected.shape) <= thumbs.SIZE
    assert np.array_equal(got[0][1], expected)
