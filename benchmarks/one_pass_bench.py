"""One forward per list against the path it replaced (prefill the passages into a KV cache, then run the query
tail and the N/A tail over it: three forward segments), same model, same lists, same process.

    PYTHONPATH=src python benchmarks/one_pass_bench.py --model headrank-smollm2-135m --queries 5

Prints per-list seconds of both (median of ``--reps``), their ratio and the largest difference between their
captured masses. ``two_step_capture`` is also the reference that tests/test_capture.py checks the one-pass
capture against.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


def two_step_capture(model, prefixes: list[list[int]], tails: list[list[list[int]]], heads) -> list[list[torch.Tensor]]:
    """The replaced path: left-padded prefixes prefilled into a cache, then each tail batch over it (right
    padded, explicit positions), the cache cropped back after each. Returns masses ``out[t][b]``."""
    from transformers import DynamicCache

    from headrank.engine.capture import CaptureRequest, run_with_capture
    from headrank.engine.heads import group_by_layer

    by_layer = group_by_layer(heads)
    decoder = model.base_model
    device = next(model.parameters()).device
    width = max(map(len, prefixes))
    pads = [width - len(p) for p in prefixes]
    ids = torch.tensor([[0] * pad + p for pad, p in zip(pads, prefixes)], device=device)
    mask = torch.tensor([[0] * pad + [1] * len(p) for pad, p in zip(pads, prefixes)], device=device)
    cache = DynamicCache(config=model.config)
    stop = CaptureRequest(heads={}, stop_after=max(by_layer))
    run_with_capture(decoder, ids, mask, (mask.cumsum(-1) - 1).clamp(min=0), stop, cache)
    out = []
    for batch in tails:
        tw = max(map(len, batch))
        tids = torch.tensor([t + [0] * (tw - len(t)) for t in batch], device=device)
        tmask = torch.tensor([[1] * len(t) + [0] * (tw - len(t)) for t in batch], device=device)
        rows = torch.arange(tw, device=device).expand(len(batch), -1)
        weights = tmask.float() / tmask.sum(-1, keepdim=True)
        request = CaptureRequest(heads=by_layer, rows=rows, row_weights=weights, stop_after=max(by_layer))
        position = mask.sum(-1, keepdim=True) + torch.arange(tw, device=device)
        run_with_capture(decoder, tids, torch.cat([mask, tmask], -1), position, request, cache)
        cache.crop(-tw)
        out.append([torch.cat([request.mass[layer][b] for layer in sorted(by_layer)])[:, pads[b]:width].cpu()
                    for b in range(len(batch))])
    return out


def bench_parser(doc: str) -> argparse.ArgumentParser:
    """The options both CPU capture benchmarks share (this one and batch_layout_bench.py)."""
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("--model", default="headrank-smollm2-135m")
    parser.add_argument("--depth", type=int, default=20)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    return parser


def load_bench(args):
    """The preset on the CPU in float32 with ``--threads``, the DL19 BM25 lists, its heads, model and N/A tail."""
    from headrank.engine.prompt import CALIBRATION_QUERY
    from headrank.engine.ranker import HeadRanker

    torch.set_num_threads(args.threads)
    ranker = HeadRanker.from_pretrained(args.model, device="cpu", dtype="float32")
    entries = json.loads((DATA / "msmarco-passage" / "dl19" / "bm25-top100.json").read_text())
    return ranker, entries, list(ranker.heads.heads), ranker.model.model, ranker.builder.tail_ids(CALIBRATION_QUERY)


def alternate(fns: dict, reps: int, per: int = 1) -> dict[str, float]:
    """Median seconds of each function (divided by ``per``), timed in turn ``reps`` times so drift hits all."""
    times: dict[str, list[float]] = {}
    for _ in range(reps):
        for name, fn in fns.items():
            started = time.perf_counter()
            fn()
            times.setdefault(name, []).append((time.perf_counter() - started) / per)
    return {name: statistics.median(values) for name, values in times.items()}


def record(rows: list[dict], row: dict) -> None:
    rows.append(row)
    print(json.dumps(row), flush=True)


def summary(rows: list[dict], label: str, new: str, old: str, names: tuple[str, str]) -> str:
    """One line: the two paths' mean seconds per list, their ratio and the largest difference seen."""
    new_s, old_s = (statistics.mean(r[k] for r in rows) for k in (new, old))
    return (f"{label}: {names[0]} {new_s:.3f} s per list, {names[1]} {old_s:.3f} s, ratio {new_s / old_s:.3f}; "
            f"max |difference| {max(r['max_abs_diff'] for r in rows):.1e}")


def main() -> None:
    parser = bench_parser(__doc__)
    parser.add_argument("--queries", type=int, default=5)
    args = parser.parse_args()
    from headrank.engine.capture import capture_lists

    ranker, entries, heads, model, na = load_bench(args)
    rows = []
    for entry in entries[: args.queries]:
        prompt = ranker.builder.build(entry["query"], [h["content"] for h in entry["hits"][: args.depth]])
        tails = [[prompt.tail_ids], [na]]
        with torch.inference_mode():
            one = lambda: capture_lists(model, [prompt.prefix_ids], tails, heads)  # noqa: E731
            two = lambda: two_step_capture(model, [prompt.prefix_ids], tails, heads)  # noqa: E731
            a, b = one(), two()
            diff = max(float((a[g][0].token_mass - b[g][0]).abs().max()) for g in range(2))
            times = alternate({"two_step": two, "one_pass": one}, args.reps)
        record(rows, {"tokens": len(prompt), **times, "max_abs_diff": diff})
    print(summary(rows, args.model, "one_pass", "two_step", ("one pass", "two-step")))


if __name__ == "__main__":
    main()
