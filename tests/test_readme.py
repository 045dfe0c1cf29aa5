"""The README's first Python block runs as written (it defines its own inputs) with the real default preset."""

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
