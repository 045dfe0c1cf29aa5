"""What `pip install headrank` gets: the built wheel holds every file the package needs, and the shipped presets
load from an installed (not editable) copy. An editable install reads the source tree, so a package-data glob
that misses a new preset file would only show up for users."""

import shutil
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _tracked_files() -> list[str]:
    """The checkout's files under version control that exist in the working tree (edits included)."""
    try:
        out = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        pytest.skip("not a git checkout: cannot list the package's tracked files")
    return [line for line in out.splitlines() if line and (ROOT / line).is_file()]


def _tracked_package_files() -> list[str]:
    """Files of the `headrank` package under version control, as paths inside a wheel."""
    return [f.removeprefix("src/") for f in _tracked_files() if f.startswith("src/headrank/")]


@pytest.fixture(scope="module")
def source(tmp_path_factory) -> Path:
    """A clean copy of the tracked files: a build folder or egg-info left in the checkout by an earlier build
    would otherwise put files in the wheel that the package-data globs miss."""
    source = tmp_path_factory.mktemp("source")
    for name in _tracked_files():
        (source / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / name, source / name)
    return source


@pytest.fixture(scope="module")
def wheel(source, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    result = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                             "-w", str(out), str(source)], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    (built,) = out.glob("headrank-*.whl")
    return built


def test_wheel_holds_every_tracked_package_file(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    missing = [f for f in _tracked_package_files() if f not in names]
    assert not missing, f"not in the wheel (add them to [tool.setuptools.package-data]): {missing}"
    assert not [n for n in names if n.endswith((".gguf", ".bin"))], "base-model weights must never ship"


def test_sdist_holds_every_tracked_package_file(source, tmp_path):
    """`pip install headrank` from a source distribution builds the wheel from it: it needs the same files."""
    code = f"from setuptools import build_meta; print(build_meta.build_sdist({str(tmp_path)!r}))"
    result = subprocess.run([sys.executable, "-c", code], cwd=source, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    (sdist,) = tmp_path.glob("headrank-*.tar.gz")
    with tarfile.open(sdist) as tar:
        names = {name.split("/", 1)[1] for name in tar.getnames() if "/" in name}
    missing = [f for f in _tracked_package_files() + ["pyproject.toml", "README.md"] if f"src/{f}" not in names
               and f not in names]
    assert not missing, f"not in the source distribution: {missing}"


def test_installed_wheel_lists_and_loads_the_shipped_presets(wheel, tmp_path):
    target = tmp_path / "site"
    result = subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "--no-compile", "-q",
                             "--target", str(target), str(wheel)], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    probe = (
        "import headrank, sys\n"
        f"assert headrank.__file__.startswith({str(target)!r}), headrank.__file__\n"
        "from headrank.engine.heads import HeadSet\n"
        "from headrank.engine.presets import DEFAULT_PRESET, list_presets\n"
        "presets = list_presets()\n"
        "assert DEFAULT_PRESET in [p.name for p in presets]\n"
        "for p in presets:\n"
        "    HeadSet.load(p.path / 'headset.json')\n"
        "    assert (p.path / 'README.md').is_file()\n"
        "    print(p.name, p.headline.get('preset'))\n"
    )
    env = {"PYTHONPATH": str(target), "PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}
    run = subprocess.run([sys.executable, "-c", probe], cwd=tmp_path, env=env, capture_output=True, text=True,
                         timeout=120)
    assert run.returncode == 0, run.stderr[-3000:]
    assert "headrank-qwen2.5-coder-0.5b" in run.stdout and "headrank-smollm2-135m" in run.stdout
