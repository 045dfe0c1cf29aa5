"""Reading queries and candidate passages from the formats users have.

- RankGPT / rank_llm JSON: ``[{"query": str, "hits": [{"content", "qid", "docid", ...}]}]`` (or one object)
- JSONL: one passage object per line (``text``/``content``/``contents``/``passage``, optional
  ``docid``/``id``/``pid``/``_id``); a line holding only ``query`` (and ``qid``) sets the query, or every
  passage line carries the same ``query``
- TSV: ``docid<TAB>text`` per line, or just ``text``

A malformed line raises DataFormatError naming the file and line.
"""

from __future__ import annotations

import json
import logging
import math
import re
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

TEXT_KEYS = ("text", "content", "contents", "passage")
ID_KEYS = ("docid", "id", "pid", "_id", "doc_id")
FORMATS = ("auto", "rankgpt", "jsonl", "tsv")

logger = logging.getLogger(__name__)


class DataFormatError(ValueError):
    """Input that cannot be parsed; the message names the file and line."""


def warn(message: str) -> None:
    logger.warning("%s", message)


class FirstKept(dict):
    """A table keyed by id in which the first occurrence wins, the one rule of every reader: a repeated id is
    reported to ``report`` (default: a warning; batch runs list it in problems.txt or fail on it) with the file,
    its line, the first one's line and whether its text differs, and never replaces the first."""

    def __init__(self, name: str, what: str, report=None) -> None:
        super().__init__()
        self.name, self.what, self.report = name, what, report or warn
        self.lines: dict[str, int] = {}
        self.repeats = 0

    def add(self, key: str, value, lineno: int) -> None:
        if key in self:
            self.repeats += 1
            same = "the same" if self[key] == value else "another"
            self.report(f"{self.name}:{lineno}: repeated {self.what} {key!r} with {same} text (first at line "
                        f"{self.lines[key]}); the first is kept")
            return
        self[key], self.lines[key] = value, lineno


def id_text(value, where: str, what: str = "id") -> str:
    """An id as text: strings and integers only; None, booleans, floats, lists, dicts and empty ids are refused
    (their Python form is no one's id)."""
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise DataFormatError(f"{where}: {what} must be a string or an integer, got {type(value).__name__} "
                              f"{json.dumps(value, default=str)[:40]}")
    text = str(value)
    if not text.strip():
        raise DataFormatError(f"{where}: empty {what}")
    return text


@dataclass
class Candidate:
    docid: str
    text: str


@dataclass
class RerankInput:
    """One query and its candidates, in first-stage order."""

    query: str | None
    qid: str | None = None
    candidates: list[Candidate] = field(default_factory=list)
    source_format: str = "rankgpt"  # rankgpt files are first-stage rankings; tsv / jsonl may be in any order


def read_text(path: str | Path) -> tuple[str, str]:
    """A whole input file (or stdin) as text: UTF-8, a leading byte-order mark dropped."""
    if str(path) == "-":
        raw, name = sys.stdin.buffer.read(), "<stdin>"
    else:
        path = Path(path)
        if path.is_dir():
            raise DataFormatError(f"{path} is a directory; pass a candidate file (RankGPT JSON, JSONL or TSV)")
        if not path.is_file():
            raise FileNotFoundError(f"input file not found: {path}")
        raw, name = path.read_bytes(), str(path)
    try:
        return raw.decode("utf-8-sig"), name  # -sig: a BOM must not end up inside the first id
    except UnicodeDecodeError as err:
        raise DataFormatError(f"{name}: not UTF-8 text ({err})") from None


def read_text_file(path: str | Path) -> str:
    """A UTF-8 text file's content (BOM dropped); directories, missing files and other encodings are refused."""
    return read_text(path)[0]


def text_lines(text: str) -> list[str]:
    """Lines split at \\n (and \\r\\n) only. ``str.splitlines`` also splits at form feeds, \\x1c-\\x1e, \\x85 and
    U+2028/2029, which occur inside passages and JSON strings and would cut a record in two."""
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    return [line[:-1] if line.endswith("\r") else line for line in lines]


def appendable_lines(path: Path) -> list[str]:
    """The whole lines of a JSON-lines file that a resumed run appends to. A last line cut short by a kill (no
    newline) is removed from the file first, so that the next record starts on a line of its own instead of
    being glued to the torn one."""
    text = path.read_text(encoding="utf-8")
    if text and not text.endswith("\n"):
        text = text[:text.rfind("\n") + 1]
        path.write_text(text, encoding="utf-8")
        logger.warning("%s: dropped a last line that was cut short (an interrupted write)", path)
    return [line for line in text_lines(text) if line.strip()]


def detect_format(text: str, name: str) -> str:
    if name.endswith(".tsv"):
        return "tsv"
    if name.endswith(".jsonl"):
        return "jsonl"
    stripped = text.lstrip()
    if stripped.startswith("["):
        return "rankgpt"
    if stripped.startswith("{"):
        first_line = text_lines(stripped)[0]
        try:
            obj = json.loads(first_line)
        except json.JSONDecodeError:
            return "rankgpt"  # a pretty-printed single object
        return "rankgpt" if isinstance(obj, dict) and "hits" in obj else "jsonl"
    return "rankgpt" if name.endswith(".json") else "tsv"  # a broken .json file reports its JSON error


def read_rerank_input(path: str | Path, fmt: str = "auto", entry: int = 0) -> RerankInput:
    """Read one query's candidates; ``entry`` picks the query in a multi-query RankGPT file.

    Duplicate docids are refused: a run and its metrics key passages by docid.
    """
    data = _read_rerank_input(path, fmt, entry)
    seen: set[str] = set()
    for c in data.candidates:
        if c.docid in seen:
            hint = (" (a TSV line is 'docid<TAB>text': a 'query<TAB>passage' file repeats its query as the docid;"
                    " keep the passages and pass the query with --query)" if data.source_format == "tsv" else "")
            raise DataFormatError(f"{'<stdin>' if str(path) == '-' else path}: docid {c.docid!r} appears twice{hint}")
        seen.add(c.docid)
    return data


def _read_rerank_input(path: str | Path, fmt: str, entry: int) -> RerankInput:
    if fmt not in FORMATS:
        raise ValueError(f"unknown input format {fmt!r}; choose one of {', '.join(FORMATS)}")
    text, name = read_text(path)
    if fmt == "auto":
        fmt = detect_format(text, name)
    if fmt == "rankgpt":
        return _parse_rankgpt(text, name, entry)
    data = _parse_jsonl(text, name) if fmt == "jsonl" else _parse_tsv(text, name)
    data.source_format = fmt
    return data


def _parse_rankgpt(text: str, name: str, entry: int, data: list | None = None) -> RerankInput:
    if data is None:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as err:
            raise DataFormatError(f"{name}:{err.lineno}: invalid JSON ({err.msg})") from None
    entries = data if isinstance(data, list) else [data]
    if not entries:
        raise DataFormatError(f"{name}: the file holds no query entries")
    if not 0 <= entry < len(entries):
        raise DataFormatError(f"{name}: entry {entry} requested but the file holds {len(entries)} entries")
    item = entries[entry]
    if not isinstance(item, dict) or not isinstance(item.get("query"), str) or not isinstance(item.get("hits"), list):
        raise DataFormatError(f"{name}: entry {entry} needs a string 'query' and a list 'hits'")
    candidates = []
    qid = None
    for rank, hit in enumerate(item["hits"]):
        if not isinstance(hit, dict) or not isinstance(hit.get("content"), str):
            raise DataFormatError(f"{name}: entry {entry}, hit {rank}: needs a string 'content'")
        where = f"{name}: entry {entry}, hit {rank}"
        qid = qid or (id_text(hit["qid"], where, "'qid'") if "qid" in hit else None)
        docid = id_text(hit["docid"], where, "'docid'") if "docid" in hit else str(rank)
        candidates.append(Candidate(docid=docid, text=hit["content"]))
    return RerankInput(query=item["query"], qid=qid, candidates=candidates)


def jsonl_objects(text: str, name: str, on_problem=None):
    """(line number, object) for every non-blank line; a malformed line raises DataFormatError naming the file
    and line, or with ``on_problem`` is reported to it and skipped."""
    for lineno, line in enumerate(text_lines(text), start=1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
            problem = None if isinstance(obj, dict) else f"expected a JSON object, got {type(obj).__name__}"
        except json.JSONDecodeError as err:
            problem = f"invalid JSON ({err.msg})"
        if problem is not None:
            if on_problem is None:
                raise DataFormatError(f"{name}:{lineno}: {problem}")
            on_problem(f"{name}:{lineno}: {problem}")
            continue
        yield lineno, obj


def _parse_jsonl(text: str, name: str) -> RerankInput:
    """Passage lines, and at most one ``query`` line (a second one would silently replace the first); passage
    lines may also carry the query, the same on every line."""
    out = RerankInput(query=None)
    query_line = None
    for lineno, obj in jsonl_objects(text, name):
        text_key = next((k for k in TEXT_KEYS if k in obj), None)
        if text_key is None and not isinstance(obj.get("query"), str):
            raise DataFormatError(f"{name}:{lineno}: no passage text (one of {', '.join(TEXT_KEYS)})")
        if text_key is None and query_line is not None:
            raise DataFormatError(f"{name}:{lineno}: a second query line (the first is line {query_line}); "
                                  "a JSONL file holds one query (use rerank-batch for several)")
        if isinstance(obj.get("query"), str):  # a query line, or passage lines repeating it (qid, query, docid, text)
            if out.query is not None and obj["query"] != out.query:
                raise DataFormatError(f"{name}:{lineno}: the query differs from an earlier line's; a JSONL file "
                                      "holds one query (use rerank-batch for several)")
            out.query, out.qid = obj["query"], str(obj["qid"]) if "qid" in obj else out.qid
        if text_key is None:
            query_line = lineno
            continue
        if not isinstance(obj[text_key], str):
            raise DataFormatError(f"{name}:{lineno}: '{text_key}' must be a string")
        id_key = next((k for k in ID_KEYS if k in obj), None)
        docid = id_text(obj[id_key], f"{name}:{lineno}", f"'{id_key}'") if id_key else str(len(out.candidates))
        out.candidates.append(Candidate(docid=docid, text=obj[text_key]))
    return out


def _parse_tsv(text: str, name: str) -> RerankInput:
    """``docid<TAB>text`` lines or ``text`` lines (ids 0, 1, ... by position), not a mix of the two: a
    position id could then collide with an explicit one."""
    out = RerankInput(query=None)
    first_of = {}  # 1 or 2 columns -> the first line of that kind
    for lineno, line in enumerate(text_lines(text), start=1):
        if not line.strip():
            continue
        fields = line.split("\t")
        if len(fields) > 2:
            raise DataFormatError(f"{name}:{lineno}: expected 'docid<TAB>text' or 'text', got {len(fields)} columns")
        first_of.setdefault(len(fields), lineno)
        if len(first_of) == 2:
            raise DataFormatError(f"{name}:{lineno}: lines with a docid (line {first_of[2]}) and lines with only "
                                  f"a text (line {first_of[1]}) are mixed; give every line a docid, or none")
        if len(fields) == 1:
            out.candidates.append(Candidate(docid=str(len(out.candidates)), text=fields[0]))
        else:
            out.candidates.append(Candidate(docid=id_text(fields[0], f"{name}:{lineno}", "docid"), text=fields[1]))
    return out


# ---------------------------------------------------------------------------- evaluation formats

Qrels = dict[str, dict[str, int]]
Run = dict[str, list[tuple[str, float]]]


def read_rankgpt_file(path: str | Path) -> list[RerankInput]:
    """Every query of a RankGPT / rank_llm candidate file, candidates in first-stage order."""
    text, name = read_text(path)
    try:
        data = json.loads(text)
    except json.JSONDecodeError as err:
        raise DataFormatError(f"{name}:{err.lineno}: invalid JSON ({err.msg})") from None
    entries = data if isinstance(data, list) else [data]
    return [_parse_rankgpt(text, name, i, data=entries) for i in range(len(entries))]


def read_qrels(path: str | Path) -> Qrels:
    """TREC qrels (``qid 0 docid grade``) or BEIR qrels TSV (``query-id corpus-id score``, header optional)."""
    text, name = read_text(path)
    qrels: Qrels = {}
    for lineno, line in enumerate(text_lines(text), start=1):
        fields = line.split()
        if not fields:
            continue
        if lineno == 1 and fields[0] in ("query-id", "qid", "query_id"):
            continue
        if len(fields) == 4:
            qid, _, docid, grade = fields
        elif len(fields) == 3:
            qid, docid, grade = fields
        else:
            raise DataFormatError(f"{name}:{lineno}: expected 'qid 0 docid grade' or 'qid docid grade'")
        try:
            value = int(grade)
        except ValueError:
            raise DataFormatError(f"{name}:{lineno}: relevance grade {grade!r} is not an integer") from None
        judged = qrels.setdefault(qid, {})
        if docid in judged:
            if judged[docid] != value:
                warn(f"{name}:{lineno}: a second judgment of document {docid!r} for query {qid!r} (grade {value}; "
                     f"the first said {judged[docid]}); the first is kept")
            continue
        judged[docid] = value
    if not qrels:
        raise DataFormatError(f"{name}: no relevance judgments")
    return qrels


def read_topics(path: str | Path, on_problem=None, what: str = "topics") -> dict[str, str]:
    """``id<TAB>text`` per line (topics, or a TSV corpus); the text may itself contain tabs.

    A malformed line raises DataFormatError, or with ``on_problem`` is reported to it (``"file:line: ..."``)
    and skipped. A repeated id keeps the first line's text and is reported (``FirstKept``).
    """
    text, name = read_text(path)
    topics = FirstKept(name, "id", on_problem)
    for lineno, line in enumerate(text_lines(text), start=1):
        if not line.strip():
            continue
        fields = line.split("\t", 1)
        if len(fields) != 2 or not fields[0].strip():
            message = f"{name}:{lineno}: expected 'id<TAB>text' in the {what}"
            if on_problem is None:
                raise DataFormatError(message)
            on_problem(message)
            continue
        topics.add(fields[0].strip(), fields[1], lineno)
    return topics


def trec_run_rows(text: str, name: str):
    """Each non-empty line of a TREC run as ``(where, (qid, docid, rank, score), None)``, or
    ``(where, None, problem)`` for a malformed line (``where`` is ``file:line``)."""
    for lineno, line in enumerate(text_lines(text), start=1):
        fields = line.split()
        if not fields:
            continue
        where = f"{name}:{lineno}"
        if len(fields) != 6:
            yield where, None, "expected 'qid Q0 docid rank score tag'"
            continue
        qid, _, docid, rank, score, _ = fields
        try:
            yield where, (qid, docid, int(rank), float(score)), None
        except ValueError:
            yield where, None, "rank and score must be numbers"


def read_trec_run(path: str | Path) -> Run:
    """A TREC run file; each query's documents sorted by descending score (ties by rank column)."""
    text, name = read_text(path)
    rows: dict[str, list[tuple[float, int, str]]] = {}
    for where, row, problem in trec_run_rows(text, name):
        if problem:
            raise DataFormatError(f"{where}: {problem}")
        qid, docid, rank, score = row
        rows.setdefault(qid, []).append((score, rank, docid))
    return {qid: [(d, s) for s, _, d in sorted(r, key=lambda x: (-x[0], x[1]))] for qid, r in rows.items()}


def check_trec_token(value: str, what: str) -> str:
    """A TREC run field (qid, docid, tag) is one non-empty token: whitespace would shift every column after it."""
    if not isinstance(value, str) or not value or any(ch.isspace() for ch in value):
        raise ValueError(f"{what} {value!r} cannot go into a TREC run: it must be non-empty and without whitespace")
    return value


def trec_line(qid: str, docid: str, rank: int, score: float, tag: str) -> str:
    """One TREC run line; a non-finite score (an empty passage's -inf) is written as -1e9."""
    score = score if math.isfinite(score) else -1e9
    return (f"{check_trec_token(qid, 'qid')} Q0 {check_trec_token(docid, 'docid')} {rank} {score:.6f} "
            f"{check_trec_token(tag, 'run tag')}")


TREC_SCORE_STEP = 1e-6  # the resolution of a written score (six decimals)


def strictly_decreasing(scores: Sequence[float]) -> list[float]:
    """Scores in rank order made strictly decreasing at the written resolution, so that trec_eval (which sorts
    by score, then by docid) evaluates exactly the order shown. A score that is not below the one before it
    (a tie, or an empty passage's -inf written as -1e9) becomes that one minus one step; others are unchanged."""
    out, previous = [], None
    for score in scores:
        units = round((score if math.isfinite(score) else -1e9) / TREC_SCORE_STEP)
        if previous is not None and units >= previous:
            units = previous - 1
        out.append(units * TREC_SCORE_STEP)
        previous = units
    return out


def trec_lines(qid: str, ranked: Sequence[tuple[str, float]], tag: str) -> list[str]:
    """One query's TREC lines, ranks 1.. in the order given, scores strictly decreasing (``strictly_decreasing``)."""
    scores = strictly_decreasing([score for _, score in ranked])
    return [trec_line(qid, docid, rank, score, tag)
            for rank, ((docid, _), score) in enumerate(zip(ranked, scores), start=1)]


def write_trec_run(path: str | Path, run: Run, tag: str) -> None:
    """Write a TREC run; ranks follow the order given, and so does trec_eval (``trec_lines``)."""
    lines = [line for qid, docs in run.items() for line in trec_lines(qid, docs, tag)]
    Path(path).write_text("".join(line + "\n" for line in lines))


def read_jsonl_objects(path: str | Path) -> list[dict]:
    text, name = read_text(path)
    return [obj for _, obj in jsonl_objects(text, name)]


def check_split(split: str) -> None:
    """A BEIR split names a file in ``qrels/`` and a run folder: a plain name, never a path."""
    if not isinstance(split, str) or not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_-]*", split):
        raise ValueError(f"split must be a plain name such as test, dev or train (letters, digits, '-', '_'), "
                         f"got {split!r}")


def read_beir(folder: str | Path, split: str = "test") -> tuple[dict[str, str], dict[str, str], Qrels]:
    """A BEIR folder: corpus (``title`` + ``text``), queries and ``qrels/<split>.tsv``."""
    folder = Path(folder)
    check_split(split)
    qrels_path = folder / "qrels" / f"{split}.tsv"
    if not qrels_path.is_file():
        raise FileNotFoundError(f"{folder}: no qrels/{split}.tsv (is this a BEIR folder?)")
    text, name = read_text(folder / "corpus.jsonl")
    corpus = FirstKept(name, "_id")
    for lineno, obj in jsonl_objects(text, name):
        if "_id" not in obj:
            raise DataFormatError(f"{name}:{lineno}: a document has no '_id'")
        parts = [obj.get(k) for k in ("title", "text")]
        if any(p is not None and not isinstance(p, str) for p in parts):
            raise DataFormatError(f"{name}:{lineno}: 'title' and 'text' must be strings")
        corpus.add(id_text(obj["_id"], f"{name}:{lineno}", "_id"), " ".join(p for p in parts if p), lineno)
    text, name = read_text(folder / "queries.jsonl")
    queries = FirstKept(name, "query _id")
    for lineno, obj in jsonl_objects(text, name):
        if "_id" not in obj or not isinstance(obj.get("text"), str):
            raise DataFormatError(f"{name}:{lineno}: a query needs '_id' and 'text'")
        queries.add(id_text(obj["_id"], f"{name}:{lineno}", "_id"), obj["text"], lineno)
    return corpus, queries, read_qrels(qrels_path)


# ------------------------------------------------------------------------------------------------ corpora


def collect_problem(problems: list[str], on_error: str, message: str) -> None:
    """A reader's problem: raised under ``on_error="fail"``, else listed (for problems.txt) and skipped."""
    if on_error == "fail":
        raise DataFormatError(message)
    problems.append(message)


def is_encodable(text: str) -> bool:
    """False for text with a lone surrogate (a JSON escape such as "\\ud800"), which no tokenizer takes."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def read_corpus(path: str | Path, on_error: str = "skip", problems: list[str] | None = None) -> dict[str, str]:
    """A corpus: BEIR folder or ``corpus.jsonl`` (``_id``/``docid``/``id``, ``title`` + ``text``), or TSV."""
    problems = [] if problems is None else problems
    path = Path(path)
    if path.is_dir():
        path = path / "corpus.jsonl"
    if path.suffix != ".jsonl":
        return read_topics(path, on_problem=lambda message: collect_problem(problems, on_error, message), what="corpus")
    text, name = read_text(path)
    report = lambda message: collect_problem(problems, on_error, message)  # noqa: E731
    docs = FirstKept(name, "document id", report)
    for lineno, obj in jsonl_objects(text, name, report):
        key = next((obj[k] for k in ("_id", "docid", "id") if k in obj), None)
        body = " ".join(obj[k] for k in ("title", "text") if isinstance(obj.get(k), str) and obj[k]) or obj.get("contents")
        if key is None or not isinstance(body, str) or not body:
            report(f"{name}:{lineno}: a document needs an id and a text")
            continue
        if not is_encodable(body):  # a JSON escape such as "\ud800": no tokenizer takes it
            report(f"{name}:{lineno}: the text of document {key!r} is not valid Unicode (a lone surrogate)")
            continue
        try:
            docs.add(id_text(key, f"{name}:{lineno}", "document id"), body, lineno)
        except DataFormatError as err:
            report(str(err))
    return docs
