"""How results look on a terminal: ranking and explanation tables, JSON and TREC lines (only the CLI prints)."""

from __future__ import annotations

import json
import math
from enum import Enum

from rich.console import Console
from rich.table import Table


class Output(str, Enum):
    table = "table"
    json = "json"
    trec = "trec"


class ExplainOutput(str, Enum):
    table = "table"
    json = "json"


def finite(x: float) -> float | None:
    return x if math.isfinite(x) else None


def print_results(results, docids, qid, output: Output, tag: str, console: Console, title: str) -> None:
    """A ranking as a table, JSON (``-inf`` as null) or TREC run lines."""
    if output is Output.json:
        rows = [{**r.to_dict(), "docid": docids[r.corpus_id], "score": finite(r.score)} for r in results]
        print(json.dumps({"qid": qid, "results": rows}, ensure_ascii=False, indent=2))
    elif output is Output.trec:
        from headrank.data import trec_lines

        print("\n".join(trec_lines(qid or "q", [(docids[r.corpus_id], r.score) for r in results], tag)))
    else:
        table = Table(title=title, show_lines=False)
        for col, justify in (("rank", "right"), ("score", "right"), ("input #", "right"), ("docid", "left")):
            table.add_column(col, justify=justify)
        table.add_column("passage", overflow="fold")
        for r in results:
            text = " ".join((r.text or "").split())
            table.add_row(str(r.rank), f"{r.score:.4f}", str(r.corpus_id + 1), docids[r.corpus_id],
                          text[:160] + ("…" if len(text) > 160 else ""))
        console.print(table)


def print_explanations(q: str, explanations, candidates, label: str) -> None:
    """The explanation table: the score that ranks, and with fusion its parts beside the attention score."""
    fused = any(e.fused_score is not None for e in explanations)
    table = Table(title=f"{q}  ({len(candidates)} passages, {label})")
    columns = ["rank", "ranking score (fused)", "attention rank", "input rank"] if fused else ["rank"]
    for col in (*columns, "attention score", "docid", "tokens that added most"):
        table.add_column(col)
    for e in explanations:
        best = sorted((t for t in e.tokens if t.start is not None), key=lambda t: -t.contribution)[:6]
        words = ", ".join(f"{(e.text or '')[t.start:t.end].strip() or t.token!r} {t.contribution:+.2g}" for t in best)
        score = f"{e.score:.4g}" if math.isfinite(e.score) else "empty"
        parts = ([f"{e.fused_score:.4g}", str(e.attention_rank), str(e.first_stage_rank)]
                 if fused and e.fused_score is not None else ["", "", ""] if fused else [])
        table.add_row(str(e.rank), *parts, score, candidates[e.corpus_id].docid, words)
    Console().print(table)


def explanations_json(explanations, candidates, qid, query: str, label: str) -> str:
    rows = [{**e.to_dict(), "docid": candidates[e.corpus_id].docid} for e in explanations]
    return json.dumps({"qid": qid, "query": query, "ranker": label, "results": rows}, ensure_ascii=False, indent=2)
