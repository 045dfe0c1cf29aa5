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

import functools
import inspect
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import torch
from transformers import AttentionInterface
from transformers.integrations.sdpa_attention import sdpa_attention_forward
from transformers.masking_utils import AttentionMaskInterface, sdpa_mask

from headrank.engine.heads import group_by_layer

CAPTURE_IMPLEMENTATION = "headrank_capture"
CAPTURE_KWARG = "headrank_capture"


class StopForward(Exception):
    """Raised inside the deepest needed layer to end the forward pass early (depth truncation)."""


@dataclass
class CaptureRequest:
    """What to read during one forward pass.

    ``pieces`` (lists laid out as prefix, then tails) makes every layer compute its attention in pieces instead
    of under a dense block mask: the prefixes and first tails as one plain causal call (the fast kernels), then
    each further tail over its prefix's and its own keys only (``Pieces``).

    ``heads`` maps a layer index to the query-head indices read in that layer. ``rows`` (B, R) are the
    positions of the attending rows within this forward's query tokens and ``row_weights`` (B, R) their
    weights (``1/|Q|`` for real rows, 0 for padding), so the result is the mean over the attending rows;
    ``row_weights`` (G, B, R) give G such means from one softmax (one per tail of a one-pass forward).
    ``stop_after`` is the layer after whose cache update the forward stops (None: run every layer).
    ``mass`` receives, per layer, a (B, heads, T_k) tensor (G, B, heads, T_k with grouped weights) of mean
    attention per key token.
    """

    heads: dict[int, list[int]]
    rows: torch.Tensor | None = None
    row_weights: torch.Tensor | None = None
    stop_after: int | None = None
    mass: dict[int, torch.Tensor] = field(default_factory=dict)
    row_mask: torch.Tensor | None = None  # (B, R, T_k) True = the row sees that key; else the layer's mask
    pieces: Pieces | None = None  # lists laid out as prefix, then tails (see above)


@dataclass(frozen=True)
class Pieces:
    """How a batch of lists splits its attention, with boundaries shared by every list (each list right padded):
    ``[0, first_end)`` (each list's prefix and first tail, then padding) as one plain causal call, then each
    later piece ``[start, end)`` (one tail per list, then padding) over keys ``[0, keys_end)``, of which list b
    sees its first ``prefix_lens[b]``, and over its own keys causally. Padding always follows what is real, so
    causality alone keeps every real row from it: no T x T mask is built. With length buckets ``keys_end`` is
    ``first_end`` and every boundary a bucket, so that no call's shape depends on an exact length."""

    prefix_lens: tuple[int, ...]
    first_end: int
    keys_end: int
    later: tuple[tuple[int, int], ...]


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
        mask = attention_mask if request.row_mask is None else request.row_mask
        request.mass[layer] = rows_attention_mass(
            query, key, mask, request.rows, request.row_weights, heads, scaling, rows_masked=request.row_mask is not None
        )
    if request.stop_after is not None and layer >= request.stop_after:
        raise StopForward
    if request.pieces:
        return _segmented_attention(module, query, key, value, request.pieces, dropout, scaling, **kwargs)
    return sdpa_attention_forward(
        module, query, key, value, attention_mask, dropout=dropout, scaling=scaling, **kwargs
    )


def _segmented_attention(module, query, key, value, layout: Pieces, dropout: float, scaling: float | None,
                         **kwargs):
    """Attention of lists laid out as prefix, tail 1, tail 2, ... (``Pieces``): the prefix and tail 1 as a plain
    causal call, then each later tail over the prefix's keys and its own (causally). Equals a block-masked call."""
    first, shared = layout.first_end, layout.keys_end
    out = [sdpa_attention_forward(module, query[:, :, :first], key[:, :, :first], value[:, :, :first], None,
                                  dropout=dropout, scaling=scaling, **kwargs)[0]]
    for start, end in layout.later:
        keys = torch.cat([key[:, :, :shared], key[:, :, start:end]], dim=2)
        values = torch.cat([value[:, :, :shared], value[:, :, start:end]], dim=2)
        out.append(sdpa_attention_forward(module, query[:, :, start:end], keys, values,
                                          _later_piece_mask(layout, end - start, query.device,
                                                            torch.is_inference_mode_enabled()),
                                          dropout=dropout, scaling=scaling, **kwargs)[0])
    return torch.cat(out, dim=1), None


@functools.lru_cache(maxsize=32)
def _later_piece_mask(layout: Pieces, n: int, device, inference: bool) -> torch.Tensor:
    """(B, 1, n, keys_end + n): each list's prefix keys, then the piece's own keys causally. Cached: every layer
    of a forward (and, with buckets, many requests) asks for the same one; ``inference`` (whether inference mode
    is on) keeps a mask made there out of a training forward, which could not save it for backward."""
    prefix = torch.as_tensor(layout.prefix_lens, device=device)
    seen = torch.arange(layout.keys_end, device=device)[None, :] < prefix[:, None]  # (B, keys_end)
    own = torch.ones(n, n, dtype=torch.bool, device=device).tril()
    batch = len(layout.prefix_lens)
    return torch.cat([seen[:, None, None, :].expand(batch, 1, n, layout.keys_end),
                      own[None, None].expand(batch, 1, n, n)], dim=-1)


def rows_attention_mass(
    query: torch.Tensor,
    key: torch.Tensor,
    attention_mask: torch.Tensor | None,
    rows: torch.Tensor,
    row_weights: torch.Tensor,
    heads: list[int],
    scaling: float,
    rows_masked: bool = False,
) -> torch.Tensor:
    """Weighted mean over ``rows`` of the softmax attention of ``heads``: (B, len(heads), T_k), float32.

    query (B, H, T_q, D) and key (B, H_kv, T_k, D) are post-RoPE; keys may include a cache prefix.
    ``attention_mask`` is what the SDPA mask builder produced: None (plain causal), boolean (True =
    attend) or additive float, of shape (B or 1, 1, T_q, T_k); with ``rows_masked`` it is a boolean
    (B, R, T_k), one row per attending row.
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
        if rows_masked:  # already one mask row per attending row: (B, R, T_k)
            mask = attention_mask.to(query.device)[:, None]
        else:
            mask = attention_mask.expand(batch, 1, q_len, k_len)
            mask = mask.gather(2, rows[:, None, :, None].expand(batch, 1, n_rows, k_len))
        if mask.dtype == torch.bool:
            logits = logits.masked_fill(~mask, float("-inf"))
        else:
            logits = logits + mask.float()
    probs = torch.softmax(logits, dim=-1).nan_to_num(0.0)  # fully masked (padding) rows -> 0
    weights = row_weights.to(probs.device, torch.float32)
    if weights.dim() == 3:  # (G, B, R): one weighted mean per group of rows (one per tail)
        return torch.einsum("bhrt,gbr->gbht", probs, weights)
    return (probs * weights[:, None, :, None]).sum(dim=2)


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


def _piece_ends(prefixes: list[list[int]], tails: list[list[list[int]]], bucket: bool) -> list[int]:
    """Where each piece of ``Pieces`` ends, shared by every list: the longest prefix with its first tail (with
    ``bucket``: its bucket length), then each later tail's longest (with ``bucket``: a multiple of TAIL_STEP)."""
    end = max(len(p) + len(t) for p, t in zip(prefixes, tails[0]))
    ends = [bucket_length(end) if bucket else end]
    for tail_batch in tails[1:]:
        longest = max(max(len(t) for t in tail_batch), 1)
        ends.append(ends[-1] + (_round_up(longest, TAIL_STEP) if bucket else longest))
    return ends


def _round_up(n: int, step: int) -> int:
    return -(-max(n, 1) // step) * step


def bucket_length(n: int) -> int:
    """``n`` rounded up to one of a few lengths (eight per doubling, multiples of 64 at least): at most 63 tokens
    or 12.5% more, whichever is larger;
    on a GPU each new sequence length costs new kernel choices, so lengths are padded to reuse them."""
    step = max(64, 1 << max(0, n.bit_length() - 4))
    return -(-n // step) * step


TAIL_STEP = 64  # with length buckets, tails after the first are padded to multiples of this
ROWS_STEP = 128  # and the attending rows (a query tail and the N/A tail: about 50-70 tokens) to multiples of this


def batch_bucket(n: int) -> int:
    """``n`` lists rounded up to 1, 2, 4, 6, 8, then a multiple of 4: with buckets a batch is filled up with
    copies of its first list (results dropped) so that batch sizes recur too, at most 4/3 the work of the real
    lists (3 run as 4, 9 as 12)."""
    return max(n, 1) if n <= 2 else _round_up(n, 2) if n <= 8 else _round_up(n, 4)


def _every_bucket(up_to: int, bucket) -> list[int]:
    out, n = [], 1
    while n <= up_to:
        out.append(bucket(n))
        n = out[-1] + 1
    return out


def batch_buckets(up_to: int) -> list[int]:
    """Every batch bucket that batches of up to ``up_to`` lists reach (what a warm-up runs)."""
    return _every_bucket(up_to, batch_bucket)


def bucket_lengths(up_to: int) -> list[int]:
    """Every bucket length up to ``up_to`` (what a warm-up runs once)."""
    return _every_bucket(up_to, bucket_length)


def one_pass_inputs(prefixes: list[list[int]], tails: list[list[list[int]]], pad_id: int, device,
                    bucket: bool = False):
    """What one forward over every list's prefix and tails needs, laid out as ``Pieces`` (each list right
    padded): input ids, positions (each tail right after its own prefix), each position's segment (-1 padding,
    0 prefix, g + 1 tail g), the rows of the tails (B, R) and their weights (G, B, R), each tail's rows weighted
    1/len, and the pieces. Built on ``device``. ``bucket`` pads to lengths that recur (GPU kernels are reused;
    no result changes), the attending rows to a multiple of ``ROWS_STEP``."""
    ends = _piece_ends(prefixes, tails, bucket)
    width, batch, groups = ends[-1], len(prefixes), len(tails)
    spans = [[(len(p), len(p) + len(tails[0][b]))] + [(ends[g - 1], ends[g - 1] + len(tails[g][b]))
                                                      for g in range(1, groups)] for b, p in enumerate(prefixes)]
    tail_width = max(sum(e - s for s, e in list_spans) for list_spans in spans)
    if bucket:
        tail_width = _round_up(tail_width, ROWS_STEP)
    ids = [[pad_id] * width for _ in range(batch)]
    positions, segment = [[0] * width for _ in range(batch)], [[-1] * width for _ in range(batch)]
    rows = torch.zeros((batch, tail_width), dtype=torch.long)  # padding rows read position 0 with weight 0
    weights = torch.zeros((groups, batch, tail_width), dtype=torch.float32)
    for b, prefix in enumerate(prefixes):
        n = len(prefix)
        ids[b][:n], positions[b][:n], segment[b][:n] = prefix, range(n), [0] * n
        at = 0
        for g, (start, end) in enumerate(spans[b]):
            ids[b][start:end] = tails[g][b]
            positions[b][start:end] = range(n, n + end - start)
            segment[b][start:end] = [g + 1] * (end - start)
            rows[b, at: at + end - start] = torch.arange(start, end)
            weights[g, b, at: at + end - start] = 1.0 / max(end - start, 1)
            at += end - start
    pieces = Pieces(prefix_lens=tuple(len(p) for p in prefixes), first_end=ends[0],
                    keys_end=ends[0] if bucket else max(len(p) for p in prefixes),
                    later=tuple(zip(ends[:-1], ends[1:])))
    as_tensor = lambda x: torch.tensor(x, dtype=torch.long, device=device)  # noqa: E731
    return as_tensor(ids), as_tensor(positions), as_tensor(segment), rows.to(device), weights.to(device), pieces


def visible(segment: torch.Tensor, query_index: torch.Tensor) -> torch.Tensor:
    """Which keys each query position sees (B, Q, T): earlier or same positions, not padding, and of the prefix
    or of the query's own tail (a tail never sees another tail). A padding query sees itself only (a fully
    masked row would give NaN)."""
    width = segment.shape[1]
    keys = torch.arange(width, device=segment.device)
    key_seg = segment[:, None, :]
    query_seg = segment.gather(1, query_index)[:, :, None]
    allowed = (keys[None, None, :] <= query_index[:, :, None]) & (key_seg >= 0) & ((key_seg == 0) | (key_seg == query_seg))
    return allowed | ((query_seg < 0) & (keys[None, None, :] == query_index[:, :, None]))


def _check_sliding_window(config, length: int) -> None:
    """The one-pass layout computes plain (full) attention; a model whose layers only look ``sliding_window``
    tokens back would be read wrongly past that length, so such lists are refused with what to do."""
    window = getattr(config, "sliding_window", None) if getattr(config, "use_sliding_window", True) else None
    types = getattr(config, "layer_types", None)
    if window and length > window and (types is None or "sliding_attention" in types):
        raise NotImplementedError(f"this model's layers see only {window} tokens back (sliding window) and the list "
                                  f"needs {length}: rank it in windows (window=...) or with fewer passages")


def capture_lists(
    model: torch.nn.Module,
    prefixes: list[list[int]],
    tails: list[list[list[int]]],
    heads: list[tuple[int, int]],
    truncate: bool = True,
    pad_id: int = 0,
    bucket: bool = False,
) -> list[list[ListAttention]]:
    """One forward per batch of lists: every list's prefix and all its tails (the real query first, then e.g.
    ``N/A``) in one sequence, attention computed in ``Pieces``, stopped after the deepest head layer.
    Each tail sees the prefix and itself, exactly as a tail over the cached prefix would, so batching and
    tail count change no list's result (float summation order aside). ``bucket`` pads every piece to a length
    that recurs and the batch to a size that recurs (for GPUs; the padding changes no result). Returns
    ``out[t][b]``; the captured mass crosses to the CPU here, the one place where results leave the model's device.
    """
    for tail_batch in tails:
        if len(tail_batch) != len(prefixes):
            raise ValueError("every prefix needs exactly one tail in each tail batch")
    real = len(prefixes)
    if bucket and batch_bucket(real) > real:  # copies of the first list fill the batch up to its bucket
        fill = batch_bucket(real) - real
        prefixes = list(prefixes) + [prefixes[0]] * fill
        tails = [list(tail_batch) + [tail_batch[0]] * fill for tail_batch in tails]
    by_layer = group_by_layer(heads)
    order = [(layer, head) for layer in sorted(by_layer) for head in by_layer[layer]]
    decoder = model.base_model
    device = next(model.parameters()).device
    ids, positions, segment, rows, weights, pieces = one_pass_inputs(prefixes, tails, pad_id, device, bucket)
    _check_sliding_window(model.config, max(len(p) + sum(len(t[b]) for t in tails) for b, p in enumerate(prefixes)))
    request = CaptureRequest(heads=by_layer, rows=rows, row_weights=weights, row_mask=visible(segment, rows),
                             stop_after=max(by_layer) if truncate else None, pieces=pieces)
    # The pieces do all the masking (causal calls, small per-piece masks): the decoder's own mask stays empty.
    run_with_capture(decoder, ids, torch.ones_like(ids), positions, request)
    mass = torch.cat([request.mass[layer] for layer in sorted(by_layer)], dim=2)  # (G, B, heads, T)
    if not mass.requires_grad:
        mass = mass.cpu()
    return [[ListAttention(heads=order, token_mass=mass[g, b, :, :len(prefixes[b])]) for b in range(real)]
            for g in range(len(tails))]


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
