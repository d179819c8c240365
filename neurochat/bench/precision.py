"""Training steps of the demo's models under bf16 autocast vs float32, side by side.

    python -m neurochat.bench precision [--steps 6] [--threads 1] [--json PATH]

`train.demo_bundle` trains the VAE, the extractors and the LLM stages under bf16 autocast on a CPU
that multiplies bf16 natively (AVX512-BF16 or AMX; `neurochat/training/precision.py`), and CLIP and
the UnCLIP UNet in float32. This measures why: for each model, two copies with the same weights
take one training step each in turn on the same batches (the demo's batch sizes and input shapes,
random values), one in float32 and one with its forward pass and loss under bf16 autocast; it
reports the median seconds per step after two warm-up steps, their ratio, and both copies' first
loss (bf16 must compute nearly the same thing). The models are the committed demo bundle's (or
`--weights`): CLIP, the VAE, the ViT3D extractors r = 7 and r = 5, the UNet, and the LLM in stage 0
(the whole LM trains), stage 1 (fMRI tokens in, f_t trains through the frozen LM) and stage 2 (the
whole LM and f_t train), on right-padded batches as in training. `--threads 1` is
how `train.demo_bundle --jobs 2` trains each stage. Where the CPU has no native bf16 the bf16 steps
are slower: the first line says which case this is.
"""

from __future__ import annotations

import argparse
import copy
import time

from neurochat.bench.training import alternate
from neurochat.cli import add_weights_option, write_json


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--steps", type=int, default=6, help="timed steps per variant, after 2 warm-up steps (default: 6)")
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads (default: 1)")
    add_weights_option(parser)  # a demo bundle: these are the demo's models
    parser.add_argument("--only", nargs="+", help="time only these models (names as printed, e.g. vae unet)")
    parser.add_argument("--json", metavar="PATH", help="also write the numbers to this JSON file")


def _models(preset, only):
    """(name, model, batches, loss(model, batch)) of each model the demo bundle trains, float32, train mode."""
    import torch
    import torch.nn.functional as F
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPModel

    from neurochat.models.brainllm import load_brainllm
    from neurochat.models.extractor import alignment_loss, load_extractor
    from neurochat.models.vision import VAE_SUBFOLDER
    from neurochat.training.llm import DEMO_STAGE_SETTINGS
    from neurochat.training.unclip import DecoderTrainConfig
    from neurochat.training.vision import ClipConfig, VaeConfig, VaeWithKl, multi_positive_contrastive_loss, vae_loss

    generator = torch.Generator().manual_seed(0)

    def randn(*shape):
        return torch.randn(*shape, generator=generator)

    def wanted(name):
        return not only or name in only

    if wanted("clip"):
        clip = CLIPModel.from_pretrained(preset.clip_dir).float()
        config = ClipConfig()
        batches = [{"input_ids": torch.randint(0, clip.config.text_config.vocab_size, (config.batch_size, 16), generator=generator),
                    "pixel_values": randn(config.batch_size, 3, config.image_size, config.image_size)} for _ in range(2)]  # fmt: skip
        eye = torch.eye(config.batch_size)
        yield "clip", clip, batches, lambda m, b: multi_positive_contrastive_loss(m(**b).logits_per_image, eye)
    if wanted("vae"):
        vae = VaeWithKl(AutoencoderKL.from_pretrained(preset.unclip_dir / VAE_SUBFOLDER).float())
        config = VaeConfig()

        yield ("vae", vae, [randn(config.batch_size, 3, config.image_size, config.image_size).clamp(-1, 1) for _ in range(2)],
               lambda m, sample: vae_loss(*m(sample), sample, config))  # fmt: skip
    for r in (7, 5):
        if wanted(f"extractor_r{r}"):
            bundle = load_extractor(preset.layout.extractor_dir("vit3d", r))
            c = bundle.config
            batches = [(randn(32, c.n_tokens, c.token_dim), randn(32, c.clip_dim), randn(32, *c.latent_shape)) for _ in range(2)]
            yield (f"extractor_r{r}", bundle.model.float(), batches,
                   lambda m, b, alpha=c.alpha: alignment_loss(m(b[0]), b[1], b[2], alpha)[0])  # fmt: skip
    if wanted("unet"):
        unet = UNet2DConditionModel.from_pretrained(preset.unclip_dir / "unet").float()
        config, c = DecoderTrainConfig(), unet.config
        batches = [dict(sample=randn(config.batch_size, c.in_channels, c.sample_size, c.sample_size),
                        timestep=torch.randint(0, 1000, (config.batch_size,), generator=generator),
                        encoder_hidden_states=randn(config.batch_size, config.text_context, c.cross_attention_dim),
                        class_labels=randn(config.batch_size, c.projection_class_embeddings_input_dim)) for _ in range(2)]  # fmt: skip
        yield "unet", unet, batches, lambda m, b: F.mse_loss(m(**b).sample, b["sample"])
    if wanted("llm_stage0") or wanted("llm_stage1") or wanted("llm_stage2"):
        brainllm = load_brainllm(preset.layout.brainllm_dir()).float()
        vocab = brainllm.lm.config.vocab_size
    if wanted("llm_stage0"):
        size = DEMO_STAGE_SETTINGS[0]["batch_size"]
        batches = [torch.randint(0, vocab, (size, 512), generator=generator) for _ in range(2)]
        yield "llm_stage0", copy.deepcopy(brainllm.lm), batches, lambda m, b: m(input_ids=b, labels=b).loss
    for stage in (1, 2):
        if not wanted(f"llm_stage{stage}"):
            continue
        size, tokens, answer = DEMO_STAGE_SETTINGS[stage]["batch_size"], brainllm.config.n_fmri_tokens, 24
        length = 8 + tokens + 40 + answer  # system text, the fMRI placeholders, the question, the answer
        batches = []
        for _ in range(2):
            ids = torch.randint(0, vocab, (size, length), generator=generator)
            ids[ids == brainllm.image_token_id] = 0
            ids[:, 8 : 8 + tokens] = brainllm.image_token_id
            # right-padded like the training batches: length-grouped, yet most rows a few tokens short
            real = length - torch.randint(0, 12, (size,), generator=generator)
            real[0] = length
            attention_mask = (torch.arange(length)[None] < real[:, None]).long()
            labels = torch.full_like(ids, -100)
            for row, n in enumerate(real.tolist()):
                labels[row, n - answer : n] = ids[row, n - answer : n]  # only the answer is scored (Eq. 3)
            batches.append({"input_ids": ids, "attention_mask": attention_mask, "labels": labels,
                            "fmri": randn(size, tokens, brainllm.config.fmri_hidden)})  # fmt: skip
        model = copy.deepcopy(brainllm)
        if stage == 1:
            model.lm.requires_grad_(False)  # stage 1 trains f_t alone, through the frozen LM
        yield (f"llm_stage{stage}", model, batches,
               lambda m, b: m(b["input_ids"], b["attention_mask"], b["fmri"], labels=b["labels"]).loss)  # fmt: skip


def run(args: argparse.Namespace) -> int:
    import platform

    import torch

    from neurochat.presets import get_preset
    from neurochat.training.precision import autocast, native_bf16

    torch.set_num_threads(args.threads)
    preset = get_preset("demo", args.weights)
    native = native_bf16("cpu")
    print(f"CPU {platform.processor() or platform.machine()}: {'native bf16' if native else 'NO native bf16 (emulated, slow)'}; "
          f"{args.threads} thread(s), median of {args.steps} steps after 2 warm-up steps")  # fmt: skip
    rows = []
    for name, model, batches, loss_of in _models(preset, args.only):
        copies, first_losses = {"no": model.train(), "bf16": copy.deepcopy(model).train()}, {}

        def stepper(precision):
            trained = copies[precision]
            optimizer = torch.optim.AdamW([p for p in trained.parameters() if p.requires_grad], lr=1e-4)

            def step(batch):
                with autocast("cpu", precision):
                    loss = loss_of(trained, batch)
                first_losses.setdefault(precision, loss.item())
                loss.backward()
                optimizer.step()
                optimizer.zero_grad()

            return step

        float32_s, bf16_s = alternate(stepper("no"), stepper("bf16"), batches, args.steps)
        rows.append({"model": name, "float32_s": float32_s, "bf16_s": bf16_s, "bf16_over_float32": bf16_s / float32_s,
                     "first_loss_float32": first_losses["no"], "first_loss_bf16": first_losses["bf16"]})  # fmt: skip
        print(f"{name:12s} float32 {float32_s:6.3f} s/step   bf16 autocast {bf16_s:6.3f} s/step   bf16 / float32 "
              f"{bf16_s / float32_s:.2f}   first loss {first_losses['no']:.4f} vs {first_losses['bf16']:.4f}", flush=True)  # fmt: skip
    if args.json:
        write_json(args.json, {"threads": args.threads, "steps": args.steps, "machine": platform.platform(), "native_bf16": native,
                               "rows": rows, "date": time.strftime("%Y-%m-%d")})  # fmt: skip
    return 0
