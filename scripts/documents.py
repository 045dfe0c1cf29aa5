"""Numbers in the documents from one source: regenerate (``--write``) or check (default) the generated blocks.

A block in README.md, RESULTS.md, BENCHMARKS.md or a chapter of docs/research/ is the text between
``<!-- generated: NAME -->`` and ``<!-- /generated -->``; NAME is one of ``GENERATORS``, each built from recorded
result files (``results/``) or the shipped presets' cards (themselves written from recorded runs).
``tests/test_documents.py`` runs the check, so a number edited by hand in a block fails the suite.

    PYTHONPATH=src python scripts/documents.py          # check: exit 1 and name every stale block
    PYTHONPATH=src python scripts/documents.py --write  # rewrite the blocks
"""

from __future__ import annotations

import argparse
import os
import re
import sys
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]  # where the documents are (a test points it elsewhere)
RESULTS = Path(__file__).resolve().parents[1] / "results"  # recorded results: always the repository's
DOCUMENTS = ("README.md", "RESULTS.md", "BENCHMARKS.md", *sorted(f"docs/research/{p.name}" for p in
                                                             (ROOT / "docs" / "research").glob("*.md")))
BLOCK = re.compile(r"(<!-- generated: ([\w-]+) -->\n)(.*?)(<!-- /generated -->)", re.S)


def printed(script: str, *args: str) -> str:
    """A block another script owns, as that script prints it (scripts run each other, never import each other)."""
    import subprocess

    here = Path(__file__).resolve().parent
    done = subprocess.run([sys.executable, str(here / f"{script}.py"), *args], capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": str(here.parent / "src")})
    if done.returncode:
        raise SystemExit(f"scripts/{script}.py {' '.join(args)} failed:\n{done.stderr[-2000:]}")
    return done.stdout


def domain_table() -> str:
    return printed("domain_table", "table")


def zero_label() -> str:
    return printed("domain_table", "zero-label")


def long_lists() -> str:
    return printed("long_lists", "table")


def build_choice() -> str:
    """RESULTS.md's table of build-preset's inference choice: the validation rows of cards chosen that way."""
    from headrank.engine.presets import list_presets

    lines, header = [], None
    for preset in list_presets():
        rows = preset.card.get("validation", [])
        if not rows or any(len(r["ndcg@10"]) != 1 for r in rows):  # the default's rows are the five-domain choice
            continue
        values = [next(iter(r["ndcg@10"].values())) for r in rows]
        best = max(range(len(values)), key=lambda i: (values[i], -i))
        if header is None:
            header = [r["setting"] for r in rows]
            lines += [f"| {next(iter(rows[0]['ndcg@10']))}, nDCG@10 | " + " | ".join(header) + " |",
                      "|---" * (len(header) + 1) + "|"]
        cells = [f"**{v:.4f}**" if i == best else f"{v:.4f}" for i, v in enumerate(values)]
        lines.append(f"| `{preset.name}` | " + " | ".join(cells) + " |")
    if not lines:
        return "No shipped preset takes its inference settings from build-preset's choice now.\n"
    return "\n".join(lines) + "\n"


def deep_rule() -> str:
    return printed("long_lists", "deep-rule")


def presets_table() -> str:
    """README's preset table: four-set nDCG@10 and CPU latency per preset, from the model cards."""
    from headrank.engine.presets import DEFAULT_PRESET, list_presets

    lines = ["| preset | base model | inference settings | nDCG@10, four sets | BM25 | ICR (same model) | "
             "s per list, N = 20 (2-core CPU) |", "|---|---|---|---|---|---|---|"]
    for preset in sorted(list_presets(), key=lambda p: p.name != DEFAULT_PRESET):
        head = preset.headline
        latency = {row["method"].split(" ")[0]: row["seconds_per_list"] for row in preset.card["latency"]}
        mine = latency.get(preset.name, next(iter(latency.values())))
        others = "; ".join(f"{name} {s:.2f}" for name, s in latency.items() if name != preset.name)
        name = f"**`{preset.name}`** (default)" if preset.name == DEFAULT_PRESET else f"`{preset.name}`"
        lines.append(f"| {name} | {preset.card.get('base_model_name', preset.base_model)} | "
                     f"{preset.inference.describe()} | **{head['preset']:.4f}** | {head['bm25']:.4f} | "
                     f"{head['icr']:.4f} | {mine:.2f} ({others}) |")
    return "\n".join(lines) + "\n"


def presets_latency() -> str:
    """BENCHMARKS.md's shipped-presets speed table: each card's recorded latency run (one process per preset)."""
    from headrank.engine.presets import DEFAULT_PRESET, list_presets

    lines = ["| preset (base model) | HeadRank preset (s / list) | ICR (s / list; preset / ICR) | generative listwise (s / list; "
             "generative / preset) | generative: formatting success | generative: answers = input order | generative: decoded "
             "tokens per window | also in the run |", "|---|---|---|---|---|---|---|---|"]
    for preset in sorted(list_presets(), key=lambda p: p.name != DEFAULT_PRESET):
        rows = preset.card["latency"]
        mine = next(r for r in rows if r["method"].startswith(preset.name))
        icr = next(r for r in rows if r["method"].startswith("ICR"))
        gen = next(r for r in rows if r["method"].startswith("generative"))
        others = "; ".join(f"{r['method']}: {r['seconds_per_list']:.2f} s "
                           f"({r['seconds_per_list'] / icr['seconds_per_list']:.2f}x ICR)"
                           for r in rows if r not in (mine, icr, gen)) or "-"
        lines.append(f"| `{preset.name}` ({preset.card.get('base_model_name', preset.base_model)}) | "
                     f"{mine['seconds_per_list']:.2f} | {icr['seconds_per_list']:.2f} "
                     f"({mine['seconds_per_list'] / icr['seconds_per_list']:.2f}x) | {gen['seconds_per_list']:.2f} "
                     f"({gen['seconds_per_list'] / mine['seconds_per_list']:.2f}x) | {gen['formatting_success']:.0%} | "
                     f"{gen['identity_share']:.0%} | {gen['tokens_per_window']:.1f} | {others} |")
    return "\n".join(lines) + "\n"


def presets_quality() -> str:
    """RESULTS.md's preset table: every quality row of every shipped preset's card (recorded evaluate runs)."""
    from headrank.engine.presets import DEFAULT_PRESET, list_presets

    lines = ["| preset | setting | dl19 | dl20 | noveleval | nfcorpus | average of four |", "|---|---|---|---|---|---|---|"]
    for preset in sorted(list_presets(), key=lambda p: p.name != DEFAULT_PRESET):
        name = f"**`{preset.name}`** (default)" if preset.name == DEFAULT_PRESET else f"`{preset.name}`"
        for row in preset.card["quality"]:
            v = row["ndcg@10"]
            lines.append(f"| {name} | {row['method']} | {v['dl19']:.4f} | {v['dl20']:.4f} | {v['noveleval']:.4f} | "
                         f"{v['nfcorpus']:.4f} | {v['average']:.4f} |")
    return "\n".join(lines) + "\n"


def presets_validation() -> str:
    """RESULTS.md's per-domain table: each shipped preset's validation rows from its card (written from the
    recorded choice: results/fusion-forms-qwen-on-base.json, results/robust-choice-smol.json)."""
    from headrank.engine.presets import DEFAULT_PRESET, list_presets

    lines, header = [], None
    for preset in sorted(list_presets(), key=lambda p: p.name != DEFAULT_PRESET):
        rows = preset.card.get("validation", [])
        if not rows or len(rows[0]["ndcg@10"]) < 2:
            continue
        if header is None:
            header = list(rows[0]["ndcg@10"])
            lines += ["| preset | setting | " + " | ".join(header) + " |", "|---" * (len(header) + 2) + "|"]
        for row in rows:
            cells = [f"{row['ndcg@10'][h]:.4f}" for h in header]
            lines.append(f"| `{preset.name}` | {row['setting']} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def presets_reading() -> str:
    """RESULTS.md's reading of the presets' table: where each preset, and its heads alone, stand against BM25, and
    per set the paired sign-flip p of the preset against BM25 (20,000 flips) where per-query values are recorded."""
    import json

    from headrank.engine.presets import DEFAULT_PRESET, list_presets
    from headrank.eval.compare import sign_flip_p_value

    names = {"dl19": "DL19", "dl20": "DL20", "noveleval": "NovelEval", "nfcorpus": "NFCorpus test"}

    def sets(row: dict, bm25: dict, above: bool) -> str:
        return ", ".join(names[s] for s in names if (row[s] > bm25[s]) == above) or "none"

    def p_values(preset: str) -> str:
        out = []
        mine_all = json.loads(printed("card_quality", "per-query", preset, "this preset"))
        first_all = json.loads(printed("card_quality", "per-query", preset, "BM25"))
        for s, label in names.items():
            mine, first = mine_all[s], first_all[s]
            if mine is None or first is None:
                return "per-query values not recorded"
            out.append(f"{label} {sign_flip_p_value([mine[q] - first[q] for q in first], 20000, 0):.3f}")
        return "p against BM25 per query: " + ", ".join(out)

    lines = []
    for preset in sorted(list_presets(), key=lambda p: p.name != DEFAULT_PRESET):
        rows = preset.card["quality"]
        mine, alone = rows[0]["ndcg@10"], rows[1]["ndcg@10"]
        bm25 = next(r for r in rows if r["method"] == "BM25")["ndcg@10"]
        gains = [mine[s] - bm25[s] for s in names]
        lines.append(f"- `{preset.name}`: above BM25 on {sets(mine, bm25, True)} (below on {sets(mine, bm25, False)}), "
                     f"by {min(gains):+.4f} to {max(gains):+.4f} ({p_values(preset.name)}); its heads alone (no fusion, "
                     f"no valve) are above BM25 on {sets(alone, bm25, True)} and below on {sets(alone, bm25, False)}.")
    return "\n".join(lines) + "\n"


def presets_sources() -> str:
    """RESULTS.md's list of the recorded file and command behind every row of the presets' quality table."""
    import json

    from headrank.engine.presets import DEFAULT_PRESET, list_presets

    lines = []
    for preset in sorted(list_presets(), key=lambda p: p.name != DEFAULT_PRESET):
        spec = json.loads((Path(__file__).resolve().parent / "cards" / f"quality-{preset.name}.json").read_text())
        lines.append(f"- `{preset.name}`:")
        lines += [f"  - {row['method']}: **not yet in `results/`**: {row['pending']}" if row.get("pending")
                  else f"  - {row['method']}: `{row['source']}`; {row['command']}" for row in spec["rows"]]
    return "\n".join(lines) + "\n"


def on_base_reporting() -> str:
    """RESULTS.md's reporting rows of the adapter-free default beside the version it replaced, from
    results/fusion-forms-qwen-on-base.json (fusion_forms.py --reporting --reporting-against)."""
    import json

    whole = json.loads((RESULTS / "fusion-forms-qwen-on-base.json").read_text())
    record, valve = whole["reporting"], whole["rrf+zscore"]["setting"]["valve"]
    names = {"dl19": "DL19", "dl20": "DL20", "noveleval": "NovelEval", "nfcorpus": "NFCorpus test"}
    lines = ["| set | BM25 | replaced default (adapter, its valve) | no adapter, chosen valve "
             f"(`{valve['signal']} < {valve['threshold']:.3f}`): nDCG@10, minus replaced (p) | no adapter, the "
             "replaced valve (not chosen; p against the chosen) |",
             "|---|---|---|---|---|"]
    for key, name in names.items():
        r = record[key]
        lines.append(f"| {name} | {r['bm25']:.4f} | {r['preset']:.4f} | **{r['chosen']:.4f}**, "
                     f"{r['chosen'] - r['preset']:+.4f} ({r['p_preset']:.2f}) | {r['shipped']:.4f} ({r['p']:.2f}) |")
    mean = {k: sum(record[s][k] for s in names) / len(names) for k in ("bm25", "preset", "chosen", "shipped")}
    lines.append(f"| four sets | {mean['bm25']:.4f} | {mean['preset']:.4f} | **{mean['chosen']:.4f}**, "
                 f"{mean['chosen'] - mean['preset']:+.4f} | {mean['shipped']:.4f} |")
    return "\n".join(lines) + "\n"


def int8_quality() -> str:
    return printed("int8_tables", "--print", "quality")


def int8_speed() -> str:
    return printed("int8_tables", "--print", "speed")


def int8_parts() -> str:
    return printed("int8_tables", "--print", "parts")


def int8_headline() -> str:
    return printed("int8_tables", "--print", "headline")


def default_headline() -> str:
    """README's status sentence on the default preset, from its card."""
    from headrank.engine.presets import DEFAULT_PRESET, FAST_PRESET, load_preset

    preset, fast = load_preset(DEFAULT_PRESET), load_preset(FAST_PRESET)
    head = preset.headline
    return (f"{head['preset']:.4f} nDCG@10 over DL19, DL20, NovelEval and NFCorpus against BM25's {head['bm25']:.4f} "
            f"and ICR's {head['icr']:.4f} (the fast `{FAST_PRESET}`: {fast.headline['preset']:.4f}).\n")


def ray_serve_bench() -> str:
    """BENCHMARKS.md's table of one process vs Ray Serve with 1 and 2 replicas (results/ray-serve-bench.json)."""
    import json

    run = json.loads((RESULTS / "ray-serve-bench.json").read_text())
    load = "; ".join(f"load average {run[k]:.2f} at the {k.rsplit('_', 1)[1]}" for k in
                     ("load_average_at_start", "load_average_at_end") if k in run)
    lines = [f"Command: `{run['command']}` ({run['machine']}; {load}; {run['passages']} DL19 passages per "
             f"request, {run['concurrency']} concurrent clients).",
             "", "| setup | requests | errors | p50 (s) | p95 (s) | requests/s | vs one process | same order |",
             "|---|---|---|---|---|---|---|---|"]
    for r in run["rows"]:
        lines.append(f"| {r['setup']} | {r['requests']} | {r['errors']} | {r['p50_s']:.2f} | {r['p95_s']:.2f} | "
                     f"{r['requests_per_s']:.3f} | {r['throughput_vs_one_process']:.2f}x | "
                     f"{'yes' if r['same_order_as_one_process'] else 'NO'} |")
    return "\n".join(lines) + "\n"


def relevance_calibration() -> str:
    """RESULTS.md's table of each shipped preset's relevance calibration (results/relevance-*.json)."""
    import json

    lines = ["| preset | P(relevant) = sigmoid(a * score * passages + b) | lists / passages (relevant) | held-out "
             "ECE | held-out Brier (base rate) | worst set's ECE | command |", "|---|---|---|---|---|---|---|"]
    for path in sorted(RESULTS.glob("relevance-*.json")):
        run = json.loads(path.read_text())
        cal, held = run["calibration"], run["held_out_two_folds"]
        worst = max(run["per_set"].items(), key=lambda item: item[1]["ece"])
        lines.append(f"| {run['model']} | a = {cal['slope']:.4f}, b = {cal['intercept']:.4f} | {cal['lists']} / "
                     f"{cal['pairs']} ({cal['positives']}) | {held['ece']:.4f} | {held['brier']:.4f} "
                     f"({held['brier_base_rate']:.4f}) | {worst[0]} {worst[1]['ece']:.4f} | `{run['command']}` |")
    return "\n".join(lines) + "\n"


def batched_vs_solo() -> str:
    """README's sentence on batched vs alone scores (results/batched-vs-solo.json)."""
    import json

    run = json.loads((RESULTS / "batched-vs-solo.json").read_text())
    parts = [f"`{r['preset']}` at most {r['max_abs_difference']:.2g}"
             + ("" if r["same_order"] else " (ORDER DIFFERS)") for r in run["rows"]]
    same = all(r["same_order"] for r in run["rows"])
    return (f"Batched scores differ from the same lists ranked alone by float summation order only: "
            f"{' and '.join(parts)} ({run['lists']} DL21 lists of {min(run['passages'])}-{max(run['passages'])} "
            f"passages in one padded batch, {run['device']}; {'the same order every time' if same else 'see the file'};"
            f" `{run['command']}`).\n")


GENERATORS: dict[str, Callable[[], str]] = {"batched-vs-solo": batched_vs_solo, "presets-validation": presets_validation,
                                            "presets-sources": presets_sources, "presets-reading": presets_reading,
                                            "relevance-calibration": relevance_calibration, "domain-table": domain_table,
                                            "presets-table": presets_table,
                                            "default-headline": default_headline, "presets-quality": presets_quality,
                                            "long-lists": long_lists, "build-choice": build_choice,
                                            "deep-rule": deep_rule, "presets-latency": presets_latency,
                                            "zero-label": zero_label, "on-base-reporting": on_base_reporting,
                                            "int8-quality": int8_quality, "int8-speed": int8_speed,
                                            "int8-headline": int8_headline, "int8-parts": int8_parts,
                                            "ray-serve-bench": ray_serve_bench}


def stale_blocks(write: bool = False) -> list[str]:
    """Names (``FILE: NAME``) of blocks whose text differs from their generator's; rewrites them with ``write``."""
    stale = []
    for name in DOCUMENTS:
        path = ROOT / name
        text = path.read_text(encoding="utf-8")

        def fresh(match: re.Match, name: str = name) -> str:
            block = match.group(2)
            if block not in GENERATORS:
                raise SystemExit(f"{name}: unknown generated block {block!r}; known: {', '.join(GENERATORS)}")
            body = GENERATORS[block]()
            if body != match.group(3):
                stale.append(f"{name}: {block}")
            return match.group(1) + body + match.group(4)

        new = BLOCK.sub(fresh, text)
        if write and new != text:
            path.write_text(new, encoding="utf-8")
    return stale


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--write", action="store_true")
    args = parser.parse_args()
    stale = stale_blocks(args.write)
    if stale and not args.write:
        print("stale generated blocks (run scripts/documents.py --write):\n  " + "\n  ".join(stale))
        sys.exit(1)
    print("rewrote: " + ", ".join(stale) if stale else "every generated block is up to date")


if __name__ == "__main__":
    main()
