"""Does the chat tell the truth about the recording? Dialogue scored against the answer key.

    python -m neurochat.evaluate dialogue --preset demo [--per-subject N] [--json PATH]

BLEU cannot see a chat that makes things up: templated phrasing scores high whatever the facts. The
answer key can: it knows every object, count, position, size and scene of a SimNSD picture (on real
NSD, COCO's annotations stand in for it, `neurochat.language.load_facts`). For each shared test
image of each subject (averaged over its repetitions), the fMRI-LLM is asked, in the extension's
own phrasings (`dialogue_cases`):

- existence: "Is there a dog in the picture?" for every object present, and as many times for an
  absent one (one that could be in that setting where there is one: a "no" must come from the
  recording, not from the scene);
- count, position and size of every object present ("How many dogs are there?", "Where is the dog?");
- the scene ("Where was this picture taken?"); what objects there are;
- an absent object's premise ("Where is the giraffe?": the right answer says there is none);
- what the recording cannot say ("What is the dog doing?": the right answer says it cannot tell);
- follow-ups after the model's own first answer: "How many are there?", "Where is it?", "What else
  is there?", and "And the other one?" on pictures of two objects.

The chat is asked as the explorer asks it (`chat_asker`): a plain yes/no question about one object
is answered from the LLM's own list of what it sees (`neurochat.language.questions`), the rest by the
LLM itself. The LLM's direct yes/no answers are reported beside (`existence_direct`).

Answers are read by `neurochat.language.answers` (yes/no, numbers in words or digits, left / right /
center and top / bottom / middle, scene words, size words); an answer it cannot read counts as wrong.
Every answer's asserted objects that the picture lacks are counted as hallucinated
(`asserted_mentions`: "No, there is no clock" names a clock without claiming it). Each share comes
with its spread over the cases (`case_sd`) and their number (`case_n`).
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np

from neurochat.language.answers import (
    OBJECT_NAMES,
    read_count,
    read_position,
    read_scene,
    read_size,
    read_yes_no,
    says_cannot_tell,
)
from neurochat.language.facts import ImageFacts, ObjectFacts
from neurochat.language.questions import OBJECT_LIST_QUESTION, existence_from_listing, existence_target
from neurochat.metrics import spread_over_cases
from neurochat.vocabulary import SCENES, article, asserted_mentions, mention_spans, objects_for_scene, plural

# The targets: (comparison, value) per reported number.
TARGETS: dict[str, tuple[str, float]] = {
    "existence.present": (">=", 0.90),
    "existence.absent": (">=", 0.90),
    "scene": (">=", 0.95),
    "count": (">=", 0.80),
    "position": (">=", 0.80),
    "hallucinated_objects_per_answer": ("<=", 0.10),
}
FOLLOW_UPS = ("count", "position", "what_else", "other_one")
# The reported shares, in report order (existence is split into present and absent).
SHARES = ("count", "position", "position_horizontal", "size", "scene", "objects", "absent_premise", "cant_tell", "follow_up")
MAX_NEW_TOKENS = 64  # the longest answers asked for (what objects, what else) are about 30 tokens
EXAMPLES_PER_KIND = 3
_NOTHING_ELSE = re.compile(r"\b(?:only|nothing else|no other|nothing more|none)\b", re.IGNORECASE)


@dataclass(frozen=True)
class Case:
    """One scripted conversation about one recording; its last answer is scored."""

    kind: str  # "existence.present", "count", "follow_up.other_one", ...
    row: int  # which recording: an index into the facts given to `dialogue_cases`
    questions: tuple[str, ...]  # the user's turns, asked one by one after the model's own answers
    target: str | None = None  # the object asked about
    other: str | None = None  # follow_up.other_one: the picture's other object


# ---------------------------------------------------------------------------------------------
# 1. The questions


def dialogue_cases(facts: Sequence[ImageFacts], vocabulary: Sequence[str], seed: int = 0) -> list[Case]:
    """The scripted questions for each recording (one `ImageFacts` per recording, in row order).

    The phrasings are the extension's (`neurochat.language.dialogue`), turned by a generator seeded
    with the picture's 73k id: every subject is asked the same about the same picture.
    """
    cases = []
    for row, picture in enumerate(facts):
        rng = random.Random(f"dialogue-evaluation/{seed}/{picture.nsd_id}")
        names = [obj.name for obj in picture.objects]
        absent = _absent_objects(picture, vocabulary, len(names) + 1, rng)
        for obj in picture.objects:
            is_are, the_x = ("is", f"the {obj.name}") if obj.count == 1 else ("are", f"the {plural(obj.name)}")
            cases += [
                Case("existence.present", row, (_existence_question(obj.name, rng),), obj.name),
                Case("count", row, (rng.choice([f"How many {plural(obj.name)} are there?",
                                                f"How many {plural(obj.name)} can you see?"]),), obj.name),  # fmt: skip
                Case("position", row, (rng.choice([f"Where {is_are} {the_x}?", f"Where in the picture {is_are} {the_x}?"]),), obj.name),
                Case("size", row, (f"How big {is_are} {the_x}?",), obj.name),
            ]
        cases += [Case("existence.absent", row, (_existence_question(name, rng),), name) for name in absent[: len(names)]]
        if len(absent) > len(names):  # (a COCO vocabulary may have few absent names)
            premise = absent[-1]
            question = rng.choice([f"Where is the {premise}?", f"How many {plural(premise)} are there?"])
            cases.append(Case("absent_premise", row, (question,), premise))
        if picture.setting:
            question = rng.choice(["Where was this picture taken?", "What is the setting?", "What kind of place is this?"])
            cases.append(Case("scene", row, (question,)))
        cases.append(Case("objects", row, (rng.choice(["What objects are in the picture?", "What can you see in this image?"]),)))
        focus = rng.choice(picture.objects)
        is_are = "is" if focus.count == 1 else "are"
        cases.append(Case("cant_tell", row, (f"What {is_are} the {focus.name if focus.count == 1 else plural(focus.name)} doing?",), focus.name))
        opening = f"Is there {article(focus.name)} {focus.name} in the picture?"
        it = "it" if focus.count == 1 else "they"
        cases += [
            Case("follow_up.count", row, (opening, "How many are there?"), focus.name),
            Case("follow_up.position", row, (opening, f"Where {is_are} {it}?"), focus.name),
            Case("follow_up.what_else", row, (opening, "What else is there?"), focus.name),
        ]
        if len(picture.objects) == 2:
            other = next(obj for obj in picture.objects if obj.name != focus.name)
            the_focus = f"the {focus.name}" if focus.count == 1 else f"the {plural(focus.name)}"
            cases.append(Case("follow_up.other_one", row, (f"Where {is_are} {the_focus}?", "And the other one?"), focus.name,
                              other.name))  # fmt: skip
    return cases


def _existence_question(name: str, rng: random.Random) -> str:
    a = f"{article(name)} {name}"
    return rng.choice([f"Is there {a} in the picture?", f"Do you see {a}?", f"Can you see {a}?"])


def _absent_objects(picture: ImageFacts, vocabulary: Sequence[str], n: int, rng: random.Random) -> list[str]:
    """`n` different absent objects, those that could be in the picture's setting first."""
    absent = [name for name in vocabulary if name not in picture.names]
    plausible = [c.name for c in objects_for_scene(picture.setting)] if picture.setting else []
    plausible = [name for name in plausible if name in absent]
    rng.shuffle(plausible)
    rest = [name for name in absent if name not in plausible]
    rng.shuffle(rest)
    chosen = (plausible + rest)[:n]
    rng.shuffle(chosen)
    return chosen


# ---------------------------------------------------------------------------------------------
# 2. Asking


def ask_cases(cases: Sequence[Case], ask: Callable[[list[int], list[list[dict]]], list[str]]) -> list[list[str]]:
    """Every case's answers, turn by turn: turn k of every case is asked in one call to `ask(rows,
    conversations)`, each conversation holding the case's earlier questions and the model's own answers."""
    answers: list[list[str]] = [[] for _ in cases]
    for turn in range(max((len(case.questions) for case in cases), default=0)):
        todo = [i for i, case in enumerate(cases) if len(case.questions) > turn]
        conversations = []
        for i in todo:
            messages = []
            for question, answer in zip(cases[i].questions[:turn], answers[i]):
                messages += [{"role": "user", "content": question}, {"role": "assistant", "content": answer}]
            conversations.append(messages + [{"role": "user", "content": cases[i].questions[turn]}])
        replies = ask([cases[i].row for i in todo], conversations)
        if len(replies) != len(todo):
            raise ValueError(f"asked {len(todo)} questions, got {len(replies)} answers")
        for i, reply in zip(todo, replies):
            answers[i].append(reply)
    return answers


def llm_asker(brainllm, fmri, *, batch_size: int = 32, max_new_tokens: int = MAX_NEW_TOKENS):
    """`ask` for `ask_cases`: the fMRI-LLM answers, greedy, each row's recording `fmri[row]` (M, T, D)."""

    def ask(rows: list[int], conversations: list[list[dict]]) -> list[str]:
        order = sorted(range(len(rows)), key=lambda i: len(str(conversations[i])))  # similar lengths pad little
        texts = [""] * len(rows)
        for start in range(0, len(order), batch_size):
            batch = order[start : start + batch_size]
            replies = brainllm.generate(fmri[[rows[i] for i in batch]], [conversations[i] for i in batch],
                                        max_new_tokens=max_new_tokens)  # fmt: skip
            for i, reply in zip(batch, replies):
                texts[i] = reply.text
        return texts

    return ask


def chat_asker(brainllm, fmri, objects: Sequence[str], *, batch_size: int = 32, max_new_tokens: int = MAX_NEW_TOKENS):
    """`ask` for `ask_cases` as the explorer's chat answers (`Explorer.chat`): a plain yes/no question
    about one of `objects` is read off the LLM's answer to `OBJECT_LIST_QUESTION` about that recording
    (asked once per row, greedy, each object named once), every other question goes to the LLM."""
    direct = llm_asker(brainllm, fmri, batch_size=batch_size, max_new_tokens=max_new_tokens)
    listings: dict[int, str] = {}

    def ask(rows: list[int], conversations: list[list[dict]]) -> list[str]:
        asked = [existence_target(messages[-1]["content"], objects) for messages in conversations]
        todo = sorted({row for row, name in zip(rows, asked) if name is not None and row not in listings})
        for start in range(0, len(todo), batch_size):
            batch = todo[start : start + batch_size]
            question = [{"role": "user", "content": OBJECT_LIST_QUESTION}]
            replies = brainllm.generate(fmri[batch], [question] * len(batch), max_new_tokens=max_new_tokens,
                                        distinct_concepts=list(objects))  # fmt: skip
            listings.update({row: reply.text.strip() for row, reply in zip(batch, replies)})
        rest = [i for i, name in enumerate(asked) if name is None]
        replies = iter(direct([rows[i] for i in rest], [conversations[i] for i in rest]) if rest else [])
        return [next(replies) if name is None else existence_from_listing(name, listings[row], objects)
                for row, name in zip(rows, asked)]  # fmt: skip

    return ask


# ---------------------------------------------------------------------------------------------
# 3. Scoring


def score_case(case: Case, answer: str, picture: ImageFacts) -> bool:
    """Is the last answer of `case` right about `picture`?"""
    objects = {obj.name: obj for obj in picture.objects}
    target = objects.get(case.target)
    kind = case.kind.removeprefix("follow_up.")
    named = asserted_mentions(answer, _object_names(picture))
    if kind in ("existence.present", "count", "position", "size") and named and case.target not in named:
        return False  # an answer about another object ("Yes, there is one cat") is not an answer about this one
    if case.kind == "existence.present":
        return read_yes_no(answer, case.target) is True
    if case.kind == "existence.absent":
        return read_yes_no(answer, case.target) is False
    if case.kind == "absent_premise":
        return read_yes_no(answer, case.target) is False or read_count(answer, case.target) == 0
    if kind == "count":
        return read_count(answer, case.target) == target.count
    if kind == "position":
        return position_right(answer, target)
    if case.kind == "size":
        return read_size(_about(answer, target.name)) == target.size
    if case.kind == "scene":
        return read_scene(answer) == picture.setting
    if case.kind == "cant_tell":
        return says_cannot_tell(answer) and not hallucinated(answer, picture)
    if case.kind == "objects":
        return set(named) == picture.names
    if kind == "what_else":
        others = picture.names - {case.target}
        if not others:  # "the dog is the only object; there is nothing else", not a repeat of the first answer
            return not set(named) - {case.target} and bool(_NOTHING_ELSE.search(answer))
        return set(named) - {case.target} == others
    if kind == "other_one":
        other = objects[case.other]
        return other.name in asserted_mentions(answer, [other.name]) and position_right(answer, other)
    raise ValueError(f"unknown case kind {case.kind!r}")


def position_right(answer: str, obj: ObjectFacts) -> bool:
    """The sides (and, if said, the height) the answer gives the object match the answer key's.

    Read from where the answer names the object to the end of that clause, so "the dog is on the left;
    the ball is on the right" places each right. An object whose instances stand on different sides
    is right when exactly those sides are named.
    """
    sides, vertical = read_position(_about(answer, obj.name))
    truth = set(obj.instance_horizontals)
    if len(truth) > 1:
        return sides == truth
    return sides == {obj.horizontal} and vertical in (None, obj.vertical)


def _horizontal_right(answer: str, obj: ObjectFacts) -> bool:
    sides, _ = read_position(_about(answer, obj.name))
    truth = set(obj.instance_horizontals)
    return sides == (truth if len(truth) > 1 else {obj.horizontal})


def _about(answer: str, name: str) -> str:
    """The part of `answer` from its first mention of `name` to the end of that clause (all of it if unnamed)."""
    spans = mention_spans(answer, [name])
    if not spans:
        return answer
    rest = answer[spans[0][0] :]
    return re.split(r"[.;!?]", rest, maxsplit=1)[0]


def _object_names(picture: ImageFacts) -> list[str]:
    """The world's object names and the picture's own (COCO names beyond SimNSD's)."""
    return list(dict.fromkeys([*OBJECT_NAMES, *sorted(picture.names)]))


def hallucinated(answer: str, picture: ImageFacts, vocabulary: Sequence[str] | None = None) -> int:
    """How many objects the answer asserts that the picture does not have."""
    names = vocabulary if vocabulary is not None else _object_names(picture)
    return sum(name not in picture.names for name in asserted_mentions(answer, names))


def score_dialogue(cases: Sequence[Case], answers: Sequence[Sequence[str]], facts: Sequence[ImageFacts],
                   vocabulary: Sequence[str] | None = None) -> dict:  # fmt: skip
    """The evaluation's numbers from each case's answers (see the module docstring for the keys)."""
    right: dict[str, list[bool]] = {}
    lies: list[int] = []
    examples: dict[str, list[dict]] = {}
    for case, case_answers in zip(cases, answers):
        picture = facts[case.row]
        right.setdefault(case.kind, []).append(score_case(case, case_answers[-1], picture))
        if case.kind == "position":
            right.setdefault("position_horizontal", []).append(
                _horizontal_right(case_answers[-1], {o.name: o for o in picture.objects}[case.target]))
        lies += [hallucinated(answer, picture, vocabulary) for answer in case_answers]
        shown = examples.setdefault(case.kind, [])
        if len(shown) < EXAMPLES_PER_KIND:
            shown.append({"nsd_id": picture.nsd_id, "truth": _truth(picture), "right": right[case.kind][-1],
                          "turns": [[q, a] for q, a in zip(case.questions, case_answers)]})  # fmt: skip
    right["follow_up"] = [r for kind in FOLLOW_UPS for r in right.get(f"follow_up.{kind}", [])]

    def share(values):
        return float(np.mean(values)) if values else None

    results: dict = {
        "existence": {
            "present": share(right.get("existence.present", [])),
            "absent": share(right.get("existence.absent", [])),
            "case_sd": {k: spread_over_cases(right.get(f"existence.{k}", [])) for k in ("present", "absent")},
            "case_n": {k: len(right.get(f"existence.{k}", [])) for k in ("present", "absent")},
        },
        **{name: share(right.get(name, [])) for name in SHARES},
        "hallucinated_objects_per_answer": share(lies),
        "follow_up_by_kind": {kind: share(right.get(f"follow_up.{kind}", [])) for kind in FOLLOW_UPS},
        "case_sd": {**{name: spread_over_cases(right.get(name, [])) for name in SHARES},
                    "hallucinated_objects_per_answer": spread_over_cases(lies)},  # fmt: skip
        "case_n": {**{name: len(right.get(name, [])) for name in SHARES}, "hallucinated_objects_per_answer": len(lies)},
        "recordings": len({case.row for case in cases}),
        "answers": len(lies),
        "examples": examples,
    }
    return results


def _truth(picture: ImageFacts) -> str:
    objects = ", ".join(f"{o.count} {o.name} {o.horizontal}/{o.vertical} {o.size}" for o in picture.objects)
    return f"{objects}; {picture.setting or 'setting unknown'}"


def target_text(name: str) -> str:
    """'≥ 90%', '≤ 0.1' or '' for a row name."""
    if name not in TARGETS:
        return ""
    comparison, target = TARGETS[name]
    sign = "≥" if comparison == ">=" else "≤"
    return f"{sign} {target:g}" if name == "hallucinated_objects_per_answer" else f"{sign} {100 * target:g}%"


def meets(name: str, value: float | None) -> bool | None:
    """Does `value` reach the target of `name` (None where there is no target or no value)?"""
    if name not in TARGETS or value is None:
        return None
    comparison, target = TARGETS[name]
    return value >= target if comparison == ">=" else value <= target


# ---------------------------------------------------------------------------------------------
# 4. The whole evaluation


def evaluate_dialogue_llm(dataset, bundle, brainllm, *, per_subject: int | None = None, seed: int = 0,
                          batch_size: int = 32) -> dict:  # fmt: skip
    """The dialogue numbers of one (extractor, fMRI-LLM) pair on the averaged test recordings."""
    from neurochat.data import TrialBank, test_set
    from neurochat.evaluate.recon import predict_features, select_rows
    from neurochat.language import load_facts

    bank = TrialBank(dataset, bundle.preprocessor)
    ts = test_set(bank, "averaged")
    rows = select_rows(ts, per_subject)
    facts_by_id, _, vocabulary = load_facts(dataset, {int(i) for i in ts.nsd_id[rows]})
    rows = np.array([r for r in rows if int(ts.nsd_id[r]) in facts_by_id])  # images without annotations are left out
    _, _, fmri = predict_features(bundle, bank, ts, rows)
    facts = [facts_by_id[int(i)] for i in ts.nsd_id[rows]]
    cases = dialogue_cases(facts, vocabulary, seed)
    objects = [name for name in vocabulary if name not in SCENES]
    answers = ask_cases(cases, chat_asker(brainllm, fmri, objects, batch_size=batch_size))
    results = score_dialogue(cases, answers, facts, vocabulary)
    existence = [case for case in cases if case.kind.startswith("existence.")]
    asked_directly = score_dialogue(existence, ask_cases(existence, llm_asker(brainllm, fmri, batch_size=batch_size)), facts,
                                    vocabulary)  # fmt: skip
    results["existence_direct"] = asked_directly["existence"]
    return results


def evaluate_dialogue(dataset, main, brainllm, flattened=None, flattened_llm=None, *, log=print, **kwargs) -> dict:
    """{"vit3d": numbers, "flattened": numbers or None, "targets", "protocol"}: ViT3D and "w/o ViT3D" side by side."""
    results = {"vit3d": evaluate_dialogue_llm(dataset, main, brainllm, **kwargs), "flattened": None,
               "targets": {name: list(target) for name, target in TARGETS.items()}, "protocol": "averaged"}  # fmt: skip
    if flattened is not None and flattened_llm is not None:
        results["flattened"] = evaluate_dialogue_llm(dataset, flattened, flattened_llm, **kwargs)
    log(format_table(results))
    return results


ROWS = (
    ("existence.present", "existence, present object: yes"),
    ("existence.absent", "existence, absent object: no"),
    ("existence_direct.present", "  the LLM asked directly: present"),
    ("existence_direct.absent", "  the LLM asked directly: absent"),
    ("count", "count"),
    ("position", "position (side, and height if said)"),
    ("position_horizontal", "position, side only"),
    ("size", "size"),
    ("scene", "scene"),
    ("objects", "what objects: exactly the true set"),
    ("absent_premise", "absent object's premise rejected"),
    ("cant_tell", "says it cannot tell (an action)"),
    ("follow_up", "follow-ups (own first answer in the history)"),
    ("hallucinated_objects_per_answer", "hallucinated objects per answer"),
)


def value_of(numbers: dict, name: str):
    """(value, spread, n) of a row name ("existence.present", "count", ...) in one model's numbers."""
    if name.startswith("existence"):
        block_name, key = name.split(".")
        block = numbers.get(block_name)
        if block is None:  # (results written before the direct answers were reported)
            return None, None, None
        return block[key], block["case_sd"][key], block["case_n"][key]
    return numbers[name], numbers["case_sd"].get(name), numbers["case_n"].get(name)


def format_table(results: dict) -> str:
    """A plain-text table: each row's share (± spread over cases) per model, and the target."""
    models = [(name, label) for name, label in (("vit3d", "ViT3D"), ("flattened", "w/o ViT3D")) if results.get(name)]
    lines = [f"{'':46}" + "".join(f"{label:>20}" for _, label in models) + f"{'target':>10}"]
    for name, label in ROWS:
        cells = []
        for model, _ in models:
            value, sd, n = value_of(results[model], name)
            if value is None:
                cells.append(f"{'n/a':>20}")
            elif name == "hallucinated_objects_per_answer":
                cells.append(f"{value:>10.3f} ± {sd:.2f}{'':3}")
            else:
                mark = {True: "✓", False: "✗", None: " "}[meets(name, value)]
                cells.append(f"{100 * value:>9.1f}% ± {100 * sd:4.1f} {mark}")
        lines.append(f"{label:46}" + "".join(cells) + f"{target_text(name):>10}")
    first = results["vit3d"]
    lines.append(f"{first['recordings']} averaged test recordings, {first['answers']} answers; ± is the spread over the cases")
    return "\n".join(lines)
