"""The self-test's offscreen GUI check: the only self-test module that imports the GUI
(lazily, inside the check), like the other entry points."""

from __future__ import annotations

from medview.commands.selftest.base import GUI_TIMEOUT_S, CheckFailed, Context


def check_gui(ctx: Context) -> str:
    """Build the main window offscreen, open the sample CT, render (medview.ui.selftest_gui)."""
    try:
        from medview.ui.selftest_gui import GuiCheckFailed, gui_smoke_check
    except ImportError as exc:
        raise CheckFailed(f"PySide6 missing ({exc})") from None
    try:
        return gui_smoke_check(ctx.workdir, GUI_TIMEOUT_S)
    except GuiCheckFailed as exc:
        raise CheckFailed(str(exc)) from None
