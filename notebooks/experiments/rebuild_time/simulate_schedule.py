"""Experiment (issue 8): how long `python -m train.demo_bundle --jobs 2` takes if each stage takes its
one-thread time in `ONE_THREAD_SECONDS` (projected from seconds per step measured on the 2-core machine
of 2026-11-29, with the extractor and LLM shortcuts and CLIP and VAE side by side), with the plan's
order among equals (the rule before `start_order`) and with `start_order`; for the recipe now (the
constants at the top of `train/demo_bundle.py`), the one of 2026-11-29 (every extractor 8 epochs, CLIP
1,500 / VAE 1,800 steps, the decoder cut off at 2,700 s, LM stage 0 4 epochs) and the one before that
(the r = 7 extractors 30 epochs, r = 5 / 6 10 epochs). Data, packing, the check and the evaluation add
about 9 min to each.

    python notebooks/experiments/rebuild_time/simulate_schedule.py
"""

from pathlib import Path

from neurochat.sim.config import SUBJECTS
from train.demo_bundle import ONE_THREAD_SECONDS, stage_commands, stage_needs, start_order, waiting_on

PLAN = list(stage_commands("demo", Path("unused"), Path("unused")))


def finish_time(order: list[str], seconds: dict[str, float], lanes: int = 2) -> float:
    """When the last stage ends if each starts, in `order`, as soon as a lane is free and its needs are done."""
    pending, done, running, now = list(order), set(), {}, 0.0
    while pending or running:
        for stage in [s for s in pending if all(need in done for need in stage_needs(s))]:
            if len(running) == lanes:
                break
            pending.remove(stage)
            running[stage] = now + seconds[stage]
        stage = min(running, key=running.get)
        now = running.pop(stage)
        done.add(stage)
    return now


def report(name: str, seconds: dict[str, float]) -> None:
    plan_order = sorted(PLAN, key=lambda stage: -waiting_on(stage, PLAN))  # the rule before start_order
    print(f"{name}: {sum(seconds.values()):,.0f} s of one-thread work; two lanes: plan order "
          f"{finish_time(plan_order, seconds) / 3600:.2f} h, start_order {finish_time(start_order(PLAN), seconds) / 3600:.2f} h "
          f"(at best {sum(seconds.values()) / 2 / 3600:.2f} h)")


report("recipe now", ONE_THREAD_SECONDS)
eight_epochs = dict(ONE_THREAD_SECONDS)
eight_epochs.update(vision_clip=1700, vision_vae=2950, decoder=2750, llm0=2706, extractor_vit3d_r5=1500, extractor_vit3d_r6=1120)
report("recipe of 2026-11-29 (8 epochs)", eight_epochs)
before = dict(eight_epochs)
for stage in ("extractor_vit3d_r7", "extractor_flattened_r7", *(f"extractor_{s}_r7" for s in SUBJECTS)):
    before[stage] *= 30 / 8
for stage in ("extractor_vit3d_r5", "extractor_vit3d_r6"):
    before[stage] *= 10 / 8
report("recipe before (30 / 10 epochs)", before)
