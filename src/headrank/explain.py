"""Token-level explanations: how much of each passage's score each of its tokens earned, from the same pass.

A passage's attention score is a sum over its tokens (and over the selected heads) of the mass the query rows
give them, minus the same for the content-free ``N/A`` query (``scoring.py``). ``explain`` returns those
per-token terms, so they add up to the score (float32 summation order aside: within 1e-5). Offsets point
into the caller's original passage text, through whitespace collapsing and truncation; the passage label
``[i]`` the prompt adds is reported as one entry without offsets. With ``both_orders`` each character's
share is averaged over the two passes and summed back onto the first pass's tokens, which keeps the sum.
With ICR's token masking, masked tokens contribute 0. Fusion with the first stage changes the ranking, not
the attention score: ``fused_score`` reports it separately.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field

import torch

from headrank.fusion import fuse_with_first_stage
from headrank.prompt import normalize_text


@dataclass
class TokenContribution:
    token: str  # the token's text as it went into the prompt
    start: int | None  # character offsets into the original passage (None: the [i] label, or unmapped)
    end: int | None
    contribution: float  # calibrated mass summed over the selected heads
    per_head: list[float] | None = None


@dataclass
class PassageExplanation:
    corpus_id: int  # index in the input list
    rank: int  # position in the ranker's ranking (after fusion, if the ranker fuses)
    score: float  # the attention score: the sum of the contributions (-inf for an empty passage)
    tokens: list[TokenContribution] = field(default_factory=list)
    truncated: bool = False
    fused_score: float | None = None
    text: str | None = None

    def to_dict(self) -> dict:
        out = asdict(self)
        out["score"] = self.score if math.isfinite(self.score) else None
        return out


def normalized_to_original(text: str) -> list[int]:
    """For each character of ``normalize_text(text)``, its index in ``text`` (a collapsed run maps to its start)."""
    index, previous_space = [], True
    for i, ch in enumerate(text):
        if ch.isspace():
            if not previous_space:
                index.append(i)
            previous_space = True
        else:
            index.append(i)
            previous_space = False
    normalized = normalize_text(text)
    return index[: len(normalized)]


def _token_terms(ranker, prompt, att, cal, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-token contributions of passage ``k`` summed over heads (T,), and per head (H, T)."""
    start, end = prompt.passage_spans[k]
    per_head = att.token_mass[:, start:end]
    if ranker.scoring.calibrate:
        per_head = per_head - cal.token_mass[:, start:end]
    total = per_head.sum(dim=0)
    if ranker.scoring.token_mask and total.numel() > 1:
        keep = total >= total.mean() - 2 * total.std()  # ICR's masking, as in scoring.masked_calibrated_scores
        total, per_head = total * keep, per_head * keep
    return total, per_head


def _char_shares(ranker, labelled: str, label_len: int, terms: torch.Tensor, cut: str, original: str):
    """Spread each token's term over the characters it covers, as offsets into ``original``; label apart."""
    tok = ranker.model.tokenizer
    enc = tok(labelled, add_special_tokens=False, split_special_tokens=True, return_offsets_mapping=True)
    if len(enc["input_ids"]) != terms.numel():
        return None
    chars = normalized_to_original(original)
    aligned = normalize_text(original).startswith(cut)
    label_total, shares, tokens = 0.0, {}, []
    for tid, (a, b), value in zip(enc["input_ids"], enc["offset_mapping"], terms.tolist()):
        piece = tok.decode([tid])
        a_text, b_text = max(a - label_len, 0), b - label_len
        if b_text <= 0 or not aligned:
            label_total += value if b_text <= 0 else 0.0
            tokens.append((piece, None, None, value, b_text <= 0))
            continue
        span = [chars[j] for j in range(a_text, min(b_text, len(chars)))]
        for c in span:
            shares[c] = shares.get(c, 0.0) + value / len(span)
        tokens.append((piece, span[0] if span else None, span[-1] + 1 if span else None, value, False))
    return tokens, shares, label_total


def explain(ranker, query: str, docs: Sequence[str], per_head: bool = False) -> list[PassageExplanation]:
    """Per-token contributions to every passage's score, best first (see the module docstring).

    The list must fit one prompt (no windows): explanations of different windows would not be comparable.
    """
    from headrank.ranker import _Job

    job = _Job.make(query, docs, 0)
    kept = [job.docs[i] for i in job.kept]
    out: dict[int, PassageExplanation] = {}
    if kept:
        if ranker.window is not None and len(kept) > ranker.window:
            raise ValueError(f"{len(kept)} passages exceed the window of {ranker.window}; explain at most that many")
        prompts = [ranker.builder.build(job.query, kept)]
        if ranker.both_orders:
            prompts.append(ranker.builder.build(job.query, kept[::-1]))
        if max(len(p) for p in prompts) > ranker.max_length:
            raise ValueError(f"the list needs {len(prompts[0])} tokens but max_length is {ranker.max_length}")
        captured = ranker.capture(prompts)
        n = len(kept)
        for k in range(n):
            passes = [(prompts[0], *captured[0], k)]
            if ranker.both_orders:
                passes.append((prompts[1], *captured[1], n - 1 - k))
            out[job.kept[k]] = _explain_passage(ranker, passes, kept[k], job.kept[k], per_head)
    scores = {i: e.score for i, e in out.items()}
    fused = None
    if ranker.fuse_first_stage and scores:
        fused = dict(zip(job.kept, fuse_with_first_stage([scores[i] for i in job.kept], ranker.fuse_first_stage)))
    key = fused or scores
    order = sorted(job.kept, key=lambda i: (-key[i], i)) + [i for i in range(len(job.docs)) if i not in out]
    result = []
    for rank, i in enumerate(order, start=1):
        e = out.get(i) or PassageExplanation(corpus_id=i, rank=0, score=-math.inf)
        e.rank, e.text = rank, job.docs[i]
        e.fused_score = fused[i] if fused and i in fused else None
        result.append(e)
    return result


def _explain_passage(ranker, passes, original: str, corpus_id: int, per_head: bool) -> PassageExplanation:
    first_prompt, _, _, first_k = passes[0]
    label = f"[{first_k + 1}] "
    label_len = len(label)  # offsets past the label and its space point into the (cut) passage text
    per_pass = []
    for prompt, att, cal, k in passes:
        total, heads = _token_terms(ranker, prompt, att, cal, k)
        labelled = prompt.passage_texts[k]
        this_label_len = len(f"[{k + 1}] ")
        cut = labelled[this_label_len:]
        per_pass.append((total, heads, labelled, this_label_len, cut))
    total, heads, labelled, _, cut = per_pass[0]
    score = float(sum(float(p[0].sum()) for p in per_pass) / len(per_pass))
    mapped = _char_shares(ranker, labelled, label_len, total, cut, original)
    truncated = first_prompt.truncated[first_k]
    if mapped is None:  # tokenization did not line up: token terms without offsets
        tokens = [TokenContribution(ranker.model.tokenizer.decode([t]), None, None, float(v))
                  for t, v in zip(first_prompt.prefix_ids[slice(*first_prompt.passage_spans[first_k])], total.tolist())]
        return PassageExplanation(corpus_id, 0, score, tokens, truncated)
    token_rows, shares, label_total = mapped
    if len(per_pass) == 2:  # average each character's share over the two orders, label apart
        other = _char_shares(ranker, per_pass[1][2], per_pass[1][3], per_pass[1][0], per_pass[1][4], original)
        if other is not None:
            _, other_shares, other_label = other
            label_total = (label_total + other_label) / 2
            shares = {c: (shares.get(c, 0.0) + other_shares.get(c, 0.0)) / 2 for c in shares.keys() | other_shares.keys()}
        else:
            shares = {c: v * score / max(float(total.sum()), 1e-30) for c, v in shares.items()}
    head_terms = heads.T.tolist() if per_head and len(passes) == 1 else None
    label_rows = [row for row, entry in enumerate(token_rows) if entry[4]]
    label_heads = [float(x) for x in heads[:, label_rows].sum(dim=1)] if head_terms else None
    tokens = [TokenContribution(label.strip(), None, None, label_total, label_heads)]
    for row, (piece, start, end, value, is_label) in enumerate(token_rows):
        if is_label:
            continue
        if start is None:
            tokens.append(TokenContribution(piece, None, None, value, head_terms[row] if head_terms else None))
            continue
        value = sum(shares.get(c, 0.0) for c in range(start, end)) if len(passes) == 2 else value
        tokens.append(TokenContribution(piece, start, end, value, head_terms[row] if head_terms else None))
    if len(passes) == 2:  # characters of the reversed pass outside the first pass's tokens: onto the label
        covered = sum(t.contribution for t in tokens[1:])
        tokens[0].contribution = score - covered
    return PassageExplanation(corpus_id, 0, score, tokens, truncated)
