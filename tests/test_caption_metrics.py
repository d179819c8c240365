"""Caption metrics (Table 1): pycocoevalcap's scores, concept recall, CLIP-S."""

from __future__ import annotations

import shutil

import pytest

from neurochat.evaluate.caption import clip_score, names, text_metrics


def test_text_metrics_reward_the_right_caption():
    references = {0: ["a cat on the grass", "a cat sitting in a grassy field"], 1: ["two buses on the street"]}
    good = text_metrics(references, {0: "a cat on the grass", 1: "two buses on the street"})
    bad = text_metrics(references, {0: "a bus in the snow", 1: "a pizza in a room"})
    for metric in ("bleu1", "bleu4", "rouge_l", "cider"):
        assert good[metric] > bad[metric], metric
    assert good["bleu1"] == pytest.approx(1.0, abs=1e-6)
    assert good["spice"] is None  # unavailable offline, never invented
    if shutil.which("java"):
        assert good["meteor"] > bad["meteor"]
    else:
        assert good["meteor"] is None


def test_concept_names_are_matched_as_words():
    assert names("two cats on the grass", "cat")
    assert names("A Teddy Bear in a room", "teddy bear")
    assert not names("a catalogue", "cat")
    assert names("three sheep in the snow", "sheep")


def test_clip_score_prefers_the_true_caption():
    from neurochat.models.vision import VisionEncoders
    from neurochat.presets import get_preset
    from neurochat.sim.pool import pool_scenes, render_images

    preset = get_preset("demo")
    if not (preset.clip_dir / "config.json").exists():
        pytest.skip("the demo CLIP is not in checkpoints/demo")
    vision = VisionEncoders.from_preset(preset)
    scenes = pool_scenes(0, 16, first=99_000)
    images = render_images(scenes, 64)
    true = clip_score(images, [s.captions[0] for s in scenes], vision)
    wrong = clip_score(images, [s.captions[0] for s in scenes[::-1]], vision)
    assert 0 <= wrong < true <= 2.5
    # an LLM that answers nothing (blank) scores 0 for that picture instead of stopping the evaluation
    half_blank = clip_score(images, [s.captions[0] if i % 2 else "  " for i, s in enumerate(scenes)], vision)
    assert half_blank == pytest.approx(clip_score(images[1::2], [s.captions[0] for s in scenes[1::2]], vision) / 2, rel=1e-4)
