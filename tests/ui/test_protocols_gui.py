"""A user hanging protocol round-trips through the settings store and wins over the
defaults (the rest of the protocol tests: tests/core/test_protocols.py)."""

from __future__ import annotations

import pytest

from medview.viewer import protocols as HP


@pytest.fixture(scope="module")
def ct_series(ct_dir):
    from medview.io import scan

    return scan(str(ct_dir)).series


def test_user_protocol_round_trip_and_precedence(ct_series):
    facts = HP.StudyFacts.of(ct_series)
    mine = HP.protocol_from_view(
        "my CT",
        facts,
        "1x2",
        [HP.Placement(plane="coronal", window=(40.0, 400.0)), HP.Placement(plane="sagittal")],
    )
    data = mine.to_dict()
    import json

    from medview.ui.settings import _plain  # what the settings store accepts

    assert _plain(data) == ""

    back, problems = HP.user_protocols(json.loads(json.dumps([data, {"name": "x"}, 3])))
    assert back == [mine] and len(problems) == 2
    assert problems[0].startswith("hanging protocol 2: not a hanging protocol")
    assert HP.choose(facts, back).name == "my CT"  # the user's before the defaults
    assert HP.plan(back[0], 1)[1][0].window == (40.0, 400.0)
    with pytest.raises(ValueError, match="plane"):
        HP.protocol_from_dict({**data, "placements": [{"plane": "oblique"}]})
