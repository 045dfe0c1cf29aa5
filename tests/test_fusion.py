"""Fusion of a reranker's scores with the first-stage order (weighted RRF)."""

import math

import pytest
from conftest import data_path

from headrank.data.benchmarks import load_benchmark
from headrank.engine.fusion import fuse_with_first_stage, rank_positions
from headrank.eval.evaluate import EvalSettings, compute_metrics, fused_records, rerank_benchmark


def _order(scores):
    return sorted(range(len(scores)), key=lambda i: (-scores[i], i))


def test_rank_positions_break_ties_by_input_order():
    assert rank_positions([0.1, 0.9, 0.9, -1.0]) == [3, 1, 2, 4]


def test_weights_interpolate_between_reranker_and_first_stage():
    scores = [0.1, 0.5, 0.3, 0.9]
    assert _order(fuse_with_first_stage(scores, 0.0)) == _order(scores) == [3, 1, 2, 0]
    assert _order(fuse_with_first_stage(scores, 1.0)) == [0, 1, 2, 3]
    plain = [1 / (60 + r) + 1 / (60 + i + 1) for i, r in enumerate(rank_positions(scores))]
    assert fuse_with_first_stage(scores, 0.5) == pytest.approx([p / 2 for p in plain])
    # passage 3 is reranker-best but first-stage last; passage 1 is second in both and wins the fusion
    assert _order(fuse_with_first_stage(scores, 0.5))[0] == 1


def test_fused_scores_that_tie_in_theory_tie_exactly_and_keep_the_input_order():
    """At w 0.6 a passage in position 6 ranked 17th by the heads and one in position 10 ranked 10th fuse to the
    same value, 0.4/77 + 0.6/66 = 0.4/70 + 0.6/70; in floats the later one came out one ulp higher and won,
    so evaluate's run and rank() broke the tie by rounding where the validation scripts kept the input order
    (two DL20 / NFCorpus lists scored differently). Equal in theory must be equal, first in input order first."""
    ranks = {5: 17, 9: 10}  # 0-based positions -> the heads' ranks
    rest = iter(r for r in range(1, 21) if r not in ranks.values())
    wanted = [ranks[i] if i in ranks else next(rest) for i in range(20)]
    scores = [-float(r) for r in wanted]  # heads' scores giving exactly those ranks
    assert rank_positions(scores) == wanted
    fused = fuse_with_first_stage(scores, 0.6)
    assert fused[5] == fused[9]
    assert _order(fused).index(5) < _order(fused).index(9)
    assert fused == pytest.approx([0.4 / (60 + r) + 0.6 / (60 + i + 1) for i, r in enumerate(wanted)], rel=1e-12)
    import numpy as np  # a weight read from an array (not a Python float) fuses the same way

    assert fuse_with_first_stage(scores, np.float32(0.6)) == fused


def test_empty_passages_stay_last_and_bad_weights_fail():
    fused = fuse_with_first_stage([-math.inf, 0.2, 0.1], 0.9)
    assert fused[0] == -math.inf and _order(fused)[-1] == 0
    for bad in (-0.1, 1.5):
        with pytest.raises(ValueError, match="between 0 and 1"):
            fuse_with_first_stage([1.0], bad)


def test_fused_records_use_first_stage_positions_even_for_reversed_input(tmp_path):
    data_path("msmarco-passage", "dl19")
    bench = load_benchmark("dl19", data_root=data_path())
    settings = EvalSettings(method="last-fed-wins", depth=20, order="reversed")
    records = rerank_benchmark(bench, lambda q, p: [float(i) for i in range(len(p))], settings, tmp_path)
    # the toy reranker fed the reversed list puts the first-stage top first: BM25's numbers
    assert compute_metrics(records, bench.qrels, 2, 20)[0]["nDCG@10"] == pytest.approx(0.5058, abs=5e-5)
    anti = [type(r)(r.qid, r.docids, [-s for s in r.scores], r.latency_s) for r in records]
    assert compute_metrics(anti, bench.qrels, 2, 20)[0]["nDCG@10"] < 0.45
    # fully weighted on the first stage, the anti-BM25 reranker is overruled: BM25's numbers again
    assert compute_metrics(fused_records(anti, 1.0), bench.qrels, 2, 20)[0]["nDCG@10"] == pytest.approx(0.5058, abs=5e-5)
