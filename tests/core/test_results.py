"""Anonymised export (PS3.15 Annex E) and the audit log (medview.results)."""

from __future__ import annotations

import datetime as dt
import json
import os
import signal
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import pydicom
import pytest
from pydicom.data import get_testdata_file, get_testdata_files

from medview.cli import main as cli_main
from medview.results import audit
from medview.results.deid import Deidentifier, identifying_values, load_table, rule_for
from medview.results.export import export_paths, read_dicom

REPO = Path(__file__).resolve().parents[2]


# ---------------------------------------------------------------- helpers
def _forms(value: str) -> list[bytes]:
    """Byte forms an identifying value could take in a file: as stored (with the person-name
    components separately), UTF-16 (either byte order)."""
    texts = {value}
    if "^" in value or "=" in value:
        texts |= {p for p in value.replace("=", "^").split("^") if len(p) >= 5}
    out = []
    for t in texts:
        out += [t.encode("latin-1", "ignore"), t.encode("utf-8")]
        out += [t.encode("utf-16-le"), t.encode("utf-16-be")]
    return [b for b in out if b]


def _searchable(value: str) -> bool:
    # Too short to be found by chance only: fewer than 4 characters, or a number shorter than 8
    # digits (new 2.25 UIDs are ~40 random digits each).
    v = value.strip()
    if len(v) < 4:
        return False
    return not (v.replace(".", "").isdigit() and len(v) < 8)


def leaks(src: str, out: Path) -> list[str]:
    """Identifying values of ``src`` found anywhere in the bytes of ``out`` (pixel data, checked
    separately to be identical, are left out of the search so images cannot match by chance)."""
    ds = read_dicom(src, defer=False)
    data = out.read_bytes()
    pix = ds.get("PixelData")
    if pix:
        data = data.replace(bytes(pix), b"")
    kept = str(ds.get("Manufacturer", "") or "")  # retained by the profile (not identifying)
    found = []
    for kind, values in identifying_values(ds).items():
        for v in values:
            v = v.strip("\0 ")
            if not _searchable(v) or v in kept:
                continue
            if any(b in data for b in _forms(v)):
                found.append(f"{kind} {v!r}")
    return found


def corpus_files() -> list[str]:
    files = [f for f in get_testdata_files("**/*") if os.path.isfile(f)]
    shared = REPO.parent / "shared" / "data"
    files += sorted(str(p) for p in shared.glob("**/*.dcm"))
    return files


def check_export(files: list[str], out: Path, **kw) -> dict:
    rep = export_paths(files, str(out), anonymize=True, **kw)
    assert rep.written, rep.skipped
    problems = []
    for w in rep.written:
        src, dst = w["source"], out / w["output"]
        problems += [f"{os.path.basename(src)}: {x}" for x in leaks(src, dst)]
        new = pydicom.dcmread(dst)
        orig = read_dicom(src, defer=False)
        assert new.PatientIdentityRemoved == "YES"
        assert new.DeidentificationMethodCodeSequence[0].CodeValue == "113100"
        if "PixelData" in orig:
            assert bytes(new.PixelData) == bytes(orig.PixelData), src
    assert problems == []
    return {"report": rep}


# ---------------------------------------------------------------- the profile table
def test_annex_e_table_rows_match_the_standard() -> None:
    exact, masked = load_table()
    assert len(exact) + len(masked) >= 600  # PS3.15 2024b Table E.1-1 has 620 rows + private
    assert rule_for(0x00100010).basic == "Z"  # Patient's Name
    assert rule_for(0x00100020).basic == "Z/D"  # Patient ID
    assert rule_for(0x0020000D).basic == "U"  # Study Instance UID
    assert rule_for(0x00080020).options["dates"] == "C"  # Study Date, modified-dates option
    assert rule_for(0x00100040).options["patient"] == "K"  # Patient's Sex
    assert rule_for(0x60023000).basic == "X"  # Overlay Data, repeating group 60xx
    assert rule_for(0x00280010) is None  # Rows: not in the table, kept


# ---------------------------------------------------------------- export: no leaks
SAMPLE = [
    "CT_small.dcm",
    "MR_small.dcm",
    "rtstruct.dcm",
    "rtplan.dcm",
    "reportsi.dcm",
    "US1_UNCR.dcm",
    "SC_rgb.dcm",
    "JPEG2000.dcm",
    "ExplVR_BigEnd.dcm",
    "emri_small.dcm",
]


def test_sample_export_leaves_no_identifying_value(tmp_path: Path) -> None:
    files = [get_testdata_file(f) for f in SAMPLE]
    check_export(files, tmp_path / "out")


@pytest.mark.filterwarnings("ignore::UserWarning")  # pydicom on the test files' own bad values
def test_whole_corpus_export_leaves_no_identifying_value(tmp_path: Path) -> None:
    """Every DICOM file of pydicom's and pydicom-data's test sets and ../shared/data."""
    files = corpus_files()
    res = check_export(files, tmp_path / "out", shift_days=17)
    rep = res["report"]
    # skipped: only non-DICOM files, DICOMDIRs, objects without a SOP class and the
    # deliberately truncated test files
    allowed = ("not a DICOM file", "DICOMDIR", "no SOP Class UID", "truncated file")
    for p in rep.skipped:
        assert any(k in p.reason for k in allowed), str(p)
    assert len(rep.written) >= 200


def test_shared_ct_export_opens_and_keeps_geometry(tmp_path: Path, ct_dir: Path) -> None:
    from medview.io import load_series, scan

    rep = export_paths([str(ct_dir)], str(tmp_path / "out"), anonymize=True)
    assert len(rep.written) == 20 and not rep.skipped
    before = load_series(scan(str(ct_dir)).series[0])
    res = scan(str(tmp_path / "out"))
    assert len(res.series) == 1 and not res.errors
    after = load_series(res.series[0])
    assert (after.array == before.array).all()
    assert after.spacing == before.spacing
    assert res.series[0].patient_id.startswith("ANON-")


def test_uids_consistent_within_one_export_and_differ_between_exports(tmp_path: Path) -> None:
    src = get_testdata_file("rtstruct.dcm")
    export_paths([src], str(tmp_path / "a"), anonymize=True)
    export_paths([src], str(tmp_path / "b"), anonymize=True)
    a = pydicom.dcmread(next((tmp_path / "a").rglob("*.dcm")))
    b = pydicom.dcmread(next((tmp_path / "b").rglob("*.dcm")))
    orig = pydicom.dcmread(src, force=True)
    # the same original UID maps to the same new UID in two places of one file
    ref = a.ReferencedFrameOfReferenceSequence[0].FrameOfReferenceUID
    roi = a.StructureSetROISequence[0].ReferencedFrameOfReferenceUID
    assert ref == roi and ref.startswith("2.25.")
    assert a.SOPInstanceUID == a.file_meta.MediaStorageSOPInstanceUID
    assert a.SOPInstanceUID != orig.SOPInstanceUID
    assert a.SOPInstanceUID != b.SOPInstanceUID  # per-export secret
    assert a.SOPClassUID == orig.SOPClassUID


def test_series_stays_linked(tmp_path: Path) -> None:
    # three slices of one series (CT_small with new SOP Instance UIDs), and a second series
    src = tmp_path / "in"
    src.mkdir()
    for k in range(3):
        ds = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
        ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = f"1.2.3.4.{k + 1}"
        ds.save_as(src / f"s{k}.dcm")
    other = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    other.SeriesInstanceUID = "1.2.3.5"
    other.SOPInstanceUID = other.file_meta.MediaStorageSOPInstanceUID = "1.2.3.5.1"
    other.save_as(src / "other.dcm")
    rep = export_paths([str(src)], str(tmp_path / "out"), anonymize=True)
    out = {
        Path(w["source"]).name: pydicom.dcmread(tmp_path / "out" / w["output"]) for w in rep.written
    }
    assert len({out[f"s{k}.dcm"].SeriesInstanceUID for k in range(3)}) == 1
    assert out["other.dcm"].SeriesInstanceUID != out["s0.dcm"].SeriesInstanceUID
    assert len({d.StudyInstanceUID for d in out.values()}) == 1
    assert len({d.FrameOfReferenceUID for d in out.values()}) == 1
    assert len({d.SOPInstanceUID for d in out.values()}) == 4
    assert len({d.PatientID for d in out.values()}) == 1
    assert {w["output"].split("/")[1] for w in rep.written} == {"series_001", "series_002"}


def test_dates_shifted_option(tmp_path: Path) -> None:
    src = get_testdata_file("CT_small.dcm")
    export_paths([src], str(tmp_path / "out"), anonymize=True, shift_days=-10)
    new = pydicom.dcmread(next((tmp_path / "out").rglob("*.dcm")))
    orig = pydicom.dcmread(src)
    want = dt.datetime.strptime(orig.StudyDate, "%Y%m%d") - dt.timedelta(days=10)
    assert new.StudyDate == want.strftime("%Y%m%d")
    assert new.StudyTime == orig.StudyTime  # whole-day shift keeps the time of day
    assert new.PatientBirthDate == ""  # Z in every option
    assert new.LongitudinalTemporalInformationModified == "MODIFIED"
    codes = [c.CodeValue for c in new.DeidentificationMethodCodeSequence]
    assert codes == ["113100", "113107"]


def test_basic_profile_removes_dates(tmp_path: Path) -> None:
    src = get_testdata_file("CT_small.dcm")
    export_paths([src], str(tmp_path / "out"), anonymize=True)
    new = pydicom.dcmread(next((tmp_path / "out").rglob("*.dcm")))
    orig = pydicom.dcmread(src)
    assert new.StudyDate == ""
    assert orig.StudyDate.encode() not in next((tmp_path / "out").rglob("*.dcm")).read_bytes()
    assert new.LongitudinalTemporalInformationModified == "REMOVED"


def test_patient_characteristics_option(tmp_path: Path) -> None:
    src = get_testdata_file("SC_rgb.dcm")
    orig = pydicom.dcmread(src)
    export_paths([src], str(tmp_path / "keep"), anonymize=True, keep_patient_characteristics=True)
    export_paths([src], str(tmp_path / "basic"), anonymize=True)
    keep = pydicom.dcmread(next((tmp_path / "keep").rglob("*.dcm")))
    basic = pydicom.dcmread(next((tmp_path / "basic").rglob("*.dcm")))
    assert keep.PatientSex == orig.PatientSex and keep.PatientAge == orig.PatientAge
    assert basic.PatientSex == "" and "PatientAge" not in basic
    assert [c.CodeValue for c in keep.DeidentificationMethodCodeSequence] == ["113100", "113108"]


def test_private_tags_and_sr_text_removed(tmp_path: Path) -> None:
    src = get_testdata_file("reportsi.dcm")
    export_paths([src], str(tmp_path / "out"), anonymize=True)
    new = pydicom.dcmread(next((tmp_path / "out").rglob("*.dcm")))

    def walk(d):
        for e in d:
            yield e
            if e.VR == "SQ":
                for item in e.value:
                    yield from walk(item)

    elems = list(walk(new))
    assert not any(e.tag.is_private for e in elems)
    assert all(e.value in ("ANONYMIZED", "") for e in elems if e.keyword == "TextValue")


def test_burned_in_warning(tmp_path: Path) -> None:
    rep = export_paths(
        [get_testdata_file("US1_UNCR.dcm"), get_testdata_file("CT_small.dcm")],
        str(tmp_path / "out"),
        anonymize=True,
    )
    assert len(rep.warnings) == 1
    assert "US1_UNCR.dcm" in rep.warnings[0] and "Burned In Annotation" in rep.warnings[0]


def test_zip_export(tmp_path: Path) -> None:
    rep = export_paths(
        [get_testdata_file("CT_small.dcm"), get_testdata_file("MR_small.dcm")],
        str(tmp_path / "out.zip"),
        anonymize=True,
        zip_output=True,
    )
    with zipfile.ZipFile(rep.zip_path) as zf:
        names = zf.namelist()
        assert len(names) == 2
        for n in names:
            ds = pydicom.dcmread(zf.open(n))
            assert ds.PatientIdentityRemoved == "YES"


def test_plain_export_copies_bytes(tmp_path: Path) -> None:
    src = get_testdata_file("CT_small.dcm")
    rep = export_paths([src], str(tmp_path / "out"))
    assert (tmp_path / "out" / rep.written[0]["output"]).read_bytes() == Path(src).read_bytes()


def test_unreadable_inputs_are_skipped_with_one_line(tmp_path: Path) -> None:
    bad = tmp_path / "in"
    bad.mkdir()
    (bad / "notes.txt").write_text("not an image")
    ct = Path(get_testdata_file("CT_small.dcm")).read_bytes()
    (bad / "cut_header.dcm").write_bytes(ct[:410])  # inside (0008,0013) Instance Creation Time
    (bad / "cut_pixels.dcm").write_bytes(ct[:-1000])
    rep = export_paths([str(bad)], str(tmp_path / "out"), anonymize=True)
    assert not rep.written
    reasons = {Path(p.path).name: p.reason for p in rep.skipped}
    assert reasons["notes.txt"] == "not a DICOM file"
    assert reasons["cut_header.dcm"].startswith("truncated file: it ends inside the header")
    assert reasons["cut_pixels.dcm"].startswith("truncated file: ")
    assert "pixel data" in reasons["cut_pixels.dcm"]


# ---------------------------------------------------------------- export CLI
def test_cli_export_json_and_audit(tmp_path: Path, medview_home: Path, capsys) -> None:
    src = get_testdata_file("CT_small.dcm")
    out = tmp_path / "out"
    rc = cli_main(["export", src, "--out", str(out), "--anonymize", "--json"])
    assert rc == 0
    rep = json.loads(capsys.readouterr().out)
    assert rep["files"] == 1 and rep["anonymized"] is True and rep["skipped"] == []
    log = audit.read()
    assert [e["action"] for e in log.events] == ["export"]
    assert log.events[0]["study_uid"] == pydicom.dcmread(src).StudyInstanceUID
    assert log.events[0]["output"] == str(out.resolve())
    rc = cli_main(["audit", "--study", log.events[0]["study_uid"], "--json"])
    assert rc == 0 and len(json.loads(capsys.readouterr().out)["events"]) == 1


@pytest.mark.parametrize(
    "argv, reason",
    [
        (["export", "/no/such/file", "--out", "X"], "no such file"),
        (["export", "F", "--out", "X", "--keep-dates-shifted", "3"], "need --anonymize"),
        (["audit", "--since", "yesterday"], "--since must be a date"),
    ],
)
def test_cli_bad_input_exits_2_with_one_line(tmp_path, medview_home, capsys, argv, reason):
    argv = [str(tmp_path / "x") if a == "X" else a for a in argv]
    argv = [get_testdata_file("CT_small.dcm") if a == "F" else a for a in argv]
    assert cli_main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert reason in err and len(err.splitlines()) == 1


def test_cli_nothing_exported_exits_2(tmp_path: Path, medview_home: Path, capsys) -> None:
    (tmp_path / "a.txt").write_text("x")
    assert cli_main(["export", str(tmp_path / "a.txt"), "--out", str(tmp_path / "o")]) == 2
    assert "nothing exported" in capsys.readouterr().err


# ---------------------------------------------------------------- audit log
_WRITER = """
import sys
from medview.results import audit
path, tag, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
for i in range(n):
    audit.record("analyze", study_uid=f"{tag}.{i}", path=path, pad="x" * 3000)
"""


def test_audit_concurrent_writers_never_interleave(tmp_path: Path) -> None:
    log = tmp_path / "audit.jsonl"
    procs = [
        subprocess.Popen([sys.executable, "-c", _WRITER, str(log), f"w{k}", "150"], cwd=REPO)
        for k in range(4)
    ]
    assert all(p.wait(timeout=120) == 0 for p in procs)
    res = audit.read(log)
    assert res.notes == []
    assert len(res.events) == 600
    for k in range(4):  # each writer's events complete and in its order
        mine = [e["study_uid"] for e in res.events if e["study_uid"].startswith(f"w{k}.")]
        assert mine == [f"w{k}.{i}" for i in range(150)]


def test_audit_survives_kill_9(tmp_path: Path) -> None:
    log = tmp_path / "audit.jsonl"
    p = subprocess.Popen([sys.executable, "-c", _WRITER, str(log), "k", "100000"], cwd=REPO)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not (log.exists() and log.stat().st_size > 50_000):
            time.sleep(0.05)  # until it is busy writing
        assert p.poll() is None  # killed in the middle of its run, not after it
    finally:
        os.kill(p.pid, signal.SIGKILL)
        p.wait()
    before = audit.read(log)
    assert before.events and before.notes == []  # one write per line: no torn line from kill
    # a torn last line (a kill in the middle of a write on a filesystem that splits writes)
    with open(log, "ab") as f:
        f.write(b'{"time": "2026-12-01T10:00:00Z", "act')
    audit.record("report", study_uid="after", path=log)
    after = audit.read(log)
    assert len(after.notes) == 1 and "line" in after.notes[0]
    assert len(after.events) == len(before.events) + 1
    assert after.events[-1]["study_uid"] == "after"


def test_audit_filters_and_fields(tmp_path: Path) -> None:
    log = tmp_path / "audit.jsonl"
    ev = audit.record(
        "analyze",
        study_uid="1.2.3",
        model=audit.model_info("pneumonia_cnn", "1.0.0"),
        path=log,
    )
    assert ev["user"] and ev["time"].endswith("Z")
    card = json.loads((REPO / "models/pneumonia_cnn/metadata.json").read_text())
    assert ev["model"]["sha256"] == card["weights"]["sha256"]
    audit.record("export", study_uid="9.9", path=log)
    assert [e["study_uid"] for e in audit.read(log, study="1.2.3").events] == ["1.2.3"]
    assert audit.read(log, since="2999-01-01").events == []
    assert len(audit.read(log, since="2000-01-01").events) == 2


def test_deidentifier_uid_is_valid_and_stable() -> None:
    d = Deidentifier()
    u = d.uid("1.2.3.4")
    assert u == d.uid("1.2.3.4") and u != d.uid("1.2.3.5")
    assert u.startswith("2.25.") and len(u) <= 64
    assert pydicom.uid.UID(u).is_valid


def test_spliced_header_equals_a_full_pydicom_write(monkeypatch) -> None:
    """The fast path (untouched elements copied byte for byte) gives the same dataset as
    pydicom encoding the whole de-identified dataset."""
    import io

    import medview.results.export as ex

    files = [get_testdata_file(f) for f in SAMPLE] + corpus_files()[-3:]
    deid = Deidentifier(secret=b"s" * 32)
    real = ex.splice_dataset
    used = []

    def counting(*a, **k):
        out = real(*a, **k)
        used.append(out is not None)
        return out

    for f in files:
        try:
            with monkeypatch.context() as m:
                m.setattr(ex, "splice_dataset", counting)
                head, tail, _ds, _src = ex.anonymize_file(f, deid)
        except ValueError:
            continue
        with monkeypatch.context() as m:
            m.setattr(ex, "splice_dataset", lambda *a, **k: None)
            full, tail2, _ds2, _src2 = ex.anonymize_file(f, deid)
        assert tail == tail2
        rest = Path(f).read_bytes()[tail:] if tail is not None else b""
        a = pydicom.dcmread(io.BytesIO(head + rest))
        b = pydicom.dcmread(io.BytesIO(full + rest))
        assert a == b and a.file_meta == b.file_meta, f
    assert sum(used) >= 5  # the fast path was taken


def _whole(path: str, head: bytes, tail: int | None) -> bytes:
    return head + (Path(path).read_bytes()[tail:] if tail is not None else b"")


@pytest.mark.parametrize(
    "opts",
    [{}, {"shift_days": -30, "keep_patient_characteristics": True}],
    ids=["basic", "options"],
)
def test_header_fast_path_equals_the_pydicom_path(opts) -> None:
    """medview.results.fastdeid (headers de-identified from their bytes, each distinct element
    through Deidentifier.dataset once) gives the same file as the pydicom path, for every file
    of the corpus it takes (both ways of reading the source)."""
    import io

    from medview.results.deid import ProfileOptions
    from medview.results.export import anonymize_file
    from medview.results.fastdeid import fast_anonymize

    deid = Deidentifier(ProfileOptions(**opts))
    taken = 0
    for f in corpus_files():
        fast = fast_anonymize(f, deid)
        inline = fast_anonymize(f, deid, inline=True)
        try:
            head, tail, _ds, source = anonymize_file(f, deid)
        except ValueError:
            assert fast is None and inline is None, f  # refused files go the pydicom way
            continue
        if fast is None:
            continue
        taken += 1
        a = pydicom.dcmread(io.BytesIO(_whole(f, head, tail)), force=True)
        b = pydicom.dcmread(io.BytesIO(_whole(f, fast[0], fast[1])), force=True)
        assert a == b and a.file_meta == b.file_meta, f
        assert fast[2] == source, f
        assert inline is not None and inline[1] is None
        assert inline[0] == _whole(f, fast[0], fast[1]), f
    assert taken >= 100  # most of the corpus takes the fast path
