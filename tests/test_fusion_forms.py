"""scripts/fusion_forms.py: score fusion keeps the heads' margin where rank fusion keeps only their order."""

import math
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))
import fusion_forms  # noqa: E402

from headrank.fusion import rank_positions  # noqa: E402


def order(scores):
    return sorted(range(len(scores)), key=lambda i: rank_positions(scores)[i])


def test_score_fusion_ends_and_empty_passages():
    heads = [0.1, 0.5, -0.2, 0.3]
    assert order(fusion_forms.fused("zscore", heads, 0.0)) == order(heads)
    assert order(fusion_forms.score_fusion(heads, 1.0)) == [0, 1, 2, 3]  # all weight on the input order
    out = fusion_forms.score_fusion([0.2, -math.inf, 0.1], 0.5)
    assert out[1] == -math.inf and all(math.isfinite(x) for x in (out[0], out[2]))
    assert fusion_forms.score_fusion([0.3, 0.3, 0.3], 0.0) == [0.0, 0.0, 0.0]  # a flat list: no NaN


def test_a_confident_head_moves_a_passage_where_rank_fusion_cannot():
    """One passage far above the rest (the README example's shape) against a barely preferred one: RRF fuses
    both alike, score fusion moves only the confident one to the top."""
    confident = [0.16, 0.08, 1.37, -0.10]
    unsure = [0.16, 0.08, 0.17, -0.10]
    for weight in (0.4, 0.5):
        assert order(fusion_forms.fused("rrf", confident, weight)) == order(fusion_forms.fused("rrf", unsure, weight))
        assert order(fusion_forms.fused("zscore", confident, weight))[0] == 2
        assert order(fusion_forms.fused("zscore", unsure, weight))[0] == 0


def test_a_run_that_has_not_reached_every_query_is_flagged():
    """A reporting run still in progress must not give a mean over whichever queries it reached."""
    from conftest import data_path
    from pool import load_set

    data_path("msmarco-passage")
    bench = load_set("dl19")
    rows = [{"qid": q, "docids": [c.docid for c in bench.candidates[q][:20]], "scores": [0.0] * 20}
            for q in bench.queries]
    assert fusion_forms.Domain("dl19", rows).complete
    partial = fusion_forms.Domain("dl19", rows[:10])
    assert not partial.complete and partial.total == 10


def test_two_runs_of_a_set_pair_up_by_query_whatever_order_they_finished_in(tmp_path):
    """--reporting-against compares two runs query by query; their progress files list queries as they ended."""
    import json

    rows = [{"qid": q, "docids": ["a", "b"], "scores": [float(i), 0.0]} for i, q in enumerate(["3", "1", "2"])]
    for run, ordered in (("one", rows), ("two", rows[::-1])):
        for name in fusion_forms.REPORTING:
            folder = tmp_path / run / f"{name}-heads-k20-first-stage-0"
            folder.mkdir(parents=True)
            (folder / "progress.jsonl").write_text("".join(json.dumps(r) + "\n" for r in ordered))
    one, two = (fusion_forms.reporting_rows(tmp_path / run) for run in ("one", "two"))
    assert [r["qid"] for r in one["dl19"]] == [r["qid"] for r in two["dl19"]] == ["1", "2", "3"]
    assert one == two
