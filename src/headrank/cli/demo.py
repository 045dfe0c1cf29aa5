"""``headrank demo``: the default preset on a real first-stage list (one TREC DL19 query's BM25 top 20, read from
the benchmark data when it is there) with judgments and nDCG@10, then on a built-in example in both orders."""

from __future__ import annotations

import time

from rich.console import Console
from rich.table import Table
from rich.text import Text

from headrank.cli import options
from headrank.cli.common import fail, load_ranker, ranker_label, setup_logging, user_errors
from headrank.cli.output import plain
from headrank.defaults import DEFAULT_PRESET
from headrank.methods import BASELINES, names

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
REAL_DEPTH, SHOWN = 20, 5
GRADES = "TREC's grades: 3 perfectly relevant, 2 highly relevant, 1 related, 0 not relevant."
TRY_NEXT = [
    "Try next:",
    "  .venv/bin/headrank rerank ../shared/data/msmarco-passage/dl19/bm25-top100.json --depth 20"
    "   # every DL19 query's BM25 top 20",
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
    """Show the default HeadRank preset reranking a real BM25 list and a built-in example.

    First one TREC DL19 query's BM25 top 20 (the first judged query, from the benchmark data under
    ``$HEADRANK_DATA`` or ``../shared/data``; skipped with a note when absent): BM25's and HeadRank's top 5 with
    their relevance grades and the list's nDCG@10 in both orders. Then the built-in example in BM25's order,
    the preset's (fused) order and the model's order alone.
    """
    setup_logging()
    if method is not None and method.value in names(BASELINES):
        fail("the demo runs icr or the preset's heads; use `headrank rerank --method ...` for the baselines")
    with user_errors():
        ranker = load_ranker(model, method, device=device)
    console = Console()
    console.print(Text(f"HeadRank demo: {ranker_label(ranker)}\n", style="bold"))
    real_list(ranker, console)
    built_in_example(ranker, console)
    _say(console, "\n".join(TRY_NEXT))


def _say(console: Console, text: str) -> None:
    console.print(text, markup=False, highlight=False, soft_wrap=True)


def orders(ranker, query: str, docs: list[str]) -> tuple[list[int], list[int], bool, float]:
    """Input indices in the preset's order (its fusion and valve) and in the model's order alone, from one
    forward; whether the valve fired; the seconds it took."""
    from headrank.engine.results import ListJob

    started = time.perf_counter()
    raw = ranker.score(query, docs, fuse_first_stage=0, safety_valve=False)
    elapsed = time.perf_counter() - started
    job = ListJob.make(query, docs, 0)
    job.scores = [raw[i] for i in job.kept]
    ranking = job.ranking(None, True, ranker.settings_for())
    alone = sorted(range(len(docs)), key=lambda i: (-raw[i], i))  # empty passages (-inf) last
    return [r.corpus_id for r in ranking], alone, ranking.valve_fired, elapsed


def real_list(ranker, console: Console) -> None:
    """BM25's and HeadRank's top 5 of a real list, with grades, and nDCG@10 of BM25, the preset and the model."""
    from headrank.data.benchmarks import first_judged_list
    from headrank.eval.evaluate import order_ndcg

    try:
        example = first_judged_list("dl19", REAL_DEPTH)
    except (FileNotFoundError, ValueError) as err:
        _say(console, f"1) A real search: skipped, the TREC DL19 data is not here ({err}).\n")
        return
    preset, alone, fired, elapsed = orders(ranker, example.query, example.texts)
    table = Table(title=f"1) A real search: {example.source}\nQuery: {example.query}", title_justify="left")
    for column in ("#", "BM25 (the first stage)", "grade", "HeadRank (this preset)", "grade ", "BM25 had it"):
        table.add_column(column, overflow="fold")
    for i in range(min(SHOWN, len(example.docids))):
        b, h = example.docids[i], example.docids[preset[i]]
        table.add_row(str(i + 1), Text(plain(example.texts[i], 70)), example.label(b),
                      Text(plain(example.texts[preset[i]], 70)), example.label(h), f"#{preset[i] + 1}")
    console.print(table)
    ndcg = {name: order_ndcg(example.grades, [example.docids[i] for i in order])
            for name, order in (("bm25", range(len(example.docids))), ("preset", preset), ("alone", alone))}
    _say(console, f"{GRADES}\nnDCG@10 of this list: BM25 {ndcg['bm25']:.4f} -> HeadRank {ndcg['preset']:.4f} "
                  f"(this preset's order{', the safety valve fired' if fired else ''}); the model alone "
                  f"{ndcg['alone']:.4f}. One query: the benchmark averages are in RESULTS.md. "
                  f"({elapsed:.1f} s for {len(example.docids)} passages)\n")


def built_in_example(ranker, console: Console) -> None:
    """The built-in example's passages, then BM25's, the preset's and the model's own order, one line each."""
    from headrank.data.bm25 import bm25_search

    corpus = {str(i + 1): p for i, p in enumerate(DEMO_PASSAGES)}
    first_stage = [docid for docid, _ in bm25_search(corpus, {"demo": DEMO_QUERY}, len(corpus))["demo"]]
    preset, alone, fired, _ = orders(ranker, DEMO_QUERY, [corpus[d] for d in first_stage])
    lines = [f"2) A built-in example: \"{DEMO_QUERY}\" over {len(corpus)} passages (numbered as written):"]
    lines += [f"   {d}. {plain(text, 90)}" for d, text in corpus.items()]
    settings = ranker.settings_for()
    fused = settings.fuse_first_stage or fired
    lines += ["BM25's order (the first stage), best first:        " + ", ".join(first_stage),
              ("HeadRank fused with BM25 (this preset's setting):  " if fused
               else "HeadRank (this preset's setting, no fusion):     ") + ", ".join(first_stage[i] for i in preset),
              "HeadRank, the model alone (no fusion):             " + ", ".join(first_stage[i] for i in alone)]
    if fused:
        lines.append(f"The preset fuses the model's ranking with BM25's ({settings.describe()}) so that it does not "
                     "make a first stage worse on a new domain; where the two disagree by little, BM25's order "
                     "stays" + (" (here the safety valve kept BM25's order)" if fired else "") + ". "
                     "`headrank rerank --fuse-first-stage 0 --no-safety-valve` ranks by the model alone.")
    _say(console, "\n".join(lines) + "\n")
