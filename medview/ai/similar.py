"""Similar-case search: analysed images' embeddings in the local database, nearest first.

A classifier result carries its embedding (``AIResult.latent``: the pooled last-stage
features; an autoencoder result carries its latent vector). :func:`index_results`
stores, per image and model version, that embedding with the findings of every model
run on the image (label, probabilities, in-distribution verdict), in the table
``ai_embeddings`` of the study database (:func:`medview.paths.database_path`, the
same file as the studies, records and notes). :func:`search` returns the ``k``
nearest stored images (Euclidean distance) of the same model version.

On the PneumoniaMNIST val split queried against the train split, the classifier's
features give precision@1/5/10 (same label) 0.98/0.97/0.97 (see the card's
``similar_search`` block); the autoencoder's latent 0.94/0.93/0.93.
"""

from __future__ import annotations

import datetime as _dt
import json
import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass
from os import PathLike
from typing import Any

import numpy as np

from medview.paths import open_sqlite, read_rows

DDL = """
CREATE TABLE IF NOT EXISTS ai_embeddings (
  key TEXT NOT NULL, model TEXT NOT NULL, version TEXT NOT NULL, path TEXT, idx INTEGER,
  dim INTEGER NOT NULL, embedding BLOB NOT NULL, findings TEXT, created TEXT,
  PRIMARY KEY (key, model, version));
CREATE INDEX IF NOT EXISTS ai_embeddings_mv ON ai_embeddings (model, version);
"""


@dataclass
class Neighbour:
    """One stored image near the query."""

    key: str
    path: str
    index: int
    distance: float
    findings: dict[str, Any]

    def as_json(self) -> dict[str, Any]:
        return {
            "key": self.key,
            "path": self.path,
            "index": self.index,
            "distance": round(self.distance, 6),
            "findings": self.findings,
        }


def connect(db: str | PathLike[str] | None = None) -> sqlite3.Connection:
    """Open the study database (default :func:`medview.paths.database_path`) with the table."""
    return open_sqlite(db, DDL)


def _finding(r: Any) -> dict[str, Any]:
    return {
        "version": r.version,
        "predicted": r.predicted,
        "probabilities": r.probabilities,
        "anomaly_score": r.anomaly_score,
        "in_distribution": r.in_distribution,
        "in_scope": r.in_scope,
    }


def index_results(results: Sequence[Any], db: str | PathLike[str] | None = None) -> int:
    """Store the embedding of every result that has one, with the image's findings."""
    by_key: dict[str, dict[str, Any]] = {}
    for r in results:
        by_key.setdefault(r.key or f"{r.path}#{r.index}", {})[r.model] = _finding(r)
    now = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
    rows = []
    for r in results:
        if r.latent is None:
            continue
        emb = np.ascontiguousarray(r.latent, dtype=np.float32).ravel()
        key = r.key or f"{r.path}#{r.index}"
        findings = json.dumps(by_key[key], default=str)
        rows.append(
            (key, r.model, r.version, r.path, r.index, emb.size, emb.tobytes(), findings, now)
        )
    if not rows:
        return 0
    con = connect(db)
    try:
        with con:
            con.executemany(
                "INSERT OR REPLACE INTO ai_embeddings VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)", rows
            )
    finally:
        con.close()
    return len(rows)


def search(
    embedding: np.ndarray,
    model: str,
    version: str,
    k: int = 5,
    db: str | PathLike[str] | None = None,
    exclude_key: str | None = None,
) -> list[Neighbour]:
    """The ``k`` stored images nearest to ``embedding`` (same model and version)."""
    rows = read_rows(
        connect(db),
        "SELECT key, path, idx, dim, embedding, findings FROM ai_embeddings "
        "WHERE model = ? AND version = ?",
        (model, version),
    )
    q = np.asarray(embedding, np.float32).ravel()
    rows = [r for r in rows if r[3] == q.size and r[0] != exclude_key]
    if not rows:
        return []
    base = np.stack([np.frombuffer(r[4], np.float32) for r in rows])
    dist = np.sqrt(((base - q) ** 2).sum(axis=1))
    order = np.argsort(dist, kind="stable")[: max(0, k)]
    return [
        Neighbour(
            key=rows[i][0],
            path=str(rows[i][1] or ""),
            index=int(rows[i][2] or 0),
            distance=float(dist[i]),
            findings=json.loads(rows[i][5] or "{}"),
        )
        for i in order
    ]


def precision_at_k(
    base: np.ndarray,
    base_labels: np.ndarray,
    query: np.ndarray,
    labels: np.ndarray,
    ks: Sequence[int],
) -> dict[str, float]:
    """Share of the k nearest ``base`` rows with the query's label, for each k."""
    base = np.asarray(base, np.float64)
    out: dict[str, float] = {}
    hits: dict[int, list[float]] = {k: [] for k in ks}
    for i in range(0, len(query), 256):
        q = np.asarray(query[i : i + 256], np.float64)
        d = (q**2).sum(1)[:, None] - 2 * q @ base.T + (base**2).sum(1)[None]
        nn = np.argsort(d, axis=1, kind="stable")[:, : max(ks)]
        same = base_labels[nn] == labels[i : i + 256, None]
        for k in ks:
            hits[k].extend(same[:, :k].mean(axis=1).tolist())
    for k in ks:
        out[f"precision_at_{k}"] = round(float(np.mean(hits[k])), 4)
    return out


def find_similar(
    results: Sequence[Any],
    k: int = 5,
    db: str | PathLike[str] | None = None,
    state: Any = None,
) -> list[Neighbour]:
    """Index ``results`` (one image's, every model) and return the stored images nearest
    to it, by the classifier's embedding when there is one (the AI panel's worker)."""
    usable = [r for r in results if r.latent is not None]
    if not usable:
        return []
    index_results(results, db=db)
    r = next((x for x in usable if x.probabilities), usable[0])
    return search(r.latent, r.model, r.version, k, db=db, exclude_key=r.key or None)
