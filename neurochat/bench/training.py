"""Training steps of the demo's extractors and fMRI-LLM: as trained vs the plain computation, side by side.

    python -m neurochat.bench training [--steps 12] [--threads 1] [--json PATH]

Two shortcuts make the demo's training cheaper without changing what it computes (tests check
that the results equal the plain computation's):

- extractor: the last Transformer layer computes only the CLS row that Eq. 2 reads (keys and
  values still come from every token) — against the whole last layer, then its CLS row;
- fMRI-LLM, stages 1 and 2: the LM head runs only at answer positions, where Eq. 3 has a label —
  against the LM's own loss, which computes logits at every position.

Each pair trains two copies of the same model on the same batches, one step each in turn (so both
see the same machine load), and reports the median seconds per step after two warm-up steps and
their ratio. The extractors are fresh demo-sized networks on the SimNSD demo (r = 7, 6, 5 and the
flattened baseline); the LLM is the demo bundle's BrainLLM on real extension conversations,
frozen (stage 1: only f_t trains) or whole (stage 2). `--threads 1` is how `train.demo_bundle
--jobs 2` runs each stage.
"""

from __future__ import annotations

import logging
import argparse
import copy
import statistics
import time
import types

from neurochat.cli import add_nsd_root_option, add_weights_option, write_json

log = logging.getLogger(__name__)

EXTRACTORS = (("vit3d", 7), ("vit3d", 6), ("vit3d", 5), ("flattened", 7))


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--steps", type=int, default=12, help="timed steps per variant, after 2 warm-up steps (default: 12)")
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads (default: 1)")
    add_nsd_root_option(parser)
    add_weights_option(parser)  # a demo bundle: its vision models and fMRI-LLM
    parser.add_argument("--json", metavar="PATH", help="also write the numbers to this JSON file")


def alternate(step_a, step_b, batches: list, steps: int) -> tuple[float, float]:
    """Median seconds per step of two step functions run in turn on the same batches."""
    times_a, times_b = [], []
    for i in range(steps + 2):
        batch = batches[i % len(batches)]
        for step, times in ((step_a, times_a), (step_b, times_b)):
            started = time.perf_counter()
            step(batch)
            times.append(time.perf_counter() - started)
    return statistics.median(times_a[2:]), statistics.median(times_b[2:])


def whole_last_layer_forward(model, tokens):
    """`FMRIExtractor.forward` as it was: the last layer on every position, then its CLS row."""
    import torch

    from neurochat.models.extractor import ExtractorOutput

    x = model.patch_embedding(tokens) + model.position
    x = torch.cat([model.cls_token.expand(len(x), -1, -1), x], dim=1)
    for block in model.blocks[:-1]:
        x = block(x)
    penultimate = model.penultimate(x)
    cls = model.norm(model.blocks[-1](penultimate))[:, 0]
    vae = model.vae_head(cls).reshape(-1, *model.config.latent_shape)
    return ExtractorOutput(clip=model.clip_head(cls), vae=vae, penultimate=penultimate)


def extractor_pairs(root, preset, steps: int) -> list[dict]:
    import torch

    from neurochat.data import MixUpTrainingSet, TrialBank, build_preprocessor
    from neurochat.models.extractor import ExtractorBundle, FMRIExtractor, alignment_loss, demo_config, token_coordinates
    from neurochat.models.vision import VisionEncoders
    from neurochat.nsd import NSDDataset
    from neurochat.targets import dataset_targets

    dataset = NSDDataset(root)
    vision = VisionEncoders.from_preset(preset)
    targets = dataset_targets(dataset, vision)
    rows = []
    for layout, patch_size in EXTRACTORS:
        preprocessor = build_preprocessor(dataset, patch_size)
        bank = TrialBank(dataset, preprocessor)
        config = demo_config(preprocessor, vision.clip_dim, vision.latent_shape, layout)
        torch.manual_seed(0)
        trained = FMRIExtractor(config, token_coordinates(preprocessor, layout)).train()
        plain = copy.deepcopy(trained)
        plain.forward = types.MethodType(whole_last_layer_forward, plain)
        bundle = ExtractorBundle(trained, preprocessor)
        training_set = MixUpTrainingSet(bank, mixup=True, seed=0)
        loader = torch.utils.data.DataLoader(training_set, batch_size=32, shuffle=True, drop_last=True,
                                             collate_fn=training_set.collate, generator=torch.Generator().manual_seed(0))  # fmt: skip
        batches = [(bundle.tokens(b["tokens"]), *targets.batch(b["nsd_id"])) for _, b in zip(range(4), loader)]

        def stepper(model):
            optimizer = torch.optim.AdamW(model.parameters(), lr=5e-4, weight_decay=0.05)

            def step(batch):
                tokens, clip_target, vae_target = batch
                loss, _, _ = alignment_loss(model(tokens), clip_target, vae_target, config.alpha)
                loss.backward()
                torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
                optimizer.step()
                optimizer.zero_grad()

            return step

        plain_s, trained_s = alternate(stepper(plain), stepper(trained), batches, steps)
        name = f"extractor {layout} r = {patch_size} (N = {config.n_tokens})"
        rows.append({"name": name, "plain_s": plain_s, "trained_s": trained_s, "ratio": plain_s / trained_s})
        log.info(f"{name}: whole last layer {plain_s:.3f} s/step, CLS row only {trained_s:.3f} s/step, {plain_s / trained_s:.2f}x")
    return rows


def llm_pairs(root, preset, steps: int) -> list[dict]:
    import torch

    from neurochat.data import TrialBank
    from neurochat.errors import ConfigError
    from neurochat.language import build_extension
    from neurochat.models.brainllm import load_brainllm, trained_extractor_dir
    from neurochat.models.bundle import has_brainllm
    from neurochat.models.extractor import load_extractor
    from neurochat.nsd import NSDDataset
    from neurochat.training.llm import ConversationSet, collate_conversations, extract_fmri, fmri_key

    folder = preset.layout.brainllm_dir()
    if not has_brainllm(folder):
        raise ConfigError(f"no trained BrainLLM at {folder}: pass --weights, a demo bundle (train.demo_bundle)")
    dataset = NSDDataset(root)
    train, _, _ = build_extension(dataset, seed=0)
    samples = train[:: max(1, len(train) // 160)][:160]  # every task, a spread of lengths
    bundle = load_extractor(trained_extractor_dir(folder))
    bank = TrialBank(dataset, bundle.preprocessor)
    features = extract_fmri(bundle, bank, [fmri_key(s) for s in samples], progress=False)
    rows = []
    for stage in (1, 2):
        trained = load_brainllm(folder)
        trained.lm.requires_grad_(stage == 2)  # stage 1: the LM frozen, only f_t trains
        plain = copy.deepcopy(trained)
        conversations = ConversationSet(samples, trained)
        batches = [collate_conversations([conversations[j] for j in range(i, i + 16)], trained.pad_token_id, features)
                   for i in range(0, len(conversations) - 15, 16)]  # fmt: skip

        def stepper(model, loss_of):
            optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-3)
            model.train()

            def step(batch):
                loss_of(model, batch).backward()
                optimizer.step()
                optimizer.zero_grad()

            return step

        def answers_only(model, batch):  # what training does: BrainLLM.forward with labels
            return model(batch["input_ids"], batch["attention_mask"], batch["fmri"], labels=batch["labels"]).loss

        def every_position(model, batch):  # the LM's own loss: logits at every position
            inputs_embeds = model.embed(batch["input_ids"], batch["fmri"])
            return model.lm(inputs_embeds=inputs_embeds, attention_mask=batch["attention_mask"], labels=batch["labels"]).loss

        answer_share = sum(int((b["labels"][:, 1:] != -100).sum()) for b in batches) / sum(b["labels"][:, 1:].numel() for b in batches)
        plain_s, trained_s = alternate(stepper(plain, every_position), stepper(trained, answers_only), batches, steps)
        name = f"fMRI-LLM stage {stage} (answer tokens {answer_share:.0%} of positions)"
        rows.append({"name": name, "plain_s": plain_s, "trained_s": trained_s, "ratio": plain_s / trained_s})
        log.info(f"{name}: logits everywhere {plain_s:.3f} s/step, at answers only {trained_s:.3f} s/step, {plain_s / trained_s:.2f}x")
    return rows


def run(args: argparse.Namespace) -> int:
    import platform

    import torch

    from neurochat.paths import dataset_root
    from neurochat.presets import get_preset

    torch.set_num_threads(args.threads)
    preset = get_preset("demo", args.weights)
    root = dataset_root("demo", args.nsd_root)
    rows = extractor_pairs(root, preset, args.steps) + llm_pairs(root, preset, args.steps)
    if args.json:
        write_json(args.json, {"threads": args.threads, "steps": args.steps, "machine": platform.platform(),
                               "rows": rows, "date": time.strftime("%Y-%m-%d")})  # fmt: skip
    return 0
