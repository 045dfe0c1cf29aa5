"""Attention capture: how much each selected head's attending rows look at every key token.

The model runs its stock SDPA kernel. For the few (layer, head) pairs we read, a registered attention
function recomputes ``softmax(q_rows @ k^T * scale + mask)`` from the exact post-RoPE ``q``/``k`` the
layer was given, for the attending rows only, so the T x T matrix is never materialized. The forward
stops (``StopForward``) right after the deepest layer it needs, once that layer's keys and values are
in the cache: no later layers, no final norm, no LM head.

The capture request travels to the attention function as a forward keyword argument, so there is no
global state beyond the one registration transformers needs.
"""

from __future__ import annotations

import inspect
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import torch
from transformers import AttentionInterface
from transformers.integrations.sdpa_attention import sdpa_attention_forward
from transformers.masking_utils import AttentionMaskInterface, sdpa_mask

from headrank.heads import group_by_layer

CAPTURE_IMPLEMENTATION = "headrank_capture"
CAPTURE_KWARG = "headrank_capture"


class StopForward(Exception):
    """Raised inside the deepest needed layer to end the forward pass early (depth truncation)."""


@dataclass
class CaptureRequest:
    """What to read during one forward pass.

    ``heads`` maps a layer index to the query-head indices read in that layer. ``rows`` (B, R) are the
    positions of the attending rows within this forward's query tokens and ``row_weights`` (B, R) their
    weights (``1/|Q|`` for real rows, 0 for padding), so the result is the mean over the attending rows.
    ``stop_after`` is the layer after whose cache update the forward stops (None: run every layer).
    ``mass`` receives, per layer, a (B, heads, T_k) tensor of mean attention per key token.
    """

    heads: dict[int, list[int]]
    rows: torch.Tensor | None = None
    row_weights: torch.Tensor | None = None
    stop_after: int | None = None
    mass: dict[int, torch.Tensor] = field(default_factory=dict)


def register_capture_attention() -> None:
    """Register the capture attention (and SDPA's mask builder under the same name); idempotent."""
    if CAPTURE_IMPLEMENTATION not in AttentionInterface._global_mapping:
        AttentionInterface.register(CAPTURE_IMPLEMENTATION, capture_attention_forward)
    if CAPTURE_IMPLEMENTATION not in AttentionMaskInterface._global_mapping:
        AttentionMaskInterface.register(CAPTURE_IMPLEMENTATION, sdpa_mask)


def enable_capture(model: torch.nn.Module) -> None:
    """Switch a loaded model to the capture attention; without a request it behaves exactly like SDPA."""
    register_capture_attention()
    model.set_attn_implementation(CAPTURE_IMPLEMENTATION)


def capture_attention_forward(
    module: torch.nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    dropout: float = 0.0,
    scaling: float | None = None,
    **kwargs,
):
    """Attention function: capture the requested rows/heads, then run stock SDPA (or stop)."""
    request: CaptureRequest | None = kwargs.pop(CAPTURE_KWARG, None)
    if request is None:
        return sdpa_attention_forward(
            module, query, key, value, attention_mask, dropout=dropout, scaling=scaling, **kwargs
        )
    layer = int(module.layer_idx)
    if kwargs.get("softcap") is not None or kwargs.get("s_aux") is not None:
        raise NotImplementedError(
            "headrank cannot capture attention with logit soft-capping or attention sinks "
            f"(layer {layer} of {type(module).__name__})"
        )
    heads = request.heads.get(layer)
    if heads and request.rows is not None:
        if scaling is None:
            scaling = query.shape[-1] ** -0.5
        request.mass[layer] = rows_attention_mass(
            query, key, attention_mask, request.rows, request.row_weights, heads, scaling
        )
    if request.stop_after is not None and layer >= request.stop_after:
        raise StopForward
    return sdpa_attention_forward(
        module, query, key, value, attention_mask, dropout=dropout, scaling=scaling, **kwargs
    )


def rows_attention_mass(
    query: torch.Tensor,
    key: torch.Tensor,
    attention_mask: torch.Tensor | None,
    rows: torch.Tensor,
    row_weights: torch.Tensor,
    heads: list[int],
    scaling: float,
) -> torch.Tensor:
    """Weighted mean over ``rows`` of the softmax attention of ``heads``: (B, len(heads), T_k), float32.

    query (B, H, T_q, D) and key (B, H_kv, T_k, D) are post-RoPE; keys may include a cache prefix.
    ``attention_mask`` is what the SDPA mask builder produced: None (plain causal), boolean (True =
    attend) or additive float, of shape (B or 1, 1, T_q, T_k).
    """
    batch, num_heads, q_len, dim = query.shape
    k_len = key.shape[2]
    n_rep = num_heads // key.shape[1]
    head_idx = torch.as_tensor(heads, device=query.device)
    rows = rows.to(query.device)
    n_rows = rows.shape[1]

    q = query.index_select(1, head_idx)
    q = q.gather(2, rows[:, None, :, None].expand(batch, len(heads), n_rows, dim))
    k = key.index_select(1, torch.div(head_idx, n_rep, rounding_mode="floor"))
    logits = torch.matmul(q.float(), k.float().transpose(-1, -2)) * scaling  # (B, h, R, T_k)

    if attention_mask is None:
        query_pos = rows + (k_len - q_len)  # absolute key position of each row (cache prefix first)
        allowed = torch.arange(k_len, device=query.device)[None, None, :] <= query_pos[:, :, None]
        logits = logits.masked_fill(~allowed[:, None], float("-inf"))
    else:
        mask = attention_mask.expand(batch, 1, q_len, k_len)
        mask = mask.gather(2, rows[:, None, :, None].expand(batch, 1, n_rows, k_len))
        if mask.dtype == torch.bool:
            logits = logits.masked_fill(~mask, float("-inf"))
        else:
            logits = logits + mask.float()
    probs = torch.softmax(logits, dim=-1).nan_to_num(0.0)  # fully masked (padding) rows -> 0
    weights = row_weights.to(probs.device, torch.float32)[:, None, :, None]
    return (probs * weights).sum(dim=2)


def cache_kwarg_name(decoder: torch.nn.Module) -> str:
    """transformers 5.x renamed ``past_key_values`` to ``cache``; accept whichever this version has."""
    params = inspect.signature(decoder.forward).parameters
    return "cache" if "cache" in params else "past_key_values"


def run_with_capture(
    decoder: torch.nn.Module,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    position_ids: torch.Tensor,
    request: CaptureRequest,
    cache=None,
) -> dict[int, torch.Tensor]:
    """Run the decoder stack (no LM head) with ``request``; returns the captured mass per layer.

    ``cache`` (a transformers Cache) is extended in place with the keys/values of every layer that
    ran, so a later call can reuse the prefix.
    """
    kwargs = {CAPTURE_KWARG: request, "use_cache": cache is not None}
    if cache is not None:
        kwargs[cache_kwarg_name(decoder)] = cache
    try:
        decoder(
            input_ids=input_ids,
            attention_mask=attention_mask,
            position_ids=position_ids,
            **kwargs,
        )
    except StopForward:
        pass
    return request.mass


@dataclass
class ListAttention:
    """Mean attention of the attending rows to every prefix token, per head, for one list.

    ``token_mass[k, j]`` belongs to head ``heads[k]`` and prefix token ``j`` (passages live in the prefix).
    """

    heads: list[tuple[int, int]]
    token_mass: torch.Tensor  # (len(heads), prefix_len), float32


def _left_pad(seqs: list[list[int]], pad_id: int, device) -> tuple[torch.Tensor, torch.Tensor, list[int]]:
    width = max(len(s) for s in seqs)
    pads = [width - len(s) for s in seqs]
    ids = torch.tensor([[pad_id] * p + s for p, s in zip(pads, seqs)], device=device)
    mask = torch.tensor([[0] * p + [1] * len(s) for p, s in zip(pads, seqs)], device=device)
    return ids, mask, pads


def _right_pad(seqs: list[list[int]], pad_id: int, device) -> tuple[torch.Tensor, torch.Tensor]:
    width = max(len(s) for s in seqs)
    ids = torch.tensor([s + [pad_id] * (width - len(s)) for s in seqs], device=device)
    mask = torch.tensor([[1] * len(s) + [0] * (width - len(s)) for s in seqs], device=device)
    return ids, mask


def capture_lists(
    model: torch.nn.Module,
    prefixes: list[list[int]],
    tails: list[list[list[int]]],
    heads: list[tuple[int, int]],
    truncate: bool = True,
    pad_id: int = 0,
) -> list[list[ListAttention]]:
    """Prefill each prefix once, then run every tail of it over the cached keys/values.

    ``tails[t][b]`` is the t-th tail of list b (the real query first, then e.g. ``N/A``); each tail
    costs only its own tokens. Prefixes are left-padded and tails right-padded, with explicit
    positions, so batching does not change any list's result. Returns ``out[t][b]``.
    """
    from transformers import DynamicCache  # local: keeps module import light

    by_layer = group_by_layer(heads)
    order = [(layer, head) for layer in sorted(by_layer) for head in by_layer[layer]]
    stop_after = max(by_layer) if truncate else None
    decoder = model.base_model
    device = next(model.parameters()).device

    prefix_ids, prefix_mask, pads = _left_pad(prefixes, pad_id, device)
    width = prefix_ids.shape[1]
    prefix_pos = (prefix_mask.cumsum(-1) - 1).clamp(min=0)
    cache = DynamicCache(config=model.config)
    run_with_capture(decoder, prefix_ids, prefix_mask, prefix_pos, CaptureRequest(heads={}, stop_after=stop_after), cache)

    results = []
    for tail_batch in tails:
        if len(tail_batch) != len(prefixes):
            raise ValueError("every prefix needs exactly one tail in each tail batch")
        tail_ids, tail_mask = _right_pad(tail_batch, pad_id, device)
        lengths = tail_mask.sum(-1)
        position = prefix_mask.sum(-1, keepdim=True) + torch.arange(tail_ids.shape[1], device=device)[None]
        rows = torch.arange(tail_ids.shape[1], device=device).expand(len(prefixes), -1)
        row_weights = tail_mask.float() / lengths[:, None].float()
        request = CaptureRequest(heads=by_layer, rows=rows, row_weights=row_weights, stop_after=stop_after)
        run_with_capture(decoder, tail_ids, torch.cat([prefix_mask, tail_mask], dim=-1), position, request, cache)
        cache.crop(-tail_ids.shape[1])  # back to the shared prefix for the next tail
        results.append(
            [
                ListAttention(
                    heads=order,
                    token_mass=torch.cat([request.mass[layer][b] for layer in sorted(by_layer)], dim=0)[
                        :, pads[b] : width
                    ],
                )
                for b in range(len(prefixes))
            ]
        )
    return results


def can_skip_layers(model: torch.nn.Module, start: int) -> bool:
    """Whether ``capture_from_layer`` may start at ``start``: every layer must take the same mask (no
    sliding-window/full mix), because the decoder indexes per-layer mask types by loop position."""
    types = getattr(model.config, "layer_types", None)
    return start > 0 and (not types or len(set(types)) == 1)


@contextmanager
def layer_inputs(model: torch.nn.Module, layer: int) -> Iterator[list[torch.Tensor]]:
    """Record the hidden states entering decoder layer ``layer`` on every forward while active."""
    seen: list[torch.Tensor] = []
    handle = model.base_model.layers[layer].register_forward_pre_hook(lambda _m, args: seen.append(args[0].detach()))
    try:
        yield seen
    finally:
        handle.remove()


def capture_from_layer(
    model: torch.nn.Module,
    hidden: torch.Tensor,
    prefix_len: int,
    heads: list[tuple[int, int]],
    start: int,
) -> ListAttention:
    """``capture_lists`` for one unpadded list whose layers below ``start`` are frozen: run only layers
    ``start``..deepest on ``hidden`` (1, T, d), the recorded input of layer ``start`` for the prefix and
    its tail as one sequence (positions 0..T-1, as the cached two-step pass gives them). Training with
    adapters only on the head layers repeats exactly this part, so the frozen layers run once per list.
    """
    by_layer = group_by_layer(heads)
    if min(by_layer) < start or not can_skip_layers(model, start):
        raise ValueError(f"cannot start the forward at layer {start} for heads {sorted(heads)}")
    decoder = model.base_model
    length = hidden.shape[1]
    device = hidden.device
    tail = torch.arange(prefix_len, length, device=device)[None]
    weights = torch.full(tail.shape, 1.0 / tail.shape[1], device=device)
    request = CaptureRequest(heads=by_layer, rows=tail, row_weights=weights, stop_after=max(by_layer))
    layers = decoder.layers
    decoder.layers = torch.nn.ModuleList(list(layers)[start:])  # attention modules keep their layer_idx
    try:
        try:
            decoder(inputs_embeds=hidden, attention_mask=torch.ones(1, length, dtype=torch.long, device=device),
                    position_ids=torch.arange(length, device=device)[None], use_cache=False,
                    **{CAPTURE_KWARG: request})
        except StopForward:
            pass
    finally:
        decoder.layers = layers
    order = [(layer, head) for layer in sorted(by_layer) for head in by_layer[layer]]
    mass = torch.cat([request.mass[layer][0] for layer in sorted(by_layer)], dim=0)[:, :prefix_len]
    return ListAttention(heads=order, token_mass=mass)
