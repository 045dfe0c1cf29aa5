"""Figures are optional: matplotlib comes with the ``plots`` extra, and every figure asks for it here, so
a missing extra is one message naming it, whichever command draws."""

from __future__ import annotations

PLOTS_EXTRA = "pip install 'headrank[plots]'"


def pyplot():
    """matplotlib's pyplot on the file-only Agg backend; an ImportError naming the 'plots' extra without it."""
    try:
        import matplotlib
    except ImportError:
        raise ImportError(f"figures need matplotlib: {PLOTS_EXTRA}") from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plots_available() -> bool:
    """Whether figures can be drawn (the 'plots' extra is installed)."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return False
    return True
