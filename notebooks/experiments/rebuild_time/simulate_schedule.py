"""Experiment (issue 8): how long `python -m train.demo_bundle --jobs 2` takes if each stage takes its
one-thread time in `ONE_THREAD_SECONDS` (projected from seconds per step measured on the 2-core machine
of 2026-11-29, with the extractor and LLM shortcuts and CLIP and VAE side by side), with the plan's
order among equals (the rule before `start_order`) and with `start_order`; for the recipe now (the
main r = 7 extractor and its flattened twin 30 epochs, the other extractors 8, CLIP 1,500 / VAE 1,800
steps, the decoder stopped at step 738 of its 1,500, LM stage 0 4 epochs), the one rebuilt on 2026-12-02
with every extractor at 8 epochs (its LLM fell beyond noise, docs/demo_bundle.md), the shorter one tried on 2026-12-01
and dropped (r = 6 / 5 5 epochs, CLIP 1,200 / VAE 1,300 steps, the decoder a fixed 600 steps, LM stage 0
3 epochs: it cost reconstruction quality) and the one the committed bundle was trained with (every r = 7
extractor 30 epochs, r = 5 / 6 10 epochs); then the measured rebuilds ("2026-12-02's second machine": the float32 recipe now,
measured in part; then the bf16 recipe, measured in part on 2026-12-02's third machine; the last line: the bf16
recipe, every stage measured on 2026-12-02's fourth machine). Data, packing, the check and the evaluation add about
9 min to each (more since the evaluation draws its reconstructions with 3 seeds).

    python notebooks/experiments/rebuild_time/simulate_schedule.py
"""

import json
from pathlib import Path

from neurochat.sim.config import SUBJECTS
from train.bundle_plan import ONE_THREAD_SECONDS, stage_commands, stage_needs, start_order, waiting_on

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


LLM_EXTRACTORS = ("extractor_vit3d_r7", "extractor_flattened_r7")  # 30 epochs now, 8 in the 2026-12-02 rebuild
report("recipe now (r = 7 main and flattened 30 epochs, the rest 8)", ONE_THREAD_SECONDS)
all_eight = {k: v * 8 / 30 if k in LLM_EXTRACTORS else v for k, v in ONE_THREAD_SECONDS.items()}
report("every extractor 8 epochs (rebuilt 2026-12-02)", all_eight)
shorter = dict(all_eight)
shorter.update(vision_clip=1360, vision_vae=2130, decoder=2460, llm0=2030, extractor_vit3d_r5=940, extractor_vit3d_r6=700)
report("the shorter recipe tried on 2026-12-01", shorter)
before = dict(ONE_THREAD_SECONDS)
for stage in (f"extractor_{s}_r7" for s in SUBJECTS):
    before[stage] *= 30 / 8
for stage in ("extractor_vit3d_r5", "extractor_vit3d_r6"):
    before[stage] *= 10 / 8
report("recipe before (30 / 10 epochs)", before)

# The timed rebuild of 2026-12-01 (the shorter recipe), stopped unfinished at the session's end: the
# stages it finished at their measured wall seconds (manifest), the rest at 1.3× / 1.5× their one-thread
# time (the finished stages ran 1.2–1.8× theirs on that machine, each beside another stage).
measured = dict(vision_clip=2057, vision_vae=2622, vision=40, extractor_vit3d_r7=802, extractor_flattened_r7=400,
                llm0=2483, llm1=2167, decoder=3962)  # fmt: skip
for factor in (1.3, 1.5):
    report(f"2026-12-01's machine, shorter recipe, the rest at {factor}×", {**{k: v * factor for k, v in shorter.items()}, **measured})
    report(f"2026-12-01's machine, every extractor 8 epochs, at {factor}×", {k: v * factor for k, v in all_eight.items()})

# The timed rebuild of 2026-12-02 (every extractor 8 epochs, from an empty folder, finished): every stage's wall
# seconds from its manifest, each one thread beside another stage. It ran in two parts (the session
# ended after nine stages; the same command resumed it), and LM stage 2 and the "w/o ViT3D" LLM shared
# the cores with a test run for 20 min, so this packing, not the clock, is its uninterrupted time.
rebuilt = dict(vision_clip=2912, vision_vae=4207, vision=39, extractor_vit3d_r7=857, extractor_flattened_r7=412, llm0=3457,
               llm1=1592, decoder=4205, llm2=2781, llm_flattened=3527, extractor_vit3d_r5=2029, extractor_vit3d_r6=1560,
               extractor_subj01_r7=194, extractor_subj02_r7=198, extractor_subj05_r7=192, extractor_subj07_r7=190)  # fmt: skip
report("2026-12-02's rebuild, measured", rebuilt)
# The recipe now on that machine: the same seconds, the two r = 7 models that feed the LLM at 30 / 8 of theirs.
report("2026-12-02's machine, recipe now (projected)", {k: v * 30 / 8 if k in LLM_EXTRACTORS else v for k, v in rebuilt.items()})

# The rebuild of the recipe now started from an empty folder on 2026-12-02's second machine (12:22 UTC, `--jobs 2`,
# nothing else running), stopped unfinished at the session's end: the stages it finished at their measured wall
# seconds (each one thread beside another stage), the rest at their one-thread times scaled by the finished
# stages' ratio to theirs (`OBSERVED_RATIO`).
finished = dict(vision_clip=1854, vision_vae=2379, vision=28, llm0=2451, extractor_vit3d_r7=2156,
                extractor_flattened_r7=1096, llm1=1209)  # fmt: skip
OBSERVED_RATIO = sum(finished.values()) / sum(ONE_THREAD_SECONDS[stage] for stage in finished)
projected = {stage: finished.get(stage, seconds * OBSERVED_RATIO) for stage, seconds in ONE_THREAD_SECONDS.items()}
report(f"2026-12-02's second machine, recipe now ({len(finished)} stages measured, the rest at {OBSERVED_RATIO:.2f}×)", projected)

# The bf16 recipe (the VAE, the extractors and the LLM stages under bf16 autocast, CLIP and the decoder
# float32; `--mixed-precision auto` on a CPU with native bf16), started from an empty folder on 2026-12-02's
# third machine (14:56 UTC, `--jobs 2`, nothing else running but a 2-minute benchmark smoke run at the start):
# the stages it finished at their measured wall seconds (each one thread beside another stage); the rest at
# their one-thread times scaled by the same kind of finished stage's ratio to its own (`BF16_RATIOS`).
bf16_finished = dict(vision_clip=1938, vision_vae=1802, vision=30, extractor_vit3d_r7=1417, llm0=1646,
                     extractor_flattened_r7=843, llm1=1192, llm_flattened=2064, decoder=2961, llm2=1445,
                     extractor_vit3d_r5=927, extractor_subj01_r7=106, extractor_subj02_r7=106)  # fmt: skip
BF16_RATIOS = {"extractor": bf16_finished["extractor_vit3d_r7"] / ONE_THREAD_SECONDS["extractor_vit3d_r7"],
               # LM stage 0 gained most (0.61), stage 1 least (0.99): the later conversation stages at stage 1's
               "llm": bf16_finished["llm1"] / ONE_THREAD_SECONDS["llm1"],
               "decoder": bf16_finished["vision_clip"] / ONE_THREAD_SECONDS["vision_clip"]}  # float32: CLIP's ratio  # fmt: skip


def bf16_seconds(stage: str) -> float:
    if stage in bf16_finished:
        return bf16_finished[stage]
    kind = next(kind for kind in BF16_RATIOS if stage.startswith(kind))
    return ONE_THREAD_SECONDS[stage] * BF16_RATIOS[kind]


bf16_projected = {stage: bf16_seconds(stage) for stage in ONE_THREAD_SECONDS}
report(f"2026-12-02's third machine, bf16 recipe ({len(bf16_finished)} stages measured, the rest projected)", bf16_projected)


# The same bf16 recipe measured end to end on 2026-12-02's fourth machine (19:03 UTC, from an empty folder,
# `--jobs 2`; beside it only a niced pytest of 4 tests and two 30-s timings): that run is the committed bundle,
# so its stage seconds are read from its manifest. Its training ended 2 h 09.8 min after the command started.
COMMITTED_MANIFEST = Path(__file__).resolve().parents[3] / "checkpoints" / "demo" / "manifest.json"
bf16_measured = {stage: entry["seconds"] for stage, entry in json.loads(COMMITTED_MANIFEST.read_text())["stages"].items()}
report("2026-12-02's fourth machine, bf16 recipe (every stage measured)", bf16_measured)
