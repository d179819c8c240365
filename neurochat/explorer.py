"""The explorer: the one object the app and notebooks talk to. No UI code here.

    explorer = Explorer.load("demo")                       # models once, shared by every session
    state = explorer.select("subj01", nsd_id=123)          # a trial: averaged over its repetitions
    turn = explorer.chat(state, "Describe the image concisely.")
    for piece in turn: print(piece, end="")                # streamed tokens
    picture = explorer.reconstruct(state, beta=0.93)       # Eq. 4, with the LLM's prompt if it wrote one
    heatmap = explorer.localize(state, "cat")              # ensemble encoding map, native + MNI
    ablated = explorer.ablate(state, ["cat"])              # the same picture without the cat's voxels
    explorer.first_impression("subj01")                    # a shared picture of two objects, to start with
    explorer.note_concepts(state, "a cat on a sofa")       # concepts named in a conversation join state.concepts

A `TrialState` (neurochat/trial.py) is small and copyable (a Gradio session keeps one per browser
tab); the heavy things — models, each trial's extractor features, heatmaps, reconstructions — live
in the explorer and are cached (a subject's encoding map once per subject, the rest per trial), so
moving β re-runs only the diffusion and toggling a concept re-uses its heatmap. The caches are
bounded (`LRUCache`), the uploaded volumes too (`UPLOADS_KEPT`): a server runs for days.
"""

from __future__ import annotations

import itertools
import re
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from neurochat.ablate import DEFAULT_FRACTION, Ablation, ablate
from neurochat.encoding import dataset_references
from neurochat.errors import ConfigError, DataError
from neurochat.language import RECONSTRUCTION_INSTRUCTION, localization_instruction, parse_localization_request
from neurochat.language.questions import (
    OBJECT_LIST_QUESTION,
    existence_from_listing,
    existence_target,
    listing_note,
    unknown_concept,
    unknown_concept_answer,
)
from neurochat.localize import ConceptLocalizer, Heatmap
from neurochat.lru import LRUCache
from neurochat.models.extractor import ExtractorBundle
from neurochat.nsd.betas import read_beta_map
from neurochat.nsd.dataset import NSDDataset
from neurochat.paths import cache_dir
from neurochat.presets import Preset, get_preset
from neurochat.reconstruct import DEFAULT_BETA, DEFAULT_GUIDANCE, Reconstructor
from neurochat.trial import PROTOCOLS, ChatTurn, Features, TrialChoice, TrialState
from neurochat.vocabulary import SCENES, asserted_mentions

MAX_MESSAGE_CHARS = 2000  # the most any message may hold (`Explorer.max_message_chars`: fewer for a short-context LLM)
CHAT_ANSWER_TOKENS = 128  # the room a chat answer gets in the LLM's context
UPLOADS_KEPT = 16  # uploaded volumes held at once: a server runs for days (an NSD volume is ~3 MB)
_RECONSTRUCTION_WORDS = re.compile(
    r"\b(reconstruct\w*|stable diffusion|re-?create|redraw|draw (it|the|what)|generate (the|an?) (image|picture)|"
    r"show me (the|what)|what did (they|the (person|subject)) see)\b",
    re.IGNORECASE,
)
_LOCATE_WORDS = re.compile(r"\blocat|\blocali[sz]", re.IGNORECASE)  # "locate", "locating", "localise", ...


def is_reconstruction_request(text: str) -> bool:
    """Does the user ask for the picture itself (Table 5's instruction or a paraphrase)?"""
    return text.strip() == RECONSTRUCTION_INSTRUCTION or bool(_RECONSTRUCTION_WORDS.search(text))


class Explorer:
    """Every model of a preset, loaded once, and the per-trial caches."""

    def __init__(self, preset: Preset, dataset: NSDDataset, ensemble: list[ExtractorBundle], vision, reconstructor,
                 brainllm, *, vocabulary: list[str] | None, answer_key=None,
                 adapted: dict[str, ExtractorBundle] | None = None):  # fmt: skip
        self.preset = preset
        self.dataset = dataset
        self.ensemble = ensemble
        self.extractor = ensemble[0]  # the main model (largest patches) reads ẑ_c, ẑ_v and the LLM tokens
        self.adapted = dict(adapted or {})  # new subjects: the main model with each one's own input layer (`train.adapt`)
        self.vision = vision
        self.reconstructor = reconstructor
        self.brainllm = brainllm
        # encoding maps are fitted on each subject's own training trials (once per machine, or when the
        # bundle was built: neurochat/encoding.py); an uploaded volume has none, so it gets GradCAM
        self.localizer = ConceptLocalizer(ensemble, vision, vocabulary, references=dataset_references(dataset, ensemble),
                                          cache=cache_dir() / "encoding-maps", shipped=preset.layout.encoding_maps_dir,
                                          subject_bundles={s: [b] for s, b in self.adapted.items()})  # fmt: skip
        self.vocabulary = vocabulary
        self.answer_key = answer_key
        self._features = LRUCache(32)
        self._heatmaps = LRUCache(32)  # 1.4 MB each (demo); a map is recomputed in milliseconds once fitted
        self._pictures = LRUCache(128)
        self._listings = LRUCache(64)  # trial key -> the LLM's answer to OBJECT_LIST_QUESTION
        self._ablations = LRUCache(16)  # (trial key, concepts, fraction, prompt) -> (Ablation, its Features)
        self._uploads = LRUCache(UPLOADS_KEPT)  # key -> (volume, mask, affine)
        self._upload_numbers = itertools.count(1)  # each upload's own key, also after older ones are dropped

    @property
    def steps(self) -> int:
        """The decoder's schedule (the preset's): β moves the picture in steps of 1/steps."""
        return self.preset.denoising_steps

    # -- loading ----------------------------------------------------------------------------------

    @classmethod
    def load(cls, preset: str = "demo", nsd_root: str | Path | None = None, weights: str | Path | None = None,
             device: str | None = None, log=print, *, quantization: str | None = None, offload: bool = False,
             annotations: str | Path | None = None) -> "Explorer":  # fmt: skip
        """Load a preset's models from local folders; `nsd_root` defaults to the cached SimNSD demo.

        On a GPU every model is loaded in bf16 (`python -m neurochat.bench memory` counts the bytes);
        `quantization` ("8bit" or "4bit") loads the LLM through bitsandbytes, `offload` keeps the decoder's
        parts and the LLM layers that do not fit in CPU memory until they run. The decoder's VAE also
        makes the VAE latents, and its own image encoder is not loaded (`load_unclip`). `annotations`:
        a folder of COCO-format captions and instances (default: NSD_ROOT/annotations).
        """
        from neurochat.models import quiet_libraries
        from neurochat.models.brainllm import load_brainllm
        from neurochat.models.bundle import has_brainllm, load_ensemble, load_preset_brainllm
        from neurochat.models.unclip import load_unclip, same_image_encoder
        from neurochat.models.vision import VisionEncoders
        from neurochat.models.extractor import load_adapted_extractor
        from neurochat.paths import adapted_demo_tree, bundle_simnsd_version, check_simnsd_version, ensure_simnsd
        from neurochat.sim.truth import AnswerKey
        from neurochat.vocabulary import CONCEPT_NAMES

        quiet_libraries()
        settings = get_preset(preset, weights)
        device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
        adapted = settings.layout.adapted_subjects()  # {new subject: its input layer}, from `train.adapt`
        if nsd_root is None:
            if settings.name != "demo":
                raise ConfigError("the paper preset explores real NSD: pass --nsd-root DIR")
            nsd_root = adapted_demo_tree(adapted, log) or ensure_simnsd("demo", log=log)
        check_simnsd_version(nsd_root, trained_on=bundle_simnsd_version(settings.layout.root))
        dataset = NSDDataset(nsd_root, annotations=annotations)
        ensemble = load_ensemble(settings, device=device)
        for bundle in ensemble:
            bundle.model.to(dtype)
        pipe = load_unclip(settings, device=device, dtype=dtype, offload=offload)
        vision = VisionEncoders.from_preset(settings, device=device, dtype=dtype, vae=None if offload else pipe.vae)
        if same_image_encoder(settings.unclip_dir, vision) is False:
            log(f"note: the decoder's image encoder ({settings.unclip_dir / 'image_encoder'}) is not the CLIP at "
                f"{settings.clip_dir}: the extractor predicts that CLIP's embeddings, the decoder reads its own. Use "
                "the decoder made for that CLIP (for CLIP ViT-L/14: stable-diffusion-2-1-unclip-small)")  # fmt: skip
        reconstructor = Reconstructor(pipe)
        brainllm_dir = settings.layout.brainllm_dir()
        if not has_brainllm(brainllm_dir):
            load_preset_brainllm(settings)  # raises the sentence that names the commands to train it
        brainllm = load_brainllm(brainllm_dir, device=device, quantization=quantization, offload=offload)
        answer_key = AnswerKey(dataset.root) if AnswerKey.exists(dataset.root) else None
        vocabulary = list(CONCEPT_NAMES) if settings.name == "demo" else None
        adapted = {s: load_adapted_extractor(folder, device) for s, folder in adapted.items() if s in dataset.subjects}
        for bundle in adapted.values():
            bundle.model.to(dtype)
        return cls(settings, dataset, ensemble, vision, reconstructor, brainllm, vocabulary=vocabulary,
                   answer_key=answer_key, adapted=adapted)  # fmt: skip

    # -- trials ------------------------------------------------------------------------------------

    @property
    def subjects(self) -> list[str]:
        return list(self.dataset.subjects)

    def trial_choices(self, subject: str) -> list[TrialChoice]:
        """Pictures the subject saw: the shared test images first (the model never trained on them)."""
        table = self.dataset.trials(subject)
        shared = [TrialChoice(f"shared #{i + 1} · image {int(n)}", int(n), True) for i, n in enumerate(table.test_images)]
        own = [TrialChoice(f"train · image {int(n)}", int(n), False) for n in table.train_images]
        return shared + own

    def random_choice(self, subject: str, rng: np.random.Generator) -> TrialChoice:
        shared = [c for c in self.trial_choices(subject) if c.shared]
        return shared[int(rng.integers(len(shared)))]

    def prepare_localization(self, subject: str) -> None:
        """Start fitting `subject`'s encoding maps in the background (the app calls this on a new subject)."""
        self.localizer.prepare(subject)

    def select(self, subject: str, nsd_id: int, protocol: str = "averaged") -> TrialState:
        """A fresh state for one picture of one subject (and its features, computed now)."""
        self.dataset.check_subject(subject)
        if protocol not in PROTOCOLS:
            raise DataError(f"protocol {protocol!r}: choose 'averaged' (mean of repetitions) or 'single' (first one)")
        if len(self.dataset.trials(subject).trials_of_image(int(nsd_id))) == 0:
            raise DataError(f"{subject} never saw image {nsd_id} (in the sessions on disk)")
        state = TrialState(subject, int(nsd_id), protocol)
        self.features(state)
        return state

    def stimulus(self, state: TrialState) -> tuple[np.ndarray | None, list[str]]:
        """The picture the person saw and its captions (for reference only: the models never see it)."""
        if state.nsd_id is None:
            return None, []
        return self.dataset.image(state.nsd_id), self.dataset.captions(state.nsd_id)

    def true_concepts(self, state: TrialState) -> list[str]:
        """What the picture really shows, when the answer key knows (SimNSD)."""
        if self.answer_key is None or state.nsd_id is None:
            return []
        return self.answer_key.concepts_in(state.nsd_id)

    # -- what to show first ---------------------------------------------------------------------------

    def picture_concepts(self, nsd_id: int | None) -> list[str]:
        """What picture `nsd_id` shows (the answer key, else its annotation boxes); objects before scenes."""
        if nsd_id is None:
            return []
        known = self.answer_key.concepts_in(nsd_id) if self.answer_key is not None else []
        if not known:
            known = list(dict.fromkeys(box["name"] for box in self.dataset.boxes(nsd_id)))
        return [c for c in known if c not in SCENES] + [c for c in known if c in SCENES]

    def first_impression(self, subject: str) -> int:
        """A shared test picture of two different objects (a good start for a talk), else the first shared one.

        Two single instances ("a bird and a dog") beat two kinds in several copies ("two apples and two
        oranges"); the annotation boxes count instances, for SimNSD and real NSD alike.
        """
        choices = [choice for choice in self.trial_choices(subject) if choice.shared] or self.trial_choices(subject)
        if not choices:
            raise ConfigError(f"{subject} has no trials on disk")

        def objects(nsd_id: int) -> list[str]:
            return [c for c in self.picture_concepts(nsd_id) if c not in SCENES]

        def instances(nsd_id: int) -> int:
            return len(self.dataset.boxes(nsd_id))

        for good in (lambda n: len(objects(n)) == 2 and instances(n) == 2, lambda n: len(objects(n)) == 2):
            for choice in choices:
                if good(choice.nsd_id):
                    return choice.nsd_id
        return choices[0].nsd_id

    def example_concept(self, nsd_id: int | None, named: list[str] | None = None) -> str:
        """A concept worth locating: one picture `nsd_id` shows, else the first `named` so far, else any known one."""
        concepts = self.picture_concepts(nsd_id)
        if concepts:
            return concepts[0]
        if named:
            return named[0]
        return self.vocabulary[0] if self.vocabulary else "person"

    # -- features ------------------------------------------------------------------------------------

    def features(self, state: TrialState) -> Features:
        cached = self._features.fetch(state.key)
        if cached is not None:
            return cached
        if state.upload is not None:
            held = self._uploads.fetch(state.upload)
            if held is None:
                raise DataError(f"the uploaded volume {state.upload} is no longer held (the server keeps the last "
                                f"{UPLOADS_KEPT} uploads): upload the file again")  # fmt: skip
            volume, mask, affine = held
            to_mni = None  # an unknown subject: no transform to MNI is known
        else:
            table = self.dataset.trials(state.subject)
            trials = table.trials_of_image(state.nsd_id)  # in repetition order
            if state.protocol == "single":
                trials = trials[:1]
            volume = self.dataset.read_trials(state.subject, trials).mean(axis=0)  # (X, Y, Z)
            mask = self.dataset.nsdgeneral(state.subject) > 0
            affine = self.dataset.affine(state.subject)
            to_mni = self.answer_key.to_mni(state.subject) if self.answer_key is not None else None
        clip, vae, tokens = self._encode(volume, state.subject if state.upload is None else None)
        return self._features.put(state.key, Features(volume, mask, affine, to_mni, clip, vae, tokens))

    @torch.no_grad()
    def _encode(self, volume: np.ndarray, subject: str | None):
        bundle = self.adapted.get(subject, self.extractor)
        parameter = next(bundle.model.parameters())
        output = bundle.model(bundle.tokens(bundle.preprocessor(volume[None]).to(parameter.device, parameter.dtype)))
        return output.clip[0].float(), output.vae[0].float(), output.penultimate[0]

    # -- chat ----------------------------------------------------------------------------------------

    @property
    def max_message_chars(self) -> int:
        """The longest first question the LLM reads with room for its answer, one token per character counted
        (most text takes fewer; a later turn may have less room, and the LLM then refuses with a sentence)."""
        from neurochat.models.conversation import with_placeholder

        llm, shortest = self.brainllm, [{"role": "user", "content": "?"}]
        used = len(llm.encode(with_placeholder(shortest, llm.config.image_token), add_generation_prompt=True).input_ids)
        return max(1, min(MAX_MESSAGE_CHARS, llm.max_context - CHAT_ANSWER_TOKENS - used))

    def chat(self, state: TrialState, message: str, max_new_tokens: int = CHAT_ANSWER_TOKENS) -> ChatTurn:
        """Ask the recording something; returns a streamed `ChatTurn` (multi-turn: `state.history`).

        Requests to locate a concept or to reconstruct the picture are sent to the LLM as the
        paper's instructions (Tables 5 and 6), and the turn's `action` tells the caller to run them.
        A question about a thing the world has no concept of ("Is there a unicorn?", "Where is the
        unicorn in the brain?") is answered that it has none, without asking the LLM, which would
        answer about something it knows. A plain yes/no question about one object ("Is there a dog?")
        is answered from the LLM's own list of the objects it sees (`object_listing`), and a note says so.
        """
        text = (message or "").strip()
        if not text:
            raise DataError("Type a question about this trial, or pick one of the examples.")
        if len(text) > MAX_MESSAGE_CHARS:  # (the app's box holds `max_message_chars`; the LLM refuses what it cannot read)
            raise DataError(f"That message has {len(text):,} characters; please ask in at most {MAX_MESSAGE_CHARS:,}.")
        unknown = unknown_concept(text, self.vocabulary) if self.vocabulary else None
        if unknown is not None:
            return ChatTurn(iter([unknown_concept_answer(unknown, self.vocabulary)]), state, text, None, [], remember=False)
        asked = existence_target(text, self.objects) if self.vocabulary else None
        if asked is not None:
            listing = self.object_listing(state)
            answer = existence_from_listing(asked, listing, self.objects)
            return ChatTurn(iter([answer]), state, text, None, [listing_note(listing)])
        concept = parse_localization_request(text, self.vocabulary)
        if concept is not None:
            sent, action = localization_instruction(concept), ("localize", concept)
        elif is_reconstruction_request(text):
            sent, action = RECONSTRUCTION_INSTRUCTION, ("reconstruct", None)
        else:
            sent, action = text, None
        features = self.features(state)
        messages = state.history + [{"role": "user", "content": sent}]
        # a reconstruction prompt lists the picture's objects: each once (see NamesEachConceptOnce)
        distinct = self.vocabulary if action and action[0] == "reconstruct" else None
        stream = self.brainllm.stream(features.fmri_tokens, messages, max_new_tokens, distinct_concepts=distinct)
        return ChatTurn(stream, state, sent, action, list(stream.notes))

    @property
    def objects(self) -> list[str]:
        """The object concepts of the vocabulary (its scenes left out)."""
        return [name for name in self.vocabulary or [] if name not in SCENES]

    def object_listing(self, state: TrialState) -> str:
        """The LLM's answer to "What objects are in the picture?" about this recording (greedy, each
        object named once), asked once per trial: yes/no questions about objects are read off it."""
        cached = self._listings.fetch(state.key)
        if cached is None:
            messages = [{"role": "user", "content": OBJECT_LIST_QUESTION}]
            reply = self.brainllm.generate(self.features(state).fmri_tokens, messages, CHAT_ANSWER_TOKENS,
                                           distinct_concepts=self.objects)  # fmt: skip
            cached = self._listings.put(state.key, reply.text.strip())
        return cached

    def check_localization_request(self, text: str) -> None:
        """Refuse a request to locate a concept the models do not know, naming close ones (a `ConceptError`).

        Checked before the LLM is asked: a request naming no known concept ("bicycel") would reach it
        as an ordinary question and locate nothing, where a suggestion helps.
        """
        if self.vocabulary is None or not _LOCATE_WORDS.search(text):
            return
        asked = parse_localization_request(text)  # the phrase, before snapping to the vocabulary
        if asked and parse_localization_request(text, self.vocabulary) is None:
            self.localizer.check_concept(asked)

    def note_concepts(self, state: TrialState, text: str) -> list[str]:
        """Concepts of the vocabulary that `text` asserts (plurals too) join `state.concepts`, in the order named.

        Only what is said to be there counts: questions ("Is there a clock?") and denials ("No, there is
        no clock") make no chip (`asserted_mentions`)."""
        named = asserted_mentions(text, self.vocabulary or [], plurals="suffix")  # the model's words, or the user's
        for name in named:
            if name not in state.concepts:
                state.concepts.append(name)
        return named

    def reconstruction_prompt(self, state: TrialState, features: Features | None = None, removed: Sequence[str] = ()) -> str:
        """The LLM's answer to Table 5's instruction for this recording (greedy, each concept named once,
        the `removed` ones never: the decoder must not be asked to draw what was taken out of the brain)."""
        features = features or self.features(state)
        return self.brainllm.generate(features.fmri_tokens, RECONSTRUCTION_INSTRUCTION, distinct_concepts=self.vocabulary,
                                      excluded_concepts=removed).text  # fmt: skip

    # -- reconstruction ------------------------------------------------------------------------------

    def vae_prior(self, state: TrialState) -> np.ndarray:
        """The decode of ẑ_v alone (β = 0): the low-level layout the brain gives."""
        return self.reconstruct(state, beta=0.0, prompt="")

    def reconstruct(self, state: TrialState, beta: float = DEFAULT_BETA, seed: int = 0, steps: int | None = None,
                    prompt: str | None = None, guidance: float = DEFAULT_GUIDANCE, progress=None) -> np.ndarray:  # fmt: skip
        """Eq. 4 for this trial, uint8 (H, W, 3); with the LLM's prompt unless `prompt` is given.

        Concepts in `state.removed` are ablated first (same seed, β and prompt rules as `ablate`).
        `steps` defaults to the preset's schedule.
        """
        steps = steps or self.steps
        if state.removed:
            return self.ablate(state, state.removed, beta=beta, seed=seed, steps=steps, progress=progress)
        prompt = state.prompt or "" if prompt is None else prompt
        features = self.features(state)
        return self._picture(state.key, (), features, prompt, beta, seed, steps, guidance, progress)

    def reconstruct_with_ablation(self, state: TrialState, beta: float = DEFAULT_BETA, seed: int = 0,
                                  progress=None) -> tuple[np.ndarray, np.ndarray | None]:  # fmt: skip
        """The whole recording's reconstruction and, when `state.removed` names concepts, the ablated one
        (same β, seed and prompt rules as `reconstruct`), drawn in one batch when neither is cached: on a
        CPU two pictures in one pass take about 0.65x the time of two passes."""
        jobs = [(state.key, (), self.features(state), state.prompt or "")]
        if state.removed:
            details, ablated = self._ablated(state, state.removed, DEFAULT_FRACTION)
            jobs.append((state.key, details.concepts, ablated, details.prompt))
        pictures = self._pictures_of(jobs, beta, seed, self.steps, DEFAULT_GUIDANCE, progress)
        return pictures[0], pictures[1] if state.removed else None

    def _picture(self, key, removed, features: Features, prompt, beta, seed, steps, guidance, progress) -> np.ndarray:
        return self._pictures_of([(key, removed, features, prompt)], beta, seed, steps, guidance, progress)[0]

    def _pictures_of(self, jobs, beta, seed, steps, guidance, progress) -> list[np.ndarray]:
        """The pictures of (trial key, removed concepts, features, prompt) jobs; those not cached drawn in one batch."""
        keys = [(key, tuple(removed), prompt, round(float(beta), 4), seed, steps, guidance)
                for key, removed, _, prompt in jobs]  # fmt: skip
        pictures = [self._pictures.fetch(cache_key) for cache_key in keys]
        missing = [index for index, picture in enumerate(pictures) if picture is None]
        if missing:
            features = [jobs[index][2] for index in missing]
            prompts = [jobs[index][3] for index in missing]
            z_c = torch.stack([torch.as_tensor(f.clip) for f in features])
            z_v = torch.stack([torch.as_tensor(f.vae) for f in features])
            drawn = self.reconstructor(z_c, z_v, prompts, beta=beta, seed=seed, steps=steps, guidance=guidance,
                                       progress=progress)  # fmt: skip
            for index, picture in zip(missing, drawn, strict=True):
                pictures[index] = self._pictures.put(keys[index], picture)
        return pictures

    # -- localization and ablation ---------------------------------------------------------------------

    def localize(self, state: TrialState, concept: str) -> Heatmap:
        """The concept's ensemble heatmap in this recording (cached); the concept joins `state.concepts`."""
        name = self.localizer.check_concept(concept)
        features = self.features(state)
        subject = state.subject if state.upload is None else state.upload
        # an encoding map is the subject's, the same for every trial: held once per subject, not per trial
        key = (subject, name) if self.localizer.method_for(subject) == "encoding" else (state.key, name)
        heatmap = self._heatmaps.fetch(key)
        if heatmap is None:
            heatmap = self.localizer.localize(features.volume, name, subject=subject, affine=features.affine,
                                              mask=features.mask, to_mni=features.to_mni)  # fmt: skip
            self._heatmaps.put(key, heatmap)
        if name not in state.concepts:
            state.concepts.append(name)
        return heatmap

    def ablate(self, state: TrialState, concepts: list[str], beta: float = DEFAULT_BETA, seed: int = 0,
               steps: int | None = None, fraction: float = DEFAULT_FRACTION, guidance: float = DEFAULT_GUIDANCE,
               progress=None) -> np.ndarray:  # fmt: skip
        """The reconstruction after zeroing the concepts' top voxels; the trial itself is untouched.

        If the LLM wrote the reconstruction prompt, it is asked again about the ablated recording
        and may not name the removed concepts (a prompt written before would still name them).
        """
        details, ablated = self._ablated(state, concepts, fraction)
        return self._picture(state.key, details.concepts, ablated, details.prompt, beta, seed, steps or self.steps,
                             guidance, progress)  # fmt: skip

    def ablation(self, state: TrialState, concepts: Sequence[str], fraction: float = DEFAULT_FRACTION) -> Ablation:
        """The zeroed voxels of `concepts` in this recording and the prompt written for what is left (cached)."""
        return self._ablated(state, concepts, fraction)[0]

    def _ablated(self, state: TrialState, concepts: Sequence[str], fraction: float) -> tuple[Ablation, Features]:
        if not concepts:
            raise DataError("Choose at least one concept to remove.")
        heatmaps = [self.localize(state, concept) for concept in concepts]
        names = tuple(sorted(h.concept for h in heatmaps))
        cache_key = (state.key, names, fraction, state.prompt)
        cached = self._ablations.fetch(cache_key)
        if cached is not None:
            return cached
        features = self.features(state)
        volume, zeroed = ablate(features.volume, heatmaps, fraction)
        clip, vae, tokens = self._encode(volume, state.subject if state.upload is None else None)
        ablated = Features(volume, features.mask, features.affine, features.to_mni, clip, vae, tokens)
        prompt = self.reconstruction_prompt(state, ablated, removed=names) if state.prompt else ""
        return self._ablations.put(cache_key, (Ablation(names, zeroed, prompt), ablated))

    # -- bring your own brain -----------------------------------------------------------------------

    def upload(self, path: str | Path, volume_index: int | None = None) -> TrialState:
        """Explore a single-trial beta volume from a NIfTI file (e.g. a subject the model never saw).

        Read as NSD's betas are (`read_beta_map`: integer files in NSD's units, float files in percent
        signal change, the file's affine kept; an empty, constant or non-finite volume is refused);
        `volume_index` picks one volume of a 4D file. The grid must be one the preprocessor can resize
        (within 4x of the common grid per axis).
        """
        volume, affine = read_beta_map(path, volume_index)
        operator = self.extractor.preprocessor.operator(volume.shape)  # raises a DataError for implausible grids
        mask = np.zeros(volume.size, bool)
        mask[operator.support] = True
        name = Path(path).name if volume_index is None else f"{Path(path).name}[{volume_index}]"
        key = f"{name}#{next(self._upload_numbers)}"
        self._uploads.put(key, (volume, mask.reshape(volume.shape), affine))
        state = TrialState(f"upload:{name}", None, "upload", upload=key)
        self.features(state)
        return state
