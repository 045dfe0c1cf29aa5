"""scripts/ holds thin drivers of package functions: none edits sys.path or imports another script, and each is
run by a test (here, or in the test file named for it) at least on a tiny input."""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
from pathlib import Path

from conftest import REPO, make_tiny_preset

SCRIPTS = REPO / "scripts"
# Where each script is run (besides this file): a new script needs a test before it lands.
RUN_BY = {
    "card_quality": "tests/test_documents.py",
    "documents": "tests/test_documents.py",
    "domain_table": "tests/test_scripts.py",
    "int8_quality": "tests/test_int8_scripts.py",
    "int8_tables": "tests/test_int8_scripts.py",
    "long_lists": "tests/test_scripts.py",
    "preset_card_numbers": "tests/test_scripts.py",
    "pseudo_corpus": "tests/test_pseudo_corpus.py",
    "ship_on_base": "tests/test_ship_on_base.py",
    "validation_scores": "tests/test_validation_scores.py",
}


def run(script: str, *args: str, cwd: Path = REPO) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    return subprocess.run([sys.executable, str(SCRIPTS / f"{script}.py"), *args], capture_output=True, text=True,
                          cwd=cwd, env=env, timeout=600)


def test_every_script_is_run_by_a_named_test():
    assert {p.stem for p in SCRIPTS.glob("*.py")} == set(RUN_BY)
    for script, test in RUN_BY.items():
        assert script in (REPO / test).read_text(encoding="utf-8"), (script, test)


def test_no_script_edits_sys_path_or_imports_another():
    names = {p.stem for p in SCRIPTS.glob("*.py")}
    found = []
    for path in sorted(SCRIPTS.glob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.Attribute) and node.attr == "path" and getattr(node.value, "id", None) == "sys":
                found.append(f"{path.name}: sys.path")
            if isinstance(node, ast.Import):
                found += [f"{path.name}: import {a.name}" for a in node.names if a.name.split(".")[0] in names]
            if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] in names:
                found.append(f"{path.name}: from {node.module}")
    assert found == []


def test_the_table_scripts_print_their_blocks():
    for script, args in (("domain_table", ["table"]), ("domain_table", ["zero-label"]), ("long_lists", ["table"]),
                         ("long_lists", ["deep-rule"])):
        done = run(script, *args)
        assert done.returncode == 0 and done.stdout.startswith("|"), (script, args, done.stderr[-500:])


def test_preset_card_numbers_fills_the_latency_rows(tiny_base, tmp_path):
    from headrank.engine.checkpoint import InferenceSettings
    from headrank.engine.presets import load_preset

    preset = make_tiny_preset(tiny_base, tmp_path / "p", InferenceSettings())
    latency = tmp_path / "lat.json"
    latency.write_text(json.dumps({"latency": [{"method": "this preset", "seconds_per_list": 1.25}],
                                   "latency_meta": {"lists": 2, "threads": 2, "torch": "2.x"}}))
    done = run("preset_card_numbers", str(preset), "--latency", str(latency))
    assert done.returncode == 0, done.stderr[-2000:]
    card = load_preset(preset).card
    assert card["latency"] == [{"method": "this preset", "seconds_per_list": 1.25}] and "--queries 2" in card["latency_source"]
    assert "| this preset | 1.25 | 1.00x" in (preset / "README.md").read_text()
