"""scripts/validation_scores.py resumes only what the same ranker computed on the same lists."""

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))
import validation_scores  # noqa: E402


def write_rows(path: Path, rows: list[dict]) -> None:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))


def test_the_key_follows_the_checkpoint_files_and_on_base(tmp_path):
    ckpt = tmp_path / "ckpt"
    ckpt.mkdir()
    (ckpt / "headset.json").write_text('{"heads": [[1, 2]]}')
    key = validation_scores.ranker_key(str(ckpt), False)
    assert validation_scores.ranker_key(str(ckpt), False) == key
    assert validation_scores.ranker_key(str(ckpt), True) != key
    (ckpt / "headset.json").write_text('{"heads": [[1, 3]]}')  # retrained or re-chosen in place
    assert validation_scores.ranker_key(str(ckpt), False) != key


def test_a_file_of_another_ranker_is_refused_not_extended(tmp_path):
    out = tmp_path / "scores.jsonl"
    write_rows(out, [{"set": "cisi", "qid": "1", "docids": ["a", "b"], "scores": [0.1, 0.2], "ranker": "old"}])
    with pytest.raises(SystemExit, match="another ranker"):
        validation_scores.finished_lists(out, "new")
    write_rows(out, [{"set": "cisi", "qid": "1", "docids": ["a", "b"], "scores": [0.1, 0.2]}])  # before the key
    with pytest.raises(SystemExit, match="another ranker"):
        validation_scores.finished_lists(out, "new")


def test_finished_lists_carry_their_docids(tmp_path):
    """main() skips a list only when the recorded docids equal the plan's: a changed candidate file reruns it."""
    out = tmp_path / "scores.jsonl"
    assert validation_scores.finished_lists(out, "k") == {}
    write_rows(out, [{"set": "cisi", "qid": "1", "docids": ["a", "b"], "scores": [0.1, 0.2], "ranker": "k"},
                     {"set": "npl", "qid": "7", "docids": ["c"], "scores": [0.0], "ranker": "k"}])
    assert validation_scores.finished_lists(out, "k") == {("cisi", "1"): ["a", "b"], ("npl", "7"): ["c"]}


def test_a_line_cut_short_by_a_kill_is_dropped_before_appending(tmp_path):
    out = tmp_path / "scores.jsonl"
    whole = json.dumps({"set": "cisi", "qid": "1", "docids": ["a"], "scores": [0.1], "ranker": "k"}) + "\n"
    out.write_text(whole + '{"set": "cisi", "qid": "2", "docids": ["b", ')
    assert validation_scores.finished_lists(out, "k") == {("cisi", "1"): ["a"]}
    assert out.read_text() == whole
