"""Reports and notes (issue 14, items 4-6): the held-out text format, bad input through
the CLI, AI-vs-report discordance helpers and the cohort search over the database."""

from __future__ import annotations

import base64
import json
import tarfile
from datetime import date
from pathlib import Path

import pytest

from medview.cli import main
from medview.notes import analyze_text
from medview.notes.discordance import (
    ai_evidence,
    compare_with_report,
    report_for_study,
)
from medview.notes.evaluate import gold_labels, score
from medview.notes.model import Document
from medview.notes.readers import MAX_NOTE_BYTES, parse_iu_xml
from medview.notes.store import import_notes, patient_analyses


@pytest.fixture(scope="module")
def iu_reports(shared_data: Path) -> list[Document]:
    """The first 300 IU dev reports with findings or impression (XML parsed), skipping when the data is absent."""
    path = shared_data / "reports" / "iu_cxr_reports_dev.tar.gz"
    if not path.exists():
        pytest.skip(f"needs {path}")
    docs = []
    with tarfile.open(path) as tf:
        for member in tf:
            if member.isfile() and member.name.endswith(".xml"):
                fh = tf.extractfile(member)
                assert fh is not None
                doc = parse_iu_xml(fh.read(), member.name)
                if any(doc.meta["sections"].get(k) for k in ("FINDINGS", "IMPRESSION")):
                    docs.append(doc)  # (a report with neither is an empty note)
            if len(docs) == 300:
                break
    return docs


def _plain(sections: dict[str, str], sep: str) -> str:
    """A report written the held-out way: ``FINDINGS: ...`` / ``IMPRESSION: ...``."""
    parts = [f"{k}: {sections[k]}" for k in ("FINDINGS", "IMPRESSION") if sections.get(k)]
    return sep.join(parts) + sep


# --------------------------------------------------------------------------- item 4
@pytest.mark.parametrize("sep", ["\n", "\r\n", "\n\n"])
def test_held_out_text_format_through_the_cli(iu_reports, tmp_path, capsys, sep):
    """Dev reports written as FINDINGS:/IMPRESSION: text files: sections and labels right."""
    files = []
    for i, doc in enumerate(iu_reports):
        f = tmp_path / f"r{i:03d}.txt"
        f.write_bytes(_plain(doc.meta["sections"], sep).encode())
        files.append(f)
    assert main(["notes", *map(str, files), "--json"]) == 0
    out = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [o["document"] for o in out] == [str(f) for f in files]
    pairs = []
    for o, doc, f in zip(out, iu_reports, files, strict=True):
        text = f.read_bytes().decode()
        sections = doc.meta["sections"]
        for item in o["findings"]:
            assert text[item["start"] : item["end"]] == item["text"]
            assert item["section"] in ("findings", "impression")
            # the finding sits in the section it names
            head = "FINDINGS:" if item["section"] == "findings" else "IMPRESSION:"
            assert text.rfind(head, 0, item["start"]) >= 0
            if item["section"] == "findings" and sections.get("IMPRESSION"):
                assert item["start"] < text.index("IMPRESSION:")
        pred = {i["label"] for i in o["findings"] if i["status"] == "present"}
        if o["normal"]:
            pred.add("normal")
        pairs.append((gold_labels(doc.meta["mesh"]), pred))
    _, micro, _, n = score(pairs)
    assert n == 300
    # the same scoring as `medview notes --evaluate` (0.94 micro on all 2,000 dev reports)
    assert micro["f1"] >= 0.9, micro


def test_held_out_text_format_sections():
    text = "FINDINGS: No focal consolidation. Heart size normal.\nIMPRESSION: No acute disease.\n"
    a = analyze_text(text)
    assert a.normal and a.label_status() == {"consolidation": "absent"}
    (f,) = a.findings
    assert f.section == "findings" and text[f.start : f.end] == "consolidation"
    only_impression = "IMPRESSION: Right lower lobe pneumonia.\n"
    (g,) = analyze_text(only_impression).findings
    assert (g.label, g.status, g.section) == ("pneumonia", "present", "impression")


# --------------------------------------------------------------------------- item 5
def _one_error_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert "Traceback" not in err[0]
    return err[0]


def test_cli_bad_inputs_one_line_each(tmp_path, capsys):
    cases = {
        "binary.txt": (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" * 4, "binary"),
        "empty.txt": (b"\n\n  \t\n", "empty note"),
        "latin1.txt": ("Pleural effusion, r\xe9sum\xe9".encode("latin-1"), "not valid UTF-8"),
        "huge.txt": (b"No effusion. " * (10 * 1024 * 1024 // 13 + 1), "too large"),
    }
    for name, (data, reason) in cases.items():
        f = tmp_path / name
        f.write_bytes(data)
        assert main(["notes", str(f), "--json"]) == 2, name
        line = _one_error_line(capsys)
        assert str(f) in line and reason in line, line
    assert (tmp_path / "huge.txt").stat().st_size > 10 * 1024 * 1024 > MAX_NOTE_BYTES


def test_cli_malformed_base64_and_binary_json(tmp_path, capsys):
    bundle = {
        "resourceType": "Bundle",
        "entry": [
            {
                "resource": {
                    "resourceType": "DiagnosticReport",
                    "id": "x1",
                    "subject": {"reference": "Patient/p1"},
                    "presentedForm": [{"contentType": "text/plain", "data": "bm90IGJhc2U2N!!"}],
                }
            }
        ],
    }
    f = tmp_path / "bundle.json"
    f.write_text(json.dumps(bundle))
    assert main(["notes", str(f)]) == 2
    line = _one_error_line(capsys)
    assert "DiagnosticReport/x1" in line and "malformed base64" in line
    # base64 that decodes to bytes that are not UTF-8 text
    bundle["entry"][0]["resource"]["presentedForm"][0]["data"] = base64.b64encode(
        b"\xff\xfe\x00binary"
    ).decode()
    f.write_text(json.dumps(bundle))
    assert main(["notes", str(f)]) == 2
    line = _one_error_line(capsys)
    assert "DiagnosticReport/x1" in line and "binary" in line
    g = tmp_path / "bin.json"
    g.write_bytes(b"\xff\xd8\xff\xe0" + bytes(range(256)))
    assert main(["notes", str(g)]) == 2
    line = _one_error_line(capsys)
    assert "bin.json" in line and "UTF-8" in line


def test_cli_one_bad_file_among_good_ones_is_skipped(tmp_path, capsys):
    good = tmp_path / "good.txt"
    good.write_text("IMPRESSION: Small left pleural effusion.\n")
    bad = tmp_path / "bad.txt"
    bad.write_bytes(b"\x00\x01")
    assert main(["notes", str(good), str(bad), "--json"]) == 0
    cap = capsys.readouterr()
    (obj,) = [json.loads(x) for x in cap.out.splitlines()]
    assert obj["findings"][0]["label"] == "pleural_effusion"
    assert cap.err.strip().splitlines() == [f"skipped {bad}: binary data, not a text note"]


# --------------------------------------------------------------------------- discordance
def _doc(text: str, day: str | None, doc_id: str) -> Document:
    return Document(id=doc_id, text=text, source=doc_id, kind="text", patient="p", date=day)


def test_discordance_against_the_study_report():
    from medview.notes import analyze

    old = analyze(_doc("IMPRESSION: Right lower lobe pneumonia.", "2020-01-02", "a"))
    new = analyze(
        _doc("FINDINGS: No focal consolidation.\nIMPRESSION: No pneumonia.", "2021-03-04", "b")
    )
    note = analyze(_doc("# Plan\nFollow up in clinic.", "2022-01-01", "c"))
    docs = [old, new, note]
    # the study's day picks its report; else the newest one about the chest (not the note)
    assert report_for_study(docs, "20200102") is old
    assert report_for_study(docs, "2019-01-01") is new
    assert report_for_study(docs, None) is new
    assert report_for_study([note], None) is None
    ev = ai_evidence({"normal": 0.1, "pneumonia": 0.9}, 0.5, True, "pneumonia-cnn")
    assert [(e.label, e.probability) for e in ev] == [("pneumonia", 0.9)]
    (d,) = compare_with_report(ev, new)
    assert d.kind == "ai-positive-report-negative"
    assert {f.label for f in d.evidence} == {"consolidation", "pneumonia"}
    (d,) = compare_with_report(ai_evidence({"pneumonia": 0.1}, 0.5), old)
    assert d.kind == "ai-negative-report-positive"
    assert compare_with_report(ev, old) == []
    # an out-of-scope result is never evidence of discordance
    out = ai_evidence({"normal": 0.1, "pneumonia": 0.9}, 0.5, False, "pneumonia-cnn")
    assert out and compare_with_report(out, new) == []
    assert compare_with_report(ev, None) == []
    assert ai_evidence(None, 0.5) == [] and ai_evidence({"pneumonia": 0.9}, None) == []


# --------------------------------------------------------------------------- database
def test_import_and_cohort_search_with_local_studies(tmp_path, medview_home, xray_dir, capsys):
    from medview.notes.cohort import nearest_study, search_cohort
    from tests.helpers.data_helpers import import_radiograph

    study = import_radiograph(xray_dir)
    pid = study["patient_id"]
    assert pid  # the chest radiograph has a PatientID
    day = study["study_date"]
    iso = f"{day[:4]}-{day[4:6]}-{day[6:]}"
    a = tmp_path / "a.txt"
    a.write_text("FINDINGS: 6 mm nodule in the right upper lobe.\nIMPRESSION: Pulmonary nodule.\n")
    b = tmp_path / "b.txt"
    b.write_text("IMPRESSION: No nodule. No acute disease.\n")
    res = import_notes([a], patient=pid)
    assert (res.saved, res.attached, res.problems) == (1, 1, [])
    res = import_notes([b], patient="other")
    assert res.saved == 1
    hits = search_cohort("nodule")
    assert main(["notes", "--search", "nodule", "--json"]) == 0  # the CLI gives the same
    assert json.loads(capsys.readouterr().out) == hits
    assert main(["notes", "--search", "nodule"]) == 0
    assert f"local study {day} {study['study_uid']}" in capsys.readouterr().out
    assert [h["patient"] for h in hits] == [pid]
    assert hits[0]["study"]["study_uid"] == study["study_uid"]
    assert hits[0]["text"].lower() == "nodule"
    assert search_cohort("nodule", "absent")[0]["study"] is None  # "other" has no study
    assert search_cohort("nodule", since=date(2999, 1, 1)) == []
    with pytest.raises(ValueError, match="unknown label"):
        search_cohort("nodules")
    (only,) = patient_analyses(pid)
    assert only.document.id == str(a) and only.label_status() == {"nodule": "present"}
    studies = [{"study_date": "20200101", "study_uid": "x"}, {"study_date": day, "study_uid": "y"}]
    assert nearest_study(studies, iso)["study_uid"] == "y"
    assert nearest_study(studies, "2019-12-30")["study_uid"] == "x"
    assert nearest_study([], iso) is None


def test_a_long_note_is_analysed_whole(tmp_path, capsys):
    """A 1 MB note (under the 2 MB limit) with 40,000 mentions: every one found, in order.

    Overlapping triggers were resolved against every trigger taken so far (quadratic:
    minutes for this note); they are now resolved in one pass over the text.
    """
    from medview.notes.context import find_triggers

    unit = "No pleural effusion. Possible small nodule, but no pneumothorax. "
    text = "FINDINGS: " + unit * (1_000_000 // len(unit))
    f = tmp_path / "long.txt"
    f.write_text(text)
    assert main(["notes", str(f), "--json"]) == 0
    (obj,) = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    n = text.count(unit)
    found = [(i["label"], i["status"]) for i in obj["findings"]]
    assert (
        found
        == [
            ("pleural_effusion", "absent"),
            ("nodule", "uncertain"),
            ("pneumothorax", "absent"),
        ]
        * n
    )
    assert all(text[i["start"] : i["end"]] == i["text"] for i in obj["findings"][-3:])
    trig = find_triggers(text, 0, len(text))
    assert [k for _a, _b, k in trig[:4]] == ["neg_pre", "unc_pre", "term", "neg_pre"]
    assert all(b <= c for (_a, b, _k), (c, _d, _k2) in zip(trig, trig[1:], strict=False))
