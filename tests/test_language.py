"""The language extension (paper App. A.2): instruction tables, conversations true to the picture, split, parsers."""

from __future__ import annotations

import json
import re

import pytest

from neurochat.cli import run_main
from neurochat.errors import ConfigError, DataError
from neurochat.language import (
    BRIEF_INSTRUCTIONS,
    DETAILED_INSTRUCTIONS,
    IMAGE_TOKEN,
    LOCALIZATION_TEMPLATE,
    RECONSTRUCTION_INSTRUCTION,
    TASKS,
    build_extension,
    build_references,
    localization_answer,
    localization_instruction,
    parse_localization_answer,
    parse_localization_request,
)
from neurochat.language.__main__ import main as language_main
from neurochat.language.templates import SETTING_STYLES, noun_phrase, plural
from neurochat.language.facts import facts_from_scene, load_facts
from neurochat.nsd import NSDDataset, layout
from neurochat.sim.scenes import Scene
from neurochat.vocabulary import CONCEPT_NAMES


@pytest.fixture(scope="module")
def built(sim_root):
    return build_extension(NSDDataset(sim_root), seed=0)


@pytest.fixture(scope="module")
def scenes(sim_root) -> dict[int, Scene]:
    entries = json.loads((sim_root / "simnsd/scenes.json").read_text())
    return {entry["image_id"]: Scene.from_json(entry) for entry in entries}


def _samples(built):
    train, test, _ = built
    return train + test


def _turns(sample):
    """[(question, answer), ...] with the image token removed."""
    values = [turn["value"] for turn in sample["conversations"]]
    return [(q.replace(f"{IMAGE_TOKEN}\n", ""), a) for q, a in zip(values[::2], values[1::2])]


# ---------------------------------------------------------------------------------------------
# Tables 3-6


def test_instruction_lists_are_the_papers():
    assert len(BRIEF_INSTRUCTIONS) == 14 and len(set(BRIEF_INSTRUCTIONS)) == 14
    assert len(DETAILED_INSTRUCTIONS) == 20 and len(set(DETAILED_INSTRUCTIONS)) == 20
    assert BRIEF_INSTRUCTIONS[0] == "Describe the image concisely."
    assert "Write a terse but informative summary of the picture." in BRIEF_INSTRUCTIONS
    assert BRIEF_INSTRUCTIONS[-1] == "Create a compact narrative representing the image presented."
    assert DETAILED_INSTRUCTIONS[0] == "Describe the following image in detail."
    assert "Clarify the contents of the displayed image with great detail." in DETAILED_INSTRUCTIONS
    assert DETAILED_INSTRUCTIONS[-1] == "Write an exhaustive depiction of the given image."
    assert RECONSTRUCTION_INSTRUCTION == "Provide the corresponding Stable Diffusion prompts for the image."
    assert LOCALIZATION_TEMPLATE == 'Locating the concept of "<object>"'
    assert localization_instruction("teddy bear") == 'Locating the concept of "teddy bear"'


# ---------------------------------------------------------------------------------------------
# Format


def test_conversation_format(built):
    samples = _samples(built)
    assert {s["task"] for s in samples} == set(TASKS)
    assert len({s["id"] for s in samples}) == len(samples), "sample ids must be unique"
    for sample in samples:
        turns = sample["conversations"]
        assert len(turns) >= 2 and len(turns) % 2 == 0
        assert [t["from"] for t in turns] == ["human", "gpt"] * (len(turns) // 2)
        assert turns[0]["value"].startswith(f"{IMAGE_TOKEN}\n")
        assert sum(t["value"].count(IMAGE_TOKEN) for t in turns) == 1, sample["id"]
        assert all(t["value"].strip() for t in turns)
        question = _turns(sample)[0][0]
        expected = {"brief": BRIEF_INSTRUCTIONS, "detailed": DETAILED_INSTRUCTIONS, "reconstruction": [RECONSTRUCTION_INSTRUCTION]}
        if sample["task"] in expected:
            assert question in expected[sample["task"]]
        if sample["task"] == "dialogue":
            assert 3 <= len(turns) // 2 <= 4
    assert len({_turns(s)[0][0] for s in samples if s["task"] == "brief"}) > 7, "brief instructions are drawn from Table 3"


# ---------------------------------------------------------------------------------------------
# Answers are true to the scene graph


def _mentions(text: str, name: str) -> bool:
    return re.search(rf"\b{re.escape(name)}\b", text) is not None or re.search(rf"\b{re.escape(plural(name))}\b", text) is not None


def test_descriptions_and_prompts_name_every_object(built, scenes):
    for sample in _samples(built):
        scene = scenes[sample["nsd_id"]]
        answer = _turns(sample)[0][1]
        if sample["task"] == "brief":
            assert answer in scene.captions
            assert all(_mentions(answer, obj.name) for obj in scene.objects), (answer, scene.to_json())
        elif sample["task"] == "reconstruction":
            facts = facts_from_scene(scene)
            for obj in facts.objects:  # name, count and size: "two small cats"
                assert noun_phrase(obj, size=True) in answer, (answer, obj)
            assert SETTING_STYLES[scene.scene] in answer
        elif sample["task"] == "detailed":
            assert all(_mentions(answer, obj.name) for obj in scene.objects)


def test_dialogue_counts_positions_and_yes_no_answers_match_the_scene(built, scenes):
    """The dialogue's kinds of turn (`turn_kinds`) answer from the scene graph; more in tests/test_dialogue.py."""
    n = {"count": 0, "position": 0, "existence_yes": 0, "existence_no": 0}
    for sample in _samples(built):
        if sample["task"] != "dialogue":
            continue
        assert len(sample["turn_kinds"]) == len(sample["conversations"]) // 2
        scene = scenes[sample["nsd_id"]]
        counts = {obj.name: obj.count for obj in scene.objects}
        for (question, answer), kind in zip(_turns(sample), sample["turn_kinds"]):
            if kind == "count":
                name = next(o.name for o in scene.objects if plural(o.name) in question)
                expected = {1: "one", 2: "two", 3: "three"}[counts[name]]
                assert re.search(rf"\b{expected}\b", answer), (question, answer, counts)
            elif kind == "position":
                obj = next(o for o in scene.objects if re.search(rf"\b(?:{o.name}|{plural(o.name)})\?$", question))
                if "spread" not in answer:
                    assert obj.horizontal in answer and (obj.vertical == "middle" or obj.vertical in answer), (answer, obj)
            elif kind == "existence_yes":
                assert answer.startswith("Yes") and any(re.search(rf"\b{re.escape(name)}\b", question) for name in counts)
            elif kind == "existence_no":
                name = re.search(r"No, there is no (.+) in the picture\.", answer).group(1)
                assert name not in counts and name in question, (question, answer, counts)
            else:
                continue
            n[kind] += 1
    assert min(n.values()) > 20, n


def test_reasoning_answers_follow_from_the_facts(built, scenes):
    checked = 0
    for sample in _samples(built):
        if sample["task"] != "reasoning":
            continue
        scene = scenes[sample["nsd_id"]]
        for question, answer in _turns(sample):
            if question.startswith("Is this scene indoors or outdoors"):
                assert answer.startswith("It is indoors" if scene.scene == "room" else "It is outdoors")
                checked += 1
            if question.startswith("Which object takes up the most space"):
                largest = max(scene.objects, key=lambda o: o.area_fraction)
                assert answer.startswith(f"The {largest.name if largest.count == 1 else plural(largest.name)} ")
                checked += 1
    assert checked > 10


def test_localization_covers_every_concept_and_parses_back(built, scenes):
    asked: dict[tuple, set] = {}
    for sample in _samples(built):
        if sample["task"] == "localization":
            (question, answer), = _turns(sample)
            concept = parse_localization_request(question)
            assert parse_localization_answer(answer) == concept
            asked.setdefault((sample["subject"], tuple(sample["trials"])), set()).add(concept)
            assert concept in scenes[sample["nsd_id"]].concepts
    for sample in _samples(built):
        if sample["task"] == "brief":  # every trial's concepts, objects and scene context, are asked for
            assert asked[(sample["subject"], tuple(sample["trials"]))] == set(scenes[sample["nsd_id"]].concepts)


# ---------------------------------------------------------------------------------------------
# Parsers


def test_localization_answers_round_trip_for_every_concept():
    for concept in CONCEPT_NAMES:
        assert parse_localization_answer(localization_answer(concept)) == concept
        assert parse_localization_request(localization_instruction(concept)) == concept
    assert parse_localization_answer("The cat is on the left side of the picture.") is None
    assert parse_localization_answer("locating the concept of “dog”.") == "dog"


@pytest.mark.parametrize(
    "text, concept",
    [
        ('Locating the concept of "cat"', "cat"),
        ("where is the cat in this brain?", "cat"),
        ('locate "teddy bear"', "teddy bear"),
        ("Locate 'hot dog' please", "hot dog"),
        ("show me where dogs are represented", "dog"),
        ("Which brain regions respond to beach?", "beach"),
        ("Where does the brain encode cell phones?", "cell phone"),
        ("localize the potted plant", "potted plant"),
        ("Where is the dog?", None),  # a question about the picture, not the brain
        ("Which region of the picture is the dog in?", None),  # the picture named, nothing of the brain
        ("Locate the dog in the image", None),
        ("Locate the concept of dog in the image", "dog"),
        ("How many cats are there?", None),
        ("Describe the image concisely.", None),
    ],
)
def test_localization_requests_in_messy_phrasings(text, concept):
    assert parse_localization_request(text, vocabulary=CONCEPT_NAMES) == concept


# ---------------------------------------------------------------------------------------------
# Split and trials


def test_split_follows_shared_images_and_trials_show_the_image(built, sim_root):
    train, test, summary = built
    data = NSDDataset(sim_root)
    for sample in train + test:
        table = data.trials(sample["subject"])
        rows = [table.row(t) for t in sample["trials"]]
        assert all(table.nsd_id[r] == sample["nsd_id"] for r in rows)
        assert all(table.shared[r] == (sample["split"] == "test") for r in rows)
        if sample["split"] == "train":
            assert len(sample["trials"]) == 1
        else:
            assert sample["trials"] == table.trials_of_image(sample["nsd_id"]).tolist()
            assert len(sample["trials"]) == 3
    for subject in data.subjects:  # one sample set per training trial, one per shared image
        table = data.trials(subject)
        briefs = [s for s in train if s["subject"] == subject and s["task"] == "brief"]
        assert sorted(s["trials"][0] for s in briefs) == table.trial[~table.shared].tolist()
        assert sorted(s["nsd_id"] for s in test if s["subject"] == subject and s["task"] == "brief") == table.test_images.tolist()
    assert summary["samples"]["train"]["total"] == len(train) and summary["samples"]["test"]["brief"] == 40
    assert summary["skipped"]["images"] == 0


def test_session_cap_and_one_subject_give_the_same_samples_for_those_trials(built, sim_root):
    train, _, _ = built
    small_train, small_test, summary = build_extension(NSDDataset(sim_root, max_session=1), seed=0, subjects=["subj02"])
    assert {s["subject"] for s in small_train + small_test} == {"subj02"}
    assert all(t < 60 for s in small_train for t in s["trials"])
    full = {s["id"]: s for s in train}
    assert all(full[s["id"]] == s for s in small_train), "a trial's samples do not depend on what else is built"
    assert summary["max_session"] == 1


# ---------------------------------------------------------------------------------------------
# COCO annotations


def test_coco_path_when_scene_graphs_are_absent(sim_copy, built, scenes):
    (sim_copy / "simnsd/scenes.json").unlink()
    train, test, summary = build_extension(NSDDataset(sim_copy), seed=0)
    assert summary["source"] == "coco"
    assert len(train) == len(built[0]) and len(test) == len(built[1])
    for sample in train + test:
        scene = scenes[sample["nsd_id"]]
        (question, answer), *_ = _turns(sample)
        if sample["task"] == "localization":  # COCO's "sports ball" is called "ball", setting read from captions
            assert parse_localization_answer(answer) in scene.concepts
        if sample["task"] == "brief":
            assert answer in scene.captions
        if sample["task"] == "reconstruction":
            assert all(noun_phrase(obj, size=True) in answer for obj in facts_from_scene(scene).objects)


def test_coco_boxes_give_the_scene_graphs_facts(sim_root, scenes):
    """Counts, sizes and positions from pixel boxes, and the setting from captions, match the answer key."""
    coco, skipped, vocabulary = load_facts(NSDDataset(sim_root), scenes, source="coco")
    assert not skipped and "ball" in vocabulary and "sports ball" not in vocabulary
    for nsd_id, scene in scenes.items():
        expected = sorted((o.name, o.count, o.size, o.horizontal, o.vertical) for o in scene.objects)
        assert sorted((o.name, o.count, o.size, o.horizontal, o.vertical) for o in coco[nsd_id].objects) == expected
        assert coco[nsd_id].setting == scene.scene


def _write_annotations_without(sim_root, folder, no_captions: set[int], no_boxes: set[int]) -> None:
    """Copy the tree's COCO JSON into `folder`, dropping captions or boxes of some 73k ids."""
    folder.mkdir()
    coco = {nsd_id: 1_000_000 + nsd_id for nsd_id in no_captions | no_boxes}  # SimNSD's stand-in COCO ids
    for name, dropped in (("captions_train2017.json", no_captions), ("instances_train2017.json", no_boxes)):
        data = json.loads((sim_root / layout.ANNOTATIONS / name).read_text())
        drop = {coco[i] for i in dropped}
        data["annotations"] = [a for a in data["annotations"] if a["image_id"] not in drop]
        (folder / name).write_text(json.dumps(data))


def test_images_without_annotations_are_skipped_and_counted(sim_root, tmp_path):
    data = NSDDataset(sim_root)
    table = data.trials("subj01")
    own, shared = table.train_images.tolist(), table.test_images.tolist()
    no_captions, no_boxes = {own[0], shared[0]}, {own[1]}
    _write_annotations_without(sim_root, tmp_path / "ann", no_captions, no_boxes)

    train, test, summary = build_extension(NSDDataset(sim_root, annotations=tmp_path / "ann"), seed=0, source="coco")
    skipped = no_captions | no_boxes
    assert summary["skipped"]["images"] == 3
    assert summary["skipped"]["reasons"] == {"no captions": 2, "no boxes": 1}
    # three repetitions of each own image; the shared image's three repetitions for each of four subjects
    assert summary["skipped"]["trials"] == {"train": 2 * 3, "test": 4 * 3, "total": 18}
    assert sorted(summary["skipped"]["nsd_ids"]) == sorted(skipped)
    assert "skipped 3 image(s)" in summary["warnings"][0]
    assert not {s["nsd_id"] for s in train + test} & skipped
    assert {s["nsd_id"] for s in test} == set(shared) - skipped


def test_no_annotations_at_all_is_a_clear_error(sim_root, tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match=r"no COCO-format captions_\*\.json in .*empty.*--annotations"):
        build_extension(NSDDataset(sim_root, annotations=tmp_path / "empty"), source="coco")


def test_scene_graphs_missing_for_some_images(sim_copy):
    path = sim_copy / "simnsd/scenes.json"
    entries = json.loads(path.read_text())
    path.write_text(json.dumps([e for e in entries if e["image_id"] not in (0, 1)]))
    train, test, summary = build_extension(NSDDataset(sim_copy), seed=0)
    assert summary["skipped"]["reasons"] == {"not in simnsd/scenes.json": 2}
    assert not {s["nsd_id"] for s in train + test} & {0, 1}


# ---------------------------------------------------------------------------------------------
# Hook, references, determinism, command line


def test_dialogue_writer_hook(sim_root):
    calls = []

    def writer(facts, task, rng):
        calls.append((facts.nsd_id, task))
        return [(f"What is in picture {facts.nsd_id}?", f"{len(facts.objects)} kinds of objects.")]

    train, _, _ = build_extension(NSDDataset(sim_root), subjects=["subj01"], tasks=["dialogue", "reasoning"], dialogue_writer=writer)
    assert {task for _, task in calls} == {"dialogue", "reasoning"}
    assert all(s["conversations"][0]["value"].startswith(f"{IMAGE_TOKEN}\nWhat is in picture") for s in train)
    with pytest.raises(ConfigError, match="dialogue writer"):
        build_extension(NSDDataset(sim_root), tasks=["dialogue"], dialogue_writer=lambda facts, task, rng: [])
    with pytest.raises(ConfigError, match="tasks"):
        build_extension(NSDDataset(sim_root), tasks=["captioning"])


def test_references_for_every_test_image(sim_root, scenes):
    references = build_references(NSDDataset(sim_root))
    assert sorted(references) == NSDDataset(sim_root).trials("subj01").test_images.tolist()
    for nsd_id, answers in references.items():
        assert answers["brief"] == scenes[nsd_id].captions
        assert {item["concept"] for item in answers["localization"]} == set(scenes[nsd_id].concepts)
        assert answers["detailed"] and answers["reconstruction"] and answers["reasoning"] and answers["dialogue"]


def test_same_seed_same_json_and_the_command_writes_the_files(built, sim_root, tmp_path):
    again = build_extension(NSDDataset(sim_root), seed=0)
    assert json.dumps(again[:2]) == json.dumps(built[:2])
    other = build_extension(NSDDataset(sim_root), seed=1)
    assert json.dumps(other[0]) != json.dumps(built[0])
    assert [s["id"] for s in other[0]] == [s["id"] for s in built[0]]

    out = tmp_path / "lang"
    with pytest.raises(SystemExit) as exit_info:
        run_main(language_main, ["build", "--root", str(sim_root), "--out", str(out), "--seed", "0"])
    assert exit_info.value.code == 0
    assert json.loads((out / "train.json").read_text()) == built[0]
    assert json.loads((out / "test.json").read_text()) == built[1]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["samples"] == built[2]["samples"]
    assert set(json.loads((out / "references.json").read_text())) == {str(s["nsd_id"]) for s in built[1]}
