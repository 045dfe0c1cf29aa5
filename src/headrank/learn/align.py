"""Preference alignment in attention space (docs/method.md, section 5): LoRA on layers <= L*, trained so
that the selected heads' attention mass prefers more relevant passages.

For a training list, ``p_theta(i) = s(i) / sum_k s(k)`` with ``s`` the raw attention mass of the
head set (positive, so a distribution). The reference ``p_ref`` is the same model with its adapters
disabled, computed once per list. Loss per list:

    mean over pairs (w, l) of  -log sigmoid(beta * [(log p(w) - log p_ref(w)) - (log p(l) - log p_ref(l))])
    + alpha * KL(y || p_theta),  y(i) proportional to exp(grade_i / tau)

Pairs are hard adjacent-level pairs by default (grades differ by one; smallest reference margin).
Ablations switch pieces off or swap them (see ``TrainConfig``).
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import math
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import torch

from headrank.engine.capture import can_skip_layers, capture_from_layer, capture_lists, layer_inputs
from headrank.engine.checkpoint import TRAIN_EXTRA, quiet_peft, save_adapter, write_config
from headrank.engine.heads import HeadSet
from headrank.engine.mass import combine_heads, passage_mass
from headrank.engine.prompt import CALIBRATION_QUERY, ListwisePrompt, PromptBuilder
from headrank.engine.rule import ScoringRule
from headrank.learn.selection import ndcg_at_10

PAIR_MODES = ("hard-adjacent", "random-adjacent", "any-gap")
LIST_ORDERS = ("shuffled", "first-stage")
LORA_LAYERS = ("up-to-l-star", "head-layers")


@dataclass(frozen=True)
class TrainConfig:
    lora_r: int = 8
    lora_alpha: int = 16
    target_modules: tuple[str, ...] = ("q_proj", "k_proj")
    lora_layers: str = "up-to-l-star"  # or "head-layers": only layers that hold a selected head
    lr: float = 1e-4
    epochs: int = 3
    beta: float = 1.0
    alpha: float = 0.5  # weight of the distribution regularizer (0: off)
    tau: float = 1.0
    list_size: int = 20
    pairs_per_list: int = 8
    pair_mode: str = "hard-adjacent"
    use_reference: bool = True  # False: plain pairwise logistic loss on log p_theta
    list_order: str = "shuffled"
    lists_per_query: int = 1  # shuffled lists drawn per training query (each its own permutation)
    seed: int = 0
    patience: int = 1
    max_grad_norm: float = 1.0
    # More domains (issue 18): "BENCH:SPLIT:N" (a seeded sample of N usable queries), "BENCH:SPLIT:@FILE"
    # (listed query ids) or "BENCH:SPLIT" (every usable query). Validation is then the mean over domains.
    extra_train: tuple[str, ...] = ()
    extra_val: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.pair_mode not in PAIR_MODES:
            raise ValueError(f"pair_mode must be one of {', '.join(PAIR_MODES)}")
        if self.list_order not in LIST_ORDERS:
            raise ValueError(f"list_order must be one of {', '.join(LIST_ORDERS)}")
        if self.lora_layers not in LORA_LAYERS:
            raise ValueError(f"lora_layers must be one of {', '.join(LORA_LAYERS)}")
        if self.list_size < 2 or self.epochs < 1 or self.lora_r < 1:
            raise ValueError("list_size >= 2, epochs >= 1 and lora_r >= 1 are required")
        for name, low in (("lr", 0.0), ("beta", 0.0), ("tau", 0.0), ("max_grad_norm", 0.0)):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value > low):
                raise ValueError(f"{name} must be a finite number > 0, got {value!r}")
        if not (isinstance(self.alpha, (int, float)) and math.isfinite(self.alpha) and self.alpha >= 0):
            raise ValueError(f"alpha must be a finite number >= 0 (0 disables the regularizer), got {self.alpha!r}")
        if self.pairs_per_list < 1:
            raise ValueError(f"pairs_per_list must be >= 1, got {self.pairs_per_list}")
        if not self.target_modules or not all(isinstance(t, str) and t.strip() for t in self.target_modules):
            raise ValueError(f"target_modules must name at least one projection, got {self.target_modules!r}")
        if self.patience < 0:
            raise ValueError(f"patience must be >= 0, got {self.patience}")
        if self.lists_per_query < 1:
            raise ValueError("lists_per_query must be >= 1")
        if self.lists_per_query > 1 and self.list_order == "first-stage":
            raise ValueError("lists_per_query > 1 needs shuffled lists (first-stage order gives identical copies)")
        for spec in (*self.extra_train, *self.extra_val):
            parse_source(spec)


@dataclass(frozen=True)
class DataSource:
    """Queries of another training benchmark: ``count`` sampled (seeded), those listed in ``query_file``, or
    every usable one (a judged relevant and a non-relevant passage among the first ``list_size``)."""
    benchmark: str
    split: str
    count: int | None = None
    query_file: Path | None = None


def parse_source(spec: str) -> DataSource:
    """``BENCH:SPLIT``, ``BENCH:SPLIT:N`` or ``BENCH:SPLIT:@FILE`` (e.g. ``nfcorpus:train:120``)."""
    parts = spec.split(":", 2) if isinstance(spec, str) else []
    if len(parts) < 2 or not parts[0].strip() or not parts[1].strip():
        raise ValueError(f"a data source is BENCH:SPLIT[:N | :@FILE], e.g. nfcorpus:train:120; got {spec!r}")
    bench, split = parts[0].strip(), parts[1].strip()
    if len(parts) == 2:
        return DataSource(bench, split)
    rest = parts[2].strip()
    if rest.startswith("@") and len(rest) > 1:
        return DataSource(bench, split, query_file=Path(rest[1:]))
    if not rest.isdigit() or int(rest) < 1:
        raise ValueError(f"{spec!r}: the query count must be a whole number >= 1 (or @FILE for a list of ids)")
    return DataSource(bench, split, count=int(rest))


@dataclass
class TrainingList:
    qid: str
    query: str
    docids: list[str]
    grades: list[int]
    prompt: ListwisePrompt
    ref_logp: torch.Tensor | None = None
    pairs: list[tuple[int, int]] = field(default_factory=list)
    frozen_hidden: torch.Tensor | None = None  # input of the first adapter layer (prefix + tail), if cached
    domain: str = ""  # the benchmark it comes from; validation averages over domains


def build_lists(items: Sequence[tuple[str, str, list[tuple[str, str]]]], qrels: dict[str, dict[str, int]],
                builder: PromptBuilder, config: TrainConfig, rng: random.Random,
                domains: dict[str, str] | None = None) -> list[TrainingList]:
    """Lists built like evaluation lists (first-stage top ``list_size``), shuffled unless configured not to;
    ``lists_per_query`` permutations per query, so that no one position of a relevant passage is learnt."""
    lists = []
    for qid, query, candidates in items:
        for _ in range(config.lists_per_query):
            docs = list(candidates[: config.list_size])
            if config.list_order == "shuffled":
                rng.shuffle(docs)
            grades = [max(qrels.get(qid, {}).get(d, 0), 0) for d, _ in docs]
            lists.append(TrainingList(qid, query, [d for d, _ in docs], grades,
                                      builder.build(query, [t for _, t in docs]),
                                      domain=(domains or {}).get(qid, "")))
    return lists


def make_pairs(grades: Sequence[int], ref_logp: torch.Tensor | None, mode: str, limit: int,
               rng: random.Random) -> list[tuple[int, int]]:
    """(winner, loser) index pairs. Adjacent modes need grades one level apart; hard picks the smallest
    reference margin log p_ref(w) - log p_ref(l), random samples uniformly."""
    pairs = [(w, l) for w in range(len(grades)) for l in range(len(grades))
             if (grades[w] - grades[l] == 1 if mode != "any-gap" else grades[w] > grades[l])]
    if mode == "hard-adjacent" and ref_logp is not None:
        pairs.sort(key=lambda p: (float(ref_logp[p[0]] - ref_logp[p[1]]), p))
        return pairs[:limit]
    rng.shuffle(pairs)
    return pairs[:limit]


def decoder_model(model: torch.nn.Module) -> torch.nn.Module:
    """The causal LM under a peft wrapper (capture needs its decoder stack)."""
    return model.get_base_model() if hasattr(model, "get_base_model") else model


def list_logprobs(model: torch.nn.Module, lists: Sequence[TrainingList], heads: HeadSet, pad_id: int,
                  start: int = 0) -> list[torch.Tensor]:
    """log p_theta over the passages of each list, from the raw (uncalibrated) head-set mass. Lists with
    ``frozen_hidden`` run only layers ``start``.. on it (see ``frozen_layers``)."""
    decoder = decoder_model(model)
    if lists and all(t.frozen_hidden is not None for t in lists):
        attention = [capture_from_layer(decoder, t.frozen_hidden, len(t.prompt.prefix_ids), list(heads.heads), start)
                     for t in lists]
    else:
        attention = capture_lists(decoder, [t.prompt.prefix_ids for t in lists],
                                  [[t.prompt.tail_ids for t in lists]], list(heads.heads), pad_id=pad_id)[0]
    out = []
    for att, t in zip(attention, lists):
        mass = passage_mass(combine_heads(att, heads.weight_of()), t.prompt.passage_spans).clamp(min=1e-12)
        out.append(mass.log() - mass.sum().log())
    return out


def frozen_layers(model: torch.nn.Module, heads: HeadSet, config: TrainConfig) -> int:
    """How many bottom layers carry no adapter and can run once per list instead of every step (0: none).

    Only with head-layer adapters: then the input of the first head layer never changes during training,
    so the reference pass records it and each step runs the head layers alone (Qwen2.5-Coder's DL21 set:
    layers 15-22 instead of 0-22, forward and backward). Costs one (tokens x hidden) tensor per list.
    """
    start = min(layer for layer, _ in heads.heads) if config.lora_layers == "head-layers" else 0
    return start if can_skip_layers(decoder_model(model), start) else 0


def score_reference(model: torch.nn.Module, item: TrainingList, heads: HeadSet, pad_id: int, first_adapter: int) -> None:
    """Fill ``item.ref_logp`` (call with the adapters disabled, without gradients); with frozen layers
    (``first_adapter`` > 0) also record the first adapter layer's input as ``item.frozen_hidden``."""
    if not first_adapter:
        item.ref_logp = list_logprobs(model, [item], heads, pad_id)[0]
        return
    with layer_inputs(decoder_model(model), first_adapter) as seen:
        item.ref_logp = list_logprobs(model, [item], heads, pad_id)[0]
    item.frozen_hidden = torch.cat(seen, dim=1)  # prefix, then tail


def reference_key(item: TrainingList, heads: HeadSet, model_name: str) -> str:
    """What a list's reference scores are computed from: the model, its tokens, passages and the head set
    (content, not the list's position in the run), so that a resumed run reuses them only for the very same list."""
    content = [model_name, heads.fingerprint, item.qid, item.docids, item.prompt.prefix_ids, item.prompt.tail_ids,
               [list(h) for h in heads.heads], list(heads.weights or [])]
    return hashlib.sha256(json.dumps(content).encode()).hexdigest()[:32]


def frozen_input(model: torch.nn.Module, item: TrainingList, pad_id: int, first_adapter: int) -> torch.Tensor:
    """The input of layer ``first_adapter`` for the list (prefix, then tail), from a pass that stops there: what
    ``score_reference`` records, without the layers above (a resumed run has the reference scores already)."""
    with layer_inputs(decoder_model(model), first_adapter) as seen:
        capture_lists(decoder_model(model), [item.prompt.prefix_ids], [[item.prompt.tail_ids]], [(first_adapter, 0)],
                      pad_id=pad_id)
    return torch.cat(seen, dim=1)


def list_loss(logp: torch.Tensor, item: TrainingList, config: TrainConfig) -> torch.Tensor:
    """Preference loss over the list's pairs plus the distribution regularizer."""
    loss = logp.new_zeros(())
    if item.pairs:
        w = torch.tensor([p[0] for p in item.pairs], device=logp.device)
        l = torch.tensor([p[1] for p in item.pairs], device=logp.device)
        margin = logp[w] - logp[l]
        if config.use_reference:
            ref = item.ref_logp.to(logp.device)  # computed without gradients, on the CPU side of the capture
            margin = margin - (ref[w] - ref[l])
        loss = loss + torch.nn.functional.softplus(-config.beta * margin).mean()  # = -log sigmoid(beta * margin)
    if config.alpha > 0:
        target = torch.softmax(torch.tensor(item.grades, dtype=logp.dtype, device=logp.device) / config.tau, dim=0)
        loss = loss + config.alpha * (target * (target.log() - logp)).sum()
    return loss


def validation_by_domain(model: torch.nn.Module, lists: Sequence[TrainingList], heads: HeadSet,
                         builder: PromptBuilder, qrels: dict[str, dict[str, int]], pad_id: int, calibrate: bool = True,
                         on_list: Callable[[int, int], None] | None = None) -> dict[str, float]:
    """Mean nDCG@10 of the head-set scores (N/A-calibrated by default) per domain of the validation lists."""
    values: dict[str, list[float]] = {}
    na_tail = builder.tail_ids(CALIBRATION_QUERY)
    rule = ScoringRule.of(heads, calibrate=calibrate)
    with torch.no_grad():
        for done, t in enumerate(lists, start=1):
            tails = [[t.prompt.tail_ids]] + ([[na_tail]] if calibrate else [])
            out = capture_lists(decoder_model(model), [t.prompt.prefix_ids], tails, list(heads.heads), pad_id=pad_id)
            scores = rule.from_attention(out[0][0], t.prompt.passage_spans, out[1][0] if calibrate else None)
            value = float(ndcg_at_10(scores[None], t.docids, qrels.get(t.qid, {}))[0])
            values.setdefault(t.domain, []).append(value)
            if on_list:
                on_list(done, len(lists))
    return {domain: sum(v) / len(v) for domain, v in values.items()}


def macro_mean(by_domain: dict[str, float]) -> float:
    """The mean over domains, so that a domain with many queries does not decide alone."""
    return sum(by_domain.values()) / max(len(by_domain), 1)


def validation_ndcg(model: torch.nn.Module, lists: Sequence[TrainingList], heads: HeadSet, builder: PromptBuilder,
                    qrels: dict[str, dict[str, int]], pad_id: int, calibrate: bool = True,
                    on_list: Callable[[int, int], None] | None = None) -> float:
    """Validation nDCG@10: the mean per domain (``validation_by_domain``), then over domains."""
    return macro_mean(validation_by_domain(model, lists, heads, builder, qrels, pad_id, calibrate, on_list))


def _domain_columns(by_domain: dict[str, float]) -> dict:
    """History entries per domain, only when validation spans more than one."""
    return {"val_by_domain": dict(sorted(by_domain.items()))} if len(by_domain) > 1 else {}


def adapter_layers(heads: HeadSet, config: TrainConfig) -> list[int]:
    """Layers that get adapters: all of 0..L* (later layers never run), or only those holding a selected
    head, which leaves the residual stream below the first head layer untouched and makes the backward
    pass stop there."""
    if config.lora_layers == "head-layers":
        return sorted({layer for layer, _ in heads.heads})
    return list(range(heads.deepest_layer + 1))


def require_peft() -> None:
    """Training writes its LoRA adapter with peft, which only the ``train`` extra installs (ranking merges a
    plain adapter without it); say so before data or a model is loaded."""
    if importlib.util.find_spec("peft") is None:
        raise ImportError(f"training needs peft: {TRAIN_EXTRA}")


def add_adapters(model: torch.nn.Module, heads: HeadSet, config: TrainConfig):
    """LoRA on the target projections of the adapter layers (``adapter_layers``)."""
    require_peft()
    from peft import LoraConfig, get_peft_model

    lora = LoraConfig(r=config.lora_r, lora_alpha=config.lora_alpha, lora_dropout=0.0,
                      target_modules=list(config.target_modules),
                      layers_to_transform=adapter_layers(heads, config), bias="none")
    with quiet_peft():
        return get_peft_model(model, lora)


def check_resumable(saved: dict | None, current: dict, state_path: Path) -> None:
    """Resuming with other training settings would silently mix two runs; only the epoch budget may change."""
    if saved is None:
        return  # states written before settings were recorded
    saved = {**asdict(TrainConfig()), **saved}  # settings added later read as their defaults
    differ = sorted(k for k in set(saved) | set(current) if k != "epochs" and saved.get(k) != current.get(k))
    if differ:
        detail = ", ".join(f"{k}: {saved.get(k)!r} -> {current.get(k)!r}" for k in differ)
        raise ValueError(f"{state_path} was trained with other settings ({detail}); "
                         "resume with the same settings or write to a new --out directory")


@dataclass
class _Run:
    """What every epoch of one training run reads: the model, validation lists and where state is kept."""

    model: torch.nn.Module
    val_lists: list
    heads: HeadSet
    builder: PromptBuilder
    qrels: dict
    pad_id: int
    out_dir: Path
    config: TrainConfig
    base_model_name: str
    state_path: Path
    optimizer: torch.optim.Optimizer
    rng: random.Random
    reference: dict
    phase: Callable[[str], Callable[[int, int], None] | None]


def _resumable_state(state_path: Path, config: TrainConfig) -> dict | None:
    """A saved training state to resume, checked against this run's config before the costly reference pass."""
    state = _load_state(state_path)
    if state is not None:
        check_resumable(state.get("config"), asdict(config), state_path)
    return state


def _phase_reporter(on_phase: Callable[[str, int, int], None] | None) -> Callable[[str], Callable | None]:
    """``phase(name)``: a ``(done, total)`` callback that reports progress of the named pass, or None."""
    def phase(name: str) -> Callable[[int, int], None] | None:
        return (lambda done, total: on_phase(name, done, total)) if on_phase else None

    return phase


def _validate(run: _Run, history: list[dict], epoch: int, loss: float | None, started: float) -> float:
    """Validation nDCG@10 (domains averaged first), recorded in ``history`` with the epoch's wall time."""
    by_domain = validation_by_domain(run.model, run.val_lists, run.heads, run.builder, run.qrels, run.pad_id,
                                     on_list=run.phase("validation"))
    val = macro_mean(by_domain)
    history.append({"epoch": epoch, "train_loss": loss, "val_ndcg@10": val,
                    "seconds": round(time.perf_counter() - started, 1),  # epoch 0: reference pass + validation
                    **_domain_columns(by_domain)})
    return val


def _epoch_zero(run: _Run, history: list[dict], started: float) -> float:
    """The untrained head set's validation score, kept as the checkpoint until an epoch beats it."""
    best = _validate(run, history, 0, None, started)
    _keep_best(run.model, run.out_dir, run.heads, run.config, run.base_model_name, history)
    _save_state(run.state_path, run.model, run.optimizer, 0, best, 0, history, run.config, run.rng, run.reference)
    return best


Items = Sequence[tuple[str, str, list[tuple[str, str]]]]  # (qid, query, [(docid, text), ...]) per list


def train(model: torch.nn.Module, builder: PromptBuilder, heads: HeadSet, train_items: Items, val_items: Items,
          qrels: dict[str, dict[str, int]], config: TrainConfig, out_dir: Path, pad_id: int, base_model_name: str,
          resume: bool = False, on_step: Callable[[int, int, float], None] | None = None,
          on_epoch: Callable[[int, float, float], None] | None = None,
          on_phase: Callable[[str, int, int], None] | None = None, domains: dict[str, str] | None = None) -> dict:
    """Train adapters; keeps the best epoch by validation nDCG@10 in ``out_dir`` (a HeadRank checkpoint).

    ``on_phase(name, done, total)`` reports the passes without a loss: "reference" and "validation".
    ``domains`` maps query ids to their benchmark; validation is then averaged per domain first.
    """
    phase = _phase_reporter(on_phase)
    started, rng = time.perf_counter(), random.Random(config.seed)
    torch.manual_seed(config.seed)
    out_dir.mkdir(parents=True, exist_ok=True)
    state_path = out_dir / "training_state.pt"
    state = _resumable_state(state_path, config) if resume else None
    peft_model = add_adapters(model, heads, config)
    peft_model.eval()  # no dropout; gradients still flow
    train_lists = build_lists(train_items, qrels, builder, config, rng, domains)
    val_lists = build_lists(val_items, qrels, builder, replace(config, list_order="first-stage", lists_per_query=1),
                            rng, domains)
    first_adapter = frozen_layers(peft_model, heads, config)
    reference = _reference_pass(peft_model, train_lists, heads, pad_id, first_adapter, config, rng,
                                phase("reference"), (state or {}).get("reference"), base_model_name)
    params = [p for p in peft_model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=config.lr)
    run = _Run(peft_model, val_lists, heads, builder, qrels, pad_id, out_dir, config, base_model_name, state_path,
               optimizer, rng, reference, phase)
    start_epoch, best, since_best, history = (_restore_state(state, peft_model, optimizer, rng) if state is not None
                                              else (0, -1.0, 0, []))
    if start_epoch == 0 and not history:
        best = _epoch_zero(run, history, started)
    if since_best > config.patience:
        start_epoch = config.epochs  # a resumed run that had stopped early stays stopped
    for epoch in range(start_epoch + 1, config.epochs + 1):
        started = time.perf_counter()
        mean_loss = _train_epoch(peft_model, train_lists, heads, pad_id, first_adapter, config, rng, optimizer,
                                 params, lambda step, loss, epoch=epoch: on_step(epoch, step, loss) if on_step else None)
        val = _validate(run, history, epoch, mean_loss, started)
        if on_epoch:
            on_epoch(epoch, history[-1]["train_loss"], val)
        if val > best:
            best, since_best = val, 0
            _keep_best(peft_model, out_dir, heads, config, base_model_name, history)
        else:
            since_best += 1
        _save_state(state_path, peft_model, optimizer, epoch, best, since_best, history, config, rng, reference)
        if since_best > config.patience:
            break
    write_config(out_dir, heads, asdict(config), base_model_name, history)
    return {"history": history, "best_val_ndcg@10": best}


def _keep_best(peft_model, out_dir: Path, heads: HeadSet, config: TrainConfig, base_model_name: str,
               history: list[dict]) -> None:
    """The checkpoint on disk is always the best epoch so far: its adapter and the history up to now."""
    save_adapter(peft_model, out_dir)
    write_config(out_dir, heads, asdict(config), base_model_name, history)


def _reference_pass(peft_model, train_lists, heads: HeadSet, pad_id: int, first_adapter: int, config: TrainConfig,
                    rng: random.Random, progress: Callable[[int, int], None] | None,
                    saved: dict[str, torch.Tensor] | None = None, model_name: str = "") -> dict[str, torch.Tensor]:
    """p_ref of every training list (adapters off, no gradients) and the hard pairs chosen from it. ``saved``:
    reference scores a stopped run recorded, by ``reference_key``; those lists only need their frozen input.
    Returns the scores by key, for the training state."""
    saved, scores = saved or {}, {}
    with torch.no_grad(), peft_model.disable_adapter():
        for done, item in enumerate(train_lists, start=1):
            key = reference_key(item, heads, model_name)
            known = saved.get(key)
            if known is None:
                score_reference(peft_model, item, heads, pad_id, first_adapter)
            else:
                item.ref_logp = known
                if first_adapter:
                    item.frozen_hidden = frozen_input(peft_model, item, pad_id, first_adapter)
            scores[key] = item.ref_logp
            item.pairs = make_pairs(item.grades, item.ref_logp, config.pair_mode, config.pairs_per_list, rng)
            if progress:
                progress(done, len(train_lists))
    return scores


def _train_epoch(peft_model, train_lists, heads: HeadSet, pad_id: int, first_adapter: int, config: TrainConfig,
                 rng: random.Random, optimizer, params, on_step: Callable[[int, float], None]) -> float:
    """One pass over the training lists in a shuffled order; the mean loss."""
    order = list(range(len(train_lists)))
    rng.shuffle(order)
    total = 0.0
    for step, index in enumerate(order, start=1):
        item = train_lists[index]
        loss = list_loss(list_logprobs(peft_model, [item], heads, pad_id, first_adapter)[0], item, config)
        if loss.requires_grad:  # a list without pairs gives no signal when the regularizer is off
            optimizer.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, config.max_grad_norm)
            optimizer.step()
        total += float(loss.detach())
        on_step(step, float(loss.detach()))
    return total / max(len(order), 1)


def _save_state(path: Path, peft_model, optimizer, epoch: int, best: float, since_best: int, history: list[dict],
                config: TrainConfig, rng: random.Random, reference: dict[str, torch.Tensor]) -> None:
    """Everything a resumed run needs after ``epoch``: adapter, optimizer, progress, both RNG states and the
    reference scores (a few floats per list; the full-depth reference pass is the costly part of a restart)."""
    from peft import get_peft_model_state_dict

    partial = path.with_name(path.name + ".partial")
    torch.save({"adapter": get_peft_model_state_dict(peft_model), "optimizer": optimizer.state_dict(),
                "epoch": epoch, "best": best, "since_best": since_best, "history": history, "config": asdict(config),
                "rng": rng.getstate(), "torch_rng": torch.get_rng_state(), "reference": reference}, partial)
    partial.replace(path)  # a kill while saving keeps the previous epoch's state, not a torn file


def _load_state(path: Path) -> dict | None:
    """The saved training state, None when there is none; a file that is not one is a clear error."""
    if not path.is_file():
        return None
    try:
        return torch.load(path, weights_only=False)
    except Exception as err:  # a torn or foreign file: pickle, zip and EOF errors alike
        raise ValueError(f"{path} is not a readable training state ({type(err).__name__}); delete it to start "
                         "over, or train without --resume") from None


def _restore_state(state: dict, peft_model, optimizer, rng: random.Random) -> tuple[int, float, int, list[dict]]:
    """Put a saved state back; returns (epoch, best, since_best, history)."""
    from peft import set_peft_model_state_dict

    set_peft_model_state_dict(peft_model, state["adapter"])
    optimizer.load_state_dict(state["optimizer"])
    rng.setstate(state["rng"])
    torch.set_rng_state(state["torch_rng"])
    return state["epoch"], state["best"], state["since_best"], state["history"]


def load_source(source: DataSource, depth: int, data_root: Path | None = None, seed: int = 0):
    """The benchmark of a ``DataSource``, restricted to its queries (reporting sets are refused)."""
    from headrank.data.benchmarks import check_training_set, load_benchmark
    from headrank.learn.adapt import restrict_queries, sample_queries, usable_queries

    check_training_set(source.benchmark, source.split)
    bench = load_benchmark(source.benchmark, data_root=data_root, split=source.split)
    if source.query_file is not None:
        from headrank.data.formats import read_text_file, text_lines

        return restrict_queries(bench, text_lines(read_text_file(source.query_file)))
    if source.count is not None:
        return sample_queries(bench, source.count, depth, seed=seed)
    return restrict_queries(bench, usable_queries(bench, depth))


@dataclass
class ExtraData:
    """Training and validation items of other domains; ``origin`` maps each prefixed query id back to
    (benchmark name, its own id), ``domains`` to the benchmark name."""
    train_items: list = field(default_factory=list)
    val_items: list = field(default_factory=list)
    qrels: dict[str, dict[str, int]] = field(default_factory=dict)
    domains: dict[str, str] = field(default_factory=dict)
    origin: dict[str, tuple[str, str]] = field(default_factory=dict)

    def add(self, bench, prefix: str, validation: bool) -> None:
        """Add a benchmark's queries, ids prefixed so that two sets never share one."""
        out = self.val_items if validation else self.train_items
        for q in bench.queries:
            out.append((prefix + q, bench.queries[q], [(c.docid, c.text) for c in bench.candidates[q]]))
            self.qrels[prefix + q] = bench.qrels.get(q, {})
            self.domains[prefix + q] = bench.name
            self.origin[prefix + q] = (bench.name, q)


def extra_items(config: TrainConfig, data_root: Path | None = None) -> ExtraData:
    """The queries of ``config.extra_train`` / ``extra_val``. A query cannot be both a training and a
    validation query."""
    extra = ExtraData()
    for specs, validation in ((config.extra_train, False), (config.extra_val, True)):
        for spec in specs:
            source = parse_source(spec)
            bench = load_source(source, config.list_size, data_root, config.seed)
            extra.add(bench, f"{source.benchmark}/{source.split}/", validation)
    overlap = {i[0] for i in extra.train_items} & {i[0] for i in extra.val_items}
    if overlap:
        raise ValueError(f"{len(overlap)} queries are both training and validation queries, e.g. {sorted(overlap)[0]}; "
                         "use another split (e.g. nfcorpus:train for training, nfcorpus:dev for validation)")
    return extra


def train_head_set(
    head_set: HeadSet,
    bench,
    config: TrainConfig,
    out_dir: Path,
    model: str | None = None,
    device: str = "auto",
    dtype: str = "float32",
    resume: bool = False,
    on_step: Callable[[int, int, float], None] | None = None,
    on_epoch: Callable[[int, float, float], None] | None = None,
    on_phase: Callable[[str, int, int], None] | None = None,
    on_start: Callable[[int], None] | None = None,
    data_root: Path | None = None,
) -> dict:
    """Train a head set's alignment on a training benchmark, reusing the train/validation split of its selection,
    plus the queries of ``config.extra_train`` / ``extra_val`` (other domains).

    Loads the base model (``model`` or the one the head set names), checks that the head set fits it, and
    writes the checkpoint to ``out_dir``. ``on_start(n)`` is told the number of training lists per epoch.
    """
    from headrank.engine.models import load_model, pad_token_id
    from headrank.engine.prompt import PromptSettings

    train_q = [q for q in head_set.split_queries("train") if q in bench.queries]
    val_q = [q for q in head_set.split_queries("val") if q in bench.queries]
    if not train_q or not val_q:
        raise ValueError(f"the head set records no train/validation split on {bench.name}; run select-heads on it")
    extra = extra_items(config, data_root)  # bad sources fail before the model loads
    for items, held in ((extra.train_items, {(bench.name, q) for q in val_q}),
                        (extra.val_items, {(bench.name, q) for q in train_q})):
        clash = [i[0] for i in items if extra.origin[i[0]] in held]
        if clash:
            raise ValueError(f"{clash[0]} is on the other side of the head set's {bench.name} train/validation split")
    base = model or head_set.model
    if not base:
        raise ValueError("the head set names no base model; pass the model to train")
    loaded = load_model(base, device=device, dtype=dtype)
    head_set.check_model(loaded.num_layers, loaded.num_heads)
    head_set.check_fingerprint(loaded)
    builder = PromptBuilder(loaded.tokenizer, PromptSettings(**head_set.prompt))
    items = {q: (q, bench.queries[q], [(c.docid, c.text) for c in bench.candidates[q]]) for q in bench.queries}
    domains = {**extra.domains, **{q: bench.name for q in train_q + val_q}}
    qrels = {**bench.qrels, **extra.qrels}
    tok = loaded.tokenizer
    pad_id = pad_token_id(tok)
    train_items = [items[q] for q in train_q] + extra.train_items
    if on_start:
        on_start(len(train_items) * config.lists_per_query)
    return train(loaded.model, builder, head_set, train_items, [items[q] for q in val_q] + extra.val_items, qrels,
                 config, out_dir, pad_id, base, resume=resume, on_step=on_step, on_epoch=on_epoch, on_phase=on_phase,
                 domains=domains)
