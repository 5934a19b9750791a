"""Similar-case search (issue 17.6): analyze --index stores embeddings, similar finds them."""

from __future__ import annotations

import json

import numpy as np
import pytest

from tests.conftest import PNEUMONIAMNIST, REPO, need

pytest.importorskip("torch")
CNN = REPO / "models" / "pneumonia_cnn"


@pytest.fixture(scope="module")
def pmnist():
    with np.load(need(PNEUMONIAMNIST)) as d:
        return {k: d[k] for k in d}


def _json_lines(capsys) -> list[dict]:
    return [json.loads(line) for line in capsys.readouterr().out.splitlines()]


def test_index_then_search_nearest_first_with_findings(tmp_path, pmnist, capsys):
    from PIL import Image

    from medview.cli import main

    folder = tmp_path / "cases"
    folder.mkdir()
    labels = pmnist["val_labels"][:, 0]
    picks = list(np.flatnonzero(labels == 0)[:5]) + list(np.flatnonzero(labels == 1)[:5])
    for i in picks:
        Image.fromarray(pmnist["val_images"][i]).save(folder / f"v{i:03d}.png")
    db = tmp_path / "medview.db"
    rc = main(["analyze", str(folder), "--index", "--db", str(db), "--json"])
    rows = _json_lines(capsys)
    assert rc == 0 and len(rows) == 20  # two bundled models x 10 images
    query = folder / f"v{picks[0]:03d}.png"
    assert main(["similar", str(query), "--k", "4", "--db", str(db), "--json"]) == 0
    (out,) = _json_lines(capsys)
    near = out["neighbours"]
    assert len(near) == 4 and all(n["path"] != str(query) for n in near)  # itself excluded
    assert [n["distance"] for n in near] == sorted(n["distance"] for n in near)
    assert set(near[0]["findings"]) == {"pneumonia_cnn", "pneumonia_ae"}
    # the distances are those of the classifier's pooled features
    from medview.ai.inference import load_model
    from medview.ai.preprocess import prepare_batch

    lm = load_model("pneumonia_cnn", "cpu")
    _, feats = lm.classify(prepare_batch(pmnist["val_images"][picks], lm.spec))
    d = np.sqrt(((feats[1:] - feats[0]) ** 2).sum(axis=1))
    assert np.allclose(sorted(d)[:4], [n["distance"] for n in near], atol=1e-3)


def test_similar_without_an_index_and_bad_input(tmp_path, pmnist, capsys):
    from PIL import Image

    from medview.cli import main

    png = tmp_path / "q.png"
    Image.fromarray(pmnist["val_images"][0]).save(png)
    assert main(["similar", str(png), "--db", str(tmp_path / "empty.db"), "--json"]) == 0
    assert _json_lines(capsys)[0]["neighbours"] == []
    assert main(["similar", str(tmp_path / "absent.png")]) == 2
    assert "no such file" in capsys.readouterr().err


def test_card_precision_at_k_is_reproduced(pmnist):
    """The card's similar_search figures: val queried against the train split."""
    from medview.ai.inference import load_model
    from medview.ai.preprocess import prepare_batch
    from medview.ai.similar import precision_at_k

    card = json.loads((CNN / "metadata.json").read_text())["similar_search"]
    lm = load_model("pneumonia_cnn", "cpu")
    emb = {}
    for split in ("train", "val"):
        x = prepare_batch(pmnist[f"{split}_images"], lm.spec)
        emb[split] = np.concatenate([lm.classify(x[i : i + 512])[1] for i in range(0, len(x), 512)])
    got = precision_at_k(
        emb["train"],
        pmnist["train_labels"][:, 0],
        emb["val"],
        pmnist["val_labels"][:, 0],
        (1, 5, 10),
    )
    for k in (1, 5, 10):
        assert got[f"precision_at_{k}"] == pytest.approx(card[f"precision_at_{k}"], abs=2e-3)
    assert got["precision_at_5"] > card["chance"] + 0.3
