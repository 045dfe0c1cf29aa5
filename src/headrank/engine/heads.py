"""Head sets: which (layer, head) pairs score passages, and the model shape they belong to.

A head set is a small JSON artifact. It records the layer/head counts of the model it was chosen on,
so that loading it onto a model of another shape fails with a clear error instead of reading the
wrong heads (or crashing on an index).
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path

HEADSET_FORMAT = "headrank.headset/1"


class HeadSetMismatchError(ValueError):
    """A head set does not fit the model it is used with."""


@dataclass(frozen=True)
class HeadSet:
    heads: tuple[tuple[int, int], ...]
    num_layers: int | None = None  # shape of the model the set was chosen on (None: not recorded)
    num_heads: int | None = None
    model: str | None = None
    name: str | None = None
    prompt: dict = field(default_factory=dict)  # PromptSettings the set was chosen with, if any
    fingerprint: str | None = None  # weights fingerprint of the model it was chosen on (models.weights_fingerprint)
    selection: dict = field(default_factory=dict)  # how it was chosen: data, lambda, K, sweep
    weights: tuple[float, ...] | None = None  # per-head weights, in the order of ``heads`` (None: a plain sum)

    def __post_init__(self) -> None:
        for name in ("num_layers", "num_heads"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
                raise ValueError(f"{name} must be a positive integer or null, got {value!r}")
        if not isinstance(self.prompt, dict):
            raise ValueError(f"prompt must be an object of prompt settings, got {type(self.prompt).__name__}")
        if self.prompt:
            from headrank.engine.prompt import PromptSettings

            try:
                PromptSettings(**self.prompt)
            except TypeError as err:
                raise ValueError(f"prompt settings: {err}") from None
        if not isinstance(self.selection, dict):
            raise ValueError("selection must be an object")
        if isinstance(self.heads, (str, bytes)):
            raise ValueError("heads must be a list of [layer, head] pairs (or use HeadSet.parse for 'l:h,...')")
        pairs = tuple(_as_pair(h) for h in self.heads)
        if not pairs:
            raise ValueError("a head set needs at least one (layer, head) pair")
        if len(set(pairs)) != len(pairs):
            raise ValueError("a head set lists the same (layer, head) pair twice")
        weights = _check_weights(self.weights, len(pairs))
        order = sorted(range(len(pairs)), key=lambda i: pairs[i])
        object.__setattr__(self, "heads", tuple(pairs[i] for i in order))
        object.__setattr__(self, "weights", None if weights is None else tuple(weights[i] for i in order))

    @classmethod
    def all_heads(cls, num_layers: int, num_heads: int, model: str | None = None) -> HeadSet:
        """Every head of every layer (the ICR preset)."""
        heads = tuple((layer, head) for layer in range(num_layers) for head in range(num_heads))
        return cls(heads=heads, num_layers=num_layers, num_heads=num_heads, model=model, name="all")

    def weight_of(self) -> dict[tuple[int, int], float] | None:
        """``{(layer, head): weight}``, or None for a plain (unweighted) sum."""
        return None if self.weights is None else dict(zip(self.heads, self.weights))

    def split_queries(self, which: str) -> list[str]:
        """The DL21 ``train`` or ``val`` queries of the split this head set (or the adapter it was re-chosen on)
        was selected with: ``selection["train_queries"]``, or ``selection["adapter_selection"][...]`` for a
        set re-chosen on top of a trained adapter; empty when neither is recorded."""
        if which not in ("train", "val"):
            raise ValueError(f"which must be 'train' or 'val', got {which!r}")
        key = f"{which}_queries"
        selection = self.selection or {}
        while selection and not selection.get(key):  # re-chosen sets nest the adapter's selection
            selection = selection.get("adapter_selection") or {}
        return list(selection.get(key) or [])

    @property
    def deepest_layer(self) -> int:
        """L*: the forward pass can stop after this layer."""
        return max(layer for layer, _ in self.heads)

    def by_layer(self) -> dict[int, list[int]]:
        return group_by_layer(self.heads)

    def check_fingerprint(self, weights) -> None:
        """Raise HeadSetMismatchError if the set records other weights.

        ``weights`` is a fingerprint string or a loaded model (``models.LoadedModel``), which also accepts
        the dtype-specific fingerprints that head sets of headrank <= 0.1 recorded.
        """
        if not self.fingerprint:
            return
        if isinstance(weights, str):
            current, ok = weights, weights == self.fingerprint
        else:
            current, ok = weights.fingerprint, weights.matches_fingerprint(self.fingerprint)
        if not ok:
            raise HeadSetMismatchError(
                f"head set was chosen on {self.model or 'another model'} (weights {self.fingerprint}), "
                f"but this model's weights are {current}; pass the model it was made for "
                f"({self.model or 'see the head set file'}) or select heads for this one (headrank select-heads)"
            )

    def check_model(self, num_layers: int, num_heads: int) -> None:
        """Raise HeadSetMismatchError unless every head exists in a model of this shape."""
        if self.num_layers is not None and self.num_heads is not None:
            if (self.num_layers, self.num_heads) != (num_layers, num_heads):
                origin = f" (chosen on {self.model})" if self.model else ""
                raise HeadSetMismatchError(
                    f"head set{origin} is for a model with {self.num_layers} layers x {self.num_heads} heads, "
                    f"but this model has {num_layers} layers x {num_heads} heads"
                )
        bad = [(layer, head) for layer, head in self.heads if not (0 <= layer < num_layers and 0 <= head < num_heads)]
        if bad:
            raise HeadSetMismatchError(
                f"head set names heads that do not exist in a model with {num_layers} layers x {num_heads} heads: "
                f"{bad[:5]}{' ...' if len(bad) > 5 else ''}"
            )

    def to_dict(self) -> dict:
        data = asdict(self)
        data["heads"] = [list(h) for h in self.heads]
        if self.weights is None:
            del data["weights"]
        else:
            data["weights"] = list(self.weights)
        return {"format": HEADSET_FORMAT, **data}

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), indent=2) + "\n")

    @classmethod
    def from_dict(cls, data: dict) -> HeadSet:
        if not isinstance(data, dict) or "heads" not in data:
            raise ValueError("a head set JSON object needs a 'heads' list of [layer, head] pairs")
        fmt = data.get("format", HEADSET_FORMAT)
        if fmt != HEADSET_FORMAT:
            raise ValueError(f"unsupported head set format {fmt!r} (expected {HEADSET_FORMAT!r})")
        known = {"heads", "num_layers", "num_heads", "model", "name", "prompt", "fingerprint", "selection", "weights"}
        return cls(**{k: v for k, v in data.items() if k in known})

    @classmethod
    def load(cls, path: str | Path) -> HeadSet:
        path = Path(path)
        try:
            data = json.loads(path.read_text())
        except FileNotFoundError:
            raise FileNotFoundError(f"head set file not found: {path}") from None
        except json.JSONDecodeError as err:
            raise ValueError(f"{path}: not valid JSON ({err})") from None
        if isinstance(data, list):  # a bare list of [layer, head] pairs
            data = {"heads": data}
        try:
            return cls.from_dict(data)
        except (TypeError, ValueError) as err:
            raise ValueError(f"{path}: {err}") from None

    @classmethod
    def parse(cls, value: str) -> HeadSet:
        """Inline ``layer:head,layer:head,...`` (as on the command line)."""
        try:
            pairs = [tuple(int(x) for x in item.split(":")) for item in value.split(",") if item.strip()]
        except ValueError:
            raise ValueError(f"heads {value!r}: expected a JSON file or 'layer:head,layer:head,...'") from None
        return cls(heads=tuple(pairs))

    @classmethod
    def coerce(cls, heads: HeadSet | str | Path | Iterable) -> HeadSet:
        """Accept a HeadSet, a JSON file path, ``'layer:head,...'``, a head-set JSON object (dict with
        ``heads``), or an iterable of (layer, head) pairs."""
        if isinstance(heads, HeadSet):
            return heads
        if isinstance(heads, Path) or (isinstance(heads, str) and (heads.endswith(".json") or Path(heads).is_file())):
            return cls.load(heads)
        if isinstance(heads, str):
            return cls.parse(heads)
        if isinstance(heads, dict):  # a head set JSON object already parsed
            return cls.from_dict(heads)
        try:
            return cls(heads=tuple(heads))
        except TypeError:
            raise ValueError(f"heads must be a head set, a JSON file or (layer, head) pairs, got {heads!r}") from None


def group_by_layer(heads: Iterable[tuple[int, int]]) -> dict[int, list[int]]:
    """``{layer: [head, ...]}`` in the order given: how the capture reads heads, one layer at a time."""
    grouped: dict[int, list[int]] = {}
    for layer, head in heads:
        grouped.setdefault(layer, []).append(head)
    return grouped


def _check_weights(weights, count: int) -> list[float] | None:
    """Per-head weights: finite, >= 0, one per head, not all zero (a score would be constant)."""
    if weights is None:
        return None
    if isinstance(weights, (str, bytes, dict)):
        raise ValueError("weights must be a list of numbers, one per head")
    try:
        values = list(weights)
    except TypeError:
        raise ValueError("weights must be a list of numbers, one per head") from None
    if len(values) != count:
        raise ValueError(f"weights has {len(values)} values for {count} heads")
    for v in values:
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v < 0:
            raise ValueError(f"head weights must be finite numbers >= 0, got {v!r}")
    if not any(values):
        raise ValueError("head weights are all zero: every passage would get the same score")
    return [float(v) for v in values]


def _as_pair(item) -> tuple[int, int]:
    try:
        layer, head = item
    except (TypeError, ValueError):
        raise ValueError(f"a head must be a (layer, head) pair, got {item!r}") from None
    if isinstance(layer, bool) or isinstance(head, bool) or not isinstance(layer, int) or not isinstance(head, int):
        raise ValueError(f"a head must be a pair of integers, got {item!r}")
    return layer, head
