"""Names every layer agrees on, in a module that imports nothing (the CLI reads them without torch)."""

DEFAULT_PRESET = "headrank-qwen2.5-coder-0.5b"  # best four-set average above BM25 (RESULTS.md, "Presets")
FAST_PRESET = "headrank-smollm2-135m"  # faster per pass (BENCHMARKS.md), lower quality
DEFAULT_MODEL = "smollm2-135m-instruct"  # the base model that tests and small experiments default to


class ModelUnavailableError(RuntimeError):
    """The requested model cannot be found locally and cannot be fetched."""
