"""Numbers in README.md / RESULTS.md / BENCHMARKS.md generated blocks come from recorded results (issue 28)."""

import shutil
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))

import documents  # noqa: E402


def test_every_generated_block_matches_its_source():
    assert documents.stale_blocks() == []
    text = "".join((ROOT / name).read_text() for name in documents.DOCUMENTS)
    for name in documents.GENERATORS:
        assert f"<!-- generated: {name} -->" in text, f"no document shows the {name} block"


def test_a_number_edited_by_hand_is_caught(tmp_path, monkeypatch):
    for name in documents.DOCUMENTS:
        shutil.copy(ROOT / name, tmp_path / name)
    readme = tmp_path / "README.md"
    text = readme.read_text()
    start = text.index("<!-- generated: presets-table -->")
    bold = text.index("**0.", start)  # the default preset's four-set average
    readme.write_text(text[: bold + 2] + "9" + text[bold + 3:])
    monkeypatch.setattr(documents, "ROOT", tmp_path)
    assert documents.stale_blocks() == ["README.md: presets-table"]
    documents.stale_blocks(write=True)
    assert documents.stale_blocks() == []
