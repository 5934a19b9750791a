"""Results out of medview (Qt-free): anonymised export (PS3.15 Annex E), the audit log,
DICOM SR measurement reports (TID 1500, via highdicom) and PDF reports.

Modules: :mod:`~medview.results.deid` (the profile), :mod:`~medview.results.export`,
:mod:`~medview.results.audit`, :mod:`~medview.results.sr`, :mod:`~medview.results.report`.
Heavy libraries (highdicom, reportlab) are imported inside the functions that need them.
"""
