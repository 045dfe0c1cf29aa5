"""Training-step time of head-layer LoRA training with and without the frozen-layer cache, same process.

    PYTHONPATH=src python3 benchmarks/train_step_bench.py --heads runs/heads/qwen-dl21.json --lists 4

With ``--lora-layers head-layers`` the layers below the first selected head carry no adapter, so their
output never changes during training; ``headrank.learn.align`` records it in the reference pass and each step
runs only the head layers. This times one optimizer-free step (forward through the capture, loss,
backward) both ways on the same DL21 training lists, alternating the two so that background load hits
both alike, and checks that both give the same loss. Prints a Markdown table row per path.
"""

from __future__ import annotations

import argparse
import random
import statistics
import time

import torch

from headrank.data.benchmarks import load_benchmark
from headrank.engine.heads import HeadSet
from headrank.engine.models import load_model
from headrank.engine.prompt import PromptBuilder, PromptSettings
from headrank.learn.align import (
    TrainConfig,
    add_adapters,
    build_lists,
    frozen_layers,
    list_logprobs,
    list_loss,
    make_pairs,
    score_reference,
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--heads", required=True, help="head set JSON (its model and DL21 split are used)")
    parser.add_argument("--lists", type=int, default=4, help="training lists timed (after one warm-up)")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    heads = HeadSet.load(args.heads)
    loaded = load_model(heads.model, device="cpu", dtype="float32")
    config = TrainConfig(lora_layers="head-layers")
    bench = load_benchmark("dl21")
    train_q = heads.selection["train_queries"][: args.lists + 1]
    items = [(q, bench.queries[q], [(c.docid, c.text) for c in bench.candidates[q]]) for q in train_q]
    builder = PromptBuilder(loaded.tokenizer, PromptSettings(**heads.prompt))
    lists = build_lists(items, bench.qrels, builder, config, random.Random(0))
    model = add_adapters(loaded.model, heads, config)
    model.eval()
    start = frozen_layers(model, heads, config)
    if not start:
        raise SystemExit("this head set / model has no frozen layers to skip")
    pad = loaded.tokenizer.pad_token_id or 0
    with torch.no_grad(), model.disable_adapter():
        for item in lists:
            score_reference(model, item, heads, pad, start)
            item.pairs = make_pairs(item.grades, item.ref_logp, config.pair_mode, config.pairs_per_list,
                                    random.Random(0))

    def step(item, frozen: bool) -> tuple[float, float]:
        hidden = item.frozen_hidden
        item.frozen_hidden = hidden if frozen else None
        began = time.perf_counter()
        loss = list_loss(list_logprobs(model, [item], heads, pad, start)[0], item, config)
        loss.backward()
        seconds = time.perf_counter() - began
        item.frozen_hidden = hidden
        model.zero_grad(set_to_none=True)
        return seconds, float(loss.detach())

    times: dict[bool, list[float]] = {True: [], False: []}
    for i, item in enumerate(lists):
        for frozen in (False, True) if i % 2 else (True, False):
            seconds, loss = step(item, frozen)
            if i:  # the first list warms up
                times[frozen].append(seconds)
            if frozen:
                frozen_loss = loss
            else:
                full_loss = loss
        assert abs(frozen_loss - full_loss) < 1e-4 * max(1.0, abs(full_loss)), (frozen_loss, full_loss)
    full, cached = statistics.median(times[False]), statistics.median(times[True])
    tokens = statistics.mean(item.frozen_hidden.shape[1] for item in lists)
    print(f"model {heads.model}, heads in layers {sorted({l for l, _ in heads.heads})}, first adapter layer "
          f"{start}, {torch.get_num_threads()} threads, {len(times[True])} lists of ~{tokens:.0f} tokens")
    print("| path | median step (s) | ratio |")
    print("|---|---|---|")
    print(f"| full forward (layers 0-{heads.deepest_layer}) | {full:.2f} | 1.00 |")
    print(f"| frozen-layer cache (layers {start}-{heads.deepest_layer}) | {cached:.2f} | {cached / full:.2f} |")


if __name__ == "__main__":
    main()
