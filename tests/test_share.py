"""A view as a link or JSON and back (`neurochat.app.share`): pure functions, no models."""

from __future__ import annotations

import json

import pytest

from neurochat.app.problems import Problem
from neurochat.app.session import Session
from neurochat.app.share import SharedView, parse_shared, share_json, share_query
from neurochat.trial import TrialState

SUBJECTS = ["subj01", "subj02"]


def _session(removed=(), protocol="single", upload=None) -> Session:
    return Session(trial=TrialState("subj02", 2950, protocol, upload=upload, removed=list(removed)))


def test_a_view_round_trips_through_the_link_and_the_json():
    session = _session(removed=["dog", "traffic light"])
    query = share_query(session, 0.15000000000000002, 3.0)  # the slider's float dust, the number box's float
    assert query == "?subject=subj02&trial=2950&protocol=single&beta=0.15&seed=3&remove=dog,traffic%20light"
    expected = SharedView("subj02", 2950, "single", 0.15, 3, ("dog", "traffic light"))
    assert parse_shared(query, SUBJECTS) == expected
    assert parse_shared("http://lab.example:7860/explorer/" + query + "#top", SUBJECTS) == expected  # a whole link
    assert parse_shared(share_json(session, 0.15, 3), SUBJECTS) == expected
    assert json.loads(share_json(session, 0.15, 3))["remove"] == ["dog", "traffic light"]


def test_the_page_hands_its_parameters_as_a_mapping_and_leaves_out_what_is_default():
    params = {"subject": "subj01", "trial": "12", "beta": "1", "seed": "0", "remove": "dog, ball", "__theme": "dark"}
    assert parse_shared(params, SUBJECTS) == SharedView("subj01", 12, None, 1.0, 0, ("dog", "ball"))
    assert parse_shared({}, SUBJECTS) == parse_shared("", SUBJECTS) == parse_shared("{}", SUBJECTS) == SharedView()
    assert share_query(_session(), 0.95, 0).count("remove") == 0  # nothing removed: no remove=


@pytest.mark.parametrize(
    "source, named",
    [
        ("?subject=subj09&trial=12", "subject 'subj09' is not in this dataset: use one of subj01, subj02"),
        ("?trial=12a", "trial '12a' is not an NSD image number"),
        ("?trial=-3", "trial '-3' is not an NSD image number"),
        ("?protocol=mean", "protocol 'mean' is unknown: use 'averaged'"),
        ("?beta=1.5", "β = 1.5 is outside 0…1"),
        ("?beta=-0.1", "β = -0.1 is outside 0…1"),
        ("?beta=high", "β 'high' is not a number"),
        ("?seed=2.5", "seed '2.5' is not a whole number ≥ 0"),
        ("?seed=-1", "seed '-1' is not a whole number ≥ 0"),
        ("?remove=dog,dog", "removes 'dog' twice"),
        ("?tiral=12", "unknown setting 'tiral': it may set subject, trial, protocol, beta, seed, remove"),
        ("?beta=0.5&beta=0.7", "sets 'beta' twice"),
        ("hello there", "'hello there' is neither a link of this page nor its JSON"),
        ('{"trial": 12', "The pasted JSON cannot be read"),
        ('["subj01"]', "must be one object"),
        ('{"trial": 12.5}', "trial '12.5' is not an NSD image number"),
        ('{"seed": true}', "seed cannot be true"),
        ('{"remove": ["dog", 3]}', "remove must list concept names"),
    ],
)
def test_each_bad_value_is_refused_with_a_sentence_naming_it(source, named):
    with pytest.raises(Problem) as refused:
        parse_shared(source, SUBJECTS)
    assert named in str(refused.value)


def test_what_a_link_cannot_carry_is_said():
    with pytest.raises(Problem, match="uploaded volume lives only in this tab"):
        share_query(_session(upload="run.nii.gz[0]#1"), 0.95, 0)
    with pytest.raises(Problem, match="Open a trial first"):
        share_json(Session(), 0.95, 0)
    with pytest.raises(Problem, match="β = 2 is outside"):
        share_query(_session(), 2, 0)
