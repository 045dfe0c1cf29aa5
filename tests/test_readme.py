"""The README's first Python block runs as written (it defines its own inputs) with the real default preset."""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"


@pytest.mark.integration
def test_readme_python_quick_start_runs(tmp_path):
    block = re.search(r"## Python API\n\n```python\n(.*?)\n```", README.read_text(), re.S)
    assert block, "the README lost its Python quick start"
    script = tmp_path / "quick_start.py"
    script.write_text(block.group(1))
    proc = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "HeadRanker(preset=" in proc.stdout and "InferenceSettings(" in proc.stdout


@pytest.mark.integration
def test_readme_pipeline_examples_run(tmp_path):
    """Each framework's example in the README runs as written against the real package and the real small preset."""
    text = README.read_text()
    section = text.split("## In your pipeline: LangChain, LlamaIndex, Haystack, rerankers", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```python\n(.*?)\n```", section, re.S)
    frameworks = ["langchain", "llama_index", "haystack", "rerankers_lib"]
    assert [next(f for f in frameworks if f"headrank.integrations.{f}" in b) for b in blocks] == frameworks
    expected = ["b {'source': 'energy', 'relevance_score':", "b", "Solar", "b"]  # BM25 + fusion: either solar text
    for block, want in zip(blocks, expected):
        script = tmp_path / "example.py"
        script.write_text(block)
        proc = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=600,
                              env={**os.environ, "HEADRANK_API_KEY": ""})
        assert proc.returncode == 0, proc.stderr[-3000:]
        assert proc.stdout.splitlines()[0].startswith(want), (block, proc.stdout)
