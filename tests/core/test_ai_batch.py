"""Batch analysis on Dask (issue 17.7): same results as analyze, restartable, audited."""

from __future__ import annotations

import json
import sqlite3

import pytest

from tests.helpers.data_helpers import pneumoniamnist_pngs

pytest.importorskip("torch")
pytest.importorskip("distributed")


@pytest.fixture()
def folder(tmp_path):
    return pneumoniamnist_pngs(tmp_path / "archive", 12)


def test_batch_matches_analyze_and_skips_what_is_done(folder, tmp_path, medview_home, capsys):
    from medview.cli import main

    db = tmp_path / "batch.db"
    argv = ["batch", "analyze", str(folder), "--model", "pneumonia_cnn", "--workers", "2"]
    argv += ["--chunk", "4", "--db", str(db), "--json"]
    assert main(argv) == 0
    rep = json.loads(capsys.readouterr().out)
    assert (rep["files"], rep["analysed_files"], rep["images"], rep["skipped"]) == (12, 12, 12, 0)
    con = sqlite3.connect(db)
    rows = {r[0]: json.loads(r[1]) for r in con.execute("SELECT path, result FROM ai_results")}
    assert len(rows) == 12 and con.execute("SELECT count(*) FROM ai_embeddings").fetchone()[0] == 12
    con.close()
    # the same figures as a plain analyze of one file
    one = sorted(rows)[3]
    assert main(["analyze", one, "--model", "pneumonia_cnn", "--json"]) == 0
    ref = json.loads(capsys.readouterr().out)
    got = rows[one]
    assert got["probabilities"] == pytest.approx(ref["probabilities"], abs=1e-6)
    assert got["in_distribution"] == ref["in_distribution"] and got["uncertainty"]
    # a second run analyses nothing; after an "interruption" (5 files not marked done)
    # only those 5 run again
    assert main(argv) == 0
    assert json.loads(capsys.readouterr().out)["skipped"] == 12
    con = sqlite3.connect(db)
    with con:
        con.execute("DELETE FROM ai_done WHERE path IN (SELECT path FROM ai_done LIMIT 5)")
    con.close()
    assert main(argv) == 0
    rep = json.loads(capsys.readouterr().out)
    assert (rep["analysed_files"], rep["skipped"]) == (5, 7)
    from medview.results import audit

    events = [e for e in audit.read(None).events if e["action"] == "batch-analyze"]
    assert [e["files"] for e in events] == [12, 0, 5]


def test_batch_bad_input(tmp_path, capsys):
    from medview.cli import main

    assert main(["batch", "analyze", str(tmp_path / "absent")]) == 2
    assert "no such file" in capsys.readouterr().err
    assert main(["batch", "analyze", str(tmp_path), "--workers", "0"]) == 2
