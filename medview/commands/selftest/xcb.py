"""The self-test's check of Qt's xcb platform plugin (what a real window needs on Linux),
found and read without importing Qt."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from medview.commands.selftest.base import CheckFailed, Context

# -- the real window's platform ---------------------------------------------------------

# Shared libraries of Qt's xcb platform plugin (libqxcb.so, libQt6XcbQpa.so.6) and of Qt
# itself, by Debian/Ubuntu package. Found with ``readelf -d`` on the PySide6 wheel.
DEBIAN_PACKAGES: dict[str, str] = {
    "libxcb.so.1": "libxcb1",
    "libxcb-cursor.so.0": "libxcb-cursor0",
    "libxcb-icccm.so.4": "libxcb-icccm4",
    "libxcb-image.so.0": "libxcb-image0",
    "libxcb-keysyms.so.1": "libxcb-keysyms1",
    "libxcb-randr.so.0": "libxcb-randr0",
    "libxcb-render.so.0": "libxcb-render0",
    "libxcb-render-util.so.0": "libxcb-render-util0",
    "libxcb-shape.so.0": "libxcb-shape0",
    "libxcb-shm.so.0": "libxcb-shm0",
    "libxcb-sync.so.1": "libxcb-sync1",
    "libxcb-util.so.1": "libxcb-util1",
    "libxcb-xfixes.so.0": "libxcb-xfixes0",
    "libxcb-xkb.so.1": "libxcb-xkb1",
    "libX11.so.6": "libx11-6",
    "libX11-xcb.so.1": "libx11-xcb1",
    "libxkbcommon.so.0": "libxkbcommon0",
    "libxkbcommon-x11.so.0": "libxkbcommon-x11-0",
    "libGL.so.1": "libgl1",
    "libEGL.so.1": "libegl1",
    "libGLX.so.0": "libglx0",
    "libGLdispatch.so.0": "libglvnd0",
    "libOpenGL.so.0": "libopengl0",
    "libfontconfig.so.1": "libfontconfig1",
    "libfreetype.so.6": "libfreetype6",
    "libglib-2.0.so.0": "libglib2.0-0",
    "libgthread-2.0.so.0": "libglib2.0-0",
    "libdbus-1.so.3": "libdbus-1-3",
    "libXau.so.6": "libxau6",
    "libXdmcp.so.6": "libxdmcp6",
    "libpng16.so.16": "libpng16-16",
    "libexpat.so.1": "libexpat1",
    "libz.so.1": "zlib1g",
    "libzstd.so.1": "libzstd1",
    "libstdc++.so.6": "libstdc++6",
    "libgcc_s.so.1": "libgcc-s1",
    "libc.so.6": "libc6",
    "libm.so.6": "libc6",
}
# Packages every Debian/Ubuntu system has (not in the README's apt line).
BASE_PACKAGES = frozenset({"libc6", "libgcc-s1", "libstdc++6", "zlib1g", "libzstd1"})
XCB_PLUGIN = "libqxcb.so"


def xcb_plugin_path() -> Path | None:
    """Qt's xcb platform plugin as Qt will load it, or None when PySide6 lacks it.

    ``QT_QPA_PLATFORM_PLUGIN_PATH`` (Qt's own override) first, then the PySide6 package,
    located without importing Qt (the core stays Qt-free).
    """
    override = os.environ.get("QT_QPA_PLATFORM_PLUGIN_PATH")
    folders = [Path(p) for p in override.split(os.pathsep) if p] if override else []
    import importlib.util

    try:
        spec = importlib.util.find_spec("PySide6")
    except (ImportError, ValueError):
        spec = None
    roots = [Path(loc) for loc in (spec.submodule_search_locations or [])] if spec else []
    bundle = getattr(sys, "_MEIPASS", None)  # the frozen app (PyInstaller) keeps it here
    if bundle:
        roots.append(Path(bundle) / "PySide6")
    for root in roots:
        folders.append(root / "Qt" / "plugins" / "platforms")
    for folder in folders:
        if (folder / XCB_PLUGIN).is_file():
            return folder / XCB_PLUGIN
    return None


def needed_libraries(path: Path) -> list[str]:
    """The DT_NEEDED entries of a 64-bit little-endian ELF shared library, in order."""
    import struct

    data = path.read_bytes()
    if data[:4] != b"\x7fELF" or data[4] != 2 or data[5] != 1:
        raise CheckFailed(f"{path}: not a 64-bit little-endian ELF library")
    phoff, phentsize, phnum = (
        struct.unpack_from("<Q", data, 0x20)[0],
        *struct.unpack_from("<HH", data, 0x36),
    )
    loads, dynamic = [], None
    for i in range(phnum):
        p_type, _flags, p_offset, p_vaddr, _pa, p_filesz = struct.unpack_from(
            "<IIQQQQ", data, phoff + i * phentsize
        )
        if p_type == 1:  # PT_LOAD: to map addresses back to file offsets
            loads.append((p_vaddr, p_offset, p_filesz))
        elif p_type == 2:  # PT_DYNAMIC
            dynamic = (p_offset, p_filesz)
    if dynamic is None:
        return []

    def offset(vaddr: int) -> int:
        for start, off, size in loads:
            if start <= vaddr < start + size:
                return vaddr - start + off
        raise CheckFailed(f"{path}: malformed ELF dynamic section")

    strtab, needed = 0, []
    for k in range(dynamic[0], dynamic[0] + dynamic[1], 16):
        tag, val = struct.unpack_from("<qQ", data, k)
        if tag == 0:
            break
        if tag == 5:  # DT_STRTAB
            strtab = offset(val)
        elif tag == 1:  # DT_NEEDED
            needed.append(val)
    return [data[strtab + n : data.index(b"\0", strtab + n)].decode() for n in needed]


def missing_libraries(ldd_output: str) -> list[str]:
    """Library names ``ldd`` printed as ``NAME => not found`` (each once, in order)."""
    missing: list[str] = []
    for line in ldd_output.splitlines():
        name, sep, where = line.strip().partition(" => ")
        if sep and where.strip() == "not found" and name not in missing:
            missing.append(name)
    return missing


def xcb_fix_message(missing: list[str]) -> str:
    """One line: what is missing and the apt command that installs it."""
    packages: list[str] = []
    for name in missing:
        pkg = DEBIAN_PACKAGES.get(name, f"<package providing {name}>")
        if pkg not in packages:
            packages.append(pkg)
    return (
        f"Qt xcb platform: {', '.join(missing)} missing, a window cannot open on X11: "
        f"sudo apt-get install {' '.join(packages)} (see README, Set-up on a fresh machine)"
    )


def check_xcb_platform(ctx: Context | None) -> str:
    """Every shared library of Qt's xcb plugin resolves (what ``medview`` needs on Linux).

    The offscreen GUI check cannot see this: without e.g. ``libxcb-icccm.so.4`` Qt
    aborts the process (SIGABRT) when it opens a real window.
    """
    if not sys.platform.startswith("linux"):
        return f"skipped: {sys.platform} does not use the xcb platform"
    plugin = xcb_plugin_path()
    if plugin is None:
        raise CheckFailed(f"Qt xcb platform: {XCB_PLUGIN} not found in the PySide6 install")
    import shutil
    import subprocess

    ldd = shutil.which("ldd")
    if ldd is None:  # no ldd: ask the dynamic loader itself (names only the first missing)
        import ctypes

        try:
            ctypes.CDLL(str(plugin))
        except OSError as exc:
            name = str(exc).split(":")[0].strip()
            raise CheckFailed(xcb_fix_message([name or str(exc)])) from None
        return f"{plugin.name} loads (ldd not available to list its libraries)"
    p = subprocess.run([ldd, str(plugin)], capture_output=True, text=True, timeout=60)
    if p.returncode != 0 and "=>" not in p.stdout:
        raise CheckFailed(f"{plugin}: ldd failed ({(p.stderr or p.stdout).strip()[:200]})")
    missing = missing_libraries(p.stdout)
    if missing:
        raise CheckFailed(xcb_fix_message(missing))
    count = sum(1 for line in p.stdout.splitlines() if " => /" in line)
    return f"{plugin.name}: all {count} shared libraries resolve"
