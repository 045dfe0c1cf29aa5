"""Token-level explanations: how much of each passage's score each of its tokens earned, from the same pass.

A passage's attention score is a sum over its tokens (and over the selected heads) of the mass the query rows
give them, minus the same for the content-free ``N/A`` query (``scoring.py``). ``explain`` returns those
per-token terms, so they add up to the score (float32 summation order aside: within 1e-5). Offsets point
into the caller's original passage text, through whitespace collapsing and truncation; the passage label
``[i]`` the prompt adds is reported as one entry without offsets. With ``both_orders`` each character's
share is averaged over the two passes and summed back onto the first pass's tokens, which keeps the sum.
With ICR's token masking, masked tokens contribute 0. Fusion with the first stage changes the ranking, not
the attention score: a fused explanation reports the score that ranks (``ranking_score``, the fused score)
and its parts: the passage's rank by attention score, its input (first-stage) rank and the fusion weight,
``fused = (1 - w) / (60 + attention_rank) + w / (60 + first_stage_rank)``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field

import torch

from headrank.engine.fusion import rank_positions
from headrank.engine.prompt import normalize_text
from headrank.engine.rule import final_scores
from headrank.plots import pyplot


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
    attention_rank: int | None = None  # rank by the attention score alone (fused explanations)
    first_stage_rank: int | None = None  # input position among the non-empty passages (fused explanations)
    fusion_weight: float | None = None  # w of the fusion, None when the ranking is not fused
    valve_fired: bool = False  # the safety valve raised w for this list (headrank.engine.rule)

    @property
    def ranking_score(self) -> float:
        """The score that ranks this passage: the fused score when fused, else the attention score."""
        return self.fused_score if self.fused_score is not None else self.score

    def to_dict(self) -> dict:
        out = asdict(self)
        out["score"] = self.score if math.isfinite(self.score) else None
        out["ranking_score"] = self.ranking_score if math.isfinite(self.ranking_score) else None
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
    return ranker.scoring_rule.token_terms(att, cal, start, end)


def _char_shares(ranker, labelled: str, label_len: int, terms: torch.Tensor, cut: str, original: str):
    """Spread each token's term over the characters it covers, as offsets into ``original``; label apart."""
    encoder = ranker.builder.encoder  # thread-safe: never flips the shared tokenizer's flags
    ids, offsets = encoder.encode_with_offsets(labelled)
    if len(ids) != terms.numel():
        return None
    chars = normalized_to_original(original)
    aligned = normalize_text(original).startswith(cut)
    label_total, shares, tokens = 0.0, {}, []
    for tid, (a, b), value in zip(ids, offsets, terms.tolist()):
        piece = encoder.decode([tid])
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


def explain(ranker, query: str, docs: Sequence[str], per_head: bool = False,
            fuse_first_stage: float | None = None, safety_valve=None) -> list[PassageExplanation]:
    """Per-token contributions to every passage's score, best first (see the module docstring).

    The list must fit one prompt (no windows): explanations of different windows would not be comparable.
    ``fuse_first_stage``: this call's fusion weight (None: the ranker's setting, 0: off), as in ``rank``;
    ``safety_valve`` likewise.
    """
    from headrank.engine.results import ListJob

    settings = ranker.settings_for(fuse_first_stage, safety_valve)
    job = ListJob.make(query, docs, 0)
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
    final = final_scores([scores[i] for i in job.kept], settings.fuse_first_stage, settings.safety_valve)
    if final.weight and scores:
        fused = dict(zip(job.kept, final.scores))
        attention = rank_positions([scores[i] for i in job.kept])
        for position, i in enumerate(job.kept):
            e = out[i]
            e.attention_rank, e.first_stage_rank, e.fusion_weight = attention[position], position + 1, final.weight
            e.valve_fired = final.valve_fired
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
        tokens = [TokenContribution(ranker.builder.encoder.decode([t]), None, None, float(v))
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
    assigned: set[int] = set()  # both orders: a character shared by two tokens (byte-level split) counts once
    for row, (piece, start, end, value, is_label) in enumerate(token_rows):
        if is_label:
            continue
        if start is None:
            tokens.append(TokenContribution(piece, None, None, value, head_terms[row] if head_terms else None))
            continue
        if len(passes) == 2:
            chars = [c for c in range(start, end) if c not in assigned]
            assigned.update(chars)
            value = sum(shares.get(c, 0.0) for c in chars)
        tokens.append(TokenContribution(piece, start, end, value, head_terms[row] if head_terms else None))
    if len(passes) == 2:  # characters of the reversed pass outside the first pass's tokens: onto the label
        covered = sum(t.contribution for t in tokens[1:])
        tokens[0].contribution = score - covered
    return PassageExplanation(corpus_id, 0, score, tokens, truncated)


# ------------------------------------------------------------------------------------------------ rendering


def shaded_segments(text: str, tokens: Sequence[TokenContribution]) -> list[tuple[str, float | None]]:
    """The passage as (text, contribution) pieces: tokens that share characters (byte-level splits) merged,
    gaps (collapsed whitespace, text cut off by truncation) with ``None``."""
    spans = sorted((t.start, t.end, t.contribution) for t in tokens if t.start is not None and t.end is not None)
    merged: list[list] = []
    for start, end, value in spans:
        if merged and start < merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], end)
            merged[-1][2] += value
        else:
            merged.append([start, end, value])
    pieces, at = [], 0
    for start, end, value in merged:
        if start > at:
            pieces.append((text[at:start], None))
        pieces.append((text[start:end], value))
        at = end
    if at < len(text):
        pieces.append((text[at:], None))
    return pieces


_STYLE = """
body{font:15px/1.5 system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:2rem auto;max-width:60rem;color:#222}
h1{font-size:1.3rem}.meta{color:#666;font-size:.9rem}.passage{border:1px solid #ddd;border-radius:6px;
padding:.6rem .8rem;margin:.7rem 0}.head{display:flex;gap:1rem;font-size:.85rem;color:#555;margin-bottom:.3rem}
.rank{font-weight:700;color:#222}.tok{border-radius:3px}.label{color:#999;font-size:.8rem}
.legend span{padding:0 .4rem;border-radius:3px}.empty{color:#999;font-style:italic}
"""


def _shade(value: float | None, scale: float) -> str:
    if value is None or scale <= 0:
        return ""
    alpha = min(1.0, abs(value) / scale)
    color = "46,160,67" if value >= 0 else "214,69,65"
    return f"background:rgba({color},{alpha:.3f})"


def render_html(query: str, explanations: Sequence[PassageExplanation], title: str = "HeadRank explanation",
                meta: str = "") -> str:
    """One self-contained HTML page (inline CSS, no scripts or fetches): the ranking with every passage's
    tokens shaded by their contribution (green adds to the score, red takes away; scale shared by the list)."""
    from html import escape

    values = [abs(t.contribution) for e in explanations for t in e.tokens if t.start is not None]
    scale = max(values) if values else 0.0
    rows = []
    for e in explanations:
        score = "empty passage" if not math.isfinite(e.score) else f"score {e.score:.6g}"
        fused = f" · fused {e.fused_score:.6g}" if e.fused_score is not None else ""
        label = next((t for t in e.tokens if t.start is None), None)
        head = (f'<div class="head"><span class="rank">#{e.rank}</span><span>input {e.corpus_id + 1}</span>'
                f'<span>{score}{fused}</span>'
                + (f'<span class="label">label {escape(label.token)}: {label.contribution:.3g}</span>' if label else "")
                + ("<span>truncated</span>" if e.truncated else "") + "</div>")
        if not e.tokens:
            body = f'<div class="empty">{escape(e.text or "")or "(empty)"}</div>'
        else:
            body = "".join(
                escape(piece) if value is None else
                f'<span class="tok" style="{_shade(value, scale)}" title="{value:.4g}">{escape(piece)}</span>'
                for piece, value in shaded_segments(e.text or "", e.tokens))
        rows.append(f'<div class="passage">{head}<div>{body}</div></div>')
    legend = ('<p class="legend">Shading: <span style="background:rgba(46,160,67,.8)">adds to the score</span> '
              '<span style="background:rgba(214,69,65,.8)">takes away</span> (hover a token for its value).</p>')
    return (f"<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>{escape(title)}</title>"
            f"<style>{_STYLE}</style></head><body><h1>{escape(title)}</h1><p><b>Query:</b> {escape(query)}</p>"
            f'<p class="meta">{escape(meta)}</p>{legend}{"".join(rows)}</body></html>\n')


def _wrapped_pieces(pieces: Sequence[tuple[str, float | None]], width: int) -> list[list[tuple[int, str, float | None]]]:
    """Shaded pieces laid out in lines of at most ``width`` characters: (column, text, value) per line,
    broken at spaces where a piece allows it."""
    lines: list[list[tuple[int, str, float | None]]] = [[]]
    column = 0
    for piece, value in pieces:
        for word in piece.replace("\n", " ").split(" "):
            chunk = word if column == 0 or not lines[-1] else " " + word
            if column + len(chunk) > width and column > 0:
                lines.append([])
                column, chunk = 0, word
            while len(chunk) > width:  # a very long token: hard wrap
                lines[-1].append((column, chunk[:width], value))
                lines.append([])
                column, chunk = 0, chunk[width:]
            if chunk:
                lines[-1].append((column, chunk, value))
                column += len(chunk)
    return lines


def plot_explanations(query: str, explanations: Sequence[PassageExplanation], path, top: int = 10,
                      width: int = 96) -> str:
    """A figure for reports: the best ``top`` passages as text, each token shaded by its contribution (green
    adds to the score, red takes away), wrapped at ``width`` characters, so any passage length stays readable.
    Returns the path written (``.png`` is added when ``path`` has no extension)."""
    import textwrap
    from pathlib import Path

    plt = pyplot()

    shown = [e for e in explanations if e.tokens][:top]
    if not shown:
        raise ValueError("no non-empty passage to plot")
    out = Path(path)
    out = out.with_suffix(".png") if not out.suffix else out
    values = [abs(t.contribution) for e in shown for t in e.tokens if t.start is not None]
    scale = max(values) if values and max(values) > 0 else 1.0
    blocks = [(e, _wrapped_pieces(shaded_segments(e.text or "", e.tokens), width)) for e in shown]
    title = textwrap.wrap(f"Query: {query}", width)
    rows = len(title) + sum(len(lines) + 2 for _, lines in blocks) + 1
    char_inches = 0.602 * 8 / 72  # advance of one DejaVu Sans Mono character at 8 pt: columns line up
    fig = plt.figure(figsize=((width + 2) * char_inches, 0.2 * rows + 0.3))
    ax = fig.add_axes((0, 0, 1, 1))
    ax.set_xlim(-1, width + 1)
    ax.set_ylim(rows, 0)
    ax.axis("off")
    cmap = plt.get_cmap("RdYlGn")
    y = 0.8
    for line in title:
        ax.text(0, y, line, family="monospace", fontsize=9, weight="bold", va="center")
        y += 1
    for e, lines in blocks:
        y += 0.6
        ax.text(0, y, _plot_heading(e), family="monospace", fontsize=8, color="#444", va="center")
        y += 1
        for line in lines:
            for column, text, value in line:
                shade = None if value is None else cmap(0.5 + 0.5 * max(-1.0, min(1.0, value / scale)))
                ax.text(column, y, text, family="monospace", fontsize=8, va="center",
                        bbox=None if shade is None else {"facecolor": shade, "edgecolor": "none", "pad": 0.6})
            y += 1
    fig.savefig(out, dpi=130)
    plt.close(fig)
    return str(out)


def _plot_heading(e: PassageExplanation) -> str:
    if e.fused_score is not None:
        return (f"#{e.rank}  input {e.corpus_id + 1}  ranking score {e.fused_score:.4g} (attention rank "
                f"{e.attention_rank}, input rank {e.first_stage_rank}, w={e.fusion_weight:g})  attention score "
                f"{e.score:.4g}" + ("  [truncated]" if e.truncated else ""))
    return f"#{e.rank}  input {e.corpus_id + 1}  score {e.score:.4g}" + ("  [truncated]" if e.truncated else "")
