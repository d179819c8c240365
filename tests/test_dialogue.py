"""A chat that tells the truth: the dialogue data, the routing of unknown concepts, the answer readers and
the dialogue scorer, which must pass right answers (in any wording) and catch wrong ones."""

from __future__ import annotations

import random
from collections import Counter

import pytest

from neurochat.evaluate.dialogue import (
    TARGETS,
    ask_cases,
    chat_asker,
    dialogue_cases,
    format_table,
    hallucinated,
    meets,
    score_case,
    score_dialogue,
)
from neurochat.language import IMAGE_TOKEN, build_extension, load_facts
from neurochat.language.answers import (
    read_count,
    read_position,
    read_scene,
    read_size,
    read_yes_no,
    says_cannot_tell,
)
from neurochat.language.dialogue import FOLLOW_UP_KINDS, FRESH_KINDS, dialogue_turns
from neurochat.language.questions import (
    OBJECT_LIST_QUESTION,
    existence_from_listing,
    existence_target,
    unknown_concept,
    unknown_concept_answer,
)
from neurochat.nsd import NSDDataset
from neurochat.vocabulary import CONCEPT_NAMES, OBJECTS, asserted_mentions, mention_spans, mentions, plural

OBJECT_NAMES = [c.name for c in OBJECTS]


@pytest.fixture(scope="module")
def built(sim_root):
    return build_extension(NSDDataset(sim_root), seed=0, tasks=["dialogue"])


@pytest.fixture(scope="module")
def test_facts(sim_root):
    """The facts of every shared test recording (subject × shared image), as the evaluation sees them."""
    data = NSDDataset(sim_root)
    ids = [int(i) for subject in data.subjects for i in data.trials(subject).test_images]
    facts, _, vocabulary = load_facts(data, set(ids))
    return [facts[i] for i in ids], vocabulary


def _turns(sample):
    values = [turn["value"].replace(f"{IMAGE_TOKEN}\n", "") for turn in sample["conversations"]]
    return list(zip(values[::2], values[1::2], sample["turn_kinds"]))


# ---------------------------------------------------------------------------------------------
# The dialogue data


def test_dialogues_cover_what_people_ask_with_balanced_yes_and_no(built):
    train, test, summary = built
    kinds = Counter(kind for sample in train + test for kind in sample["turn_kinds"])
    expected = set(FRESH_KINDS) | {"count_absent", "position_absent", "size_absent", "family_yes", "family_no",
                                   "follow_count", "follow_position", "follow_size", "what_else", "other_one",
                                   "and_the", "instead"}  # fmt: skip
    assert expected - {"family"} <= set(kinds), expected - set(kinds)
    assert summary["dialogue_turns"]["train"] == dict(sorted(Counter(k for s in train for k in s["turn_kinds"]).items()))
    answers = [(answer, kind) for sample in train + test for _, answer, kind in _turns(sample)]
    yes = sum(a.startswith("Yes") for a, _ in answers)
    no = sum(a.startswith("No,") for a, _ in answers)
    assert 0.4 < yes / (yes + no) < 0.6, (yes, no)
    assert all(3 <= len(sample["turn_kinds"]) <= 4 for sample in train + test)
    assert set(FOLLOW_UP_KINDS) == {"pronoun", "what_else", "other_one", "and_the"}


def test_every_dialogue_answer_reads_back_true(built, sim_root):
    """The scorer's readers, applied to the extension's own answers, find the answer key's facts."""
    train, test, _ = built
    facts, _, _ = load_facts(NSDDataset(sim_root), {s["nsd_id"] for s in train + test})
    checked = Counter()
    for sample in train + test:
        picture = facts[sample["nsd_id"]]
        objects = {o.name: o for o in picture.objects}
        for question, answer, kind in _turns(sample):
            named = asserted_mentions(answer, OBJECT_NAMES)
            assert set(named) <= picture.names, (question, answer, picture.names)  # no answer asserts an absent object
            asked = [n for n in mentions(question, OBJECT_NAMES) if n in objects or kind.endswith(("_no", "_absent"))]
            if kind in ("existence_yes", "existence_no"):
                assert read_yes_no(answer, asked[-1]) is (kind == "existence_yes"), (question, answer)
            elif kind in ("count", "follow_count"):
                name = named[0]
                assert read_count(answer, name) == objects[name].count, (question, answer)
            elif kind in ("position", "follow_position"):
                obj = objects[named[0]]
                sides, vertical = read_position(answer)
                truth = set(obj.instance_horizontals)
                assert sides == (truth if len(truth) > 1 else {obj.horizontal}), (answer, obj)
                assert vertical in (None, obj.vertical), (answer, obj)
            elif kind in ("size", "follow_size"):
                assert read_size(answer) == objects[named[0]].size, (answer, objects[named[0]])
            elif kind in ("count_absent", "position_absent", "size_absent"):
                assert read_yes_no(answer, asked[-1]) is False and not named, (question, answer)
            elif kind == "scene":
                assert read_scene(answer) == picture.setting, (answer, picture.setting)
            elif kind in ("objects", "instead"):
                assert set(named) == picture.names, (answer, picture.names)
            elif kind == "cannot_tell":
                assert says_cannot_tell(answer), answer
            elif kind == "other_one":
                assert set(named) <= picture.names, answer
            else:
                continue
            checked[kind] += 1
    assert min(checked.values()) >= 5, checked


def test_dialogues_are_seeded_and_refer_back():
    from neurochat.language.facts import ImageFacts, _object_facts

    dog = _object_facts("dog", [(0.05, 0.5, 0.35, 0.8)])
    ball = _object_facts("ball", [(0.7, 0.6, 0.9, 0.8)])
    picture = ImageFacts(1, ("a dog and a ball on the beach",), (dog, ball), "beach", "simnsd")
    first = dialogue_turns(picture, random.Random("x"), OBJECT_NAMES)
    assert first == dialogue_turns(picture, random.Random("x"), OBJECT_NAMES)
    follow_ups = Counter()
    for seed in range(300):
        for turn in dialogue_turns(picture, random.Random(seed), OBJECT_NAMES):
            follow_ups[turn.kind] += 1
            if turn.kind == "other_one" and turn[0] in ("And the other one?", "What about the other one?"):
                assert ("ball" in turn[1]) != ("dog" in turn[1]), turn  # the other object, not the first again
            if turn.kind == "cannot_tell" and "doing" in turn[0]:
                assert turn[1].startswith("I can't tell what the")
    assert {"other_one", "what_else", "and_the", "instead", "follow_position"} <= set(follow_ups)


# ---------------------------------------------------------------------------------------------
# Routing: concepts the world does not have; the picture vs the brain


@pytest.mark.parametrize(
    "text, unknown",
    [
        ("Where is the unicorn in the brain?", "unicorn"),
        ("Is there a unicorn?", "unicorn"),
        ("Do you see any unicorns?", "unicorn"),
        ("How many unicorns are there?", "unicorn"),
        ("What is the unicorn doing?", "unicorn"),
        ("Does the picture contain a unicorn?", "unicorn"),
        ("Which brain regions respond to unicorns?", "unicorn"),
        ('Is there a "unicorn" here?', "unicorn"),
        ("And the unicorn?", "unicorn"),
        ("Is there a big red unicorn next to the dog?", "unicorn"),
        ("Is there a bicycel?", "bicycel"),
        ("Where is the giraffe?", None),  # known, maybe absent: the model says so
        ("Where is the dog in the brain?", None),
        ("What is the animal doing?", None),
        ("Is there anything else?", None),
        ("What is there instead?", None),
        ("Where was this picture taken?", None),
        ("Can you see the sea?", None),  # the beach, in other words
        ("Do you see a teddy-bear?", None),
        ("How many are there?", None),
        ("Where is it in the brain?", None),
        ("Do you have any idea what the dog is doing?", None),
        ("Describe the image concisely.", None),
        ("Provide the corresponding Stable Diffusion prompts for the image.", None),
        ('Locating the concept of "cat"', None),
    ],
)
def test_unknown_concepts_whatever_the_wording(text, unknown):
    assert unknown_concept(text, CONCEPT_NAMES) == unknown


def test_the_unknown_concept_answer_names_no_chip_and_suggests_close_names():
    answer = unknown_concept_answer("bicycel", CONCEPT_NAMES)
    assert answer.startswith("There is no “bicycel” in the demo world") and "Did you mean “bicycle”?" in answer
    assert "43 objects" in answer and "6 settings" in answer
    assert asserted_mentions("Is there a bicycel? " + answer, CONCEPT_NAMES, plurals="suffix") == []


def test_the_explorer_answers_unknown_concepts_itself_and_chips_only_what_is_asserted():
    from neurochat.explorer import Explorer, TrialState

    explorer = Explorer.__new__(Explorer)  # no models: an unknown concept never reaches them
    explorer.vocabulary = list(CONCEPT_NAMES)
    state = TrialState("subj01", 3, "averaged")
    turn = explorer.chat(state, "Where is the unicorn in the brain?")
    assert "".join(turn).startswith("There is no “unicorn”") and turn.action is None
    assert state.history == []  # the LLM did not write it, so it does not read it later
    assert explorer.note_concepts(state, "Is there a clock? No, there is no clock in the picture.") == []
    assert explorer.note_concepts(state, "Is there a dog? Yes, there are two dogs, on the left and right.") == ["dog"]
    assert explorer.note_concepts(state, "There is no cat, but a bird flies over the beach.") == ["bird", "beach"]
    assert state.concepts == ["dog", "bird", "beach"]


@pytest.mark.parametrize("text, target", [
    ("Is there a dog in the picture?", "dog"), ("Do you see any dogs?", "dog"), ("Can you see an elephant?", "elephant"),
    ("does the image show a hot dog", "hot dog"), ("Are there sheep here?", "sheep"), ("Is there a teddy bear?", "teddy bear"),
    ("Is there a dog on the left?", None), ("Is there a dog and a ball?", None), ("Are there two dogs?", None),
    ("Is there a beach?", None), ("Where is the dog?", None), ("Is there a unicorn?", None),
])  # fmt: skip
def test_plain_yes_no_questions_about_one_object_are_recognised(text, target):
    assert existence_target(text, OBJECT_NAMES) == target


def test_yes_no_answers_read_off_the_llms_own_list():
    listing = "The picture shows two dogs and a hot dog."
    assert existence_from_listing("dog", listing, OBJECT_NAMES) == "Yes, there are two dogs in the picture."
    assert existence_from_listing("hot dog", listing, OBJECT_NAMES) == "Yes, there is one hot dog in the picture."
    assert existence_from_listing("cat", listing, OBJECT_NAMES) == "No, there is no cat in the picture."
    assert existence_from_listing("cat", "There is no cat, only a dog.", OBJECT_NAMES).startswith("No,")


class _ListingLLM:
    """A scripted fMRI-LLM: it lists `listings[row]` when asked what it sees, answers "Yes" to anything else."""

    def __init__(self, listings):
        self.listings, self.asked = listings, []

    def generate(self, fmri, conversations, max_new_tokens=64, **kwargs):
        from types import SimpleNamespace

        single = fmri.dim() == 2  # one recording (T, D) and one conversation, as `Explorer.chat` asks
        fmri, conversations = (fmri[None], [conversations]) if single else (fmri, conversations)
        rows = [int(row) for row in fmri.reshape(len(fmri), -1)[:, 0]]
        self.asked += [(row, messages[-1]["content"]) for row, messages in zip(rows, conversations)]
        replies = [SimpleNamespace(text=self.listings[row] if messages[-1]["content"] == OBJECT_LIST_QUESTION else "Yes.")
                   for row, messages in zip(rows, conversations)]  # fmt: skip
        return replies[0] if single else replies


def test_the_evaluated_chat_reads_yes_and_no_off_the_list_as_the_explorer_does(test_facts):
    import torch

    facts, vocabulary = test_facts
    objects = [name for name in vocabulary if name in OBJECT_NAMES]
    cases = [c for c in dialogue_cases(facts, vocabulary) if c.kind.startswith("existence.") or c.kind == "count"]
    fmri = torch.arange(len(facts), dtype=torch.float32)[:, None, None].expand(-1, 2, 3)  # row number as the recording
    truthful = _ListingLLM([f"The picture shows {' and '.join(f'a {o.name}' for o in f.objects)}." for f in facts])
    results = score_dialogue(cases, ask_cases(cases, chat_asker(truthful, fmri, objects)), facts, vocabulary)
    assert results["existence"]["present"] == results["existence"]["absent"] == 1.0
    listed = [row for row, question in truthful.asked if question == OBJECT_LIST_QUESTION]
    assert sorted(listed) == sorted(set(listed)), "each recording lists its objects once"
    assert any(question.startswith("How many") for _, question in truthful.asked), "other questions reach the LLM"
    blind = _ListingLLM(["The picture shows a clock."] * len(facts))  # sees a clock in every recording
    results = score_dialogue(cases, ask_cases(cases, chat_asker(blind, fmri, objects)), facts, vocabulary)
    assert results["existence"]["present"] < 0.5 < results["existence"]["absent"]


def test_the_explorer_answers_yes_no_from_the_llms_list_and_says_so():
    import torch

    from neurochat.explorer import Explorer, TrialState
    from neurochat.lru import LRUCache
    from neurochat.trial import Features

    explorer = Explorer.__new__(Explorer)
    explorer.vocabulary = list(CONCEPT_NAMES)
    explorer.brainllm = _ListingLLM({7: "The picture shows two dogs and a ball."})
    explorer._listings = LRUCache(4)
    explorer.features = lambda state: Features(None, None, None, None, None, None, torch.full((2, 3), 7.0))
    state = TrialState("subj01", 3, "averaged")
    turn = explorer.chat(state, "Do you see any dogs?")
    assert "".join(turn) == "Yes, there are two dogs in the picture." and "two dogs and a ball" in turn.notes[0]
    assert "".join(explorer.chat(state, "Is there a cat in the picture?")) == "No, there is no cat in the picture."
    assert explorer.brainllm.asked == [(7, OBJECT_LIST_QUESTION)], "listed once per trial"
    assert [m["content"] for m in state.history] == ["Do you see any dogs?", "Yes, there are two dogs in the picture.",
                                                     "Is there a cat in the picture?", "No, there is no cat in the picture."]


def test_asserted_mentions():
    assert mention_spans("a hot dog and a dog") == [(2, 9, "hot dog"), (16, 19, "dog")]
    assert asserted_mentions("No, there is no clock in the picture.") == []
    assert asserted_mentions("Yes, there is one dog, on the left.") == ["dog"]
    assert asserted_mentions("I don't see a cat or a dog.") == []
    assert asserted_mentions("No cat here, only a dog.") == ["dog"]
    assert asserted_mentions("I can't tell what the dog is doing.") == ["dog"]
    assert asserted_mentions("Is there a cat? The picture shows a hot dog.") == ["hot dog"]
    assert asserted_mentions("There are no giraffes in the picture; it shows two cows.") == ["cow"]


# ---------------------------------------------------------------------------------------------
# The readers


@pytest.mark.parametrize(
    "answer, name, expected",
    [
        ("Yes, there is one dog, on the left.", "dog", True),
        ("Yep, I can see it.", "dog", True),
        ("There are two dogs.", "dog", True),
        ("No, there is no dog in the picture.", "dog", False),
        ("Nope.", "dog", False),
        ("There is no dog in the picture.", "dog", False),
        ("I don't see a dog.", "dog", False),
        ("The picture shows a cat.", "dog", None),  # no answer to the question: scored wrong either way
        ("The picture was taken on a beach.", "dog", None),
    ],
)
def test_read_yes_no(answer, name, expected):
    assert read_yes_no(answer, name) is expected


@pytest.mark.parametrize(
    "answer, expected",
    [
        ("There are two dogs.", 2),
        ("There is one dog.", 1),
        ("I count 3 dogs on the left.", 3),
        ("Yes, there is a dog, on the left.", 1),
        ("There are two small dogs and a cat.", 2),
        ("There are no dogs in the picture.", 0),
        ("A single dog.", 1),
        ("Three.", 3),
        ("The dog takes up about 15% of the picture.", None),
        ("The dog is on the left.", None),
    ],
)
def test_read_count(answer, expected):
    assert read_count(answer, "dog") == expected


@pytest.mark.parametrize(
    "answer, sides, vertical",
    [
        ("The dog is on the left side of the picture, near the bottom.", {"left"}, "bottom"),
        ("The dog is in the center of the picture.", {"center"}, "middle"),
        ("It sits on the right-hand side, halfway up.", {"right"}, "middle"),
        ("At the top centre.", {"center"}, "top"),
        ("The dogs are spread across the picture: one on the left and one on the right.", {"left", "right"}, None),
        ("Upper left.", {"left"}, "top"),
        ("I can't tell.", set(), None),
    ],
)
def test_read_position(answer, sides, vertical):
    assert read_position(answer) == (frozenset(sides), vertical)


def test_read_scene_size_and_cannot_tell():
    assert read_scene("The picture was taken on a sandy beach by the sea. The sky is blue.") == "beach"
    assert read_scene("It is indoors, inside a room.") == "room"
    assert read_scene("on a grassy field under open sky") == "grass"
    assert read_scene("in a snowy landscape") == "snow" and read_scene("on a city street") == "street"
    assert read_scene("I can't tell.") is None
    assert [read_size(a) for a in ("It is medium-sized.", "quite big", "a tiny dog", "no idea")] == ["medium", "large", "small", None]
    assert says_cannot_tell("I can't tell what the dog is doing.") and says_cannot_tell("The recording does not show that.")
    assert not says_cannot_tell("The dog is running on the beach.")


# ---------------------------------------------------------------------------------------------
# The scorer: a scripted model, right and wrong


def _right_answer(case, turn: int, picture) -> str:
    """A truthful model that words its answers its own way (digits, "Yep", "right-hand side")."""
    objects = {o.name: o for o in picture.objects}
    obj = objects.get(case.target)
    kind = case.kind if turn == len(case.questions) - 1 else "existence.present"

    def where(o):
        sides = sorted(set(o.instance_horizontals))
        if len(sides) > 1:
            return "one on the " + " and one on the ".join(sides)
        height = {"top": "near the top", "middle": "halfway up", "bottom": "near the bottom"}[o.vertical]
        return "in the centre" if o.horizontal == "center" and o.vertical == "middle" else f"{o.horizontal}-hand side, {height}"

    if kind == "existence.present":
        return f"Yep, I can see {obj.count} {obj.name if obj.count == 1 else plural(obj.name)}."
    if kind == "existence.absent":
        return "Nope, I don't see one."
    if kind == "absent_premise":
        return f"There isn't any {case.target} here."
    if kind.endswith("count"):
        return f"I count {obj.count}." if obj.count > 1 else f"Just a single {obj.name}."
    if kind.endswith("position"):
        return f"The {obj.name} is {where(obj)}."
    if kind == "size":
        return {"small": "It is tiny.", "medium": "Medium-sized.", "large": "Quite big."}[obj.size]
    if kind == "scene":
        return {"grass": "In a meadow.", "sky": "High up in the air.", "beach": "By the sea.", "street": "On a road in town.",
                "room": "Indoors.", "snow": "Somewhere in winter snow."}[picture.setting]  # fmt: skip
    if kind == "objects":
        return "I see " + " and ".join(f"{o.count} {plural(o.name)}" for o in picture.objects) + "."
    if kind == "cant_tell":
        return "I can't tell from the recording."
    if kind == "follow_up.what_else":
        others = [o for o in picture.objects if o.name != case.target]
        return ("Also " + " and ".join(f"a {o.name}" for o in others) + ".") if others else "Nothing else."
    other = objects[case.other]
    return f"The {other.name} is {where(other)}."


def _wrong_answer(case, turn: int, picture) -> str:
    """A model that says yes to everything, counts one, puts everything on the left and invents a clock."""
    absent = next(name for name in ("clock", "giraffe", "bus") if name not in picture.names)
    kind = case.kind
    if kind.startswith("existence") or turn < len(case.questions) - 1:
        return f"Yes, there is one {case.target}, and a {absent} too."
    if kind == "absent_premise":
        return f"The {case.target} is on the left side of the picture."
    if kind.endswith("count"):
        return f"There are {7} {case.target}s."
    if kind.endswith("position") or kind.endswith("other_one"):
        obj = {o.name: o for o in picture.objects}[case.other or case.target]
        side = {"left": "right", "right": "left", "center": "left"}[obj.instance_horizontals[0]]
        return f"The {obj.name} is on the {side}."
    if kind == "scene":
        return "In a room." if picture.setting != "room" else "On the beach."
    return f"The picture shows a {absent}."


def _scripted(cases, facts, answer):
    """Run `ask_cases` with a scripted model, checking that each turn sees the model's earlier answers."""
    by_questions = {}
    for case in sorted(cases, key=lambda c: len(c.questions)):  # "Where is the dog?" alone is a position case
        for k in range(len(case.questions)):
            by_questions.setdefault((case.row, case.questions[: k + 1]), case)

    def reply(row, questions):
        case = by_questions[(row, questions)]
        return answer(case, len(questions) - 1, facts[row])

    def ask(rows, conversations):
        replies = []
        for row, messages in zip(rows, conversations):
            questions = tuple(m["content"] for m in messages if m["role"] == "user")
            for k in range(len(questions) - 1):  # the model's own earlier answers are in the history
                assert messages[2 * k + 1] == {"role": "assistant", "content": reply(row, questions[: k + 1])}
            replies.append(reply(row, questions))
        return replies

    return ask_cases(cases, ask)


def test_the_scorer_passes_right_answers_in_any_wording(test_facts):
    facts, vocabulary = test_facts
    cases = dialogue_cases(facts, vocabulary)
    assert dialogue_cases(facts, vocabulary) == cases, "the questions are seeded"
    kinds = Counter(case.kind for case in cases)
    assert {"existence.present", "existence.absent", "count", "position", "scene", "follow_up.count",
            "follow_up.what_else", "follow_up.other_one", "absent_premise", "cant_tell"} <= set(kinds)  # fmt: skip
    assert kinds["existence.present"] == kinds["existence.absent"], "as many absent objects as present ones"
    for case in cases:  # the absent objects are absent
        if case.kind in ("existence.absent", "absent_premise"):
            assert case.target not in facts[case.row].names
    answers = _scripted(cases, facts, _right_answer)
    results = score_dialogue(cases, answers, facts, vocabulary)
    wrong = [(c, a) for c, a in zip(cases, answers) if not score_case(c, a[-1], facts[c.row])]
    assert not wrong, wrong[:5]
    assert results["existence"]["present"] == results["existence"]["absent"] == 1.0
    for name in ("count", "position", "scene", "follow_up", "size", "absent_premise", "cant_tell", "objects"):
        assert results[name] == 1.0, name
    assert results["hallucinated_objects_per_answer"] == 0.0
    assert results["case_n"]["count"] == kinds["count"] and results["case_sd"]["count"] == 0.0
    assert all(meets(name, value) for name, value in
               [("existence.present", 1.0), ("scene", 1.0), ("hallucinated_objects_per_answer", 0.0)])  # fmt: skip
    assert "100.0%" in format_table({"vit3d": results, "flattened": None})


def test_the_scorer_catches_wrong_answers(test_facts):
    facts, vocabulary = test_facts
    cases = dialogue_cases(facts, vocabulary)
    results = score_dialogue(cases, _scripted(cases, facts, _wrong_answer), facts, vocabulary)
    assert results["existence"]["present"] == 1.0  # "yes" is right where the object is there ...
    assert results["existence"]["absent"] == 0.0  # ... and wrong where it is not
    assert results["count"] == 0.0 and results["position"] == 0.0 and results["scene"] == 0.0
    assert results["absent_premise"] == 0.0 and results["cant_tell"] == 0.0 and results["follow_up"] == 0.0
    # the invented clock in most answers, and the absent object said to be there: "Yes, there is one giraffe"
    assert results["hallucinated_objects_per_answer"] > 0.5
    giraffe = next(c for c in cases if c.kind == "existence.absent")
    assert hallucinated(_wrong_answer(giraffe, 0, facts[giraffe.row]), facts[giraffe.row]) == 2
    assert results["case_sd"]["hallucinated_objects_per_answer"] >= 0.0
    assert not meets("existence.absent", results["existence"]["absent"])
    assert not meets("hallucinated_objects_per_answer", results["hallucinated_objects_per_answer"])
    assert set(TARGETS) == {"existence.present", "existence.absent", "scene", "count", "position",
                            "hallucinated_objects_per_answer"}  # fmt: skip


def test_the_report_has_a_dialogue_section(test_facts, tmp_path):
    from neurochat.evaluate.report import write_report

    facts, vocabulary = test_facts
    cases = dialogue_cases(facts, vocabulary)
    numbers = score_dialogue(cases, _scripted(cases, facts, _right_answer), facts, vocabulary)
    path = write_report({"dialogue": {"vit3d": numbers, "flattened": None}}, tmp_path, preset="demo", dataset="x", seconds=1)
    text = path.read_text()
    assert "## Dialogue scored against the answer key" in text and "| existence, absent object: no | 100.0% ± 0.0 ✓ | ≥ 90% |" in text
    assert "w/o ViT3D" in text  # the missing baseline is said, not hidden


def test_the_command_has_a_dialogue_subcommand(capsys):
    from neurochat.evaluate.__main__ import main

    with pytest.raises(SystemExit) as exit_info:
        main(["dialogue", "--help"])
    assert exit_info.value.code == 0
    assert "--per-subject" in capsys.readouterr().out
