"""``headrank demo``: BM25 over a built-in example, then the default preset, printed side by side."""

from __future__ import annotations

import time

from rich.console import Console

from headrank.cli import options
from headrank.cli.common import fail, load_ranker, ranker_label, setup_logging, user_errors
from headrank.cli.output import Output, print_results
from headrank.defaults import BASELINE_METHODS, DEFAULT_PRESET

DEMO_QUERY = "How do vaccines train the immune system?"
DEMO_PASSAGES = [  # a keyword search's typical mistake: the "trains ... system" passage shares the most words
    "The Great Wall of China stretches for thousands of kilometres across northern China.",
    "Vaccines expose the immune system to a harmless piece or weakened form of a pathogen, so that it "
    "learns to produce antibodies and memory cells that recognise the real pathogen later.",
    "Sourdough bread rises because wild yeast and lactic acid bacteria ferment the dough.",
    "Memory B and T cells formed after vaccination let the body respond faster and more strongly when it "
    "meets the actual virus.",
    "The stock market fell sharply on Tuesday after new inflation figures were released.",
    "Photosynthesis converts light energy into chemical energy stored in glucose.",
    "A booster shot teaches the body's defences to recognise a virus protein, so antibodies are ready before "
    "infection.",
    "How do trains system work? The city train system trains drivers; the immune-to-delay timetable explained.",
]
TRY_NEXT = [
    "Try next:",
    "  .venv/bin/headrank rerank ../shared/data/msmarco-passage/dl19/bm25-top100.json --depth 20"
    "   # a real query's BM25 top 20",
    "  .venv/bin/headrank explain candidates.jsonl -q 'your query' --html why.html"
    "   # which tokens earned each score",
    "  .venv/bin/headrank serve   # Cohere / Jina / TEI rerank API on http://127.0.0.1:8000 (playground at /)",
    "  (or 'source .venv/bin/activate' once, then plain 'headrank ...')",
]


def demo(
    model: options.Model = DEFAULT_PRESET,
    method: options.Method = None,
    device: options.Device = "auto",
) -> None:
    """Rerank a built-in example with the default HeadRank preset and print the ranking.

    The example's eight passages first go through BM25 (the first stage a preset's fusion expects), then
    through the reranker; the table shows both positions.
    """
    setup_logging()
    if method is not None and method.value in BASELINE_METHODS:
        fail("the demo runs icr or the preset's heads; use `headrank rerank --method ...` for the baselines")
    with user_errors():
        ranker = load_ranker(model, method, device=device)
    from headrank.firststage import bm25_search

    corpus = {str(i + 1): p for i, p in enumerate(DEMO_PASSAGES)}
    first_stage = [docid for docid, _ in bm25_search(corpus, {"demo": DEMO_QUERY}, len(corpus))["demo"]]
    results, heads_alone, elapsed = demo_rankings(ranker, [corpus[d] for d in first_stage])
    console = Console()
    title = (f"{DEMO_QUERY}  (BM25 over {len(corpus)} passages, then {ranker_label(ranker)}, {elapsed:.2f} s; "
             "'input #' is the BM25 rank, 'docid' the example's passage number)")
    print_results(results, first_stage, None, Output.table, "demo", console, title)
    console.print("\n".join(what_moved(results, heads_alone, first_stage)), markup=False, highlight=False,
                  soft_wrap=True)
    console.print("\n".join(TRY_NEXT), markup=False, highlight=False, soft_wrap=True)


def demo_rankings(ranker, docs: list[str]):
    """The demo's ranking in the ranker's own settings and the heads' order alone, from one forward."""
    from headrank.results import ListJob

    started = time.perf_counter()
    raw = ranker.score(DEMO_QUERY, docs, fuse_first_stage=0, safety_valve=False)
    elapsed = time.perf_counter() - started
    job = ListJob.make(DEMO_QUERY, docs, 0)
    job.scores = [raw[i] for i in job.kept]
    ranking = job.ranking(None, True, ranker.settings_for())
    heads_alone = sorted(range(len(docs)), key=lambda i: (-raw[i], i))  # empty passages (-inf) last
    return ranking, heads_alone, elapsed


def what_moved(results, heads_alone: list[int], first_stage: list[str]) -> list[str]:
    """Which passages the reranker moved, the heads' own order, and why fusion keeps BM25's order."""
    moved = [f"{first_stage[r.corpus_id]} ({r.corpus_id + 1} -> {r.rank})" for r in results if r.rank != r.corpus_id + 1]
    lines = [f"Moved against BM25 (passage: BM25 rank -> HeadRank rank): {', '.join(moved) or 'none'}",
             "The heads alone, before fusion with BM25 (docids, best first): "
             + ", ".join(first_stage[i] for i in heads_alone)]
    settings = results.settings
    if settings.fuse_first_stage or results.valve_fired:
        lines.append(f"This preset fuses the heads' ranking with BM25's ({settings.describe()}): chosen so that it "
                     "does not make a first stage worse on a new domain, it keeps BM25's order where the two "
                     "disagree by little" + ("; here the safety valve kept BM25's order" if results.valve_fired
                                              else "") + ". `headrank rerank --fuse-first-stage 0 "
                     "--no-safety-valve` ranks by the heads alone.")
    return lines
