"""One forward per list against the path it replaced (prefill the passages into a KV cache, then run the query
tail and the N/A tail over it: three forward segments), same model, same lists, same process.

    PYTHONPATH=src python benchmarks/one_pass_bench.py --model headrank-smollm2-135m --queries 5

Prints per-list seconds of both (median of ``--reps``), their ratio and the largest difference between their
captured masses. ``two_step_capture`` is also the reference that tests/test_capture.py checks the one-pass
capture against.
"""

from __future__ import annotations

import json

import torch


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


def record(rows: list[dict], row: dict) -> None:
    rows.append(row)
    print(json.dumps(row), flush=True)


def main() -> None:
    from headrank.eval.bench import alternate, capture_bench_parser, load_capture_bench, paths_summary

    parser = capture_bench_parser(__doc__)
    parser.add_argument("--queries", type=int, default=5)
    args = parser.parse_args()
    from headrank.engine.capture import capture_lists

    ranker, entries, heads, model, na = load_capture_bench(args.model, args.threads)
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
    print(paths_summary(rows, args.model, "one_pass", "two_step", ("one pass", "two-step")))


if __name__ == "__main__":
    main()
