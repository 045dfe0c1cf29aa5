"""Names every layer agrees on, in a module that imports nothing (the CLI reads them without torch)."""

DEFAULT_PRESET = "headrank-qwen2.5-coder-0.5b"  # best four-set average above BM25 (RESULTS.md, "Presets and baselines")
FAST_PRESET = "headrank-smollm2-135m"  # faster per pass (BENCHMARKS.md), lower quality
# The default preset's base model: what every command that needs a base model (select-heads, build-preset,
# bench, load_model) uses unless told otherwise, so that there is one default (tests check they agree).
DEFAULT_MODEL = "qwen2.5-coder-0.5b-instruct"

# Method names, in one place. Attention methods read heads of one forward; baselines generate or score pairs;
# the first stage passes the input order through.
ATTENTION_METHODS = ("heads", "icr")
BASELINE_METHODS = ("generative", "pointwise")
FIRST_STAGE_METHOD = "bm25"
EVALUATE_METHODS = (FIRST_STAGE_METHOD, "icr", "heads", *BASELINE_METHODS)  # headrank evaluate --method
BENCH_METHODS = ("headrank", "icr", *BASELINE_METHODS)  # "headrank": a trained preset
RERANKER_BACKENDS = ("headrank", "icr", *BASELINE_METHODS, "firststage")  # rerankers.load_reranker
METHOD_ALIASES = {"heads": "headrank", FIRST_STAGE_METHOD: "firststage"}  # evaluate's names -> backends


class ModelUnavailableError(RuntimeError):
    """The requested model cannot be found locally and cannot be fetched."""
