"""How results look on a terminal: ranking and explanation tables, JSON and TREC lines (only the CLI prints)."""

from __future__ import annotations

import json
import math
import unicodedata
from enum import Enum

from rich.console import Console
from rich.table import Table
from rich.text import Text


class Output(str, Enum):
    table = "table"
    json = "json"
    trec = "trec"


class ExplainOutput(str, Enum):
    table = "table"
    json = "json"


def finite(x: float) -> float | None:
    return x if math.isfinite(x) else None


def plain(text: str | None, limit: int = 160) -> str:
    """Passage text safe for a terminal: whitespace collapsed, control and format characters (escape
    sequences included) dropped, cut at ``limit`` characters with an ellipsis."""
    kept = "".join(ch for ch in (text or "") if ch.isspace() or unicodedata.category(ch) not in ("Cc", "Cf"))
    flat = " ".join(kept.split())
    return flat[:limit] + ("…" if len(flat) > limit else "")


def print_results(results, docids, qid, output: Output, tag: str, console: Console, title: str) -> None:
    """A ranking as a table, JSON (``-inf`` as null) or TREC run lines."""
    if output is Output.json:
        rows = [{**r.to_dict(), "docid": docids[r.corpus_id], "score": finite(r.score)} for r in results]
        out = {"qid": qid, "results": rows}
        settings = getattr(results, "settings", None)
        if settings is not None:  # what made the order: fusion, and whether the valve moved this list
            out["fuse_first_stage"] = settings.fuse_first_stage
            out["safety_valve"] = settings.safety_valve.to_dict() if settings.safety_valve else None
            out["valve_fired"] = bool(getattr(results, "valve_fired", False))
        print(json.dumps(out, ensure_ascii=False, indent=2))
    elif output is Output.trec:
        from headrank.data.formats import trec_lines

        print("\n".join(trec_lines(qid or "q", [(docids[r.corpus_id], r.score) for r in results], tag)))
    else:
        fired = getattr(results, "valve_fired", False)
        table = Table(title=Text(plain(title, 1000)), show_lines=False,
                      caption="safety valve fired: ranked closer to the input order" if fired else None)
        for col, justify in (("rank", "right"), ("score", "right"), ("input #", "right"), ("docid", "left")):
            table.add_column(col, justify=justify)
        table.add_column("passage", overflow="fold")
        for r in results:
            table.add_row(str(r.rank), f"{r.score:.4f}", str(r.corpus_id + 1), Text(plain(docids[r.corpus_id], 60)),
                          Text(plain(r.text)))  # Text: a passage's "[...]" is not Rich markup
        console.print(table)


def print_explanations(q: str, explanations, candidates, label: str) -> None:
    """The explanation table: the score that ranks, and with fusion its parts beside the attention score."""
    fused = any(e.fused_score is not None for e in explanations)
    table = Table(title=Text(f"{plain(q, 300)}  ({len(candidates)} passages, {label})"))
    columns = ["rank", "ranking score (fused)", "attention rank", "input rank"] if fused else ["rank"]
    for col in (*columns, "attention score", "docid", "tokens that added most"):
        table.add_column(col)
    for e in explanations:
        best = sorted((t for t in e.tokens if t.start is not None), key=lambda t: -t.contribution)[:6]
        words = ", ".join(f"{plain((e.text or '')[t.start:t.end], 40) or plain(repr(t.token), 40)} "
                          f"{t.contribution:+.2g}" for t in best)
        score = f"{e.score:.4g}" if math.isfinite(e.score) else "empty"
        parts = ([f"{e.fused_score:.4g}", str(e.attention_rank), str(e.first_stage_rank)]
                 if fused and e.fused_score is not None else ["", "", ""] if fused else [])
        table.add_row(str(e.rank), *parts, score, Text(plain(candidates[e.corpus_id].docid, 60)), Text(words))
    Console().print(table)


def explanations_json(explanations, candidates, qid, query: str, label: str) -> str:
    rows = [{**e.to_dict(), "docid": candidates[e.corpus_id].docid} for e in explanations]
    return json.dumps({"qid": qid, "query": query, "ranker": label, "results": rows}, ensure_ascii=False, indent=2)
