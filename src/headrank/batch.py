"""Batch reranking of whole runs (``headrank rerank-batch``): in process, or on Ray Data from a laptop to a cluster.

The driver reads a TREC run, the topics and the corpus, groups the run by query up to a depth (plain Python:
no Ray ``groupby`` over the whole set), and skips the queries whose results are already written.

Resuming is keyed on content: ``manifest.json`` records what ranks (model and the digest of its files, method,
head set, dtype, depth) and every result row carries a digest of its query text, docids and passages. A
rerun into the same folder with other settings, or with other passages or query text for a finished query,
is refused with a message that says what changed (``restart=True`` / ``--restart`` starts over). Duplicate
query ids, empty queries and queries without passages are listed in ``problems.txt`` (which belongs to the
run that wrote it) and skipped, or stop the job under ``on_error="fail"``. The lists go
through ``HeadRanker.rank_batch``: in this process (``workers=0``), or through a Ray Data actor pool of
HeadRanker actors (the model loaded once per actor; a killed actor is restarted and its batch retried). The
driver appends each finished query to a results shard as one JSON line (``shards/part-*.jsonl``: qid, docids,
scores, ranks) and flushes it, so an interrupted run loses at most the batches in flight; a torn last line is
ignored and a query written twice counts once. The final TREC run holds every query exactly once.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from headrank.data.formats import (
    DataFormatError,
    check_trec_token,
    collect_problem,
    is_encodable,
    read_corpus,
    read_text,
    read_topics,
    trec_lines,
    trec_run_rows,
)

logger = logging.getLogger(__name__)
ON_ERROR = ("skip", "fail")
MANIFEST = "manifest.json"
MANIFEST_FORMAT = "headrank.batch/1"


class StaleOutputError(ValueError):
    """The output folder holds results computed from other settings or other inputs."""


@dataclass
class QueryList:
    qid: str
    query: str
    docids: list[str]
    texts: list[str]


@dataclass
class BatchInput:
    lists: list[QueryList]
    problems: list[str] = field(default_factory=list)  # "file:line: what", for skipped rows


def read_run_lists(run: str | Path, topics: str | Path, corpus: str | Path, depth: int | None = None,
                   on_error: str = "skip") -> BatchInput:
    """Group a TREC run by query (its rank order, up to ``depth``) and attach query and passage texts.

    Malformed run or topic lines, and run lines whose query or document is unknown, are skipped and listed
    (``on_error="skip"``) or stop the job (``"fail"``), each named by file and line.
    """
    if on_error not in ON_ERROR:
        raise ValueError(f"on_error must be one of {', '.join(ON_ERROR)}")
    if depth is not None and depth < 1:
        raise ValueError("depth must be >= 1")
    problems: list[str] = []
    queries = read_topics(topics, on_problem=lambda message: collect_problem(problems, on_error, message), what="topics")
    docs = read_corpus(corpus, on_error, problems)
    text, name = read_text(run)
    ranked: dict[str, list[tuple[int, float, str]]] = {}
    for where, row, problem in trec_run_rows(text, name):
        if problem:
            collect_problem(problems, on_error, f"{where}: {problem}")
            continue
        qid, docid, rank, score = row
        entry = (rank, score, docid)
        if qid not in queries:
            collect_problem(problems, on_error, f"{where}: query {qid!r} is not in the topics")
            continue
        if docid not in docs:
            collect_problem(problems, on_error, f"{where}: document {docid!r} is not in the corpus")
            continue
        ranked.setdefault(qid, []).append(entry)
    lists = []
    for qid, entries in ranked.items():
        seen, kept = set(), []
        for _rank, _score, docid in sorted(entries, key=lambda e: (e[0], -e[1])):
            if docid not in seen:
                seen.add(docid)
                kept.append(docid)
        kept = kept[:depth] if depth else kept
        if not queries[qid].strip():
            collect_problem(problems, on_error, f"{Path(topics).name}: query {qid!r} has an empty text; skipped")
            continue
        lists.append(QueryList(qid, queries[qid], kept, [docs[d] for d in kept]))
    if not lists:
        raise DataFormatError(f"{name}: no query of the run could be read" + (f" ({problems[0]})" if problems else ""))
    return BatchInput(lists, problems)


def read_rankgpt_lists(path: str | Path, depth: int | None = None, on_error: str = "skip") -> BatchInput:
    """RankGPT / rank_llm candidate JSON (or JSONL of such entries) as query lists.

    An entry whose qid was already seen, whose query is empty or that has no candidates is listed by its
    entry number and qid and skipped (``on_error="skip"``), or stops the job (``"fail"``)."""
    from headrank.data.formats import read_rankgpt_file

    if on_error not in ON_ERROR:
        raise ValueError(f"on_error must be one of {', '.join(ON_ERROR)}")
    lists, problems, first_entry = [], [], {}
    name = Path(path).name
    for i, entry in enumerate(read_rankgpt_file(path)):
        qid = entry.qid or str(i)
        where = f"{name}: entry {i} (qid {qid!r})"
        if qid in first_entry:
            collect_problem(problems, on_error, f"{where}: the qid appears again (first in entry {first_entry[qid]}); "
                                         "skipped: one ranking per qid")
            continue
        first_entry[qid] = i
        if not (entry.query or "").strip():
            collect_problem(problems, on_error, f"{where}: the query is empty; skipped")
            continue
        if not is_encodable(entry.query):
            collect_problem(problems, on_error, f"{where}: the query is not valid Unicode (a lone surrogate); skipped")
            continue
        cands = entry.candidates[:depth] if depth else entry.candidates
        for c in [c for c in cands if not is_encodable(c.text)]:
            collect_problem(problems, on_error, f"{where}: passage {c.docid!r} is not valid Unicode (a lone surrogate); "
                                         "skipped")
        cands = [c for c in cands if is_encodable(c.text)]
        if not cands:
            collect_problem(problems, on_error, f"{where}: no candidate passages; skipped")
            continue
        lists.append(QueryList(qid, entry.query, [c.docid for c in cands], [c.text for c in cands]))
    if not lists:
        raise DataFormatError(f"{name}: no query could be read" + (f" ({problems[0]})" if problems else ""))
    return BatchInput(lists, problems)


def benchmark_lists(name: str, depth: int = 20, data_root: Path | None = None) -> BatchInput:
    """A named benchmark's first-stage lists (``dl19``, ``nfcorpus``, a folder ...)."""
    from headrank.data.benchmarks import load_benchmark

    bench = load_benchmark(name, data_root=data_root)
    return BatchInput([QueryList(q, bench.queries[q], [c.docid for c in bench.candidates[q][:depth]],
                                 [c.text for c in bench.candidates[q][:depth]]) for q in bench.queries])


def read_batch_input(run=None, topics=None, corpus=None, candidates=None, benchmark: str | None = None,
                     depth: int = 20, on_error: str = "skip", data_root: Path | None = None) -> BatchInput:
    """The lists to rerank from exactly one source: a TREC run with its topics and corpus, a RankGPT
    candidate file, or a named benchmark; ValueError names what is missing or extra."""
    if sum(x is not None for x in (run, candidates, benchmark)) != 1:
        raise ValueError("give exactly one input: --run (with --topics and --corpus), --candidates or --benchmark")
    if run is not None and (topics is None or corpus is None):
        raise ValueError("--run needs --topics and --corpus")
    if on_error not in ON_ERROR:
        raise ValueError(f"--on-error must be one of {', '.join(ON_ERROR)}")
    if run is not None:
        return read_run_lists(run, topics, corpus, depth, on_error)
    if candidates is not None:
        return read_rankgpt_lists(candidates, depth, on_error)
    return benchmark_lists(benchmark, depth, data_root)


# ------------------------------------------------------------------------------------------------ results


def list_key(qlist: QueryList) -> str:
    """Digest of what a query's ranking is computed from: query text, docids and passage texts, in order."""
    blob = json.dumps([qlist.query, qlist.docids, qlist.texts], ensure_ascii=False)
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()[:24]


def run_manifest(spec: RankerSpec, depth: int | None) -> dict:
    """What a batch folder's results were computed with (compared on every resume)."""
    from headrank import __version__

    return {"format": MANIFEST_FORMAT, "ranker": spec.fingerprint(), "depth": depth, "headrank": __version__}


def _differences(old: dict, new: dict, prefix: str = "") -> list[str]:
    out = []
    for key in sorted(old.keys() | new.keys()):
        a, b = old.get(key), new.get(key)
        if isinstance(a, dict) and isinstance(b, dict):
            out += _differences(a, b, f"{prefix}{key}.")
        elif a != b:
            out.append(f"{prefix}{key}: {a!r} -> {b!r}")
    return out


def check_resume(out_dir: Path, manifest: dict, lists: Sequence[QueryList]) -> dict[str, dict]:
    """The finished rows that this run may keep; refuses (StaleOutputError) a folder computed otherwise."""
    done = finished_queries(out_dir)
    path = out_dir / MANIFEST
    if not path.is_file():
        if done:
            raise StaleOutputError(f"{out_dir} holds results without a {MANIFEST} (an older headrank or another "
                                   "tool wrote them); pass --restart to start over, or choose another --out")
        return done
    try:
        old = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise StaleOutputError(f"{path} is not valid JSON; pass --restart to start over") from None
    changed = _differences(old if isinstance(old, dict) else {}, manifest)
    if changed:
        raise StaleOutputError(f"{out_dir} was written with other settings ({'; '.join(changed)}); pass --restart "
                               "to start over, or choose another --out")
    stale = [q.qid for q in lists if q.qid in done and done[q.qid].get("key") != list_key(q)]
    if stale:
        raise StaleOutputError(
            f"{len(stale)} finished queries in {out_dir} were ranked from another query text or other passages "
            f"than this input gives (e.g. qid {stale[0]!r}); pass --restart to start over, or choose another --out")
    return done


def clear_output(out_dir: Path) -> None:
    """Remove what a batch run writes (shards, manifest, run, problems), and nothing else."""
    for shard in (out_dir / "shards").glob("part-*.jsonl"):
        shard.unlink()
    for name in (MANIFEST, "run.trec", "run.trec.partial", "problems.txt"):
        (out_dir / name).unlink(missing_ok=True)


def write_problems(out_dir: Path, problems: Sequence[str]) -> Path | None:
    """``problems.txt`` of this run (an older run's list is removed when this run has none)."""
    path = out_dir / "problems.txt"
    if not problems:
        path.unlink(missing_ok=True)
        return None
    path.write_text("".join(p + "\n" for p in problems), encoding="utf-8")
    return path


def finished_queries(out_dir: Path) -> dict[str, dict]:
    """Results already written (first complete line per qid). A torn line (an interrupted write, possibly cut
    inside a UTF-8 character) is ignored, and said with file and line unless it is a shard's last line."""
    done: dict[str, dict] = {}
    for shard in sorted((out_dir / "shards").glob("part-*.jsonl")):
        lines = shard.read_bytes().split(b"\n")
        for number, raw in enumerate(lines, 1):
            if not raw.strip():
                continue
            try:
                row = json.loads(raw.decode("utf-8"))
            except (UnicodeDecodeError, json.JSONDecodeError):
                if number < len(lines) and any(x.strip() for x in lines[number:]):
                    logger.warning("%s:%d is not a complete result line; that query is ranked again", shard, number)
                continue
            if isinstance(row, dict) and "qid" in row:
                done.setdefault(row["qid"], row)
    return done


def result_row(qlist: QueryList, ranked) -> dict:
    """One query's ranking: docids best first, their scores and ranks (``None`` for an empty passage's score)."""
    docids = [qlist.docids[r.corpus_id] for r in ranked]
    scores = [r.score if math.isfinite(r.score) else None for r in ranked]
    return {"qid": qlist.qid, "key": list_key(qlist), "docids": docids, "scores": scores,
            "ranks": list(range(1, len(docids) + 1))}


def write_final_run(out_dir: Path, lists: Sequence[QueryList], tag: str) -> Path:
    """The TREC run of every query of ``lists``, each exactly once, in input order."""
    check_trec_token(tag, "run tag")
    done = finished_queries(out_dir)
    missing = [q.qid for q in lists if q.qid not in done]
    if missing:
        raise RuntimeError(f"{len(missing)} queries have no results yet (e.g. {missing[0]}); rerun to finish them")
    path = out_dir / "run.trec"
    lines = []
    for q in lists:
        row = done[q.qid]
        lines += trec_lines(q.qid, [(d, -math.inf if s is None else s) for d, s in zip(row["docids"], row["scores"])],
                            tag)
    tmp = path.with_suffix(".trec.partial")
    tmp.write_text("".join(line + "\n" for line in lines))
    tmp.replace(path)
    return path


# ------------------------------------------------------------------------------------------------ running


@dataclass
class RankerSpec:
    """What each worker loads (a spec, not a model: it travels to Ray actors)."""

    model: str
    method: str | None = None
    heads: str | None = None
    device: str = "auto"
    dtype: str = "auto"
    fuse_first_stage: float | None = None  # None: the preset's setting; 0: no fusion
    safety_valve: bool | None = None  # None: the preset's setting; False: off
    quantize: str | None = None  # None: the preset's CPU setting; "none": float; "int8": headrank.engine.quantize
    threads: int | None = None  # torch CPU threads in the process that loads it (a Ray actor too)

    def fingerprint(self) -> dict:
        """What decides the scores, without loading the model: the names given and the digest of the files
        behind a preset, checkpoint, local model or head-set file (a re-shipped preset changes it)."""
        return {"model": self.model, "model_files": _files_digest(self.model), "method": self.method,
                "heads": self.heads, "heads_file": _files_digest(self.heads) if self.heads else None,
                "dtype": self.dtype, "fuse_first_stage": self.fuse_first_stage,
                **({"safety_valve": self.safety_valve} if self.safety_valve is not None else {}),
                **({"quantize": self.quantize} if self.quantize is not None else {})}

    def load(self):
        from headrank.engine.models import set_threads
        from headrank.rerankers import load_attention_reranker

        if self.threads is not None:
            set_threads(self.threads)

        return load_attention_reranker(self.model, self.method, self.heads, device=self.device, dtype=self.dtype,
                                       fuse_first_stage=self.fuse_first_stage, safety_valve=self.safety_valve,
                                       quantize=self.quantize)


def _files_digest(name: str | None) -> str | None:
    """Digest of the files behind a preset name, a directory or a file (names, sizes and the contents of files
    under 64 MB); ``None`` for a name that is not on disk (a pinned named model or a hub id)."""
    from headrank.engine.presets import PRESETS_DIR, is_preset_name

    if not name:
        return None
    path = PRESETS_DIR / name if is_preset_name(name) else Path(name)
    if not path.exists():
        return None
    digest = hashlib.sha256()
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    for file in files:
        size = file.stat().st_size
        digest.update(f"{file.relative_to(path) if path.is_dir() else file.name}|{size}|".encode())
        if size < 64 << 20:
            digest.update(file.read_bytes())
    return digest.hexdigest()[:24]


def _chunks(items: Sequence, size: int) -> Iterator[Sequence]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def default_batch_size(spec: RankerSpec, gpus_per_worker: float = 0.0) -> int:
    """Lists per forward when none is given: 4 where the model runs on a GPU, 1 on the CPU, where one list at a
    time is faster per list than batches of 4 (1.2x, BENCHMARKS.md "Batches of lists")."""
    import torch

    on_gpu = str(spec.device).startswith("cuda") or (spec.device == "auto" and torch.cuda.is_available())
    return 4 if gpus_per_worker > 0 or on_gpu else 1


def rerank_run(lists: Sequence[QueryList], spec: RankerSpec, out_dir: Path, workers: int = 0,
               batch_size: int | None = None, gpus_per_worker: float = 0.0, ray_address: str | None = None,
               on_done: Callable[[int, int], None] | None = None, depth: int | None = None,
               restart: bool = False, on_resume_checked: Callable[[], None] | None = None) -> int:
    """Rerank every list not finished yet; returns how many were ranked now. ``workers=0``: in this process.
    ``on_done(done, total)`` is called first with the lists an earlier run finished, then after each list.

    Resuming checks the folder's manifest and each finished query's content digest first (``check_resume``),
    before any model loads; ``restart`` clears the folder's earlier results instead."""
    if workers < 0 or (batch_size is not None and batch_size < 1):
        raise ValueError("workers must be >= 0 and batch_size >= 1")
    batch_size = batch_size or default_batch_size(spec, gpus_per_worker)
    qids = [q.qid for q in lists]
    if len(set(qids)) != len(qids):
        dup = next(q for q in qids if qids.count(q) > 1)
        raise ValueError(f"qid {dup!r} appears in more than one list; one ranking per qid")
    for q in lists:
        check_trec_token(q.qid, "qid")
        for d in q.docids:
            check_trec_token(d, "docid")
    manifest = run_manifest(spec, depth)
    if restart:
        clear_output(out_dir)
    (out_dir / "shards").mkdir(parents=True, exist_ok=True)
    done = check_resume(out_dir, manifest, lists)
    (out_dir / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    if on_resume_checked:  # the folder is this run's now (e.g. its problems.txt may be written)
        on_resume_checked()
    todo = [q for q in lists if q.qid not in done]
    total, count = len(lists), len(lists) - len(todo)
    if on_done:
        on_done(count, total)
    if not todo:
        return 0
    shard = out_dir / "shards" / f"part-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}.jsonl"
    _repair_torn_tails(out_dir)
    try:
        with shard.open("a", encoding="utf-8") as out:
            rows = _rank_in_process(todo, spec, batch_size) if workers == 0 else _rank_on_ray(
                todo, spec, workers, batch_size, gpus_per_worker, ray_address)
            for row in rows:
                out.write(json.dumps(row, ensure_ascii=False) + "\n")
                out.flush()
                count += 1
                if on_done:
                    on_done(count, total)
    finally:
        if shard.is_file() and shard.stat().st_size == 0:  # a run that failed before its first result
            shard.unlink()
    return len(todo)


def _repair_torn_tails(out_dir: Path) -> None:
    """End every shard with a newline, so a torn last line stays a line of its own (and is skipped) and never
    joins a later run's output."""
    for shard in (out_dir / "shards").glob("part-*.jsonl"):
        data = shard.read_bytes()
        if data and not data.endswith(b"\n"):
            with shard.open("ab") as out:
                out.write(b"\n")


def _rank_in_process(lists: Sequence[QueryList], spec: RankerSpec, batch_size: int) -> Iterator[dict]:
    ranker = spec.load()
    for chunk in _chunks(lists, batch_size):
        ranked = ranker.rank_batch([q.query for q in chunk], [q.texts for q in chunk], batch_size=batch_size,
                                   return_documents=False)
        yield from (result_row(q, r) for q, r in zip(chunk, ranked))


class RankerActor:
    """A Ray Data actor: loads the ranker once, ranks a batch of lists per call."""

    def __init__(self, spec: RankerSpec, pid_dir: str | None = None) -> None:
        if pid_dir:  # lets tests (and operators) find the worker processes
            Path(pid_dir).mkdir(parents=True, exist_ok=True)
            (Path(pid_dir) / f"{os.getpid()}").write_text("")
        self.ranker = spec.load()

    def __call__(self, batch: dict) -> dict:
        lists = [QueryList(q, t, list(d), list(x)) for q, t, d, x in
                 zip(batch["qid"], batch["query"], batch["docids"], batch["texts"])]
        ranked = self.ranker.rank_batch([q.query for q in lists], [q.texts for q in lists], return_documents=False)
        rows = [result_row(q, r) for q, r in zip(lists, ranked)]
        return {"row": [json.dumps(r) for r in rows]}


def _rank_on_ray(lists: Sequence[QueryList], spec: RankerSpec, workers: int, batch_size: int,
                 gpus_per_worker: float, ray_address: str | None) -> Iterator[dict]:
    try:
        import ray
    except ImportError:
        raise ImportError("--workers >= 1 runs on Ray: pip install 'headrank[ray]' (or --workers 0 in process)") from None
    started_here = not ray.is_initialized()
    if started_here:
        if ray_address:
            ray.init(address=ray_address, log_to_driver=False)
        else:
            ray.init(num_cpus=os.cpu_count(), include_dashboard=False, log_to_driver=False)
    items = [{"qid": q.qid, "query": q.query, "docids": q.docids, "texts": q.texts} for q in lists]
    dataset = ray.data.from_items(items, override_num_blocks=max(1, math.ceil(len(items) / batch_size)))
    ranked = dataset.map_batches(
        RankerActor, fn_constructor_args=(spec, os.environ.get("HEADRANK_RAY_PID_DIR")), batch_size=batch_size,
        batch_format="numpy", concurrency=workers, num_gpus=gpus_per_worker or None,
        num_cpus=max(1, (os.cpu_count() or 1) // workers) if not gpus_per_worker else 1,
        max_restarts=-1, max_task_retries=-1)
    try:
        for batch in ranked.iter_batches(batch_size=None, batch_format="numpy"):
            for row in batch["row"]:
                yield json.loads(row)
    finally:
        if started_here:
            ray.shutdown()  # the local instance and its actors go with the job
