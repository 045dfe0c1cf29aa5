"""Batches of lists in one forward: attention in pieces (plain causal calls plus a small mask per later tail, as
``capture_lists`` runs it) against the dense block mask it replaced (one (B, 1, T, T) mask over the whole
sequence), same model, same lists, same process.

    PYTHONPATH=src python benchmarks/batch_layout_bench.py --model headrank-smollm2-135m --batches 3 --batch-size 4

Prints per-list seconds of both (median of ``--reps``, lists of one batch timed together), their ratio, the
dense mask's size and the largest difference between the two paths' captured masses.
"""

from __future__ import annotations

import json

import torch


def dense_capture(model, prefixes: list[list[int]], tails: list[list[list[int]]], heads) -> list[list[torch.Tensor]]:
    """The replaced batched path: the same inputs in one forward under a dense block mask (``visible`` for every
    position), no pieces. Returns masses ``out[t][b]``."""
    from headrank.engine.capture import CaptureRequest, one_pass_inputs, run_with_capture, visible
    from headrank.engine.heads import group_by_layer

    by_layer = group_by_layer(heads)
    device = next(model.parameters()).device
    ids, positions, segment, rows, weights, _ = one_pass_inputs(prefixes, tails, 0, device)
    request = CaptureRequest(heads=by_layer, rows=rows, row_weights=weights, row_mask=visible(segment, rows),
                             stop_after=max(by_layer))
    every = torch.arange(ids.shape[1], device=device).expand(ids.shape[0], -1)
    run_with_capture(model.base_model, ids, visible(segment, every)[:, None], positions, request)
    mass = torch.cat([request.mass[layer] for layer in sorted(by_layer)], dim=2).cpu()
    return [[mass[g, b, :, :len(prefixes[b])] for b in range(len(prefixes))] for g in range(len(tails))]


def main() -> None:
    from headrank.eval.bench import alternate, capture_bench_parser, load_capture_bench, paths_summary

    parser = capture_bench_parser(__doc__)
    parser.add_argument("--batches", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=4)
    args = parser.parse_args()
    from headrank.engine.capture import capture_lists

    ranker, entries, heads, model, na = load_capture_bench(args.model, args.threads)
    rows = []
    for start in range(0, args.batches * args.batch_size, args.batch_size):
        prompts = [ranker.builder.build(e["query"], [h["content"] for h in e["hits"][: args.depth]])
                   for e in entries[start: start + args.batch_size]]
        prefixes, tails = [p.prefix_ids for p in prompts], [[p.tail_ids for p in prompts], [na] * len(prompts)]
        with torch.inference_mode():
            pieces = lambda: capture_lists(model, prefixes, tails, heads)  # noqa: E731
            dense = lambda: dense_capture(model, prefixes, tails, heads)  # noqa: E731
            a, b = pieces(), dense()
            diff = max(float((a[g][i].token_mass - b[g][i]).abs().max()) for g in range(2) for i in range(len(prompts)))
            times = alternate({"dense": dense, "pieces": pieces}, args.reps, per=len(prompts))
        width = max(len(p) for p in prompts) + len(na)
        rows.append({"lists": len(prompts), "tokens": width, "dense_mask_mib": len(prompts) * width * width / 2**20,
                     **times, "max_abs_diff": diff})
        print(json.dumps(rows[-1]), flush=True)
    print(paths_summary(rows, f"{args.model}, batches of {args.batch_size}", "pieces", "dense", ("pieces", "dense mask")))


if __name__ == "__main__":
    main()
