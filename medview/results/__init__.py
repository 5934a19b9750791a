"""Results out of medview (Qt-free): anonymised export (PS3.15 Annex E), the audit log,
DICOM SR measurement reports (TID 1500, via highdicom), heat maps as Secondary Captures and
PDF reports.

Modules: :mod:`~medview.results.deid` (the profile, its table in ``annex_e_table.tsv``),
:mod:`~medview.results.export` (with :mod:`~medview.results.splice`),
:mod:`~medview.results.audit`, :mod:`~medview.results.sr`, :mod:`~medview.results.sc`,
:mod:`~medview.results.sr_analysis` (``analyze --sr-out``), :mod:`~medview.results.report`.
Heavy libraries (highdicom, reportlab) are imported inside the functions that need them.
"""
