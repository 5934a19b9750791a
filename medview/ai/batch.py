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

from medview.paths import open_sqlite, read_rows
from medview.tasks import TaskState, ensure_state

DDL = """
CREATE TABLE IF NOT EXISTS ai_results (
  path TEXT NOT NULL, model TEXT NOT NULL, version TEXT NOT NULL, idx INTEGER NOT NULL,
  result TEXT NOT NULL, created TEXT, PRIMARY KEY (path, model, version, idx));
CREATE TABLE IF NOT EXISTS ai_done (
  path TEXT NOT NULL, model TEXT NOT NULL, version TEXT NOT NULL, images INTEGER, created TEXT,
  PRIMARY KEY (path, model, version));
"""


#: images per model batch in a worker: the same as ``medview analyze`` (its --batch-size
#: default), so a worker does the same work per image as one analyze process
BATCH_SIZE = 32
#: files per Dask task by default: two full batches of single-image files (a chunk of
#: 16 ran batches of 16, costlier per image); an interrupted run loses at most the
#: chunks in flight
CHUNK = 2 * BATCH_SIZE

#: Dask settings of the LocalCluster's workers: its statistical profiler (a stack sample
#: every 10 ms, deep in torch here) and the GIL monitor (every 1 ms) cost a
#: single-threaded worker a large share of its one core (tests/bench/bench_batch.py);
#: a hospital's own cluster keeps its own configuration.
WORKER_CONFIG: dict[str, Any] = {
    "distributed.worker.profile.enabled": False,
    "distributed.admin.system-monitor.gil.enabled": False,
    # the periodic book-keeping of the scheduler (in the driver) and the workers: the
    # event-loop tick (20 ms by default), the system and memory monitors (0.5 s, 0.1 s)
    # and work stealing (chunks are equal, and queued on the scheduler until a worker
    # has room): driver CPU 0.15-0.17 -> 0.11 ms per image in the bench
    "distributed.admin.tick.interval": "1s",
    "distributed.admin.system-monitor.interval": "5s",
    "distributed.worker.memory.monitor-interval": "1s",
    "distributed.scheduler.work-stealing": False,
    # Dask's default also sets MALLOC_TRIM_THRESHOLD_=65536: glibc then hands freed
    # memory back at once and every batch's tensors fault their pages in again
    "distributed.nanny.pre-spawn-environ": {
        "OMP_NUM_THREADS": 1,
        "MKL_NUM_THREADS": 1,
        "OPENBLAS_NUM_THREADS": 1,
    },
}


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
    scan_s: float = 0.0  # listing the sources (the cluster starts meanwhile on a first run)
    startup_s: float = 0.0  # the wait after the scan until the workers were ready
    warmup_s: float = 0.0  # of which the workers' torch import and model loading
    worker_cpu_s: float = 0.0  # CPU seconds the workers spent on the chunks (not start-up)
    driver_cpu_s: float = 0.0  # CPU seconds of this process meanwhile (scheduler, writes)

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
    done = {
        (row[0], row[1], row[2])
        for row in read_rows(connect(db), "SELECT path, model, version FROM ai_done")
    }
    todo = [f for f in files if not all((f, m, v) in done for m, v in models)]
    return todo, len(files) - len(todo), problems


_resolved: dict[tuple[str, ...], list[Any]] = {}


def _worker_models(models: list[str], versions: list[str] | None = None) -> list[Any]:
    """The worker process's models: resolved (registry, card checks) once per process,
    set of names and expected versions, loaded once (:func:`medview.ai.inference.load_model`
    caches them), with one torch thread and decoding in this process. A long-lived worker
    (a hospital's cluster) resolves again when the driver expects other versions, and a
    worker whose models differ from the driver's is an error, not results under the wrong
    version."""
    import os

    os.environ["MEDVIEW_AI_THREADS"] = "1"
    os.environ["MEDVIEW_DECODE_WORKERS"] = "0"
    from medview.ai.inference import load_model
    from medview.ai.registry import get_model
    from medview.errors import MedviewError

    key = (os.environ.get("MEDVIEW_MODELS", ""), *models, "|", *(versions or []))
    if key not in _resolved:
        infos = [get_model(n) for n in models]
        for info, want in zip(infos, versions or [i.version for i in infos], strict=True):
            if info.version != want:
                raise MedviewError(
                    f"this worker has {info.name} {info.version}, the driver {want}: "
                    "install the same models on every worker",
                    info.folder,
                )
        for info in infos:
            load_model(info, "cpu")  # weights sha256 checked, warm-up pass, then cached
        _resolved[key] = infos
    return _resolved[key]


def warm_up(models: list[str], versions: list[str] | None = None) -> int:
    """Worker start-up, run once on every worker before the first chunk: import torch,
    resolve and load ``models`` (seconds per worker; otherwise billed to its first chunk).
    Returns the worker's process id."""
    import os

    _worker_models(models, versions)
    return os.getpid()


def _any_done(db: Any, models: Sequence[tuple[str, str]]) -> bool:
    """Whether the database holds any file done by one of these model versions."""
    con = connect(db)
    try:
        return any(
            con.execute(
                "SELECT 1 FROM ai_done WHERE model = ? AND version = ? LIMIT 1", mv
            ).fetchone()
            for mv in models
        )
    finally:
        con.close()


def analyse_files(
    paths: list[str], models: list[str], versions: list[str] | None = None
) -> dict[str, Any]:
    """Worker task: every image of ``paths`` through ``models`` (CPU, 1 thread), batched
    across files. Decoding runs in this worker process: the Dask worker is the isolation
    boundary (a decoder that kills it costs this chunk, reported and retried next run)."""
    import time

    from medview.ai.inference import analyze_images
    from medview.ai.preprocess import SourceImage, iter_path_images

    cpu0 = time.process_time()
    infos = _worker_models(models, versions)
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
    for r in analyze_images(images(), infos, device="cpu", batch_size=BATCH_SIZE):
        key = r.key or f"{r.path}#{r.index}"
        row = r.as_json()
        row["_file"] = file_of.get(key, r.path)
        row["_key"] = key
        row["_latent"] = None if r.latent is None else [float(v) for v in r.latent]
        out.append(row)
    cpu = time.process_time() - cpu0  # this chunk's CPU seconds in the worker process
    return {"results": out, "problems": problems, "counts": counts, "cpu_s": cpu}


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
    import dask

    with dask.config.set(WORKER_CONFIG):  # the nannies hand it to their worker processes
        cluster = LocalCluster(  # everything on the loopback interface only
            n_workers=workers,
            threads_per_worker=1,
            processes=True,
            host="127.0.0.1",
            dashboard_address="127.0.0.1:0",
            worker_dashboard_address="127.0.0.1:0",
        )
    return Client(cluster)


def _start(
    factory: Callable[[int, str | None], Any], workers: int, scheduler: str | None
) -> tuple[Any, dict[str, Any]]:
    """Start the Dask client in a thread (process start-up overlaps the driver's scan);
    returns the thread and a dict that gets ``client`` or ``error``."""
    import threading

    box: dict[str, Any] = {}

    def go() -> None:
        try:
            box["client"] = factory(workers, scheduler)
        except BaseException as exc:  # noqa: BLE001 - re-raised in the caller's thread
            box["error"] = exc

    t = threading.Thread(target=go, name="medview-dask-start", daemon=True)
    t.start()
    return t, box


def _close(client: Any) -> None:
    """Close a client and the LocalCluster it started (None: nothing to close)."""
    if client is None:
        return
    client.close()
    cluster = getattr(client, "cluster", None)
    if cluster is not None:
        cluster.close()


def run_batch(
    sources: Sequence[str | Path],
    models: Sequence[Any],
    workers: int = 2,
    scheduler: str | None = None,
    db: Any = None,
    chunk: int = CHUNK,
    state: TaskState | None = None,
    client_factory: Callable[[int, str | None], Any] | None = None,
) -> BatchReport:
    """Analyse every not-yet-analysed file of ``sources`` on Dask; progress via ``state``.

    The cluster starts while the sources are scanned; every worker then imports torch and
    loads the models once (:func:`warm_up`) before the chunks are sent, so a worker's
    start-up is not billed to its first chunk (``startup_s`` in the report: the wait
    for the cluster and the warm-up after the scan).
    """
    import time

    st = ensure_state(state)
    t0 = time.perf_counter()
    names = [(m.name, m.version) for m in models]
    model_names = [m for m, _ in names]
    factory = client_factory or _client
    # a first run starts the cluster during the scan; a re-run first sees what is left
    early = _start(factory, workers, scheduler) if not _any_done(db, names) else None
    try:
        todo, skipped, problems = work_items(sources, names, db)
    except BaseException:
        if early is not None:  # do not leave the cluster that was starting behind
            early[0].join()
            _close(early[1].get("client"))
        raise
    t_scan = time.perf_counter()
    rep = BatchReport(files=len(todo) + skipped, skipped=skipped, problems=problems)
    rep.scan_s = round(t_scan - t0, 3)
    rep.workers, rep.scheduler = workers, scheduler or "LocalCluster"
    if early is None and not todo:
        rep.seconds = round(time.perf_counter() - t0, 3)
        return rep
    starter, box = early or _start(factory, workers, scheduler)
    starter.join()
    if "error" in box:
        raise box["error"]
    client = box["client"]
    try:
        if todo:
            from distributed import as_completed

            t_up = time.perf_counter()
            versions = [v for _, v in names]
            client.run(warm_up, model_names, versions)  # every worker, in parallel
            rep.warmup_s = round(time.perf_counter() - t_up, 3)
            rep.startup_s = round(time.perf_counter() - t_scan, 3)
            cpu0 = time.process_time()
            parts = [todo[i : i + chunk] for i in range(0, len(todo), chunk)]
            futs = {
                client.submit(analyse_files, p, model_names, versions, pure=False): p for p in parts
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
                rep.worker_cpu_s += float(res.get("cpu_s", 0.0))
                rep.analysed_files += len(futs[fut])
                rep.problems += res["problems"]
                st.progress(
                    rep.analysed_files / len(todo), f"{rep.analysed_files}/{len(todo)} files"
                )
        rep.driver_cpu_s = round(time.process_time() - cpu0, 3) if todo else 0.0
    finally:
        _close(client)
    rep.seconds = round(time.perf_counter() - t0, 3)
    return rep
