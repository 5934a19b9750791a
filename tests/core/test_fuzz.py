"""DICOM fuzz suite (issue 18 item 10): hostile mutants of pydicom's and pydicom-data's files
through ``medview info --json`` and ``medview render``, each in its own process with an
address-space limit (``RLIMIT_AS``) and a timeout.

Targets: 0 tracebacks, 0 crashes (negative return codes), 0 hangs, no run over 2 GiB
resident, ``info --json`` always valid JSON (no NaN), every error line free of control
characters and of the source's patient name and ID. The default run takes a fixed sample
(the same mutants every time); the full set is ``@pytest.mark.slow``. Figures per class:
``python3 tests/fuzz/mutants.py N`` (N mutants per class).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.fuzz.mutants import CLASSES, mutants, run_all, summary

#: mutants per class in the default run (10 classes: 150 mutants, about 300 runs)
SAMPLE_PER_CLASS = 15
#: mutants per class in the slow run
FULL_PER_CLASS = 200
TIMEOUT_S = 60.0


def test_mutants_are_deterministic(fuzz_sources):
    a = [(m.name, m.source) for m in mutants(3, fuzz_sources)]
    b = [(m.name, m.source) for m in mutants(3, fuzz_sources)]
    assert a == b and len(a) == 3 * len(CLASSES)


def test_mutants_differ_from_their_source(fuzz_sources, tmp_path):
    for m in mutants(2, fuzz_sources):
        if m.cls == "special":
            continue
        folder = tmp_path / m.name
        folder.mkdir()
        try:
            made = m.make(folder)
        except TypeError:  # pydicom cannot write a few edits of a few sources
            continue
        assert made.read_bytes() != m.source.read_bytes(), m.name


def _check(per_class: int, fuzz_sources: list[Path], tmp_path: Path) -> None:
    outcomes = run_all(list(mutants(per_class, fuzz_sources)), tmp_path, timeout=TIMEOUT_S)
    assert len(outcomes) >= 2 * per_class * len(CLASSES) * 0.9  # a few edits pydicom cannot write
    bad = [(o.mutant, o.command, o.problems, o.stderr[-300:]) for o in outcomes if o.problems]
    assert not bad, f"{summary(outcomes)}\n" + "\n".join(map(str, bad[:20]))
    # the runs did real work: most mutants are refused with a reason, some still render
    rendered = [o for o in outcomes if o.command == "render" and o.returncode == 0]
    refused = [o for o in outcomes if o.returncode == 2 and o.stderr.startswith("medview: ")]
    assert rendered and refused


def test_fuzz_sample(fuzz_sources, tmp_path):
    _check(SAMPLE_PER_CLASS, fuzz_sources, tmp_path)


@pytest.mark.slow
def test_fuzz_full(fuzz_sources, tmp_path):
    _check(FULL_PER_CLASS, fuzz_sources, tmp_path)
