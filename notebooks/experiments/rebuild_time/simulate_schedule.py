"""Experiment (issue 8): how long `python -m train.demo_bundle --jobs 2` takes if each stage takes its
one-thread time in `ONE_THREAD_SECONDS` (projected from seconds per step measured on the 2-core machine
of 2026-11-29, with the extractor and LLM shortcuts and CLIP and VAE side by side), with the plan's
order among equals (the rule before `start_order`) and with `start_order`; then the same with the
recipe cuts the issue note weighs, one on top of the other: the r = 7 extractors (main, flattened,
subjects) 15 epochs instead of 30, the decoder capped at 1,800 s instead of 2,700 s, r = 5 / 6 8 epochs
instead of 10. Data, packing, the check and the evaluation add about 9 min to any of these.

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


report("recipes now", ONE_THREAD_SECONDS)
cut = dict(ONE_THREAD_SECONDS)
for stage in ("extractor_vit3d_r7", "extractor_flattened_r7", *(f"extractor_{s}_r7" for s in SUBJECTS)):
    cut[stage] /= 2  # 15 epochs instead of 30
report("r = 7 extractors 15 epochs", cut)
cut["decoder"] -= 900  # capped at 1,800 s
report("and the decoder capped at 1,800 s", cut)
cut["extractor_vit3d_r5"] *= 0.8  # 8 epochs instead of 10
cut["extractor_vit3d_r6"] *= 0.8
report("and r = 5 / 6 8 epochs", cut)
