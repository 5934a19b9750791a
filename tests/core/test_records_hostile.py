"""Damaged records input: importers keep the good rows and never raise a traceback.

A deterministic generator damages copies of the shared Synthea CSV export, one Synthea
FHIR bundle (also as NDJSON) and the head of a real CGM CSV: extreme time-zone offsets,
non-string ``resourceType``, JSON nested 1,000 deep, 400-digit numbers, latin-1 and
binary bytes, unterminated quotes, truncation, wrong types per field, missing columns,
UTF-16 / UTF-8-BOM encodings. Each case knows how many undamaged rows it holds; the
import must keep at least 99 % of them and report every damaged row with its line or
entry. A fixed sample runs by default; the whole generator is ``slow``.
"""

from __future__ import annotations

import contextlib
import io
import json
import random
import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from medview.cli import main
from medview.errors import MedviewError
from medview.records import load_records, save_records
from medview.records.cgm import load_cgm_csv
from medview.records.model import RecordSet

SYNTHEA_FILES = ("observations", "conditions", "medications", "encounters", "procedures")
CSV_KINDS = ("tz", "bignum", "latin1", "binary", "quote", "truncate", "types", "dropcol", "enc")
JSON_KINDS = ("rtype", "deep", "bignum", "tz", "types", "truncate", "binary", "quote", "enc")
FHIR_FILE = "Delmar187_Spencer878_627bde6a-a31e-5566-6262-441262d4cc2c.json"
CGM_ROWS = 3000
PATIENTS = {  # one patient of each source, for the CLI runs
    "synthea": "3edac2e3-d223-6fae-d515-daf96ef6bc76",
    "fhir": "627bde6a-a31e-5566-6262-441262d4cc2c",
}


def _rows(rs: RecordSet) -> int:
    c = rs.counts()
    return sum(v for k, v in c.items() if k != "problems")


@dataclass
class Case:
    """One damaged input: where it is, how to read it, how many undamaged rows it holds."""

    name: str
    path: Path
    read: Callable[[Path], RecordSet]
    expected: int  # rows an import of only the undamaged part yields
    damaged: int  # rows / entries / lines damaged


# ----------------------------------------------------------------------------- damage
def _extreme_time(rng: random.Random) -> str:
    return rng.choice(
        [
            "9999-12-31T23:59:59-23:59",
            "0001-01-01T00:00:00+23:59",
            "2020-01-01T00:00:00+99:00",
            "2020-01-01T00:00:00+24:00",
            "1-1-1T99:99",
        ]
    )


def _bignum(rng: random.Random) -> str:
    return rng.choice(["9" * 400, "-" + "9" * 400, "1e999", "NaN", "-inf", "1" + "0" * 5000])


def _damage_csv_line(line: bytes, kind: str, rng: random.Random) -> bytes:
    fields = line.split(b",")
    i = rng.randrange(len(fields))
    if kind == "tz":
        j = next((k for k, f in enumerate(fields) if f[:2] in (b"19", b"20")), i)
        fields[j] = _extreme_time(rng).encode()
    elif kind == "bignum":
        fields[i] = _bignum(rng).encode()
    elif kind == "latin1":
        fields[i] = fields[i] + "caf\u00e9 \u00fc".encode("latin-1")
    elif kind == "binary":
        fields[i] = bytes(rng.randrange(256) for _ in range(12)) + b"\x00\xff"
    elif kind == "quote":
        fields[i] = b'"' + fields[i]
    elif kind == "types":
        fields[i] = rng.choice([b"", b"yesterday", b"[1,2]", b"{}", b"-", b"true"])
    return b",".join(fields)


def _damage_csv(data: bytes, kind: str, rng: random.Random, first_row: int) -> tuple[bytes, int]:
    """Damaged bytes and the number of data rows damaged or lost (``first_row``: header lines)."""
    lines = data.split(b"\n")
    if lines and lines[-1] == b"":
        lines.pop()
    n = len(lines) - first_row
    if kind == "enc":
        text = data.decode("utf-8")
        return (rng.choice([text.encode("utf-16"), b"\xef\xbb\xbf" + data])), 0
    if kind == "truncate":
        cut = rng.randrange(first_row + n // 2, len(lines))
        kept = b"\n".join(lines[:cut]) + b"\n" + lines[cut][: rng.randrange(len(lines[cut]))]
        return kept, len(lines) - cut
    if kind == "dropcol":  # a column no importer needs, from the header and every row
        head = lines[first_row - 1].split(b",") if first_row else []
        col = next((k for k, h in enumerate(head) if h.strip() in (b"DESCRIPTION", b"STOP")), None)
        if col is None:
            return data, 0
        out = [b",".join(f for k, f in enumerate(ln.split(b",")) if k != col) for ln in lines]
        return b"\n".join(out) + b"\n", 0
    picks = rng.sample(range(first_row, len(lines)), min(3, n))
    for k in picks:
        lines[k] = _damage_csv_line(lines[k], kind, rng)
    return b"\n".join(lines) + b"\n", len(picks)


def _damage_resource(res: dict, kind: str, rng: random.Random) -> str:
    """One resource as JSON text, damaged."""
    if kind == "rtype":
        res["resourceType"] = rng.choice([["Observation"], 5, {"a": 1}, None, True])
    elif kind == "tz":
        for key in ("effectiveDateTime", "onsetDateTime", "authoredOn", "birthDate", "issued"):
            if key in res:
                res[key] = _extreme_time(rng)
        for key in ("period", "performedPeriod", "effectivePeriod"):
            if key in res:
                res[key] = {"start": _extreme_time(rng)}
    elif kind == "types":
        key = rng.choice(["subject", "code", "component", "contained", "identifier", "id"])
        res[key] = rng.choice([5, "x", [1, [2]], {"coding": 7}, 1.5, False])
    elif kind == "bignum" and isinstance(res.get("valueQuantity"), dict):
        res["valueQuantity"]["value"] = "@BIG@"
    text = json.dumps(res)
    if kind == "bignum":
        big = rng.choice(["9" * 400, "-" + "9" * 400, "1" + "0" * 5000])
        text = (
            text.replace('"@BIG@"', big) if "@BIG@" in text else text[:-1] + ', "b": ' + big + "}"
        )
    elif kind == "deep":
        text = text[:-1] + ', "deep": ' + "[" * 1000 + "]" * 1000 + "}"
    elif kind == "binary":
        cut = rng.randrange(1, len(text) - 1)
        text = text[:cut] + "\udcff\x00\udcfe" + text[cut:]
    elif kind == "quote":
        k = text.find('"', rng.randrange(len(text) // 2))
        text = text[:k] + text[k + 1 :] if k > 0 else text
    elif kind == "latin1":
        text = text.replace('"display": "', '"display": "caf\udce9 ', 1)
    return text


def _enc(text: str) -> bytes:
    return text.encode("utf-8", "surrogateescape")


def _fhir_case(
    src: Path, dest: Path, kind: str, rng: random.Random, ndjson: bool
) -> tuple[Path, Path, int]:
    """(damaged file, file of only the undamaged entries, entries damaged)."""
    bundle = json.loads(src.read_text(encoding="utf-8"))
    entries = bundle["entry"]
    keep = list(range(len(entries)))
    picks = rng.sample(range(1, len(entries)), 3)
    texts = [json.dumps(e["resource"]) for e in entries]
    if kind == "truncate":
        cut = rng.randrange(len(entries) // 2, len(entries))
        keep = keep[:cut]
        picks = [cut]
    elif kind != "enc":
        for k in picks:
            texts[k] = _damage_resource(entries[k]["resource"], kind, rng)
        keep = [k for k in keep if k not in picks]
    suffix = ".ndjson" if ndjson else ".json"
    clean = dest / f"clean{suffix}"
    bad = dest / f"damaged{suffix}"
    if ndjson:
        clean.write_text("\n".join(json.dumps(entries[k]["resource"]) for k in keep) + "\n")
        data = _enc("\n".join(texts) + "\n")
    else:
        clean.write_text(json.dumps({**bundle, "entry": [entries[k] for k in keep]}))
        head = json.dumps({k: v for k, v in bundle.items() if k != "entry"})[:-1]
        wrapped = [
            '{"fullUrl": ' + json.dumps(e.get("fullUrl", "")) + ', "resource": ' + t + "}"
            for e, t in zip(entries, texts, strict=True)
        ]
        data = _enc(head + ', "entry": [\n' + ",\n".join(wrapped) + "\n]}")
    if kind == "truncate":
        at = data.index(_enc(texts[picks[0]])[:60])
        data = data[: at + rng.randrange(10, 40 + len(texts[picks[0]]) // 2)]
    elif kind == "enc":
        data = rng.choice([data.decode("utf-8").encode("utf-16"), b"\xef\xbb\xbf" + data])
        picks = []
    bad.write_bytes(data)
    return bad, clean, len(picks)


# ----------------------------------------------------------------------------- cases
def _synthea_case(src: Path, tmp: Path, name: str, kind: str, seed: int) -> Case:
    rng = random.Random(f"{seed}-{name}-{kind}")
    folder = tmp / f"synthea-{name}-{kind}-{seed}"
    shutil.copytree(src, folder)
    target = folder / f"{name}.csv"
    clean = _rows(load_records(folder))
    data, damaged = _damage_csv(target.read_bytes(), kind, rng, 1)
    target.chmod(0o644)
    target.write_bytes(data)
    return Case(f"synthea {name} {kind} #{seed}", folder, load_records, clean - damaged, damaged)


def _fhir(src: Path, tmp: Path, kind: str, seed: int, ndjson: bool) -> Case:
    rng = random.Random(f"{seed}-fhir-{kind}-{ndjson}")
    folder = tmp / f"fhir-{kind}-{seed}-{int(ndjson)}"
    folder.mkdir()
    bad, clean, damaged = _fhir_case(src, folder, kind, rng, ndjson)
    expected = _rows(load_records(clean))
    clean.unlink()
    fmt = "ndjson" if ndjson else "bundle"
    return Case(f"fhir {fmt} {kind} #{seed}", bad, load_records, expected, damaged)


def _cgm_case(src: Path, tmp: Path, kind: str, seed: int) -> Case:
    rng = random.Random(f"{seed}-cgm-{kind}")
    path = tmp / f"cgm-{kind}-{seed}.csv"
    head = b"\n".join(src.read_bytes().split(b"\n")[: CGM_ROWS + 1]) + b"\n"
    clean = tmp / f"cgm-clean-{kind}-{seed}.csv"
    clean.write_bytes(head)
    expected = _rows(load_cgm_csv(clean)) - len(load_cgm_csv(clean).patients)
    data, damaged = _damage_csv(head, kind, rng, 1)
    path.write_bytes(data)
    return Case(f"cgm {kind} #{seed}", path, load_cgm_csv, expected - damaged, damaged)


def generate(shared: Path, tmp: Path, seeds: range, kinds: int | None = None) -> Iterator[Case]:
    """Every damaged case for ``seeds`` (``kinds``: only the first N damage classes)."""
    synthea = shared / "records" / "synthea_csv_ma27"
    fhir = shared / "records" / "synthea_fhir" / FHIR_FILE
    cgm = shared / "cgm_real" / "Hall2018_processed.csv"
    for seed in seeds:
        for kind in CSV_KINDS[:kinds]:
            name = SYNTHEA_FILES[seed % len(SYNTHEA_FILES)]
            yield _synthea_case(synthea, tmp, name, kind, seed)
            yield _cgm_case(cgm, tmp, kind, seed)
        for kind in JSON_KINDS[:kinds]:
            yield _fhir(fhir, tmp, kind, seed, ndjson=bool(seed % 2))


@dataclass
class Outcome:
    case: Case
    kept: int = -1
    problems: int = 0
    traceback: str = ""
    refused: str = ""


def _commands(case: Case) -> list[list[str]]:
    """The CLI runs made on a case: forecast (and suggest for a records folder or file)."""
    path = str(case.path)
    if case.read is load_cgm_csv:
        return [["forecast", "--cgm", path, "--json"]]
    pid = PATIENTS["fhir" if case.name.startswith("fhir") else "synthea"]
    return [
        ["suggest", "--records", path, "--patient", pid, "--json"],
        ["forecast", "--records", path, "--patient", pid, "--code", "8302-2"],
    ]


def run_cli(argv: list[str]) -> str:
    """ "" when the command ended as the CLI promises; else what went wrong."""
    err = io.StringIO()
    try:
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(err):
            rc = main(argv)
    except SystemExit as exc:  # argparse
        rc = exc.code if isinstance(exc.code, int) else 2
    except Exception as exc:  # noqa: BLE001 - what this test counts
        return f"medview {argv[0]}: traceback {type(exc).__name__}: {str(exc)[:200]}"
    lines = [ln for ln in err.getvalue().splitlines() if ln.strip()]
    if rc not in (0, 1, 2) or "Traceback" in err.getvalue():
        return f"medview {argv[0]}: exit {rc}: {err.getvalue()[-300:]}"
    if rc and not lines:
        return f"medview {argv[0]}: exit {rc} without a reason"
    return ""


def run_case(case: Case, db: Path, cli: bool = True) -> Outcome:
    """Import one damaged case, store it, run the CLI on it; a clean one-line refusal is
    not a traceback."""
    out = Outcome(case)
    try:
        rs = case.read(case.path)
        save_records(rs, db)
    except MedviewError as exc:
        out.refused = str(exc)
        return out
    except Exception as exc:  # noqa: BLE001 - what this test counts
        out.traceback = f"{type(exc).__name__}: {str(exc)[:200]}"
        return out
    out.kept = _rows(rs) - (len(rs.patients) if case.read is load_cgm_csv else 0)
    out.problems = len(rs.problems)
    out.traceback = "; ".join(m for m in map(run_cli, _commands(case) if cli else []) if m)
    return out


def _check(outcomes: list[Outcome]) -> None:
    tracebacks = [f"{o.case.name}: {o.traceback}" for o in outcomes if o.traceback]
    assert not tracebacks, "\n".join(tracebacks)
    refused = [f"{o.case.name}: {o.refused}" for o in outcomes if o.refused]
    assert not refused, "\n".join(refused)
    short = [
        f"{o.case.name}: kept {o.kept} of {o.case.expected} undamaged rows"
        for o in outcomes
        if o.kept < 0.99 * o.case.expected
    ]
    assert not short, "\n".join(short)
    silent = [o.case.name for o in outcomes if o.case.damaged and not o.problems]
    # a damaged row may still be readable (an offset of +23:59 is valid): allow a few
    assert len(silent) <= len(outcomes) // 4, silent


@pytest.fixture()
def shared_records(shared_data: Path) -> Path:
    for sub in ("records/synthea_csv_ma27", "records/synthea_fhir", "cgm_real"):
        if not (shared_data / sub).exists():
            pytest.skip(f"{shared_data / sub} not present")
    return shared_data


@pytest.fixture()
def quiet_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("MEDVIEW_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("MEDVIEW_DB", raising=False)
    return tmp_path / "db.sqlite"


def test_damaged_records_sample(shared_records: Path, tmp_path: Path, quiet_home: Path) -> None:
    outcomes = [run_case(c, quiet_home) for c in generate(shared_records, tmp_path, range(1))]
    assert len(outcomes) == 2 * len(CSV_KINDS) + len(JSON_KINDS)
    _check(outcomes)


def test_unterminated_quote_reported_at_its_line(tmp_path: Path) -> None:
    rows = [f"2020-01-01T{h:02d}:00:00Z,{h},{80 + h}" for h in range(24)]
    rows[5] = '2020-01-01T05:00:00Z,"5,85'
    path = tmp_path / "q.csv"
    path.write_text("time,id,glucose\n" + "\n".join(rows) + "\n")
    rs = load_cgm_csv(path)
    assert len(rs.observations) == 23
    assert [str(p) for p in rs.problems] == [f"{path}:7: unterminated quote; line skipped"]


def test_encodings_detected_or_refused(tmp_path: Path) -> None:
    text = "time,glucose\n" + "".join(f"2020-01-01 {h:02d}:00,{90 + h}\n" for h in range(10))
    for i, data in enumerate(
        [text.encode("utf-16"), b"\xef\xbb\xbf" + text.encode(), text.encode("utf-16-be")]
    ):
        path = tmp_path / f"e{i}.csv"
        path.write_bytes(data)
        if i < 2:
            assert [o.value for o in load_cgm_csv(path).observations] == [90 + h for h in range(10)]
        else:
            with pytest.raises(MedviewError, match="not UTF-8 text.*UTF-16 without"):
                load_cgm_csv(path)


@pytest.mark.slow
def test_damaged_records_full(shared_records: Path, tmp_path: Path, quiet_home: Path) -> None:
    outcomes = [run_case(c, quiet_home) for c in generate(shared_records, tmp_path, range(1, 9))]
    _check(outcomes)
