"""Issue 30 item 4, on validation: which rule for deep reranking (BM25 top 100 in windows of 20) with the default
preset, on its 13 DL21 validation queries: A = fusion and valve inside each window (what ships), B = windows by
attention alone, fused once with BM25 at the end. Resumable (runs/deep-rule); writes
results/deep-rule-dl21-qwen.json.

    PYTHONPATH=src python scripts/deep_rule.py
"""
import json
import sys

sys.path.insert(0, "scripts")
from pathlib import Path

from headrank.adapt import restrict_queries
from headrank.compare import sign_flip_p_value
from headrank.datasets import load_benchmark
from headrank.evaluate import EvalSettings, compute_metrics, content_key, fused_records, rerank_benchmark
from headrank.heads import HeadSet
from headrank.presets import load_preset
from headrank.scorers import build_scorer

model = "headrank-qwen2.5-coder-0.5b"
preset = load_preset(model)
val = HeadSet.load(preset.path / "headset.json").split_queries("val")
bench = restrict_queries(load_benchmark("dl21"), val)
out = Path("runs/deep-rule")
valve = preset.inference.safety_valve
res = {}
for name, fuse, v in (("A-per-window", 0.6, valve), ("raw-windows", None, None)):
    scorer = build_scorer("heads", model, None, 100, "cpu", "float32", True, 20, False, None, fuse, v)
    settings = EvalSettings(method=name, depth=100, model=model, max_passage_tokens=100, device="cpu", dtype="float32", window=20)
    key = content_key(bench, 100, scorer.model_fingerprint, scorer.prompt_hash, scorer.head_set)
    recs = rerank_benchmark(bench, scorer.score, settings, out / f"{name}-{key}")
    res[name] = recs
    print(name, "done", flush=True)
res["B-fuse-once"] = fused_records(res["raw-windows"], 0.6)
first = [type(r)(r.qid, r.docids, [100.0 - i for i in range(len(r.docids))], 0.0) for r in res["raw-windows"]]
res["bm25"] = first
per = {}
for name, recs in res.items():
    agg, pq = compute_metrics(recs, bench.qrels, bench.relevant_grade, 100)
    per[name] = {q: v["nDCG@10"] for q, v in pq.items()}
    print(name, round(agg["nDCG@10"], 4))
qids = sorted(per["bm25"])
for a, b in (("B-fuse-once", "A-per-window"), ("B-fuse-once", "bm25"), ("A-per-window", "bm25")):
    print(a, "vs", b, "p", round(sign_flip_p_value([per[a][q] - per[b][q] for q in qids], 20000, 0), 3))
json.dump({"command": "PYTHONPATH=src python scripts/deep_rule.py", "queries": len(qids),
           "ndcg@10": {n: sum(v.values()) / len(v) for n, v in per.items()}, "per_query": per},
          open("results/deep-rule-dl21-qwen.json", "w"), indent=1)
