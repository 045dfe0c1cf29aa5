"""scripts/pseudo_corpus.py: a corpus from candidate lists (zero-label adaptation where the collection is absent)."""

import json
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "pseudo_corpus.py"


def test_union_keeps_each_passage_once(tmp_path):
    lists = [{"query": "a", "hits": [{"docid": "d1", "content": "first"}, {"docid": 2, "content": "two"}]},
             {"query": "b", "hits": [{"docid": "d1", "content": "first"}, {"docid": "d3", "content": "three"}]}]
    (tmp_path / "lists.json").write_text(json.dumps(lists))
    out = tmp_path / "c" / "corpus.jsonl"
    subprocess.run([sys.executable, str(SCRIPT), str(tmp_path / "lists.json"), "--out", str(out)], check=True)
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert rows == [{"_id": "d1", "text": "first"}, {"_id": "2", "text": "two"}, {"_id": "d3", "text": "three"}]


def test_hits_without_docids_or_bad_json_get_a_clear_error(tmp_path):
    no_ids = [{"query": "a", "hits": [{"content": "one"}]}, {"query": "b", "hits": [{"content": "two"}]}]
    (tmp_path / "no-ids.json").write_text(json.dumps(no_ids))
    (tmp_path / "broken.json").write_text("[{")
    for name, says in (("no-ids.json", "two different passages"), ("broken.json", "invalid JSON")):
        done = subprocess.run([sys.executable, str(SCRIPT), str(tmp_path / name), "--out", str(tmp_path / "c.jsonl")],
                              capture_output=True, text=True)
        assert done.returncode == 1 and says in done.stderr and "Traceback" not in done.stderr
        assert not (tmp_path / "c.jsonl").exists()
