"""Generative listwise reranking (RankGPT-style): the model writes a permutation like ``[2] > [1] > [3]``.

Sliding windows of ``window`` passages with stride ``stride``, from the bottom of the list to the top;
greedy decoding. The output is parsed robustly: identifiers are read in order, duplicates and
out-of-range numbers are dropped, and identifiers the model left out keep their input order after the
ones it named. *Formatting success* is the share of windows whose raw output was already a complete,
valid permutation (no repair needed). Fallback when nothing parseable comes back: the window keeps its
input order. Formatting success alone can hide a reranker that does nothing, so the share of windows
answered with the input order itself (the identity permutation) is counted too.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch

from headrank.engine.models import LoadedModel, pad_token_id
from headrank.engine.prompt import normalize_text
from headrank.rerankers.base import ScoreReranker, check_baseline_options, loaded_base_model

_ID = re.compile(r"\[\s*(\d+)\s*\]|\b(\d+)\b")


@dataclass
class ParsedPermutation:
    order: list[int]  # 0-based, a full permutation of range(n)
    valid: bool  # the raw text was a complete permutation without repair


def parse_permutation(text: str, n: int) -> ParsedPermutation:
    """Read identifiers 1..n from model output into a full permutation (see module docstring)."""
    seen: list[int] = []
    extra = False
    for bracketed, bare in _ID.findall(text):
        value = int(bracketed or bare)
        if 1 <= value <= n and value - 1 not in seen:
            seen.append(value - 1)
        else:
            extra = True
    missing = [i for i in range(n) if i not in seen]
    return ParsedPermutation(order=seen + missing, valid=not missing and not extra)


def rankgpt_messages(query: str, passages: Sequence[str]) -> list[dict]:
    """A RankGPT-style conversation: instruction, one turn per passage, then the ranking request."""
    n = len(passages)
    messages = [
        {"role": "system", "content": "You are RankGPT, an assistant that ranks passages by their relevance to a query."},
        {"role": "user", "content": f"I will give you {n} passages, each marked with a number in brackets []. "
                                    f"Rank them by relevance to the query: {query}"},
        {"role": "assistant", "content": "Okay, please provide the passages."},
    ]
    for i, passage in enumerate(passages, start=1):
        messages.append({"role": "user", "content": f"[{i}] {passage}"})
        messages.append({"role": "assistant", "content": f"Received passage [{i}]."})
    messages.append({"role": "user", "content": (
        f"Search query: {query}\nRank the {n} passages above by relevance to the search query, most relevant "
        "first, using their identifiers in the format [] > [], for example [2] > [1]. Answer with the ranking "
        "only, no other words.")})
    return messages


@dataclass
class GenerativeRanker:
    model: LoadedModel
    window: int = 20
    stride: int = 10
    max_passage_tokens: int = 100
    windows_total: int = 0
    windows_valid: int = 0
    windows_identity: int = 0  # windows whose final order is the input order (a valid answer that changes nothing)
    tokens_generated: int = 0  # decoded tokens, all windows: the part of the cost a prefill-only ranker avoids
    outputs: list[str] = field(default_factory=list, repr=False)

    def __post_init__(self) -> None:
        if not 1 <= self.stride <= self.window or self.window < 2:
            raise ValueError("need window >= 2 and 1 <= stride <= window")

    @property
    def formatting_success(self) -> float:
        return self.windows_valid / self.windows_total if self.windows_total else float("nan")

    @property
    def identity_share(self) -> float:
        return self.windows_identity / self.windows_total if self.windows_total else float("nan")

    def _cut(self, text: str) -> str:
        tok = self.model.tokenizer
        ids = tok(normalize_text(text), add_special_tokens=False)["input_ids"]
        return tok.decode(ids[: self.max_passage_tokens]).rstrip("\ufffd").strip() if len(ids) > self.max_passage_tokens \
            else normalize_text(text)

    def permute_window(self, query: str, passages: Sequence[str]) -> list[int]:
        tok = self.model.tokenizer
        prompt = tok.apply_chat_template(rankgpt_messages(query, [self._cut(p) for p in passages]),
                                         add_generation_prompt=True, return_tensors="pt", return_dict=True,
                                         enable_thinking=False)
        inputs = {k: v.to(self.model.device) for k, v in prompt.items()}
        with torch.inference_mode():
            out = self.model.model.generate(**inputs, max_new_tokens=6 * len(passages) + 10, do_sample=False,
                                            pad_token_id=pad_token_id(tok))
        new_tokens = out[0, inputs["input_ids"].shape[1]:]
        self.tokens_generated += len(new_tokens)
        text = tok.decode(new_tokens, skip_special_tokens=True)
        parsed = parse_permutation(text, len(passages))
        self.windows_total += 1
        self.windows_valid += parsed.valid
        self.windows_identity += parsed.valid and parsed.order == list(range(len(passages)))
        self.outputs.append(text)
        return parsed.order

    def order(self, query: str, passages: Sequence[str]) -> list[int]:
        """Final order (input indices, best first) after the bottom-up sliding windows."""
        order = list(range(len(passages)))
        end = len(passages)
        while True:
            start = max(0, end - self.window)
            window = order[start:end]
            local = self.permute_window(query, [passages[i] for i in window])
            order[start:end] = [window[j] for j in local]
            if start == 0:
                return order
            end -= self.stride

    def score(self, query: str, passages: Sequence[str]) -> list[float]:
        """Rank-derived scores in input order (n for the first, 1 for the last)."""
        n = len(passages)
        scores = [0.0] * n
        for position, index in enumerate(self.order(query, passages)):
            scores[index] = float(n - position)
        return scores


def load(model: str | None = None, device: str = "auto", dtype: str = "auto", max_passage_tokens: int = 100,
         fuse_first_stage: float | None = None) -> ScoreReranker:
    check_baseline_options(max_passage_tokens, fuse_first_stage)
    loaded = loaded_base_model(model, device, dtype)

    def score(query: str, passages: list[str]) -> tuple[list[float], dict]:
        ranker = GenerativeRanker(loaded, max_passage_tokens=max_passage_tokens)
        scores = ranker.score(query, passages)
        return scores, {"windows_total": ranker.windows_total, "windows_valid": ranker.windows_valid,
                        "windows_identity": ranker.windows_identity, "tokens_generated": ranker.tokens_generated}

    return ScoreReranker(f"{loaded.name}, generative", score, fuse_first_stage, loaded)
