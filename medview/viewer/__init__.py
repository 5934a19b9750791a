"""The viewer's Qt-free core: what the workstation window decides, testable without Qt.

* :mod:`medview.viewer.session` - the worker functions the window runs (scan, load,
  database queries, import, warm-up), database series as :class:`~medview.io.SeriesInfo`,
  the :class:`~medview.viewer.session.VolumeCache` (LRU bounded in bytes) and the
  :class:`~medview.viewer.session.MeasurementStore` (measurements per SOPInstanceUID);
* :mod:`medview.viewer.mpr` - the MPR synchronisation rules (which viewport gets
  which slice, crosshair and window).

Nothing here imports PySide6; :mod:`medview.ui` wires these to widgets.
"""
