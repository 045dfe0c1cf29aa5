"""Pointwise yes/no reranking (Qwen3-Reranker style): P("yes") against P("no") after a judge prompt,
one forward per passage (batched), read from the next-token logits at the end of the prompt."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from headrank.engine.models import LoadedModel, pad_token_id
from headrank.engine.prompt import normalize_text
from headrank.rerankers.base import ScoreReranker, check_baseline_options, loaded_base_model

JUDGE_INSTRUCTION = (
    'Judge whether the Document answers or is relevant to the Query. Answer only "yes" or "no".'
)


def _single_token(tokenizer, word: str) -> int:
    ids = tokenizer(word, add_special_tokens=False)["input_ids"]
    if len(ids) != 1:
        raise ValueError(f"{word!r} is not a single token for this tokenizer; the pointwise baseline needs one")
    return ids[0]


@dataclass
class PointwiseRanker:
    model: LoadedModel
    max_passage_tokens: int = 100
    batch_size: int = 8

    def __post_init__(self) -> None:
        tok = self.model.tokenizer
        self.yes_id = _single_token(tok, "yes")
        self.no_id = _single_token(tok, "no")

    def _prompt(self, query: str, passage: str) -> list[int]:
        tok = self.model.tokenizer
        ids = tok(normalize_text(passage), add_special_tokens=False)["input_ids"][: self.max_passage_tokens]
        document = tok.decode(ids).rstrip("\ufffd")
        content = f"{JUDGE_INSTRUCTION}\nQuery: {normalize_text(query)}\nDocument: {document}"
        if tok.chat_template:
            text = tok.apply_chat_template([{"role": "user", "content": content}], tokenize=False,
                                           add_generation_prompt=True, enable_thinking=False)
        else:
            text = f"{content}\nAnswer:"
        return tok(text, add_special_tokens=False)["input_ids"]

    def score(self, query: str, passages: Sequence[str]) -> list[float]:
        """log P(yes) - log P(no) per passage (input order), restricted to the two answer tokens."""
        tok = self.model.tokenizer
        pad = pad_token_id(tok)
        prompts = [self._prompt(query, p) for p in passages]
        scores: list[float] = []
        for start in range(0, len(prompts), self.batch_size):
            chunk = prompts[start : start + self.batch_size]
            width = max(map(len, chunk))
            ids = torch.tensor([[pad] * (width - len(p)) + p for p in chunk], device=self.model.device)
            mask = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in chunk], device=self.model.device)
            position = (mask.cumsum(-1) - 1).clamp(min=0)
            with torch.inference_mode():
                logits = self.model.model(input_ids=ids, attention_mask=mask, position_ids=position,
                                          logits_to_keep=1).logits[:, -1, :]
            pair = torch.log_softmax(logits[:, [self.yes_id, self.no_id]].float(), dim=-1)
            scores.extend((pair[:, 0] - pair[:, 1]).tolist())
        return scores


def load(model: str | None = None, device: str = "auto", dtype: str = "auto", max_passage_tokens: int = 100,
         fuse_first_stage: float | None = None) -> ScoreReranker:
    check_baseline_options(max_passage_tokens, fuse_first_stage)
    loaded = loaded_base_model(model, device, dtype)
    judge = PointwiseRanker(loaded, max_passage_tokens=max_passage_tokens)
    return ScoreReranker(f"{loaded.name}, pointwise", judge.score, fuse_first_stage, loaded)
