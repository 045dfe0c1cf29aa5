"""Reading queries and candidate passages from the formats users have.

- RankGPT / rank_llm JSON: ``[{"query": str, "hits": [{"content", "qid", "docid", ...}]}]`` (or one object)
- JSONL: one passage object per line (``text``/``content``/``contents``/``passage``, optional
  ``docid``/``id``/``pid``/``_id``); a line holding only ``query`` (and ``qid``) sets the query
- TSV: ``docid<TAB>text`` per line, or just ``text``

A malformed line raises DataFormatError naming the file and line.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass, field
from pathlib import Path

TEXT_KEYS = ("text", "content", "contents", "passage")
ID_KEYS = ("docid", "id", "pid", "_id", "doc_id")
FORMATS = ("auto", "rankgpt", "jsonl", "tsv")


class DataFormatError(ValueError):
    """Input that cannot be parsed; the message names the file and line."""


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


def _read_text(path: str | Path) -> tuple[str, str]:
    if str(path) == "-":
        return sys.stdin.read(), "<stdin>"
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"input file not found: {path}")
    try:
        return path.read_text(encoding="utf-8"), str(path)
    except UnicodeDecodeError as err:
        raise DataFormatError(f"{path}: not UTF-8 text ({err})") from None


def detect_format(text: str, name: str) -> str:
    if name.endswith(".tsv"):
        return "tsv"
    if name.endswith(".jsonl"):
        return "jsonl"
    stripped = text.lstrip()
    if stripped.startswith("["):
        return "rankgpt"
    if stripped.startswith("{"):
        first_line = stripped.splitlines()[0]
        try:
            obj = json.loads(first_line)
        except json.JSONDecodeError:
            return "rankgpt"  # a pretty-printed single object
        return "rankgpt" if isinstance(obj, dict) and "hits" in obj else "jsonl"
    return "tsv"


def read_rerank_input(path: str | Path, fmt: str = "auto", entry: int = 0) -> RerankInput:
    """Read one query's candidates; ``entry`` picks the query in a multi-query RankGPT file."""
    if fmt not in FORMATS:
        raise ValueError(f"unknown input format {fmt!r}; choose one of {', '.join(FORMATS)}")
    text, name = _read_text(path)
    if fmt == "auto":
        fmt = detect_format(text, name)
    if fmt == "rankgpt":
        return _parse_rankgpt(text, name, entry)
    if fmt == "jsonl":
        return _parse_jsonl(text, name)
    return _parse_tsv(text, name)


def _parse_rankgpt(text: str, name: str, entry: int) -> RerankInput:
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
        qid = qid or (str(hit["qid"]) if "qid" in hit else None)
        candidates.append(Candidate(docid=str(hit.get("docid", rank)), text=hit["content"]))
    return RerankInput(query=item["query"], qid=qid, candidates=candidates)


def _parse_jsonl(text: str, name: str) -> RerankInput:
    out = RerankInput(query=None)
    for lineno, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as err:
            raise DataFormatError(f"{name}:{lineno}: invalid JSON ({err.msg})") from None
        if not isinstance(obj, dict):
            raise DataFormatError(f"{name}:{lineno}: expected a JSON object, got {type(obj).__name__}")
        text_key = next((k for k in TEXT_KEYS if k in obj), None)
        if text_key is None:
            if isinstance(obj.get("query"), str):
                out.query, out.qid = obj["query"], str(obj["qid"]) if "qid" in obj else out.qid
                continue
            raise DataFormatError(f"{name}:{lineno}: no passage text (one of {', '.join(TEXT_KEYS)})")
        if not isinstance(obj[text_key], str):
            raise DataFormatError(f"{name}:{lineno}: '{text_key}' must be a string")
        id_key = next((k for k in ID_KEYS if k in obj), None)
        docid = str(obj[id_key]) if id_key else str(len(out.candidates))
        out.candidates.append(Candidate(docid=docid, text=obj[text_key]))
    return out


def _parse_tsv(text: str, name: str) -> RerankInput:
    out = RerankInput(query=None)
    for lineno, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        fields = line.split("\t")
        if len(fields) == 1:
            out.candidates.append(Candidate(docid=str(len(out.candidates)), text=fields[0]))
        elif len(fields) == 2:
            out.candidates.append(Candidate(docid=fields[0], text=fields[1]))
        else:
            raise DataFormatError(f"{name}:{lineno}: expected 'docid<TAB>text' or 'text', got {len(fields)} columns")
    return out
