"""Priors from a PACS node (medview.viewer.remote_priors) against a real Orthanc on
loopback (tests/helpers/prior_studies.py): the search lists only the same patient's
earlier studies that are not local, an unreachable node is a one-line problem while the
others still answer, and a retrieve lands the prior in the local database."""

from __future__ import annotations

import socket
import types

import pytest

pytest.importorskip("pynetdicom", reason="pynetdicom is not installed")

from tests.helpers import prior_studies as ps  # noqa: E402
from tests.helpers.net_fixtures import free_port  # noqa: E402


@pytest.fixture(scope="module")
def studies(tmp_path_factory):
    return ps.studies_in(tmp_path_factory, "priors")


@pytest.fixture(scope="module")
def pacs(tmp_path_factory, studies):
    keys = ("current", "prior", "local_prior", "later", "other")
    with ps.orthanc_holding(tmp_path_factory, "orthanc-priors", studies, keys) as server:
        yield server


def _nodes(pacs):
    from medview.net.nodes import Node

    return [
        Node(name="orthanc", host="127.0.0.1", port=pacs.dicom_port, aet=pacs.aet),
        Node(name="orthanc-web", url=f"{pacs.url}/dicom-web"),
    ]


def _current(studies):
    return types.SimpleNamespace(
        patient_id=ps.PID,
        patient_name=ps.NAME,
        study_uid=studies["current"][1],
        study_date=ps.CURRENT_DATE,
    )


@pytest.fixture()
def local_db(medview_home, studies):
    """The study in view and one prior already in the local database."""
    from medview.viewer.session import import_into_db

    for k in ("current", "local_prior"):
        import_into_db(str(studies[k][0]))
    return medview_home


def test_search_lists_the_patients_pacs_priors_only(pacs, studies, local_db):
    from medview.viewer.remote_priors import find_remote_priors

    dimse, web = _nodes(pacs)
    res = find_remote_priors(_current(studies), [dimse])
    assert res.problems == [] and res.asked == 1
    assert [p.study_uid for p in res.priors] == [studies["prior"][1]]
    p = res.priors[0]
    assert (p.node, p.study_date, p.patient_id) == ("orthanc", ps.PRIOR_DATE, ps.PID)
    assert p.modalities == ["CT"] and p.instances == 20 and p.description == "CT prior"
    assert p.label() == "2023-01-15  CT prior (CT)  on PACS: orthanc"
    assert not p.name_differs
    # the same study on two nodes is listed once, from the first node asked
    both = find_remote_priors(_current(studies), [web, dimse])
    assert [(p.node, p.study_uid) for p in both.priors] == [("orthanc-web", studies["prior"][1])]
    assert both.problems == []


def test_a_different_name_under_the_same_id_is_flagged(pacs, studies, medview_home):
    from medview.viewer.remote_priors import find_remote_priors

    cur = _current(studies)  # nothing local: every earlier study is listed
    res = find_remote_priors(cur, _nodes(pacs)[:1])
    assert [p.study_date for p in res.priors] == [ps.PRIOR_DATE, ps.LOCAL_PRIOR_DATE]
    assert res.problems == [] and not any(p.name_differs for p in res.priors)  # case aside
    cur.patient_name = "SOMEONE^ELSE"
    res = find_remote_priors(cur, _nodes(pacs)[:1])
    assert [p.study_date for p in res.priors] == [ps.PRIOR_DATE, ps.LOCAL_PRIOR_DATE]
    assert all(p.name_differs for p in res.priors) and len(res.problems) == 2
    assert all("check it is the same patient" in m and "\n" not in m for m in res.problems)


def test_unreachable_node_is_one_line_and_the_others_answer(pacs, studies, local_db):
    from medview.net.nodes import Node
    from medview.tasks import TaskState
    from medview.viewer.remote_priors import find_remote_priors

    # a refused DIMSE port, and a DICOMweb server that accepts and never answers (it
    # holds its node until the 5 s timeout, so the live node answers first)
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(8)
    dead = [
        Node(name="dead", host="127.0.0.1", port=free_port(), aet="NOBODY"),
        Node(name="dead-web", url=f"http://127.0.0.1:{silent.getsockname()[1]}/dicom-web"),
    ]
    partials: list = []
    state = TaskState(on_partial=partials.append)
    try:
        res = find_remote_priors(
            _current(studies), [*dead, *_nodes(pacs)[:1]], timeout=5, state=state
        )
    finally:
        silent.close()
    assert [p.study_uid for p in res.priors] == [studies["prior"][1]]
    # the answering node's prior is handed on before the dead ones have given up
    assert partials and all(r.answered < r.asked == 3 for r in partials)
    assert [p.study_uid for p in partials[-1].priors] == [studies["prior"][1]]
    assert len(res.problems) == 2 and (res.asked, res.failed) == (3, 2)
    assert res.problems[0].startswith("dead: ") and res.problems[1].startswith("dead-web: ")
    assert all("\n" not in m and "Traceback" not in m for m in res.problems)


def test_no_nodes_no_patient_id_no_query(studies, local_db):
    from medview.viewer.remote_priors import find_remote_priors

    assert find_remote_priors(_current(studies), []).asked == 0
    cur = _current(studies)
    cur.patient_id = ""
    res = find_remote_priors(cur)
    assert (res.priors, res.problems, res.asked) == ([], [], 0)


@pytest.mark.parametrize("which", [0, 1], ids=["cget", "wado"])
def test_retrieve_lands_the_prior_in_the_database(pacs, studies, local_db, which):
    from medview.tasks import TaskState
    from medview.viewer.priors import find_priors
    from medview.viewer.remote_priors import find_remote_priors, retrieve_prior

    node = _nodes(pacs)[which]
    prior = find_remote_priors(_current(studies), [node]).priors[0]
    seen: list[str] = []
    series = retrieve_prior(prior, node, state=TaskState(on_progress=lambda f, m: seen.append(m)))
    assert series.study_uid == studies["prior"][1] and series.patient_id == ps.PID
    assert len(series.instances) == 20 and all(i.path for i in series.instances)
    assert any("retrieved" in m for m in seen)
    # now it is a local prior, and no longer a PACS one
    local = [s.study_uid for s in find_priors(_current(studies))]
    assert local == [studies["prior"][1], studies["local_prior"][1]]
    assert find_remote_priors(_current(studies), [node]).priors == []


def test_retrieve_can_be_cancelled(pacs, studies, local_db):
    from medview.errors import Cancelled
    from medview.tasks import TaskState
    from medview.viewer.remote_priors import find_remote_priors, retrieve_prior

    node = _nodes(pacs)[0]
    prior = find_remote_priors(_current(studies), [node]).priors[0]
    states: list[TaskState] = []
    states.append(TaskState(on_progress=lambda f, m: states[0].cancel()))  # at the first report
    with pytest.raises(Cancelled):
        retrieve_prior(prior, node, state=states[0])
