"""Batch start-up (issue 17 item 2): the cluster starts during a first run's scan, a re-run
with nothing left starts none, a failing start is the caller's error, and the workers'
warm-up and CPU are reported. An in-process stand-in replaces Dask's client here (the
real LocalCluster is exercised by tests/core/test_ai_batch.py)."""

from __future__ import annotations

from concurrent.futures import Future

import pytest

from tests.helpers.data_helpers import pneumoniamnist_pngs

pytest.importorskip("torch")
pytest.importorskip("distributed")


class _InProcessClient:
    """The three calls run_batch makes, run in this process."""

    def __init__(self) -> None:
        self.ran: list[str] = []
        self.closed = False

    def run(self, fn, *args):  # noqa: ANN001, ANN201 - mirrors distributed.Client.run
        self.ran.append(fn.__name__)
        return {"local": fn(*args)}

    def submit(self, fn, *args, pure=False):  # noqa: ANN001, ANN201, ARG002
        fut: Future = Future()
        fut.set_result(fn(*args))
        return fut

    def close(self) -> None:
        self.closed = True


@pytest.fixture()
def folder(tmp_path):
    return pneumoniamnist_pngs(tmp_path / "archive", 6)


def test_first_run_warms_workers_and_a_rerun_with_nothing_left_starts_no_cluster(
    folder, tmp_path, monkeypatch
):
    import distributed

    from medview.ai import batch
    from medview.ai.registry import get_model

    monkeypatch.setattr(distributed, "as_completed", lambda futs: iter(futs))
    model = get_model("pneumonia_cnn")
    db = tmp_path / "b.db"
    clients: list[_InProcessClient] = []

    def factory(workers: int, scheduler: str | None) -> _InProcessClient:
        clients.append(_InProcessClient())
        return clients[-1]

    assert not batch._any_done(db, [(model.name, model.version)])
    rep = batch.run_batch([folder], [model], workers=1, db=db, chunk=4, client_factory=factory)
    assert (rep.files, rep.analysed_files, rep.images) == (6, 6, 6)
    assert clients[0].ran == ["warm_up"] and clients[0].closed  # warmed before the chunks
    assert rep.startup_s >= rep.warmup_s >= 0 and rep.scan_s >= 0
    assert rep.worker_cpu_s > 0  # CPU seconds of the chunks, summed
    assert batch._any_done(db, [(model.name, model.version)])
    again = batch.run_batch([folder], [model], workers=1, db=db, client_factory=factory)
    assert (again.skipped, again.analysed_files) == (6, 0)
    assert len(clients) == 1  # nothing left: no cluster was started


def test_a_cluster_that_fails_to_start_is_the_callers_error(folder, tmp_path):
    from medview.ai import batch
    from medview.ai.registry import get_model

    def factory(workers: int, scheduler: str | None) -> _InProcessClient:
        raise OSError("no scheduler at tcp://nowhere:8786")

    with pytest.raises(OSError, match="no scheduler"):
        batch.run_batch(
            [folder], [get_model("pneumonia_cnn")], db=tmp_path / "b.db", client_factory=factory
        )


def test_a_scan_that_fails_closes_the_cluster_started_meanwhile(tmp_path, monkeypatch):
    from medview.ai import batch
    from medview.ai.registry import get_model

    clients: list[_InProcessClient] = []

    def factory(workers: int, scheduler: str | None) -> _InProcessClient:
        clients.append(_InProcessClient())
        return clients[-1]

    def bad_scan(*args: object) -> None:
        raise PermissionError("archive not readable")

    monkeypatch.setattr(batch, "work_items", bad_scan)
    with pytest.raises(PermissionError):
        batch.run_batch(
            [tmp_path], [get_model("pneumonia_cnn")], db=tmp_path / "b.db", client_factory=factory
        )
    assert len(clients) == 1 and clients[0].closed


def test_a_worker_with_other_model_versions_refuses_the_chunk():
    """A long-lived worker re-resolves when the driver expects another version, and
    refuses when its models differ (no results under the wrong version)."""
    from medview.ai import batch
    from medview.ai.registry import get_model
    from medview.errors import MedviewError

    have = get_model("pneumonia_cnn").version
    assert batch.warm_up(["pneumonia_cnn"], [have]) > 0
    with pytest.raises(MedviewError, match="install the same models on every worker"):
        batch.analyse_files([], ["pneumonia_cnn"], ["9.9.9"])
