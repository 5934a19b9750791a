"""Key images (stored per SOPInstanceUID) and the Key Object Selection document written for
them: the real CT and CR, dciodvfy / dcmdump / dsrdump, highdicom, pydicom, and the CLI."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pydicom
import pytest

from medview.cli import main as cli_main
from medview.io import scan
from medview.results.key_images import KeyImage, KeyImageDatabase, KeyImageStore
from medview.results.kos import build_kos, read_kos, write_kos
from medview.results.sr import SRError, image_refs
from tests.helpers.tools import dciodvfy_errors, dumps_cleanly, tool


def _keys(info, picks: list[int]) -> list[KeyImage]:
    insts = info.instances
    return [KeyImage(insts[k].sop_uid, 0, info.series_uid, info.study_uid) for k in picks]


def test_key_image_store_round_trip(tmp_path: Path) -> None:
    db_path = tmp_path / "db.sqlite"
    store = KeyImageStore(open_database=lambda: KeyImageDatabase(db_path))
    key = KeyImage("1.2.3.4", 0, "1.2.3", "1.2")
    assert store.is_key("1.2.3.4") is False
    assert store.toggle(key) is True
    assert store.toggle(KeyImage("1.2.3.5", 2, "1.2.3", "1.2")) is True
    store.close()
    # a new session reads the flags back from the database
    again = KeyImageStore(open_database=lambda: KeyImageDatabase(db_path))
    assert again.is_key("1.2.3.4") and again.is_key("1.2.3.5", 2)
    assert not again.is_key("1.2.3.5", 0)
    assert [k.sop_uid for k in KeyImageDatabase(db_path).for_series("1.2.3")] == [
        "1.2.3.4",
        "1.2.3.5",
    ]
    assert again.toggle(key) is False  # unflag
    assert KeyImageDatabase(db_path).flagged(["1.2.3.4", "1.2.3.5"]) == {("1.2.3.5", 2)}


def test_key_image_store_without_database_warns_once() -> None:
    warnings: list[str] = []

    def broken() -> KeyImageDatabase:
        raise OSError("read-only file system")

    store = KeyImageStore(warn=warnings.append, open_database=broken)
    assert store.toggle(KeyImage("9.9", 0)) is True  # kept for the session
    assert store.is_key("9.9")
    assert store.toggle(KeyImage("9.8", 0)) is True
    assert len(warnings) == 1 and "read-only" in warnings[0]


def test_ct_kos_valid(tmp_path: Path, ct_dir: Path) -> None:
    info = scan(str(ct_dir)).series[0]
    refs = image_refs([str(i.path) for i in info.instances])
    keys = _keys(info, [2, 0, 2])  # flagged twice: referenced once
    out = write_kos(build_kos(refs, keys), tmp_path / "ct_kos.dcm")

    assert dciodvfy_errors(out) == []
    assert dumps_cleanly(out)
    dump = subprocess.run([tool("dsrdump"), str(out)], capture_output=True, text=True)
    assert dump.returncode == 0 and "Of Interest" in dump.stdout

    ds = pydicom.dcmread(out)
    assert ds.SOPClassUID == "1.2.840.10008.5.1.4.1.1.88.59"
    assert ds.ContentTemplateSequence[0].TemplateIdentifier == "2010"
    assert ds.StudyInstanceUID == info.study_uid
    back = read_kos(out)
    assert [k.sop_uid for k in back] == [info.instances[2].sop_uid, info.instances[0].sop_uid]
    assert {k.series_uid for k in back} == {info.series_uid}

    import highdicom as hd

    doc = hd.ko.KeyObjectSelectionDocument.from_dataset(ds)
    assert len(doc.resolve_reference(info.instances[0].sop_uid)) == 3  # study, series, SOP


def test_kos_without_flagged_images_refused(ct_dir: Path) -> None:
    info = scan(str(ct_dir)).series[0]
    refs = image_refs([str(info.instances[0].path)])
    with pytest.raises(SRError, match="no key image"):
        build_kos(refs, [KeyImage("1.2.999", 0)])


def test_cli_sr_kos_out(tmp_path: Path, xray_dir: Path, monkeypatch, capsys) -> None:
    monkeypatch.setenv("MEDVIEW_AUDIT", str(tmp_path / "audit.jsonl"))
    db = tmp_path / "db.sqlite"
    info = scan(str(xray_dir)).series[0]
    out = tmp_path / "kos.dcm"
    # nothing flagged yet: exit 2 with one line
    code = cli_main(["sr", str(xray_dir), "--kos-out", str(out), "--db", str(db)])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "no key image" in err[0]

    KeyImageDatabase(db).flag(_keys(info, [0])[0])
    code = cli_main(["sr", str(xray_dir), "--kos-out", str(out), "--db", str(db), "--json"])
    assert code == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["key_images"] == 1 and summary["kos_out"] == str(out)
    assert dciodvfy_errors(out) == []
    assert [k.sop_uid for k in read_kos(out)] == [info.instances[0].sop_uid]
    events = [json.loads(x) for x in (tmp_path / "audit.jsonl").read_text().splitlines()]
    assert events[-1]["action"] == "sr" and events[-1]["output"] == str(out.resolve())
    assert events[-1]["key_images"] == 1
