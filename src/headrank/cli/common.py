"""What every command shares: the error console, logging set-up, clean failures, progress bars that also
print plain lines into log files, and loading a ranker lazily (so ``headrank --help`` loads no torch)."""

from __future__ import annotations

import datetime
import logging
import math
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.text import Text

from headrank.data.formats import DataFormatError
from headrank.defaults import ModelUnavailableError

# No hard wraps inside error messages; no emoji codes either: a plan item "dl21:train:shuffled" or a file name
# holding ":train:" is printed as typed, not with a train in it.
err_console = Console(stderr=True, soft_wrap=True, emoji=False)


def setup_logging() -> None:
    """Library progress (model fetch, conversions, fallbacks) on stderr; other libraries' warnings only."""
    from rich.logging import RichHandler

    logging.basicConfig(level=logging.WARNING, format="%(message)s", force=True,
                        handlers=[RichHandler(console=err_console, show_time=False, show_path=False,
                                              show_level=False, markup=False)])
    logging.getLogger("headrank").setLevel(logging.INFO)


def fail(message: str, code: int = 2) -> None:
    """Exit with ``error: message`` (plain text: brackets in head lists or file names are not markup)."""
    err_console.print(Text("error: ", style="bold red") + Text(message))
    raise typer.Exit(code)


@contextmanager
def user_errors(*more: type[BaseException]) -> Iterator[None]:
    """Bad input, a missing model and a missing extra end the command with a clear message (exit 2, or 3 for
    the model), never a traceback (headrank's ImportErrors name the extra to install)."""
    try:
        yield
    except ModelUnavailableError as err:
        fail(str(err), code=3)
    except (ValueError, TypeError, FileNotFoundError, DataFormatError, ImportError, *more) as err:
        fail(str(err))


class LineProgress(Progress):
    """rich's progress display; when stderr is not a terminal (a log file, ``nohup``), where rich draws
    nothing until the end, each task also prints a plain line at every tenth of its total."""

    def __init__(self, *columns, **kwargs) -> None:
        super().__init__(*(columns or progress_columns()), **{"console": err_console, **kwargs})
        self._printed: dict = {}  # task id -> tenths already printed

    def update(self, task_id, **changes) -> None:
        super().update(task_id, **changes)
        self._report(task_id)

    def advance(self, task_id, advance: float = 1) -> None:
        super().advance(task_id, advance)
        self._report(task_id)

    def reset(self, task_id, **kwargs) -> None:
        super().reset(task_id, **kwargs)
        self._printed.pop(task_id, None)

    def fields(self, task_id) -> dict:
        """A task's own fields (e.g. ``resumed``), found by id."""
        return next(t.fields for t in self.tasks if t.id == task_id)

    def stage_callback(self):
        """``on_list(stage, done, total)`` that draws one bar per stage (adapt, build-preset)."""
        tasks: dict[str, int] = {}

        def on_list(stage: str, done: int, total: int | None, resumed: int = 0) -> None:
            if stage not in tasks:
                tasks[stage] = self.add_task(stage, total=total)
            self.update(tasks[stage], completed=done, total=total, resumed=resumed)  # resumed: read back, not timed

        return on_list

    def _report(self, task_id) -> None:
        if self.console.is_terminal:
            return
        task = next((t for t in self.tasks if t.id == task_id), None)
        if task is None or not task.total:
            return
        tenth = int(10 * min(task.completed, task.total) / task.total)
        if tenth > self._printed.get(task_id, 0):
            self._printed[task_id] = tenth
            eta = f", eta {datetime.timedelta(seconds=round(left))}" if (left := _time_left(task)) else ""
            self.console.print(f"{task.description}: {int(task.completed)}/{int(task.total)} "
                               f"({time.strftime('%H:%M:%S')}{eta})", markup=False, highlight=False, emoji=False)


def _time_left(task) -> float | None:
    """Seconds left at the mean rate since the task started (rich's own estimate looks at the last 30 s only,
    which holds no sample when one step takes longer); None when done or nothing done yet. Steps that a resumed
    run read back (the task's ``resumed`` field) count as done but not toward the rate."""
    elapsed, done_now = task.elapsed, task.completed - task.fields.get("resumed", 0)
    if not elapsed or done_now <= 0 or task.completed >= task.total:
        return None
    return elapsed * (task.total - task.completed) / done_now


def progress_columns(label: str = "{task.description}", elapsed: bool = False) -> tuple:
    """A bar with done/total and an ETA (and the time so far with ``elapsed``)."""
    return (TextColumn(label, markup=False), BarColumn(), MofNCompleteColumn(), *((TimeElapsedColumn(),) if elapsed else ()),
            TextColumn("eta"), TimeRemainingColumn())


def load_ranker(model, method=None, heads=None, max_passage_tokens=None, device="auto", dtype="auto",
                calibrate=True, max_length=None, window=None, both_orders=None, fuse_first_stage=None,
                safety_valve=None, quantize=None):
    """A HeadRanker; ``None`` settings keep a preset's inference settings (see HeadRanker.from_pretrained)."""
    from transformers.utils import logging as hf_logging

    from headrank.engine.heads import HeadSet
    from headrank.rerankers import load_attention_reranker  # torch/transformers import only when needed

    hf_logging.disable_progress_bar()  # the CLI prints its own output; no per-load weight bars
    return load_attention_reranker(
        model, getattr(method, "value", method), HeadSet.coerce(heads) if heads else None,
        device=device, dtype=dtype, max_passage_tokens=max_passage_tokens, calibrate=calibrate,
        max_length=max_length, window=window, both_orders=both_orders, fuse_first_stage=fuse_first_stage,
        safety_valve=safety_valve, quantize=getattr(quantize, "value", quantize))


def check_quantize_option(quantize, method: str | None, device: str = "auto", dtype: str = "auto") -> None:
    """--quantize int8 applies to the attention rankers on a CPU in float32; anything else is refused before a
    model loads."""
    from headrank.methods import ATTENTION, resolve

    if getattr(quantize, "value", quantize) != "int8":
        return
    if method is not None and resolve(method) not in ATTENTION:
        fail(f"--quantize int8 applies to HeadRank presets, heads and icr, not to --method {method}")
    from headrank.engine.ranker import check_quantize_request

    with user_errors():
        check_quantize_request("int8", device, dtype)


def configure_threads(threads: int | None) -> None:
    """--threads (or $HEADRANK_THREADS, which typer reads into it): torch's intra-op thread count."""
    if threads is not None:
        from headrank.engine.models import set_threads

        set_threads(threads)


def ranker_label(ranker, fuse_first_stage: float | None = None) -> str:
    """What ran: preset (or model) and method, and the inference settings (with this call's fusion weight)."""
    if not hasattr(ranker, "settings_for"):  # a baseline behind the Reranker interface
        fuse = ranker.fuse_first_stage if fuse_first_stage is None else fuse_first_stage
        return ranker.name + (f", fused with the first stage (RRF, w={fuse:g})" if fuse else "")
    who = f"preset {ranker.preset}" if ranker.preset else ranker.model.name
    int8 = ", int8" if getattr(ranker, "quantize", None) else ""
    return f"{who}, {ranker.method}, {ranker.settings_for(fuse_first_stage).describe()}{int8}"


def floats(value: str, name: str, low: float | None = None) -> list[float]:
    """Comma-separated finite numbers (nan and inf are refused), each >= ``low`` when given."""
    try:
        values = [float(x) for x in value.split(",") if x.strip()]
    except ValueError:
        raise ValueError(f"{name}: expected comma-separated numbers, got {value!r}") from None
    bad = [v for v in values if not math.isfinite(v) or (low is not None and v < low)]
    if bad or not values:
        need = "finite numbers" + (f" >= {low:g}" if low is not None else "")
        raise ValueError(f"{name}: expected comma-separated {need}, got {value!r}")
    return values


def ints(value: str, name: str, low: int = 1) -> list[int]:
    """Comma-separated whole numbers >= ``low``."""
    values = floats(value, name, low)
    if any(v != int(v) for v in values):
        raise ValueError(f"{name}: expected comma-separated whole numbers >= {low}, got {value!r}")
    return [int(v) for v in values]


def check_output_file(path: Path | None, option: str) -> None:
    """Fail before any model loads when ``path`` cannot be written as a file (a directory, a path under a file,
    a place this user may not write): tried for real, and nothing is left behind."""
    if path is None:
        return
    path = Path(path)
    if path.is_dir():
        fail(f"{option} {path} is a directory; give a file name")
    existed = path.exists()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "a"):
            pass
    except OSError as err:
        fail(f"{option} {path} cannot be written: {err.strerror or err}")
    if not existed:
        path.unlink(missing_ok=True)


def check_output_dir(path: Path | None, option: str) -> None:
    """Fail before any model loads when ``path`` cannot be an output folder (a file, under a file, not
    writable): tried for real, and folders made for the try are removed again."""
    if path is None:
        return
    path = Path(path)
    if path.exists() and not path.is_dir():
        fail(f"{option} {path} is a file; give a folder")
    made = [p for p in (path, *path.parents) if not p.exists()]
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = path / f".headrank-write-test-{os.getpid()}"
        probe.touch()
        probe.unlink()
    except OSError as err:
        fail(f"{option} {path} cannot be written: {err.strerror or err}")
    finally:
        for folder in made:  # deepest first
            if folder.is_dir() and not any(folder.iterdir()):
                folder.rmdir()
