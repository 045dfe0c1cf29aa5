"""The int8 tables of RESULTS.md and BENCHMARKS.md and README's int8 sentence, from their recorded results.

``results/int8-quality-qwen.json`` (``scripts/int8_quality.py --summary``): per query nDCG@10 of the default in
float32 and int8, paired per set. ``results/cpu-int8-bench.json`` (``benchmarks/cpu_int8.py``): one run's speed,
peaks, memory and cold starts. ``scripts/documents.py`` puts these tables into the documents and checks them.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

RESULTS = Path(__file__).resolve().parents[1] / "results"
QUALITY = RESULTS / "int8-quality-qwen.json"
SPEED = RESULTS / "cpu-int8-bench.json"
PARTS = RESULTS / "int8-parts.json"
NAMES = {"dl19": "DL19", "dl20": "DL20", "noveleval": "NovelEval", "nfcorpus": "NFCorpus test",
         "dl21": "DL21 val", "nfcorpus-dev": "NFCorpus dev", "cranfield": "Cranfield", "cisi": "CISI", "npl": "NPL"}
REPORTING = ("dl19", "dl20", "noveleval", "nfcorpus")
SETS = 9  # five validation domains and four reporting sets
TOLERANCE = 0.003  # the most a set may move for int8 to become the CPU default (and not significantly, p < 0.05)


def _done(sets: dict) -> int:
    """Sets scored on every planned list (a resumed run's partial set does not count)."""
    return sum(bool(r.get("complete", True)) for r in sets.values())


def gate(sets: dict) -> tuple[bool, list[str]]:
    """Does int8 pass the default's bar on every set? And which sets fail it, with why."""
    failing = []
    for name, r in sets.items():
        why = ([f"moved {r['diff']:+.4f}"] if abs(r["diff"]) > TOLERANCE else []) + \
              ([f"p {r['p_value']:.3f}"] if r["p_value"] < 0.05 else [])
        if why:
            failing.append(f"{NAMES.get(name, name)} ({', '.join(why)})")
    return not failing, failing


def quality_table() -> str:
    data = json.loads(QUALITY.read_text())
    sets = data["sets"]
    lines = ["| set (role) | queries | float32 nDCG@10 | int8 nDCG@10 | int8 - float32 | p (paired sign-flip) | "
             "queries whose nDCG@10 changed | valve fired (float32 / int8) |", "|---" * 8 + "|"]
    for name, r in sets.items():
        role = "reporting" if name in REPORTING else "validation"
        count = r["queries"] if r.get("complete", True) else f"{r['queries']} of {r['planned']} so far"
        lines.append(f"| {NAMES.get(name, name)} ({role}) | {count} | {r['float32']:.4f} | {r['int8']:.4f} | "
                     f"{r['diff']:+.4f} | {r['p_value']:.3f} | {r['queries_changed']} | "
                     f"{r['valve_fired']['float32']} / {r['valve_fired']['int8']} |")
    passed, failing = gate(sets)
    verdict = ("passes on every set: no set moves by more than 0.003 and none significantly" if passed
               else "fails on " + ", ".join(failing))
    if _done(sets) < SETS:
        verdict = (f"is not decided yet: {_done(sets)} of {SETS} sets are fully scored (the run is resumable); "
                   f"on those "
                   f"it {'passes' if passed else 'fails on ' + ', '.join(failing)}")
    lines.append("")
    lines.append(f"The default's bar for int8 (at most {TOLERANCE} nDCG@10 on every set, none with p < 0.05) "
                 f"{verdict}. Setting: {data['setting']}; int8 parts {', '.join(data['quantize']['parts'])} "
                 f"({data['quantize']['format']}), torch {data['torch']}.")
    return "\n".join(lines) + "\n"


def speed_table() -> str:
    data = json.loads(SPEED.read_text())
    s, r, ops = data["seconds_per_list"], data["ratio_to_float32"], data["operations"]
    names = {"float32": "default, float32", "int8": "default, int8 (MLP layers; shipped option)",
             "int8_every_linear": "default, int8 on every linear layer (not chosen)",
             "icr": "ICR (all heads, 24 layers, float32)",
             "plain_float32": "plain forward, same 18 layers, float32 (no capture)",
             "plain_int8": "plain forward, same 18 layers, int8 MLPs (no capture)"}
    lines = ["| method | s / list | vs default float32 | vs ICR |", "|---|---|---|---|"]
    for key, label in names.items():
        lines.append(f"| {label} | {s[key]:.2f} | {r[key]:.2f}x | {data['ratio_to_icr'][key]:.2f}x |")
    peak, m, mem, cold = data["gemm_peak"], data["machine"], data["memory"], data["cold_start_s"]
    lines += ["", f"Machine: {m['cpu']}, {m['cores']} cores, {m['threads']} torch threads, flags "
              f"{', '.join(m['flags']) or 'none of note'}, torch {m['torch']}; load average {m['load_before']:.2f} "
              f"before, {m['load_after']:.2f} after.",
              "",
              "| measure | float32 | int8 |", "|---|---|---|",
              f"| matrix-product peak of this CPU (best of the MLP shapes and 2048^3) | {peak['float32_gflops']:.0f} "
              f"GFLOP/s | {peak['int8_gops']:.0f} GOP/s |",
              f"| default: achieved operations per second ({ops['prefill_gop']:.0f} G per list, "
              f"{ops['tokens_per_list']:.0f} tokens) | {ops['float32_achieved_gops']:.0f} G/s | "
              f"{ops['int8_achieved_gops']:.0f} G/s |",
              f"| default: share of the machine's limit (time at the measured peaks / time taken) | "
              f"{ops['float32_share_of_peak']:.0%} | {ops['int8_share_of_peak']:.0%} |",
              f"| peak memory (RSS), load + one list, fresh process | {mem['none']['peak_mib']:.0f} MiB | "
              f"{mem['int8']['peak_mib']:.0f} MiB |",
              f"| memory held after that list (RSS) | {mem['none']['after_rank_rss_mib']:.0f} MiB | "
              f"{mem['int8']['after_rank_rss_mib']:.0f} MiB |",
              f"| cold start of `headrank rerank` on one list (process start to printed result, cached model) | "
              f"{cold['none']:.1f} s | {cold['int8']:.1f} s |"]
    lines += ["", "| one MLP linear layer (896 -> 4864, 1,600 tokens) | time vs float32 | relative error vs float32 |",
              "|---|---|---|"]
    for name, row in data["kernels"].items():
        lines.append(f"| {name} | {row['time_ratio']:.2f}x | {row['relative_error']:.4f} |")
    lines += ["", "| mode | threads | one `rank` per list (lists/s) | `rank_batch`, 4 lists per forward (lists/s) | "
              "batched / one at a time |", "|---|---|---|---|---|"]
    for row in data["throughput"]:
        one, batched = row["one_at_a_time_lists_per_s"], row["rank_batch4_lists_per_s"]
        lines.append(f"| {row['mode']} | {row['threads']} | {one:.3f} | {batched:.3f} | {batched / one:.2f}x |")
    return "\n".join(lines) + "\n"


def parts_table() -> str:
    data = json.loads(PARTS.read_text())
    labels = {"mlp": "MLP (gate, up, down): shipped", "self_attn": "attention (q, k, v, o)",
              "every linear": "every linear layer"}
    lines = ["| int8 parts | time vs float32 | relative score error | Spearman (mean / min) | top-10 overlap |",
             "|---|---|---|---|---|"]
    lines += [f"| {labels.get(r['parts'], r['parts'])} | {r['time_ratio']:.2f}x | {r['relative_error']:.3f} | "
              f"{r['spearman']:.3f} / {r['min_spearman']:.3f} | {r['top10_overlap']:.1f} |" for r in data["rows"]]
    return "\n".join(lines) + f"\n\nCommand: `{data['command']}`.\n"


def readme_sentence() -> str:
    speed, quality = json.loads(SPEED.read_text()), json.loads(QUALITY.read_text())
    passed, failing = gate(quality["sets"])
    diffs = [r["diff"] for r in quality["sets"].values()]
    verdict = ("so it is the default on CPU" if passed else
               "; it is an option, not the CPU default, because it misses the default's bar on "
               + ", ".join(failing))
    if _done(quality["sets"]) < SETS:
        return (f"`--quantize int8` (CPU) ranks a 20-passage list in {speed['ratio_to_float32']['int8']:.2f}x the "
                f"float32 time of the default (BENCHMARKS.md, 'int8 on CPU'); its quality against float32 is "
                f"measured on {_done(quality['sets'])} of {SETS} sets so far (RESULTS.md, 'int8 on CPU'), so it is "
                f"an option, not the CPU default.\n")
    return (f"`--quantize int8` (CPU) ranks a 20-passage list in {speed['ratio_to_float32']['int8']:.2f}x the "
            f"float32 time of the default (BENCHMARKS.md, 'int8 on CPU'); across the five validation domains and "
            f"four reporting sets its nDCG@10 moves by {min(diffs):+.4f} to {max(diffs):+.4f} (RESULTS.md, "
            f"'int8 on CPU'){', ' if passed else ''}{verdict}.\n")


def card_entry() -> dict:
    """The default's card section on int8, from the two recorded results (never typed by hand)."""
    speed, quality = json.loads(SPEED.read_text()), json.loads(QUALITY.read_text())
    passed, failing = gate(quality["sets"])
    ratio = speed["ratio_to_float32"]["int8"]
    role = ("It is this preset's CPU setting: no set moved by more than 0.003 nDCG@10 and none significantly."
            if passed else "It is an option, not this preset's CPU setting: it misses the bar for that (at most "
            "0.003 nDCG@10 on every set, none with p < 0.05) on " + ", ".join(failing) + ".")
    return {
        "summary": f"int8 MLP layers (weights per channel, activations per token; attention in float32) rank a "
                   f"20-passage list in {ratio:.2f}x the float32 time on the 2-core CPU of BENCHMARKS.md "
                   f"('int8 on CPU'). {role}",
        "sets": {NAMES.get(k, k) + ("" if k in REPORTING else " (validation)"):
                 {f: quality["sets"][k][f] for f in ("float32", "int8", "diff", "p_value")}
                 for k in sorted(quality["sets"], key=lambda k: k not in REPORTING)},
        "time_ratio": ratio,
        "default": passed,
        "source": "Quality: `PYTHONPATH=src python scripts/int8_quality.py --preset headrank-qwen2.5-coder-0.5b "
                  "--out runs/int8-quality-qwen.jsonl --summary results/int8-quality-qwen.json` (each list in both "
                  "modes in one process, this preset's fusion and valve, paired sign-flip test per "
                  "set). Speed: "
                  f"`{speed['command']}` (results/cpu-int8-bench.json). Card section: "
                  "`PYTHONPATH=src python scripts/int8_tables.py --card src/headrank/presets/headrank-qwen2.5-coder-0.5b`.",
    }


PRINTS = {"quality": quality_table, "speed": speed_table, "parts": parts_table, "headline": readme_sentence}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--card", type=Path, help="the preset folder whose card gets the section")
    parser.add_argument("--print", choices=sorted(PRINTS), help="print one generated block instead (scripts/documents.py)")
    args = parser.parse_args()
    if args.print:
        print(PRINTS[args.print](), end="")
        return
    if args.card is None:
        parser.error("give --card PRESET_FOLDER or --print BLOCK")
    from headrank.engine.checkpoint import CONFIG_NAME
    from headrank.learn.card import update_card

    if _done(json.loads(QUALITY.read_text())["sets"]) < SETS:
        raise SystemExit(f"{QUALITY} holds fewer than {SETS} sets: finish scripts/int8_quality.py first")
    entry = card_entry()
    config_path = args.card / CONFIG_NAME
    config = json.loads(config_path.read_text())
    if entry["default"]:
        config["quantize"] = "int8"
    else:
        config.pop("quantize", None)
    config_path.write_text(json.dumps(config, indent=2) + "\n")
    update_card(args.card, {"int8": entry})
    print(entry["summary"])


if __name__ == "__main__":
    main()
