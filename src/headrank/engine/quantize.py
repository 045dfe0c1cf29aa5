"""int8 inference on CPU: the linear layers of the layers a ranker runs, with int8 weights and int8 activations.

Why this scheme (BENCHMARKS.md, "int8 on CPU"):
- Weights: symmetric int8 per output channel; activations: symmetric int8 per token, quantized at every call
  (dynamic, so nothing is calibrated on data). Per-token scales keep a token with huge activations (the
  attention-sink tokens of Qwen-family models) from crushing every other token's resolution, which a
  per-tensor scale (``torch.ao.quantization.quantize_dynamic``) does.
- The product runs on ``torch._int_mm`` (int8 x int8 -> int32, oneDNN on x86), the kernel that torchao's int8
  path also ends in. ``torch.ao.quantization`` warns that it is deprecated and only has per-tensor activations;
  torchao's int8 dynamic path took twice as long as the bare kernel on the same matrix product on the 2-core
  CPU here. Written around the kernel, a layer costs one matrix product, one pass to quantize its input
  (shared by q/k/v and by gate/up, which read the same tensor) and an in-place rescale of its output.
- Only the MLP's projections are int8 (``DEFAULT_PARTS``): the attention projections and the attention itself
  (softmax of q.k, which the capture reads) stay float32. Captured scores still differ from float32 ones, since
  every layer's input carries the earlier MLPs' rounding; that difference is measured per query (RESULTS.md,
  "int8 on CPU").

Quantized weights are cached under ``$HEADRANK_HOME/int8/``, keyed on the identity of the weights they were
computed from (the model files' names, sizes and modification times, plus a merged adapter's file contents),
the layers and this module's format, so a second start only reads them back.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
import weakref
from collections.abc import Iterable
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import torch
from torch import nn

logger = logging.getLogger(__name__)

QUANTIZE_MODES = ("none", "int8")
PARTS = ("mlp", "self_attn")
# Chosen by measurement on DL21 training lists (BENCHMARKS.md, "int8 on CPU"): the MLP's three projections
# carry about 88% of a Qwen2.5-0.5B layer's linear work; quantizing the attention projections too bought a
# few percent of speed for about 40% more score noise, and leaving them float keeps q.k, which the capture
# reads, exact given the layer's input.
DEFAULT_PARTS = ("mlp",)
FORMAT = "headrank.int8/1"
# Linear layers that read the same input tensor share one quantized copy of it.
_SHARED_INPUT = {"q_proj": "qkv", "k_proj": "qkv", "v_proj": "qkv", "gate_proj": "gate_up", "up_proj": "gate_up"}


def check_quantize(value: object) -> str | None:
    """The one validator of the quantize setting: ``None`` / ``"none"`` (float weights) or ``"int8"``."""
    if value is None or value == "none":
        return None
    if value == "int8":
        return "int8"
    raise ValueError(f"quantize must be one of {', '.join(QUANTIZE_MODES)} (or None), got {value!r}")


def check_quantize_device(quantize: str | None, device: torch.device, dtype: torch.dtype | None = None) -> None:
    """int8 is measured on CPU only, with float32 activations; refuse other combinations before any model loads."""
    if quantize is None:
        return
    if device.type != "cpu":
        raise ValueError(f"quantize='int8' runs on the CPU only (measured there; on a GPU use bfloat16), "
                         f"but the device is {device}; pass device='cpu' or drop quantize")
    if dtype is not None and dtype != torch.float32:
        raise ValueError(f"quantize='int8' keeps activations in float32; dtype {dtype} is not supported with it "
                         "(use dtype 'auto' or 'float32')")


class _SharedInput:
    """The last quantized input of a group of layers (q/k/v, gate/up): a tuple swapped in one assignment, so a
    thread never reads another thread's half-written entry; matched by the input tensor's identity."""

    __slots__ = ("entry",)

    def __init__(self) -> None:
        self.entry: tuple | None = None


def _version(x: torch.Tensor) -> int:
    return -1 if x.is_inference() else x._version


def quantize_rows(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Symmetric int8 per row: ``x ~ q * scale``; ``scale`` has one value per row (shape ``[rows, 1]``)."""
    amax = torch.maximum(x.amax(dim=1, keepdim=True), x.amin(dim=1, keepdim=True).neg_()).clamp_(min=1e-8)
    q = (x * (127.0 / amax)).round_().to(torch.int8)
    return q, amax.div_(127.0)


class Int8Linear(nn.Module):
    """``y = x W^T + b`` with W int8 per output channel and x int8 per token, accumulated in int32."""

    def __init__(self, weight_t: torch.Tensor, scale: torch.Tensor, bias: torch.Tensor | None,
                 shared: _SharedInput | None = None) -> None:
        super().__init__()
        self.register_buffer("weight_t", weight_t)  # int8 [in, out]
        self.register_buffer("scale", scale)  # float32 [out]
        self.bias = nn.Parameter(bias.detach(), requires_grad=False) if bias is not None else None
        self.in_features, self.out_features = weight_t.shape
        self._shared = shared

    @classmethod
    def from_linear(cls, linear: nn.Linear, shared: _SharedInput | None = None) -> Int8Linear:
        weight_t, scale = quantize_weight(linear.weight)
        return cls(weight_t, scale, linear.bias, shared)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, int8"

    def _quantized_input(self, x: torch.Tensor, rows: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        shared = self._shared
        entry = shared.entry if shared is not None else None
        if entry is not None and entry[0]() is x and entry[1] == _version(x):
            return entry[2], entry[3]
        q, scale = quantize_rows(rows)
        if shared is not None:
            shared.entry = (weakref.ref(x), _version(x), q, scale)
        return q, scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        rows = x.reshape(-1, self.in_features)
        if rows.dtype != torch.float32:
            rows = rows.float()
        q, row_scale = self._quantized_input(x, rows)
        acc = torch._int_mm(q, self.weight_t)
        # int32 -> float32 in the same memory (same element size): one fewer large allocation per layer, which
        # on a CPU costs page faults comparable to the matrix product itself.
        y = acc.view(torch.float32).copy_(acc)
        y.mul_(row_scale).mul_(self.scale)
        if self.bias is not None:
            y.add_(self.bias)
        return y.reshape(*x.shape[:-1], self.out_features).to(x.dtype)


def quantize_weight(weight: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """int8 weights (transposed to ``[in, out]`` for the kernel) and one float32 scale per output channel."""
    w = weight.detach().float()
    scale = w.abs().amax(dim=1).clamp(min=1e-8) / 127.0
    q = torch.round(w / scale[:, None]).clamp_(-127, 127).to(torch.int8)
    return q.t().contiguous(), scale.contiguous()


@dataclass(frozen=True)
class QuantizeReport:
    """What ``quantize_model`` did: how many linear layers, over which decoder layers, and from where."""

    layers: int
    linears: int
    from_cache: bool
    cache_path: str | None


@cache
def int8_kernel_ratio(rows: int = 64, width: int = 896, out: int = 1024, repeats: int = 3) -> float:
    """The int8 kernel's time over float32's for one MLP-sized product on this CPU (best of ``repeats``).

    int8 pays off only where the CPU has fast int8 dot products (AVX-512 VNNI, AMX): on an AVX2-only AMD EPYC
    ``torch._int_mm`` measured 35x slower than the float32 product (2026-12-06), so a ranker asked for int8
    there would be many times slower than without it. Measured once per process (a few ms where int8 is fast)."""
    gen = torch.Generator().manual_seed(0)
    a = torch.randint(-127, 128, (rows, width), dtype=torch.int8, generator=gen)
    b = torch.randint(-127, 128, (width, out), dtype=torch.int8, generator=gen)
    af, bf = a.float(), b.float()

    def best(fn) -> float:
        fn()  # warm-up: the first call picks and prepares the kernel
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            fn()
            times.append(time.perf_counter() - start)
        return min(times)

    return best(lambda: torch._int_mm(a, b)) / max(best(lambda: af @ bf), 1e-9)


def warn_if_int8_is_slow() -> float:
    """Log a warning when int8 products are slower than float32 ones here; returns the measured ratio."""
    ratio = int8_kernel_ratio()
    if ratio > 1.0:
        logger.warning("int8 on this CPU (%s): the int8 matrix product took %.1fx the float32 one, so int8 ranking "
                       "will be slower than float32, not faster (it needs AVX-512 VNNI or AMX); use quantize='none'",
                       torch.backends.cpu.get_cpu_capability(), ratio)
    return ratio


def decoder_layers(model: nn.Module) -> nn.ModuleList:
    """The decoder blocks of a causal LM (``model.model.layers`` in Llama/Qwen-family models)."""
    inner = getattr(model, "model", model)
    layers = getattr(inner, "layers", None)
    if not isinstance(layers, nn.ModuleList):
        raise ValueError(f"quantize='int8' needs a decoder with model.layers (Llama/Qwen family); "
                         f"{type(model).__name__} has none")
    return layers


def _linears(block: nn.Module, parts: tuple[str, ...]) -> list[tuple[nn.Module, str, nn.Linear]]:
    """The linear layers under the block's named parts (``mlp``, ``self_attn``), with their parents."""
    out = []
    for part in parts:
        module = getattr(block, part, None)
        if module is None:
            raise ValueError(f"quantize: a decoder layer of this model has no '{part}' module "
                             f"({type(block).__name__}); int8 supports Llama/Qwen-family layers")
        out += [(parent, name, child) for parent in module.modules() for name, child in parent.named_children()
                if isinstance(child, nn.Linear)]
    return out


def quantize_model(model: nn.Module, layers: Iterable[int], cache_key: str | None = None,
                   cache_root: Path | None = None, parts: tuple[str, ...] = DEFAULT_PARTS) -> QuantizeReport:
    """Replace the ``nn.Linear`` layers of ``parts`` in the given decoder layers by ``Int8Linear``, in place.

    With ``cache_key`` the int8 weights are read from (or written to) ``cache_root/<key>.safetensors``; without
    one (a model built in memory) they are computed and not cached."""
    blocks = decoder_layers(model)
    warn_if_int8_is_slow()
    chosen = sorted(set(layers))
    if any(i < 0 or i >= len(blocks) for i in chosen):
        raise ValueError(f"layers {chosen} outside the model's 0..{len(blocks) - 1}")
    unknown = set(parts) - set(PARTS)
    if unknown or not parts:
        raise ValueError(f"parts must be a non-empty subset of {', '.join(PARTS)}, got {parts!r}")
    path = cache_root / f"{cache_key}.safetensors" if cache_key and cache_root else None
    cached = _read_cache(path) if path else None
    count = hits = 0
    for i in chosen:
        groups: dict[tuple[int, str], _SharedInput] = {}
        for parent, name, linear in _linears(blocks[i], parts):
            shared = groups.setdefault((id(parent), _SHARED_INPUT[name]), _SharedInput()) \
                if name in _SHARED_INPUT else None
            module = _from_cache(cached, f"{i}.{_qualified(blocks[i], parent)}{name}", linear, shared)
            hits += module is not None
            setattr(parent, name, module or Int8Linear.from_linear(linear, shared))
            count += 1
    from_cache = count > 0 and hits == count
    if path is not None and not from_cache:
        _write_cache(path, blocks, chosen)
    logger.info("int8: %d linear layers in %d decoder layers (%s)", count, len(chosen),
                "read from the cache" if from_cache else "quantized")
    return QuantizeReport(len(chosen), count, from_cache, str(path) if path else None)


def _from_cache(cached: dict | None, key: str, linear: nn.Linear, shared: _SharedInput | None) -> Int8Linear | None:
    """The cached layer, if the cache holds it with this linear's shape (else it is quantized again)."""
    if cached is None or f"{key}.weight_t" not in cached or f"{key}.scale" not in cached:
        return None
    weight_t, scale = cached[f"{key}.weight_t"], cached[f"{key}.scale"]
    out_features, in_features = linear.weight.shape
    if (weight_t.dtype != torch.int8 or tuple(weight_t.shape) != (in_features, out_features)
            or tuple(scale.shape) != (out_features,)):
        return None
    return Int8Linear(weight_t, scale.float(), linear.bias, shared)


def _qualified(block: nn.Module, parent: nn.Module) -> str:
    for name, module in block.named_modules():
        if module is parent:
            return f"{name}." if name else ""
    raise ValueError("module not found in its block")


def _cache_tensors(blocks: nn.ModuleList, chosen: list[int]) -> dict[str, torch.Tensor]:
    out = {}
    for i in chosen:
        for name, module in blocks[i].named_modules():
            if isinstance(module, Int8Linear):
                out[f"{i}.{name}.weight_t"] = module.weight_t
                out[f"{i}.{name}.scale"] = module.scale
    return out


def _read_cache(path: Path) -> dict[str, torch.Tensor] | None:
    if not path.is_file():
        return None
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        tensors = load_file(path)
    except (SafetensorError, OSError, ValueError) as err:
        logger.warning("int8 cache %s is unreadable (%s); quantizing again", path, err)
        return None
    return tensors


def _write_cache(path: Path, blocks: nn.ModuleList, chosen: list[int]) -> None:
    from safetensors.torch import save_file

    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f"{path.name}.partial-{os.getpid()}")
    try:
        save_file(_cache_tensors(blocks, chosen), partial, metadata={"format": FORMAT})
        partial.replace(path)
    except OSError as err:  # a read-only cache costs the next start a re-quantization, nothing else
        logger.warning("could not write the int8 cache %s: %s", path, err)
        partial.unlink(missing_ok=True)


def weights_identity(path: str | Path) -> dict | None:
    """What identifies a local model directory's weights without reading them: its weight and config files'
    names, sizes and modification times (as a converted GGUF's cache folder is keyed). ``None`` for a hub id
    or anything not on disk: such a model is quantized at every start."""
    folder = Path(path)
    if not folder.is_dir():
        return None
    files = sorted(p for p in folder.iterdir() if p.suffix in (".safetensors", ".bin", ".json") and p.is_file())
    if not any(p.suffix in (".safetensors", ".bin") for p in files):
        return None
    return {"dir": str(folder.resolve()),
            "files": [[p.name, p.stat().st_size, p.stat().st_mtime_ns] for p in files]}


def files_content_digest(folder: Path) -> str:
    """SHA-256 of every file's relative name and bytes under ``folder`` (a LoRA adapter: a few MB)."""
    digest = hashlib.sha256()
    for p in sorted(folder.rglob("*")):
        if p.is_file():
            digest.update(str(p.relative_to(folder)).encode())
            digest.update(p.read_bytes())
    return digest.hexdigest()


def cache_key(identity: dict | None, layers: Iterable[int], parts: tuple[str, ...] = DEFAULT_PARTS) -> str | None:
    """The cache file's name for these weights, layers and parts; ``None`` when the weights have no identity."""
    if identity is None:
        return None
    spec = {"format": FORMAT, "weights": identity, "layers": sorted(set(layers)), "parts": sorted(parts)}
    return hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:24]
