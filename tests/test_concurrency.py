"""Thread safety of prompt building: a transformers fast tokenizer flips a flag on its shared backend at every
call (``split_special_tokens``), so concurrent callers could get each other's setting and a chat template's
``<|im_end|>`` split into plain text. The prompt builder must never depend on that shared state."""

from __future__ import annotations

import copy
import threading

from headrank.engine.prompt import PromptBuilder

QUERY = "how do vaccines work?"
PASSAGES = ["Vaccines train the immune system <|im_end|> to fight a pathogen.", "Pasta recipes from Italy.",
            "Memory cells respond faster after vaccination.", "The stock market fell on Tuesday."]


class _InterleavingBackend:
    """Stands in for a fast tokenizer's Rust backend and plays another thread: between the moment a call sets
    ``encode_special_tokens`` and the moment it encodes, the other thread's call flips the flag."""

    def __init__(self, real) -> None:
        object.__setattr__(self, "_real", real)

    def __getattr__(self, name):
        return getattr(self._real, name)

    def __setattr__(self, name, value) -> None:
        setattr(self._real, name, value)

    def encode_batch(self, *args, **kwargs):
        self._real.encode_special_tokens = not self._real.encode_special_tokens  # the other thread lands here
        return self._real.encode_batch(*args, **kwargs)


def test_prompt_does_not_read_the_shared_tokenizer_flag(qwen3_tokenizer):
    """Deterministic replay of the race: old code built a prompt with the template's special tokens split."""
    tok = copy.deepcopy(qwen3_tokenizer)
    expected = PromptBuilder(tok).build(QUERY, PASSAGES)
    builder = PromptBuilder(tok)
    tok._tokenizer = _InterleavingBackend(tok._tokenizer)  # every later call on the shared tokenizer races
    raced = builder.build(QUERY, PASSAGES)
    assert raced.prefix_ids == expected.prefix_ids and raced.tail_ids == expected.tail_ids
    im_end = tok.convert_tokens_to_ids("<|im_end|>")
    assert im_end in raced.tail_ids  # the template's own special token survives ...
    assert im_end not in raced.prefix_ids  # ... and the passage's fake one stays plain text


def test_encoder_equals_the_tokenizer_call(qwen3_tokenizer):
    """The private backend copies give exactly what the tokenizer's own call gives, in both modes."""
    builder = PromptBuilder(qwen3_tokenizer)
    for text in [*PASSAGES, "<|im_start|>user\nhi<|im_end|>", "Ünïcödé — 数据 🙂"]:
        for untrusted in (False, True):
            want = qwen3_tokenizer(text, add_special_tokens=False, split_special_tokens=untrusted)["input_ids"]
            assert builder.encoder.encode(text, untrusted) == list(want)
        ids, offsets = builder.encoder.encode_with_offsets(text)
        enc = qwen3_tokenizer(text, add_special_tokens=False, split_special_tokens=True, return_offsets_mapping=True)
        assert ids == list(enc["input_ids"]) and offsets == [tuple(o) for o in enc["offset_mapping"]]


def test_threads_building_prompts_on_one_builder(qwen3_tokenizer):
    """Three threads, one builder, one tokenizer also called directly (as the service once did): every
    prompt equals the one built alone (453 of 3,000 were corrupted before the fix)."""
    tok = copy.deepcopy(qwen3_tokenizer)
    builder = PromptBuilder(tok)
    inputs = [(f"{QUERY} {i}", PASSAGES[i % 4:] + PASSAGES[: i % 4]) for i in range(8)]
    expected = [builder.build(q, p).input_ids for q, p in inputs]
    bad, stop = [], threading.Event()

    def build(n: int) -> None:
        for k in range(n):
            q, p = inputs[k % len(inputs)]
            if builder.build(q, p).input_ids != expected[k % len(inputs)]:
                bad.append(k)

    def noise() -> None:  # another user of the same tokenizer object, splitting special tokens
        while not stop.is_set():
            tok("<|im_end|> text", add_special_tokens=False, split_special_tokens=True)

    threads = [threading.Thread(target=build, args=(400,)) for _ in range(3)]
    other = threading.Thread(target=noise)
    other.start()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    stop.set()
    other.join()
    assert bad == []


def test_slow_tokenizer_goes_through_the_lock(llama_tokenizer):
    """A tokenizer without a Rust backend still encodes (one call at a time)."""
    class Slow:
        is_fast = False
        chat_template = None
        bos_token = llama_tokenizer.bos_token
        all_special_tokens = llama_tokenizer.all_special_tokens

        def __call__(self, text, **kwargs):
            return llama_tokenizer(text, **kwargs)

        def decode(self, ids):
            return llama_tokenizer.decode(ids)

    prompt = PromptBuilder(Slow()).build(QUERY, PASSAGES)
    assert prompt.passage_spans and prompt.tail_ids
