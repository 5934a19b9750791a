"""Studies of one patient for the PACS-priors tests (tests/core/test_remote_priors.py,
tests/ui/test_remote_priors_gui.py): the real CT of ../shared/data written again with
pydicom under a new patient, Study/Series/SOP Instance UIDs and date (pixel data
untouched), and a fresh Orthanc of their own (tests/helpers/net_fixtures.py's server),
so the other networking tests' Orthanc keeps its contents.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

pydicom = pytest.importorskip("pydicom")

PID = "MVPRIOR01"
NAME = "PRIOR^TEST"
OTHER_PID = "MVPRIOR02"
CURRENT_DATE = "20240610"  # the study in view
PRIOR_DATE = "20230115"  # on the PACS only
LOCAL_PRIOR_DATE = "20220301"  # on the PACS and already local
LATER_DATE = "20250101"  # after the study in view: not a prior


def write_study(
    src: Path,
    dest: Path,
    tag: str,
    date: str,
    pid: str = PID,
    name: str = NAME,
    description: str = "",
    every: int = 1,
) -> str:
    """Every ``every``-th image of the series in ``src`` as a new study (UIDs derived from
    ``tag``) of patient ``pid``/``name`` dated ``date``, in ``dest``; its Study UID."""
    from pydicom.uid import generate_uid

    dest.mkdir(parents=True, exist_ok=True)
    study_uid = generate_uid(entropy_srcs=[tag, "study"])
    series_uid = generate_uid(entropy_srcs=[tag, "series"])
    for f in sorted(src.glob("*.dcm"))[::every]:
        ds = pydicom.dcmread(f)
        ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID
        ds.SOPInstanceUID = generate_uid(entropy_srcs=[tag, f.name])
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        ds.StudyInstanceUID, ds.SeriesInstanceUID = study_uid, series_uid
        ds.PatientID, ds.PatientName = pid, name
        ds.StudyDate = ds.SeriesDate = date
        ds.StudyDescription = description or f"CT {tag}"
        ds.AccessionNumber = f"ACC-{tag}"[:16]
        ds.save_as(dest / f.name, enforce_file_format=True)
    return str(study_uid)


def prior_setup(root: Path, src: Path) -> dict[str, object]:
    """The study in view (``current``, to import locally), a prior only on the PACS
    (``prior``), a prior on both (``local_prior``), a later study (``later``), a study of
    another patient (``other``) and one of the same Patient ID under another name
    (``renamed``): ``{name: (folder, study UID)}``."""
    out: dict[str, object] = {}
    for key, date, pid, name in (
        ("current", CURRENT_DATE, PID, NAME),
        ("prior", PRIOR_DATE, PID, NAME),
        ("local_prior", LOCAL_PRIOR_DATE, PID, "prior^test"),  # the same name, other case
        ("later", LATER_DATE, PID, NAME),
        ("other", PRIOR_DATE, OTHER_PID, "OTHER^PATIENT"),
    ):
        folder = root / key
        out[key] = (folder, write_study(src, folder, key, date, pid, name, f"CT {key}"))
    return out


def studies_in(tmp_path_factory: pytest.TempPathFactory, name: str) -> dict[str, object]:
    """:func:`prior_setup` of the real CT in a new temporary folder ``name`` (skips when
    the shared data is absent): the body of a module's ``studies`` fixture."""
    from tests.conftest import CT_DIR, need

    return prior_setup(tmp_path_factory.mktemp(name), need(CT_DIR))


@contextmanager
def orthanc_holding(
    tmp_path_factory: pytest.TempPathFactory,
    name: str,
    studies: dict[str, object],
    keys: tuple[str, ...],
) -> Iterator[Any]:
    """A fresh Orthanc (loopback, own ports and storage in a new temporary folder
    ``name``) holding the studies ``keys``, stopped on exit."""
    from tests.helpers.net_fixtures import OrthancServer

    server = OrthancServer(tmp_path_factory.mktemp(name))
    server.start()
    try:
        for k in keys:
            folder, _uid = studies[k]  # type: ignore[misc]
            server.upload(sorted(Path(folder).glob("*.dcm")))
        yield server
    finally:
        server.stop()
