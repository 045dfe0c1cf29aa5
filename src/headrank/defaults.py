"""Names every layer agrees on, in a module that imports nothing (the CLI reads them without torch)."""

DEFAULT_PRESET = "headrank-qwen2.5-coder-0.5b"  # best four-set average above BM25 (RESULTS.md, "Presets and baselines")
FAST_PRESET = "headrank-smollm2-135m"  # faster per pass (BENCHMARKS.md), lower quality
# The default preset's base model: what every command that needs a base model (select-heads, build-preset,
# bench, load_model) uses unless told otherwise, so that there is one default (tests check they agree).
DEFAULT_MODEL = "qwen2.5-coder-0.5b-instruct"

# Method names live in headrank.methods (one vocabulary for the CLI, the API, the service and evaluate).


class ModelUnavailableError(RuntimeError):
    """The requested model cannot be found locally and cannot be fetched."""
