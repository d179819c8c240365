"""One Markdown report of every evaluation: `python -m neurochat.evaluate all --preset demo --out reports/`.

Tables 1 and 2 and the localization/ablation table of the paper, measured on the dataset given
(SimNSD by default: a phantom, not NSD), the β sweep, the Fig. 7/8-style figures, the single-trial
vs averaged comparison, and the machine it ran on. The paper's own NSD numbers are quoted beside
ours for orientation only: the data differ.
"""

from __future__ import annotations

import json
import os
import platform
import re
import time
from pathlib import Path

import torch

from neurochat.errors import DataError

SECTION_TITLES = {"extractor": "feature extractor", "caption": "captioning", "decoder": "decoder from true embeddings",
                  "recon": "reconstruction", "localize": "localization and ablation",
                  "dialogue": "dialogue against the answer key", "floc": "functional-localizer ROIs",
                  "new-subject": "new subject"}  # fmt: skip

# The paper's numbers on NSD (Tables 1 and 2), for orientation next to the phantom's.
PAPER_TABLE1_BRIEF = {"bleu1": 0.5719, "bleu4": 0.1585, "meteor": 0.1860, "rouge_l": 0.3667, "cider": 0.4951, "clip_s": 0.6549}
PAPER_TABLE2 = {"pixcorr": 0.265, "ssim": 0.357, "clip_2way": 0.975}
PAPER_TABLE2_SINGLE = {"pixcorr": 0.257, "ssim": 0.336, "clip_2way": 0.953}


def machine() -> dict:
    return {
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
    }


# Rows in the paper's order: results.json stores its keys sorted, so a report rewritten from it would
# otherwise list "flattened" before "ours".
ROW_ORDER = ("vit3d", "ours", "no_llm", "no_vae", "flattened", "subject_specific", "averaged", "single")


def _in_row_order(mapping: dict) -> list[tuple]:
    rank = {name: i for i, name in enumerate(ROW_ORDER)}
    return sorted(mapping.items(), key=lambda item: rank.get(item[0], len(ROW_ORDER)))


def _fmt(value, percent: bool = False) -> str:
    if value is None:
        return "n/a"
    return f"{100 * value:.1f}%" if percent else f"{value:.3f}"


def write_report(results: dict, folder: Path, *, preset: str, dataset: str, seconds: float, command: str | None = None) -> Path:
    """REPORT.md (and results.json) in `folder` from the evaluations' results.

    `results["remeasured"]` ({section: {"command", "minutes", "date"}}, written by `remeasure_section`)
    names the sections measured again after the full run, each with its own command.
    """
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "results.json").write_text(json.dumps(results, indent=2, sort_keys=True) + "\n")
    lines = [
        "# NeuroChat evaluation report",
        "",
        f"Preset **{preset}** on **{dataset}**. Produced by "
        f"`{command or f'python -m neurochat.evaluate all --preset {preset} --out {folder}'}` in {seconds / 60:.1f} min.",
        "",
    ]
    for section, again in results.get("remeasured", {}).items():
        lines += [f"The {SECTION_TITLES.get(section, section)} section was measured again on {again['date']} by `{again['command']}` "
                  f"({again['minutes']:.1f} min), after a change to that part only.", ""]  # fmt: skip
    lines += [
        "> These numbers are measured on SimNSD, a phantom with a known ground truth, not on NSD. The paper's NSD "
        "numbers are quoted for orientation; the two are not comparable.",
        "",
    ]
    extractor = results.get("extractor")
    if extractor:
        lines += ["## Feature extractor (Sec. 3.2, 4.2): predicted vs true CLIP and VAE features", "",
                  "| model | protocol | CLIP 2-way | CLIP top-1 | VAE corr |", "|---|---|---|---|---|"]  # fmt: skip
        for name, by_protocol in _in_row_order(extractor):
            for protocol, m in _in_row_order(by_protocol or {}):
                lines.append(f"| {name} | {protocol} | {_fmt(m['clip_2way'], True)} | {_fmt(m['clip_top1'], True)} | {_fmt(m['vae_corr'])} |")
        lines.append("")
    caption = results.get("caption")
    if caption:
        lines += ["## Table 1 analog: captioning, detailed description, complex reasoning (averaged trials)", "",
                  "| model | task | BLEU-1 | BLEU-4 | METEOR | ROUGE-L | CIDEr | SPICE | CLIP-S | concept recall |",
                  "|---|---|---|---|---|---|---|---|---|---|"]  # fmt: skip
        for name in ("vit3d", "flattened"):
            for task, m in (caption.get(name) or {}).items():
                lines.append(f"| {name} | {task} | {_fmt(m['bleu1'])} | {_fmt(m['bleu4'])} | {_fmt(m['meteor'])} | "
                             f"{_fmt(m['rouge_l'])} | {_fmt(m['cider'])} | {_fmt(m['spice'])} | {_fmt(m['clip_s'])} | "
                             f"{_fmt(m.get('concept_recall'), True)} |")  # fmt: skip
        p = PAPER_TABLE1_BRIEF
        lines += [f"| paper (NSD) | brief | {p['bleu1']:.3f} | {p['bleu4']:.3f} | {p['meteor']:.3f} | {p['rouge_l']:.3f} | "
                  f"{p['cider']:.3f} | 0.124 | {p['clip_s']:.3f} | — |", "",
                  f"Localization answers that parse to the asked concept: {_fmt(caption.get('localization_parse_rate'), True)}; "
                  f"reconstruction prompts naming a true object: {_fmt(caption.get('reconstruction_prompt_hit_rate'), True)} "
                  f"as the explorer asks (each concept named once), {_fmt(caption.get('reconstruction_prompt_hit_rate_plain'), True)} "
                  "plain greedy.", ""]  # fmt: skip
    dialogue = results.get("dialogue")
    if dialogue:
        lines += _dialogue_section(dialogue)
    decoder = results.get("decoder")
    if decoder:
        oracle, ceiling = decoder["oracle"], decoder["vae_round_trip"]
        lines += ["## The decoder alone, from the true CLIP embedding (β = 1, no prompt, no fMRI)", "",
                  f"On {decoder['n']} shared test pictures: the demo CLIP's zero-shot first choice over the object names "
                  f"is one of the picture's objects (object_hit) in {_fmt(oracle['object_hit'], True)} of the decoder's "
                  f"pictures; CLIP two-way {_fmt(oracle['clip_2way'], True)}. Ceiling: the stimuli themselves "
                  f"{_fmt(decoder['stimuli']['object_hit'], True)}, their VAE round trip {_fmt(ceiling['object_hit'], True)} "
                  f"(CLIP two-way {_fmt(ceiling['clip_2way'], True)}).", ""]  # fmt: skip
        if (folder / "decoder_oracle.png").exists():
            lines += ["![decoder oracle](decoder_oracle.png)", "", "Top: stimuli; bottom: the decoder from their true "
                      "CLIP embeddings.", ""]  # fmt: skip
    recon = results.get("recon")
    if recon:
        lines += ["## Table 2 analog: visual reconstruction", "",
                  "object_hit: the demo CLIP's zero-shot first choice over the object names is one of the picture's "
                  "objects (a right background alone does not count).", "",
                  "| row | protocol | PixCorr | SSIM | CLIP 2-way | object_hit | AlexNet(2) | AlexNet(5) | Inception | EffNet-B | SwAV |",
                  "|---|---|---|---|---|---|---|---|---|---|---|"]  # fmt: skip
        for name, by_protocol in _in_row_order(recon):
            if name == "beta_sweep" or not by_protocol:
                continue
            for protocol, m in _in_row_order(by_protocol):
                lines.append(f"| {name} | {protocol} | {_fmt(m['pixcorr'])} | {_fmt(m['ssim'])} | {_fmt(m['clip_2way'], True)} | "
                             f"{_fmt(m.get('object_hit'), True)} | {_fmt(m['alexnet2'])} | {_fmt(m['alexnet5'])} | {_fmt(m['inception'])} | {_fmt(m['effnet'])} | {_fmt(m['swav'])} |")  # fmt: skip
        lines += [f"| paper (NSD) | averaged | {PAPER_TABLE2['pixcorr']} | {PAPER_TABLE2['ssim']} | 97.5% | — | 93.1% | 97.1% | 96.8% | 0.633 | 0.321 |",
                  f"| paper (NSD) | single | {PAPER_TABLE2_SINGLE['pixcorr']} | {PAPER_TABLE2_SINGLE['ssim']} | 95.3% | — | 91.2% | 96.3% | 94.6% | 0.671 | 0.324 |",
                  "", "AlexNet, Inception, EffNet-B and SwAV need weights that are not on this machine: n/a (pass "
                  "`--backbones DIR` with TorchScript exports to compute them).", ""]  # fmt: skip
        spreads = [m["seed_sd"] for name, by_protocol in recon.items() if name != "beta_sweep" and by_protocol
                   for m in by_protocol.values() if "seed_sd" in m]  # fmt: skip
        clip_spreads = [s["clip_2way"] for s in spreads if "clip_2way" in s]  # absent where no subject had two pictures
        if spreads:
            lines += ["Each number is the mean over several diffusion seeds; across the seeds PixCorr spread by "
                      f"{min(s['pixcorr'] for s in spreads):.3f}–{max(s['pixcorr'] for s in spreads):.3f} (standard deviation, "
                      "per row)" + (f" and CLIP two-way by {min(clip_spreads):.1%}–{max(clip_spreads):.1%}" if clip_spreads else "")
                      + ".", ""]  # fmt: skip
        else:
            lines += ["One diffusion seed per reconstruction: on 10 recordings per subject the seed alone moves CLIP "
                      "two-way by several points (`--seeds N` averages N; notebooks/experiments/recon_noise).", ""]
        if "beta_sweep" in recon:
            lines += ["### β sweep (Fig. 5 and Fig. 6 analogs)", "", "![β sweep](beta_sweep.png)", "",
                      "Rows: the stimulus, then β = " + ", ".join(f"{b:g}" for b in recon["beta_sweep"]["beta"])
                      + " with the LLM's prompt (top) and without (bottom).", "", "![β grid](beta_grid.png)", ""]  # fmt: skip
    localize = results.get("localize")
    if localize:
        auc, ablation = localize["auc"], localize["ablation"]
        gradcam = auc.get("gradcam", {"ensemble": None, "single": {}})
        lines += ["## Concept localization and ablation (Sec. 4.4), scored against SimNSD's ground truth", "",
                  "Encoding maps: the extractor's evidence for each concept over the subject's training trials, "
                  "regressed onto the voxels (NeuroChat's default). GradCAM: the paper's method, per recording.", "",
                  "| heatmap | encoding maps: mean ROC-AUC | GradCAM (paper): mean ROC-AUC |", "|---|---|---|",
                  f"| ensemble | {_fmt(auc['ensemble'])} | {_fmt(gradcam['ensemble'])} |"]  # fmt: skip
        lines += [f"| single model r = {size} | {_fmt(value)} | {_fmt(gradcam['single'].get(size))} |"
                  for size, value in auc["single"].items()]  # fmt: skip
        lines += [f"| random | {_fmt(auc['random'])} | |", "", f"{auc['n']} (recording, concept) cases.", "",
                  f"Ablation with the {ablation.get('method', 'encoding')} maps ({ablation['n']} cases, top "
                  f"{ablation.get('fraction', 0.1):.0%} of voxels, β = {ablation.get('beta', 0.93):g}): "
                  f"the removed concept's CLIP similarity fell more "
                  f"than every other present concept's in {_fmt(ablation['removed_below_others'], True)} of cases "
                  f"(mean drop {_fmt(ablation['drop_removed'])} vs {_fmt(ablation['drop_others'])} for the others)."]  # fmt: skip
        if ablation.get("scene_kept") is not None:
            lines += [f"What the ablated picture shows: the removed object scores below every other object in "
                      f"{_fmt(ablation['removed_below_objects'], True)} of the {ablation['objects_n']} cases with another "
                      f"object, and the picture's scene stays its top scene in {_fmt(ablation['scene_kept'], True)}."]  # fmt: skip
        embedding = ablation.get("embedding")
        if embedding:
            lines += [f"One step earlier, on the extractor's predicted CLIP embedding ẑ_c, the removed concept fell below "
                      f"the others in {_fmt(embedding['removed_below_others'], True)} of the same cases (drop "
                      f"{_fmt(embedding['drop_removed'])} vs {_fmt(embedding['drop_others'])}): what ẑ_c loses, the "
                      "picture partly keeps, because the decoder also paints from ẑ_v."]  # fmt: skip
        lines += [""]
        if "figures" in localize:
            lines += ["![ablation](ablation_grid.png)", "", "Columns: stimulus, reconstruction, without concept A, without "
                      "concept B (Fig. 8 analog).", "", "![glass brains](glass_brains.png)", "",
                      "Left: the localization map; right: where SimNSD put the concept (Fig. 7 analog).", ""]  # fmt: skip
    floc = results.get("floc")
    if floc:
        lines += _floc_section(floc)
    new_subject = results.get("new-subject")
    if new_subject:
        from neurochat.evaluate.new_subject import curve_lines

        lines += [f"## A new subject: {new_subject['subject']}, zero-shot and adapted (`train.adapt`, input layer only)", "",
                  "Averaged test recordings (the shared pictures, never trained on). CLIP two-way and top-1: the "
                  "extractor's ẑ_c among each subject's test pictures; object_hit: the reconstruction as the explorer "
                  "draws it (the LLM's prompt, β = 0.93, one seed).", "", *curve_lines(new_subject), ""]  # fmt: skip
    lines += ["## Machine", "", "```", json.dumps(machine(), indent=2), "```", "",
              f"Written {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}.", ""]  # fmt: skip
    path = folder / "REPORT.md"
    path.write_text("\n".join(lines))
    return path


def _dialogue_section(dialogue: dict) -> list[str]:
    """Does the chat tell the truth? Each share with its spread over the cases, beside the targets."""
    from neurochat.evaluate.dialogue import ROWS, meets, target_text, value_of

    models = [(name, label) for name, label in (("vit3d", "ViT3D"), ("flattened", "w/o ViT3D")) if dialogue.get(name)]
    lines = ["## Dialogue scored against the answer key (averaged trials)", "",
             "Questions in the extension's phrasings about every test recording; answers read back "
             "(`neurochat.language.answers`) and compared with what the picture holds. ± is the spread over the "
             "cases; ✓ / ✗ against the target. The chat answers as the explorer's does: a plain yes/no question about "
             "one object is read off the LLM's own list of what it sees; the LLM's direct yes/no answers are the "
             "indented rows.", "",
             "| question | " + " | ".join(label for _, label in models) + " | target |",
             "|---|" + "---|" * len(models) + "---|"]  # fmt: skip
    for name, label in ROWS:
        cells = []
        for model, _ in models:
            value, sd, _ = value_of(dialogue[model], name)
            mark = {True: " ✓", False: " ✗", None: ""}[meets(name, value)]
            if value is None:
                cells.append("n/a")
            elif name == "hallucinated_objects_per_answer":
                cells.append(f"{value:.3f} ± {sd:.2f}{mark}")
            else:
                cells.append(f"{_fmt(value, True)} ± {100 * sd:.1f}{mark}")
        lines.append(f"| {label} | " + " | ".join(cells) + f" | {target_text(name)} |")
    first = dialogue[models[0][0]]
    lines += ["", f"{first['recordings']} recordings, {first['answers']} answers."
              + ("" if dialogue.get("flattened") else " No \"w/o ViT3D\" fMRI-LLM was evaluated (its folder is absent)."), ""]  # fmt: skip
    return lines


def _floc_section(floc: dict) -> list[str]:
    """The concept maps against the functional-localizer ROIs, with both nulls, over both search regions."""
    lines = ["## Concept maps against functional-localizer ROIs (floc)", "",
             "Each ROI against its concepts' encoding maps (at each voxel the highest of them): ROC-AUC of ROI voxels vs "
             "the rest of the search region, enrichment of the map's top voxels in the ROI over chance, pointing game "
             "(the share of concepts whose map peaks in the ROI), and two nulls: as many other concepts drawn at random "
             "(label shuffle), and random compact ROIs of the same size (mean, 95th percentile). Search region: "
             "nsdgeneral, then higher visual cortex alone (nsdgeneral outside prf-visualrois).", "",
             "| ROI | concepts | region | AUC | label-shuffle AUC | random-ROI AUC (95th pct) | enrichment | pointing |",
             "|---|---|---|---|---|---|---|---|"]  # fmt: skip
    for name, r in floc["rois"].items():
        concepts = ", ".join(r["concepts"]) if len(r["concepts"]) <= 3 else f"{len(r['concepts'])} ({r['concepts'][0]}, ...)"
        for region, s in (("nsdgeneral", r), ("higher visual", r.get("higher"))):
            if s:
                lines.append(f"| {name} | {concepts} | {region} | {_fmt(s['auc'])} | {_fmt(s['null_auc'])} | "
                             f"{_fmt(s['random_roi_auc'])} ({_fmt(s['random_roi_p95'])}) | {s['enrichment']:.1f}× | "
                             f"{_fmt(s['pointing'], True)} |")  # fmt: skip
    lines += ["", f"Mean AUC over the ROIs: {_fmt(floc['mean_auc'])} in nsdgeneral, {_fmt(floc.get('mean_auc_higher'))} "
              "in higher visual cortex."]  # fmt: skip
    lines += [f"{name}: not scored, {why}." for name, why in floc.get("skipped", {}).items()]
    if floc.get("ablation"):
        lines += ["", "Zeroing each ROI's voxels vs as many random nsdgeneral voxels (`neurochat.evaluate.floc_ablation`): the "
                  "drop of the ROI's concept's score (cosine of the reconstruction's CLIP embedding with the concept's "
                  "text), same seed.", "", "| ROI zeroed | voxels | recordings | score drop, ROI | score drop, random voxels | "
                  "ROI drop larger |", "|---|---|---|---|---|---|"]  # fmt: skip
        for name, r in floc["ablation"].items():
            lines.append(f"| {name} | {r['voxels']:.0f} | {r['n']} | {r['drop_roi']:.4f} | {r['drop_random']:.4f} | "
                         f"{_fmt(r['roi_beats_random'], True)} |")  # fmt: skip
    return lines + [""]


def remeasure_section(folder: Path, section: str, section_results: dict, *, command: str, seconds: float) -> Path:
    """Put one section's new results into the report in `folder` (written by `evaluate all`) and rewrite it."""
    results_path, report_path = folder / "results.json", folder / "REPORT.md"
    if not results_path.exists() or not report_path.exists():
        raise DataError(f"{folder} holds no report to update (results.json and REPORT.md): "
                        f"write one with `python -m neurochat.evaluate all --out {folder}` first")  # fmt: skip
    header = re.search(r"Preset \*\*(.+?)\*\* on \*\*(.+?)\*\*\. Produced by `(.+?)` in ([\d.]+) min", report_path.read_text())
    if header is None:
        raise DataError(f"{report_path} does not start with the header `evaluate all` writes; rewrite it with `evaluate all`")
    preset, dataset, full_command, minutes = header.groups()
    results = json.loads(results_path.read_text())
    results[section] = section_results
    results.setdefault("remeasured", {})[section] = {"command": command, "minutes": seconds / 60,
                                                    "date": time.strftime("%Y-%m-%d", time.gmtime())}  # fmt: skip
    return write_report(results, folder, preset=preset, dataset=dataset, seconds=float(minutes) * 60, command=full_command)
