"""BrainLLM: fMRI splicing, answer-only labels (Eq. 3), generation, streaming, saving, bad input."""

from __future__ import annotations

import json
import re

import pytest
import torch

from neurochat.errors import DataError
from neurochat.language import IMAGE_TOKEN, build_extension
from neurochat.models.brainllm import (
    CONFIG_NAME,
    IGNORE_INDEX,
    PAPER_CHAT_TEMPLATE,
    BrainLLM,
    NamesEachConceptOnce,
    encode_conversation,
    load_brainllm,
    load_language_model,
    splice_fmri,
    with_placeholder,
)
from neurochat.models.demo_llm import END_OF_TEXT_TOKEN, EOT_TOKEN, DemoLLMConfig, build_llm, extension_texts, train_tokenizer
from neurochat.nsd import NSDDataset

FMRI_HIDDEN, FMRI_TOKENS = 24, 10
TINY = DemoLLMConfig(hidden=32, layers=2, heads=2, intermediate=64, context=256, tie_embeddings=False)


def tiny_llama(tokenizer, seed: int = 0):
    """A tiny random Llama whose greedy outputs vary (the default 0.02 init always emits one token)
    and never end (logit 0 for the stop tokens, below the largest of ~900 random logits)."""
    model = build_llm(tokenizer, TINY, seed=seed)
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if "norm" not in name:
                parameter.normal_(0.0, 0.3)
        model.lm_head.weight[tokenizer.convert_tokens_to_ids([EOT_TOKEN, END_OF_TEXT_TOKEN])] = 0.0
    return model


@pytest.fixture(scope="module")
def samples(sim_root):
    train, _, _ = build_extension(NSDDataset(sim_root), seed=0, subjects=["subj01"], tasks=["brief", "dialogue"])
    return train


@pytest.fixture(scope="module")
def lm_dir(tmp_path_factory, samples):
    """A tiny random Llama folder whose tokenizer lacks <image> (as any off-the-shelf LLM's)."""
    folder = tmp_path_factory.mktemp("tiny_llm")
    tokenizer = train_tokenizer(extension_texts(samples), 4096, image_token=None, context=TINY.context)
    tiny_llama(tokenizer).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def model(lm_dir):
    return BrainLLM.from_language_model(lm_dir, FMRI_HIDDEN, FMRI_TOKENS, seed=0).eval()


def fmri(seed: int = 0, batch: int | None = None) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    shape = (FMRI_TOKENS, FMRI_HIDDEN) if batch is None else (batch, FMRI_TOKENS, FMRI_HIDDEN)
    return torch.randn(*shape, generator=generator)


def conversation(*turns: str) -> list[dict]:
    messages = [{"role": "user" if i % 2 == 0 else "assistant", "content": t} for i, t in enumerate(turns)]
    messages[0]["content"] = f"{IMAGE_TOKEN}\n{messages[0]['content']}"
    return messages


def test_splice_puts_the_projected_fmri_exactly_at_the_placeholders():
    image_id = 7
    input_ids = torch.tensor([[1, 7, 7, 7, 2, 3], [7, 7, 7, 4, 5, 0]])  # (B=2, L=6), T=3
    embeds = torch.randn(2, 6, 4)
    fmri_embeds = torch.randn(2, 3, 4)
    out = splice_fmri(embeds, input_ids, fmri_embeds, image_id)
    torch.testing.assert_close(out[0, 1:4], fmri_embeds[0])
    torch.testing.assert_close(out[1, 0:3], fmri_embeds[1])
    keep = input_ids != image_id
    torch.testing.assert_close(out[keep], embeds[keep])
    with pytest.raises(DataError, match=r"\[3, 2\] placeholder"):
        splice_fmri(embeds, torch.tensor([[1, 7, 7, 7, 2, 3], [7, 7, 4, 4, 5, 0]]), fmri_embeds, image_id)


def _labelled_spans(encoded) -> list[list[int]]:
    spans, current = [], []
    for token, label in zip(encoded.input_ids, encoded.labels):
        if label != IGNORE_INDEX:
            assert label == token
            current.append(token)
        elif current:
            spans.append(current)
            current = []
    return spans + ([current] if current else [])


def test_labels_cover_every_answer_of_a_multi_turn_dialogue_and_nothing_else(model):
    answers = ["a kite in the sky", "It is on the left.", "No, there is no bed in the picture."]
    messages = conversation("Describe the image briefly.", answers[0], "Where is the kite?", answers[1],
                            "Is there a bed?", answers[2])  # fmt: skip
    encoded = model.encode(messages)
    tokenizer = model.tokenizer
    assert len(encoded.input_ids) == len(encoded.labels)
    # every answer, with the end-of-turn token that closes it, is labelled; nothing else is
    spans = _labelled_spans(encoded)
    assert [tokenizer.decode(span) for span in spans] == [a + EOT_TOKEN for a in answers]
    n_answer_tokens = sum(len(tokenizer(a + EOT_TOKEN, add_special_tokens=False)["input_ids"]) for a in answers)
    assert sum(label != IGNORE_INDEX for label in encoded.labels) == n_answer_tokens
    # the fMRI placeholder: T consecutive ids in the first user turn, all ignored by the loss
    image = [i for i, token in enumerate(encoded.input_ids) if token == model.image_token_id]
    assert image == list(range(image[0], image[0] + FMRI_TOKENS))
    assert all(encoded.labels[i] == IGNORE_INDEX for i in image)
    # the unlabelled rest is exactly the prompt and the chat markup
    prompt = [t for t, label in zip(encoded.input_ids, encoded.labels) if label == IGNORE_INDEX and t != model.image_token_id]
    text = tokenizer.decode(prompt)
    assert "Where is the kite?" in text and "Is there a bed?" in text and not any(a in text for a in answers)


def test_prompt_encoding_matches_training_encoding(model):
    messages = conversation("Describe the image briefly.", "a kite in the sky", "Where is the kite?")
    prompt = model.encode(messages, add_generation_prompt=True)
    full = model.encode(messages + [{"role": "assistant", "content": "On the left."}])
    assert full.input_ids[: len(prompt.input_ids)] == prompt.input_ids
    assert full.labels[: len(prompt.labels)] == prompt.labels


def test_paper_format_when_the_tokenizer_has_no_chat_template(lm_dir, tmp_path):
    lm, tokenizer = load_language_model(lm_dir)
    tokenizer.chat_template = None
    tokenizer.save_pretrained(tmp_path)
    lm.save_pretrained(tmp_path)
    _, tokenizer = load_language_model(tmp_path)
    assert tokenizer.chat_template == PAPER_CHAT_TEMPLATE
    encoded = encode_conversation(tokenizer, conversation("Describe the image.", "a cat"), 4)
    text = tokenizer.decode(encoded.input_ids)
    assert "<human>:" in text and "<bot>: a cat" in text
    assert [tokenizer.decode(s) for s in _labelled_spans(encoded)] == ["a cat" + tokenizer.eos_token]


def test_the_placeholder_token_is_added_when_the_tokenizer_lacks_it(lm_dir, model):
    plain = json.loads((lm_dir / "tokenizer.json").read_text())
    assert IMAGE_TOKEN not in plain["model"]["vocab"]
    assert model.tokenizer.convert_tokens_to_ids(IMAGE_TOKEN) == len(model.tokenizer) - 1
    assert model.lm.get_input_embeddings().weight.shape[0] == len(model.tokenizer)


def test_greedy_is_deterministic_streaming_matches_and_batches_match_single_answers(model):
    one = model.generate(fmri(0), "Describe the image briefly.", max_new_tokens=12)
    assert one.token_ids and one.text
    assert model.generate(fmri(0), "Describe the image briefly.", max_new_tokens=12) == one
    stream = model.stream(fmri(0), "Describe the image briefly.", max_new_tokens=12)
    pieces = list(stream)
    assert len(pieces) > 1 and "".join(pieces).strip() == one.text == stream.text.strip()
    # a stream can be stopped (a UI's stop button)
    full = model.generate(fmri(0), "Describe the image briefly.", max_new_tokens=150)
    assert len(full.token_ids) > 20
    stopped = model.stream(fmri(0), "Describe the image briefly.", max_new_tokens=150)
    for _ in stopped:
        stopped.cancel()
    assert len(stopped.text.strip()) < len(full.text) / 2 and full.text.startswith(stopped.text.strip())
    # a batch of two recordings, conversations of different lengths (left padding)
    longer = [{"role": "user", "content": "Describe the image briefly."}, {"role": "assistant", "content": "a kite"},
              {"role": "user", "content": "Where is the kite?"}]  # fmt: skip
    batch = model.generate(fmri(0, batch=2), [[{"role": "user", "content": "Describe the image briefly."}], longer],
                           max_new_tokens=12)  # fmt: skip
    assert batch[0].token_ids == one.token_ids
    assert batch[1].token_ids == model.generate(fmri(0, batch=2)[1], longer, max_new_tokens=12).token_ids
    # the answer depends on the recording
    assert model.generate(fmri(1), "Describe the image briefly.", max_new_tokens=12).token_ids != one.token_ids
    # sampling is seeded
    a = model.generate(fmri(0), "Describe it.", max_new_tokens=12, do_sample=True, seed=3)
    assert a == model.generate(fmri(0), "Describe it.", max_new_tokens=12, do_sample=True, seed=3)


def test_save_and_load_give_identical_generations(model, tmp_path):
    before = model.generate(fmri(2), "Describe the image briefly.", max_new_tokens=12)
    model.save(tmp_path / "copy", training={"note": "test"})
    model.save(tmp_path / "reference", language_model="reference")
    for name in ("copy", "reference"):
        loaded = load_brainllm(tmp_path / name)
        assert loaded.generate(fmri(2), "Describe the image briefly.", max_new_tokens=12) == before
        for key, value in model.projector.state_dict().items():
            torch.testing.assert_close(loaded.projector.state_dict()[key], value)
    saved = json.loads((tmp_path / "copy" / CONFIG_NAME).read_text())
    assert saved["n_fmri_tokens"] == FMRI_TOKENS and saved["fmri_hidden"] == FMRI_HIDDEN
    assert saved["language_model"] == "llm" and saved["training"] == {"note": "test"}
    assert (tmp_path / "copy" / "llm" / "chat_template.jinja").exists()
    assert not (tmp_path / "reference" / "llm").exists()


def test_lora_adapters_save_load_and_merge(lm_dir, tmp_path):
    model = BrainLLM.from_language_model(lm_dir, FMRI_HIDDEN, FMRI_TOKENS, seed=0).add_lora(r=4, alpha=8)
    with torch.no_grad():  # LoRA's B starts at zero; give the adapters an effect
        for name, parameter in model.lm.named_parameters():
            if "lora_B" in name:
                parameter.normal_(0.0, 0.5)
    model.eval()
    before = model.generate(fmri(0), "Describe the image briefly.", max_new_tokens=12)
    model.save(tmp_path / "lora", language_model="reference")
    assert (tmp_path / "lora" / "lora" / "adapter_model.safetensors").exists()
    loaded = load_brainllm(tmp_path / "lora")
    assert loaded.has_adapter
    assert loaded.generate(fmri(0), "Describe the image briefly.", max_new_tokens=12) == before
    merged = load_brainllm(tmp_path / "lora", merge_lora=True)
    assert not merged.has_adapter
    assert merged.generate(fmri(0), "Describe the image briefly.", max_new_tokens=12).token_ids == before.token_ids


def test_bad_inputs_get_clear_errors(model):
    with pytest.raises(DataError, match="empty"):
        model.generate(fmri(), "   ")
    with pytest.raises(DataError, match="empty"):
        model.generate(fmri(), [])
    with pytest.raises(DataError, match=r"shape \(10, 23\).*\(10, 24\)"):
        model.generate(torch.zeros(10, 23), "Describe the image.")
    with pytest.raises(DataError, match=r"shape \(3,\)"):
        model.generate(torch.zeros(3), "Describe the image.")
    with pytest.raises(DataError, match="too long.*Shorten the message"):
        model.generate(fmri(), "describe the kite " * 200)
    with pytest.raises(DataError, match="exactly once"):
        model.generate(fmri(), [{"role": "user", "content": f"{IMAGE_TOKEN} a {IMAGE_TOKEN}"}])
    with pytest.raises(DataError, match="control token"):
        model.generate(fmri(), f"Describe {EOT_TOKEN} the image")
    with pytest.raises(DataError, match="alternate"):
        model.generate(fmri(), [{"role": "user", "content": "a"}, {"role": "user", "content": "b"}])
    with pytest.raises(DataError, match="ends with"):
        model.generate(fmri(), [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}])
    with pytest.raises(DataError, match="3 conversations for 2"):
        model.generate(fmri(batch=2), [[{"role": "user", "content": "a"}]] * 3)
    with pytest.raises(DataError, match="max_new_tokens"):
        model.generate(fmri(), "Describe the image.", max_new_tokens=0)
    with pytest.raises(DataError, match="one recording"):
        model.stream(fmri(batch=2), "Describe the image.")


def test_a_blank_earlier_answer_does_not_stop_the_conversation(model):
    """A small LM can answer nothing; the next question must still be answered (the explorer keeps
    that blank turn in its history). A blank answer to train on stays refused."""
    history = [{"role": "user", "content": "Describe the image briefly."}, {"role": "assistant", "content": ""}]
    reply = model.generate(fmri(), history + [{"role": "user", "content": "Where is the kite?"}], max_new_tokens=4)
    assert isinstance(reply.text, str)
    with pytest.raises(DataError, match="empty"):
        model.encode(history)


def test_a_conversation_longer_than_the_context_drops_its_oldest_exchanges(model):
    messages = [{"role": "user", "content": "Describe the image briefly."}, {"role": "assistant", "content": "a kite"}]
    for i in range(12):
        messages += [{"role": "user", "content": f"Question {i}: where is the kite in the sky?"},
                     {"role": "assistant", "content": "The kite is on the left side of the picture, halfway up."}]  # fmt: skip
    messages.append({"role": "user", "content": "And the bird?"})
    reply = model.generate(fmri(), messages, max_new_tokens=8)
    assert reply.notes and "oldest exchange" in reply.notes[0]
    assert reply.prompt_tokens + 8 <= model.max_context
    stream = model.stream(fmri(), messages, max_new_tokens=8)
    assert stream.notes == reply.notes and "".join(stream).strip() == reply.text
    # the prompt is the fMRI turn, its answer and the newest exchanges
    dropped = int(re.search(r"the (\d+) oldest", reply.notes[0]).group(1))
    kept = with_placeholder(messages[:2] + messages[2 + 2 * dropped :])
    assert reply.prompt_tokens == len(model.encode(kept, add_generation_prompt=True).input_ids)
    assert 0 < dropped < 12


def answer_batch(model, answers: list[str]):
    """Right-padded input_ids, labels (answers only) and attention mask of brief-description
    conversations with these answers, as the training collate makes them."""
    encoded = [model.encode(conversation("Describe the image briefly.", a)) for a in answers]
    length = max(len(e.input_ids) for e in encoded)
    input_ids = torch.full((len(answers), length), model.pad_token_id)
    labels = torch.full((len(answers), length), IGNORE_INDEX)
    mask = torch.zeros((len(answers), length), dtype=torch.long)
    for row, e in enumerate(encoded):
        input_ids[row, : len(e.input_ids)] = torch.tensor(e.input_ids)
        labels[row, : len(e.labels)] = torch.tensor(e.labels)
        mask[row, : len(e.input_ids)] = 1
    return input_ids, labels, mask


def test_training_through_the_splice_teaches_the_model_to_read_the_fmri(lm_dir):
    """Two recordings, two answers: a few full-model steps (stage 2) make each recording's greedy
    answer its own, so gradients reach f_t and the LM through the spliced positions."""
    torch.manual_seed(0)
    model = BrainLLM.from_language_model(lm_dir, FMRI_HIDDEN, FMRI_TOKENS, seed=0)
    recordings = fmri(5, batch=2)
    answers = ["a red kite in the sky", "two dogs on the beach"]
    input_ids, labels, mask = answer_batch(model, answers)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    model.train()
    for _ in range(25):
        loss = model(input_ids, mask, recordings, labels=labels).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    model.eval()
    replies = model.generate(recordings, "Describe the image briefly.", max_new_tokens=12)
    assert [r.text for r in replies] == answers


@pytest.mark.parametrize("lora", [False, True])
def test_the_answer_only_loss_equals_the_lms_own_loss_and_gradients(lm_dir, lora):
    """Training computes logits only at answer positions; loss and gradients must be the LM's own."""
    model = BrainLLM.from_language_model(lm_dir, FMRI_HIDDEN, FMRI_TOKENS, seed=0)
    if lora:
        model.add_lora(r=4, alpha=8, dropout=0.0)  # peft freezes the base weights; adapters train
    else:
        model.lm.requires_grad_(True)
    model.projector.requires_grad_(True)
    recordings = fmri(3, batch=2)
    input_ids, labels, mask = answer_batch(model, ["a red kite", "two dogs on a beach"])
    trainable = [p for p in model.parameters() if p.requires_grad]
    assert any("lora" in name for name, p in model.named_parameters() if p.requires_grad) == lora

    def loss_and_gradients(loss):
        return loss.detach(), torch.autograd.grad(loss, trainable)

    ours = loss_and_gradients(model(input_ids, mask, recordings, labels=labels).loss)
    theirs = loss_and_gradients(model.lm(inputs_embeds=model.embed(input_ids, recordings), attention_mask=mask,
                                         labels=labels).loss)  # fmt: skip
    torch.testing.assert_close(ours[0], theirs[0], rtol=1e-5, atol=1e-6)
    for mine, reference in zip(ours[1], theirs[1]):
        torch.testing.assert_close(mine, reference, rtol=1e-4, atol=1e-6)


def test_names_each_concept_once_bans_a_named_concept_and_nothing_else(model):
    tokenizer = model.tokenizer
    ban = NamesEachConceptOnce(tokenizer, ["cat", "teddy bear", "dog"])
    ban(torch.zeros((1, 0), dtype=torch.long), torch.zeros(1, len(tokenizer)))  # the first call: no answer yet

    def banned(text: str) -> set[str]:
        ids = torch.tensor([tokenizer.encode(text, add_special_tokens=False)])
        scores = ban(ids, torch.zeros(1, len(tokenizer)))
        return {tokenizer.decode([i]) for i in torch.nonzero(scores[0] == -float("inf")).flatten().tolist()}

    assert banned("a large apple") == set()
    assert banned("a dog on grass") == {" dog", " dogs"}  # (" Dog" takes several tokens here: its last is banned after the others)
    assert {" cat", " dog"} <= banned("two cats and a dog,")  # the plural names the concept too
    # a two-token name: its last token is banned only right after its first
    assert " bear" not in banned("a teddy bear and a")
    assert " bear" in banned("a teddy bear and a teddy")


def test_distinct_concepts_keep_a_repeated_word_out_of_the_answer(model):
    plain = model.generate(fmri(0), "Describe the image briefly.", max_new_tokens=150).text
    words = re.findall(r"[a-z]+", plain.lower())
    repeated = sorted({w for w in words if len(w) > 2 and words.count(w) > 1})
    assert repeated, plain  # the random tiny model repeats itself
    answer = model.generate(fmri(0), "Describe the image briefly.", max_new_tokens=150, distinct_concepts=repeated).text
    counts = {w: len(re.findall(rf"\b{w}s?\b", answer.lower())) for w in repeated}
    assert max(counts.values()) <= 1, (counts, answer)
    streamed = model.stream(fmri(0), "Describe the image briefly.", max_new_tokens=150, distinct_concepts=repeated)
    assert "".join(streamed).strip() == answer


def test_excluded_concepts_are_never_named(model):
    """After an ablation the prompt is written again, and it may not name what the user removed."""
    plain = model.generate(fmri(0), "Describe the image briefly.", max_new_tokens=150).text
    words = sorted({w for w in re.findall(r"[a-z]+", plain.lower()) if len(w) > 2})
    assert words, plain
    answer = model.generate(fmri(0), "Describe the image briefly.", max_new_tokens=150, excluded_concepts=words[:3]).text
    assert not any(re.search(rf"\b{w}s?\b", answer.lower()) for w in words[:3]), (words[:3], answer)
    ban = NamesEachConceptOnce(model.tokenizer, ["cat"], excluded=["dog"])
    ban(torch.zeros((1, 0), dtype=torch.long), torch.zeros(1, len(model.tokenizer)))
    scores = ban(torch.tensor([model.tokenizer.encode("a", add_special_tokens=False)]), torch.zeros(1, len(model.tokenizer)))
    assert scores[0, model.tokenizer.encode(" dog", add_special_tokens=False)[-1]] == -float("inf")  # banned from the start
    assert scores[0, model.tokenizer.encode(" cat", add_special_tokens=False)[-1]] == 0  # not yet named
