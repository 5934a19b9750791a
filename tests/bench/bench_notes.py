"""Benchmark: reports/notes labelling speed, accuracy and memory against a NegEx baseline,
and the Reports & notes panel's update time on a patient change (not run by pytest).

    python3 -m tests.bench.bench_notes [--reports IU.tar.gz] [--records FHIR_DIR] [--rounds 3]

In one process, on the IU dev reports as ``FINDINGS: ...`` / ``IMPRESSION: ...`` text:

* **medview** - :func:`medview.notes.analyze` (the ConText-style rules of ``terms.json``);
* **baseline** - spaCy blank English + sentencizer + negspacy's ``negex`` with the same
  term lists: the same label patterns mark the entities, the negation, pseudo and
  termination triggers of ``terms.json`` (those that are plain phrases) feed negex.
  A label is present when one of its entities is not negated (negex has no uncertainty).
  Needs the ``bench`` extra (``pip install -e ".[bench]"``); skipped when it is missing.

Both are scored like ``medview notes --evaluate`` (micro and macro F1 over 16 labels +
normal) and timed in CPU seconds of this one process (torch and BLAS held to one thread);
the ratio line compares them. Memory: the growth of the resident set while each engine
runs over all reports (spaCy's import and pipeline build shown apart). The panel part times ``patients.select(pid)`` -> ``documents_shown`` for every
patient of the Synthea FHIR bundles: cold (stored documents read from the database and
analysed on the worker) and prefetched (the panel analyses every record patient's
documents ahead on a second worker, so a change is served from memory).
"""

from __future__ import annotations

import argparse
import gc
import os
import re
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

SHARED = Path(__file__).resolve().parents[3] / "shared" / "data"


def rss_mb() -> float:
    """Resident set of this process now, in MB (Linux /proc; else the peak so far)."""
    gc.collect()
    try:
        pages = int(Path("/proc/self/statm").read_text().split()[1])
        return pages * os.sysconf("SC_PAGE_SIZE") / 1e6
    except (OSError, ValueError, IndexError):
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def load_reports(path: Path) -> tuple[list, list[set[str]]]:
    from medview.notes.evaluate import gold_labels, load_iu

    docs, _problems = load_iu(path)
    docs = [d for d in docs if d.text.strip()]
    return docs, [gold_labels(d.meta["mesh"]) for d in docs]


# --------------------------------------------------------------------------- medview
def run_medview(docs: list) -> tuple[list[set[str]], float]:
    from medview.notes.evaluate import predicted_labels

    t0 = time.process_time()
    preds = [predicted_labels(d) for d in docs]
    return preds, time.process_time() - t0


# --------------------------------------------------------------------------- baseline
_PLAIN = re.compile(r"^[\w' -]+$")


def phrases(fragments: list[str]) -> list[str]:
    """The trigger fragments usable as negspacy phrases (``x?`` expanded; others left out)."""
    out: list[str] = []
    for f in fragments:
        variants = [f]
        m = re.fullmatch(r"([\w' -]*\w)(\w)\?([\w' -]*)", f)
        if m:
            variants = [m.group(1) + m.group(2) + m.group(3), m.group(1) + m.group(3)]
        out.extend(v for v in variants if _PLAIN.match(v))
    return sorted(set(out))


def build_baseline():  # noqa: ANN201 - spaCy's Language (an optional dependency)
    import spacy
    from negspacy.negation import Negex  # noqa: F401 - registers the "negex" factory
    from spacy.language import Language
    from spacy.util import filter_spans

    from medview.notes.context import OTHER, rules
    from medview.notes.terms import load_terms

    terms = load_terms()
    targets = rules().targets

    @Language.component("medview_targets")
    def mark_targets(doc):  # noqa: ANN001, ANN202
        spans = []
        for label, pat in targets.items():
            for m in pat.finditer(doc.text):
                span = doc.char_span(m.start(), m.end(), label=label, alignment_mode="expand")
                if span is not None:
                    spans.append(span)
        doc.ents = filter_spans(spans)
        return doc

    termset = {
        "pseudo_negations": phrases(terms["pseudo"]),
        "preceding_negations": phrases(terms["negation_pre"]),
        "following_negations": phrases(terms["negation_post"]),
        "termination": phrases(terms["termination"]),
    }
    nlp = spacy.blank("en")
    nlp.add_pipe("sentencizer")
    nlp.add_pipe("medview_targets")
    nlp.add_pipe("negex", config={"neg_termset": termset})
    used = sum(len(v) for v in termset.values())
    total = sum(len(terms[k]) for k in ("pseudo", "negation_pre", "negation_post", "termination"))
    print(f"baseline: spaCy {spacy.__version__}, {used} trigger phrases from {total} fragments")
    return nlp, OTHER, rules().normal


def run_baseline(nlp, other: str, normal, docs: list) -> tuple[list[set[str]], float]:  # noqa: ANN001
    t0 = time.process_time()
    preds = []
    for doc in nlp.pipe(d.text for d in docs):
        present = {e.label_ for e in doc.ents if not e._.negex}
        labels = present - {other}
        if not present and (normal.search(doc.text) or not doc.ents):
            labels.add("normal")
        preds.append(labels)
    return preds, time.process_time() - t0


# --------------------------------------------------------------------------- panel
def bench_panel(records_dir: Path, rounds: int) -> None:
    """Patient change -> documents shown, cold (database + analysis) and warm (memory)."""
    home = tempfile.mkdtemp(prefix="bench_notes_")
    os.environ["MEDVIEW_HOME"] = home
    os.environ.pop("MEDVIEW_DB", None)
    from PySide6.QtWidgets import QApplication

    from medview.notes.store import import_notes
    from medview.records import load_records
    from medview.ui.panels.notes_panel import NotesPanel

    app = QApplication.instance() or QApplication([])
    records = load_records(records_dir)
    res = import_notes([records_dir])
    print(f"panel: {len(records.patients)} patients, {res.saved} notes stored in {home}")
    records.format = "database"  # the notes are stored: no import during the timing
    panel = NotesPanel(records=records)
    shown: list[int] = []
    panel.documents_shown.connect(lambda docs: shown.append(len(docs)))

    def select(pid: str) -> float:
        n = len(shown)
        t0 = time.perf_counter()
        panel.patients.select(pid)
        while len(shown) == n:
            app.processEvents()
            if time.perf_counter() - t0 > 30:
                raise RuntimeError(f"no documents shown for {pid}")
        return 1000 * (time.perf_counter() - t0)

    from medview.notes.store import patient_analyses

    pids = sorted(records.patients)
    cpu = []
    for pid in pids:  # the worker's work for one cold change, in CPU time here
        t0 = time.process_time()
        patient_analyses(pid)
        cpu.append(1000 * (time.process_time() - t0))
    cold, warm = [], []
    for _ in range(rounds):
        for pid in pids:
            panel._forget_documents()  # noqa: SLF001 - force the database + analysis path
            cold.append(select(pid))
    panel._forget_documents()  # noqa: SLF001
    select(pids[0])  # the prefetch of every record patient starts here
    t0 = time.perf_counter()
    while len(panel._cache) < len(pids) and time.perf_counter() - t0 < 60:  # noqa: SLF001
        app.processEvents()
    print(f"prefetch of {len(pids)} patients: {1000 * (time.perf_counter() - t0):.0f} ms wall")
    for _ in range(rounds):
        for pid in pids[1:] + pids[:1]:
            warm.append(select(pid))
    print(
        f"worker CPU per cold change (database read + analysis): median "
        f"{statistics.median(cpu):.1f} ms, max {max(cpu):.1f} ms"
    )
    docs = max(shown)
    for name, ms in (("cold (database + analysis on the worker)", cold), ("prefetched", warm)):
        p95 = sorted(ms)[int(0.95 * (len(ms) - 1))]
        print(
            f"panel update on patient change, {name}: median {statistics.median(ms):.1f} ms, "
            f"p95 {p95:.1f} ms, max {max(ms):.1f} ms over {len(ms)} changes "
            f"(up to {docs} documents)"
        )
    panel.shutdown()
    panel.deleteLater()


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--reports", default=str(SHARED / "reports" / "iu_cxr_reports_dev.tar.gz"))
    ap.add_argument("--records", default=str(SHARED / "records" / "synthea_fhir"))
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--panel-only", action="store_true", help="only the panel part")
    args = ap.parse_args()
    try:
        import torch

        torch.set_num_threads(1)
    except ImportError:
        pass
    from medview.notes.evaluate import score

    if args.panel_only:
        bench_panel(Path(args.records), args.rounds)
        return 0
    docs, gold = load_reports(Path(args.reports))
    run_medview(docs[:50])  # warm-up: compiles the term patterns
    print(
        f"IU dev reports (FINDINGS/IMPRESSION text): {len(docs)}; "
        f"process RSS {rss_mb():.0f} MB with them loaded"
    )

    def measure(label: str, run, extra: str = "", since: float | None = None) -> float:
        """Run ``run(docs)``; print its speed, F1 and RSS growth (from ``since``, or now)."""
        m0 = rss_mb() if since is None else since
        preds, secs = run(docs)
        grown = rss_mb() - m0
        _, micro, macro, _ = score(zip(gold, preds, strict=True))
        speed = len(docs) / secs
        print(
            f"{label:8}: {speed:8.0f} reports/s (CPU, one core)  micro F1 {micro['f1']:.3f}  "
            f"macro F1 {macro:.3f}  RSS +{grown:.0f} MB{extra}"
        )
        return speed

    ours = measure("medview", run_medview)
    m_imp = rss_mb()
    try:
        nlp, other, normal = build_baseline()
    except ImportError as exc:
        print(f"baseline skipped: {exc} (pip install -e '.[bench]')")
    else:
        m1 = rss_mb()
        run_baseline(nlp, other, normal, docs[:50])  # warm-up
        theirs = measure(
            "baseline",
            lambda d: run_baseline(nlp, other, normal, d),
            f" (+{m1 - m_imp:.0f} MB spaCy import)",
            since=m1,
        )
        print(f"ratio   : medview is {ours / theirs:.1f}x the baseline's speed")
    if Path(args.records).exists():
        bench_panel(Path(args.records), args.rounds)
    else:
        print(f"panel part skipped: {args.records} is missing")
    return 0


if __name__ == "__main__":
    sys.exit(main())
