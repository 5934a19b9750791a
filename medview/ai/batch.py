"""Batch analysis at scale on Dask distributed (``medview batch analyze``).

The work is split by file: :func:`work_items` lists the image files of the sources
(:func:`medview.io.scan`, header only) and drops those already analysed by the same model
versions (table ``ai_results`` of the study database: a re-run after an interruption
skips them). Chunks of files go to Dask workers (:func:`analyse_files`: each worker
loads the models once, single-threaded torch, and returns plain JSON results and
embeddings); the driver writes every finished chunk at once (results, embeddings for
``medview similar``) so an interrupted run keeps what finished and loses only chunks in
flight. A ``LocalCluster`` (N single-threaded worker processes) is started unless a
running scheduler's address is given (``tcp://host:8786``): then the hospital's own
Dask cluster does the work, and every worker needs medview and the same models.
"""

from __future__ import annotations

import datetime as _dt
import json
import sqlite3
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from os import PathLike
from pathlib import Path
from typing import Any

from medview.paths import open_sqlite
from medview.tasks import TaskState, ensure_state

DDL = """
CREATE TABLE IF NOT EXISTS ai_results (
  path TEXT NOT NULL, model TEXT NOT NULL, version TEXT NOT NULL, idx INTEGER NOT NULL,
  result TEXT NOT NULL, created TEXT, PRIMARY KEY (path, model, version, idx));
CREATE TABLE IF NOT EXISTS ai_done (
  path TEXT NOT NULL, model TEXT NOT NULL, version TEXT NOT NULL, images INTEGER, created TEXT,
  PRIMARY KEY (path, model, version));
"""


@dataclass
class BatchReport:
    """What a batch run did."""

    files: int = 0
    skipped: int = 0
    analysed_files: int = 0
    images: int = 0
    problems: list[str] = field(default_factory=list)
    seconds: float = 0.0
    workers: int = 0
    scheduler: str = ""

    def as_json(self) -> dict[str, Any]:
        return dict(self.__dict__)


def connect(db: str | PathLike[str] | None = None) -> sqlite3.Connection:
    """The study database (default :func:`medview.paths.database_path`) with the tables."""
    return open_sqlite(db, DDL, timeout=30.0)


def work_items(
    sources: Sequence[str | Path], models: Sequence[tuple[str, str]], db: Any = None
) -> tuple[list[str], int, list[str]]:
    """(files still to analyse, files skipped as done, scan problems)."""
    from medview.io import scan

    files: list[str] = []
    problems: list[str] = []
    for src in sources:
        res = scan(Path(src))
        problems += [f"{p.path}: {p.reason}" for p in res.errors]
        for series in res.series:
            files += [str(i.path) for i in series.instances if i.path]
    files = list(dict.fromkeys(files))
    con = connect(db)
    try:
        done = {
            (row[0], row[1], row[2])
            for row in con.execute("SELECT path, model, version FROM ai_done").fetchall()
        }
    finally:
        con.close()
    todo = [f for f in files if not all((f, m, v) in done for m, v in models)]
    return todo, len(files) - len(todo), problems


def analyse_files(paths: list[str], models: list[str]) -> dict[str, Any]:
    """Worker task: every image of ``paths`` through ``models`` (CPU, 1 thread), batched
    across files. Decoding runs in this worker process: the Dask worker is the isolation
    boundary (a decoder that kills it costs this chunk, reported and retried next run)."""
    import os

    os.environ["MEDVIEW_AI_THREADS"] = "1"
    os.environ["MEDVIEW_DECODE_WORKERS"] = "0"
    from medview.ai.inference import analyze_images
    from medview.ai.preprocess import SourceImage, iter_path_images
    from medview.ai.registry import get_model

    infos = [get_model(n) for n in models]  # resolved once per chunk
    problems: list[str] = []
    file_of: dict[str, str] = {}
    counts = {p: 0 for p in paths}

    def images() -> Any:
        for p in paths:
            for item in iter_path_images(p):
                if not isinstance(item, SourceImage):
                    problems.append(str(item))
                    continue
                file_of[item.key or f"{item.path}#{item.index}"] = p
                counts[p] += 1
                yield item

    out: list[dict[str, Any]] = []
    for r in analyze_images(images(), infos, device="cpu", batch_size=32):
        key = r.key or f"{r.path}#{r.index}"
        row = r.as_json()
        row["_file"] = file_of.get(key, r.path)
        row["_key"] = key
        row["_latent"] = None if r.latent is None else [float(v) for v in r.latent]
        out.append(row)
    return {"results": out, "problems": problems, "counts": counts}


def store(
    chunk: dict[str, Any], paths: list[str], models: Sequence[tuple[str, str]], db: Any
) -> int:
    """Write one finished chunk (results, embeddings, done marks) in one transaction."""
    import numpy as np

    now = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
    rows, emb = [], []
    for r in chunk["results"]:
        latent, key, file = r.pop("_latent"), r.pop("_key"), r.pop("_file")
        rows.append((file, r["model"], r["version"], r["index"], json.dumps(r), now))
        if latent is not None:
            vec = np.asarray(latent, np.float32)
            finding = {r["model"]: {k: r.get(k) for k in ("predicted", "probabilities")}}
            emb.append((key, r["model"], r["version"], r["path"], r["index"], vec.size,
                        vec.tobytes(), json.dumps(finding), now))  # fmt: skip
    done = [(p, m, v, chunk["counts"].get(p, 0), now) for p in paths for m, v in models]
    from medview.ai import similar

    con = connect(db)
    try:
        con.executescript(similar.DDL)
        with con:
            con.executemany("INSERT OR REPLACE INTO ai_results VALUES (?, ?, ?, ?, ?, ?)", rows)
            con.executemany(
                "INSERT OR REPLACE INTO ai_embeddings VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)", emb
            )
            con.executemany("INSERT OR REPLACE INTO ai_done VALUES (?, ?, ?, ?, ?)", done)
    finally:
        con.close()
    return len({(r[0], r[3]) for r in rows})


def _client(workers: int, scheduler: str | None) -> Any:
    from distributed import Client, LocalCluster

    if scheduler:
        return Client(scheduler, timeout="20s")
    cluster = LocalCluster(  # everything on the loopback interface only
        n_workers=workers,
        threads_per_worker=1,
        processes=True,
        host="127.0.0.1",
        dashboard_address="127.0.0.1:0",
        worker_dashboard_address="127.0.0.1:0",
    )
    return Client(cluster)


def run_batch(
    sources: Sequence[str | Path],
    models: Sequence[Any],
    workers: int = 2,
    scheduler: str | None = None,
    db: Any = None,
    chunk: int = 16,
    state: TaskState | None = None,
    client_factory: Callable[[int, str | None], Any] | None = None,
) -> BatchReport:
    """Analyse every not-yet-analysed file of ``sources`` on Dask; progress via ``state``."""
    import time

    st = ensure_state(state)
    t0 = time.perf_counter()
    names = [(m.name, m.version) for m in models]
    todo, skipped, problems = work_items(sources, names, db)
    rep = BatchReport(files=len(todo) + skipped, skipped=skipped, problems=problems)
    rep.workers, rep.scheduler = workers, scheduler or "LocalCluster"
    if todo:
        from distributed import as_completed

        client = (client_factory or _client)(workers, scheduler)
        try:
            parts = [todo[i : i + chunk] for i in range(0, len(todo), chunk)]
            futs = {
                client.submit(analyse_files, p, [m for m, _ in names], pure=False): p for p in parts
            }
            for fut in as_completed(list(futs)):
                try:
                    res = fut.result()
                except Exception as exc:  # noqa: BLE001 - e.g. KilledWorker: report, go on
                    rep.problems.append(
                        f"{len(futs[fut])} file(s) from {futs[fut][0]} not analysed "
                        f"({type(exc).__name__}: {exc}); a re-run retries them"
                    )
                    continue
                rep.images += store(res, futs[fut], names, db)
                rep.analysed_files += len(futs[fut])
                rep.problems += res["problems"]
                st.progress(
                    rep.analysed_files / len(todo), f"{rep.analysed_files}/{len(todo)} files"
                )
        finally:
            client.close()
            cluster = getattr(client, "cluster", None)
            if cluster is not None:
                cluster.close()
    rep.seconds = round(time.perf_counter() - t0, 3)
    return rep
