"""Which study of several opened at once is hung (medview.viewer.protocols.main_study):
the real CT opened with the real radiographs is read as the CT, whatever the order."""

from __future__ import annotations

from types import SimpleNamespace

from medview.viewer import protocols as HP


def test_the_ct_is_hung_when_opened_with_radiographs(ct_dir, xray_dir):
    from medview.io import scan

    crs = [str(p) for p in sorted(xray_dir.glob("cr_*.dcm"))]
    for paths in ([str(ct_dir), *crs], [*crs, str(ct_dir)]):
        series = scan(paths).series
        study, others = HP.main_study(series)
        assert [s.modality for s in study] == ["CT"] and study[0].slices == 20
        assert {s.modality for s in others} == {"CR"} and len(study) + len(others) == len(series)
        proto = HP.choose(HP.StudyFacts.of(study))
        assert proto is not None and proto.name == "CT"


def test_one_study_keeps_every_series_and_ties_go_to_the_first_scanned():
    def s(study: str, slices: int) -> SimpleNamespace:
        return SimpleNamespace(study_uid=study, slices=slices)

    one = [s("a", 3), s("a", 40), s("a", 1)]
    assert HP.main_study(one) == (one, [])
    tie = [s("x", 1), s("y", 1), s("x", 1)]
    assert HP.main_study(tie) == ([tie[0], tie[2]], [tie[1]])
    assert HP.main_study([]) == ([], [])
