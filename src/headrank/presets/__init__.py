"""Shipped HeadRank presets: trained head sets and adapters with their inference settings and model cards.

A preset is a HeadRank checkpoint directory (``headrank.checkpoint``) that ships as package data:

    presets/<name>/headrank_config.json   base model, inference settings, training recipe and history, "card"
    presets/<name>/headset.json           the head set (with the base weights' fingerprint)
    presets/<name>/adapter/               peft LoRA adapter (safetensors, well under 5 MB)
    presets/<name>/README.md              the model card, rendered from "card" by ``render_card``

Base weights are never shipped: a preset names its base model, fetched and cached like any named model.
``build_preset`` turns a trained checkpoint into a preset directory; ``headrank build-preset`` runs the whole
recipe (selection, training, packaging) from scratch.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from headrank.defaults import DEFAULT_PRESET, FAST_PRESET  # noqa: F401 (re-exported)
from headrank.checkpoint import ADAPTER_DIR, CONFIG_NAME, HEADSET_NAME, InferenceSettings, load_checkpoint_config

PRESETS_DIR = Path(__file__).resolve().parent
CARD_NAME = "README.md"


@dataclass(frozen=True)
class Preset:
    """A preset directory and what its config says about it."""

    name: str
    path: Path
    base_model: str
    inference: InferenceSettings
    card: dict = field(default_factory=dict)

    @property
    def headline(self) -> dict:
        """Four-set nDCG@10 of the preset (its settings), BM25 and ICR, as recorded in the card."""
        return self.card.get("four_set_ndcg@10", {})


def available_presets() -> list[str]:
    """Names of the presets shipped in this package."""
    return sorted(p.name for p in PRESETS_DIR.iterdir() if (p / CONFIG_NAME).is_file())


def is_preset_name(name: object) -> bool:
    return isinstance(name, str) and "/" not in name and (PRESETS_DIR / name / CONFIG_NAME).is_file()


def load_preset(name_or_path: str | Path) -> Preset:
    """A shipped preset by name, or a preset / checkpoint directory by path."""
    path = PRESETS_DIR / str(name_or_path) if is_preset_name(name_or_path) else Path(name_or_path)
    if not (path / CONFIG_NAME).is_file():
        raise ValueError(f"unknown preset {str(name_or_path)!r}; shipped presets: {', '.join(available_presets())}")
    config = load_checkpoint_config(path)
    return Preset(name=config.get("preset", path.name), path=path, base_model=config["base_model"],
                  inference=InferenceSettings.from_dict(config.get("inference")), card=config.get("card", {}))


def base_model_of(model: str) -> str:
    """The base model a preset or checkpoint runs on; any other model name is returned as it is."""
    if is_preset_name(model) or (Path(model) / CONFIG_NAME).is_file():
        return load_preset(model).base_model
    return model


def list_presets() -> list[Preset]:
    return [load_preset(name) for name in available_presets()]


def build_preset(checkpoint: str | Path, out: str | Path, name: str, inference: InferenceSettings,
                 card: dict | None = None, head_set=None) -> Preset:
    """Package a trained checkpoint as a preset: config with inference settings and card, head set, adapter, card.

    The training state (optimizer, RNG; tens of MB) is left behind: a preset is for inference. ``head_set``
    replaces the checkpoint's (e.g. the same heads with a re-computed fingerprint).
    """
    checkpoint, out = Path(checkpoint), Path(out)
    config = load_checkpoint_config(checkpoint)
    if not (checkpoint / ADAPTER_DIR).is_dir():
        raise FileNotFoundError(f"{checkpoint}: no {ADAPTER_DIR}/ directory (incomplete checkpoint)")
    if out.exists() and any(out.iterdir()) and not (out / CONFIG_NAME).is_file():
        raise FileExistsError(f"{out} exists and is not a preset directory; refusing to overwrite it")
    out.mkdir(parents=True, exist_ok=True)
    from headrank.heads import HeadSet

    head_set = head_set or HeadSet.load(checkpoint / HEADSET_NAME)
    head_set.save(out / HEADSET_NAME)
    shutil.rmtree(out / ADAPTER_DIR, ignore_errors=True)
    (out / ADAPTER_DIR).mkdir()
    for item in (checkpoint / ADAPTER_DIR).iterdir():  # the adapter itself; peft's template README stays behind
        if item.name == "adapter_config.json" or item.suffix == ".safetensors":
            shutil.copyfile(item, out / ADAPTER_DIR / item.name)
    card = {**(card or {}), "heads": [list(h) for h in head_set.heads], "deepest_layer": head_set.deepest_layer,
            "weights": None if head_set.weights is None else [round(w / max(head_set.weights), 4)
                                                              for w in head_set.weights]}
    config = {**config, "preset": name, "inference": inference.to_dict(), "card": card}
    (out / CONFIG_NAME).write_text(json.dumps(config, indent=2) + "\n")
    (out / CARD_NAME).write_text(render_card(config))
    return load_preset(out)


def update_card(path: str | Path, card: dict) -> Preset:
    """Merge ``card`` into a preset's card (e.g. numbers measured after it was built) and re-render README.md."""
    path = Path(path)
    config = load_checkpoint_config(path)
    config["card"] = {**config.get("card", {}), **card}
    (path / CONFIG_NAME).write_text(json.dumps(config, indent=2) + "\n")
    (path / CARD_NAME).write_text(render_card(config))
    return load_preset(path)


def _fmt(value) -> str:
    return f"{value:.4f}" if isinstance(value, float) else ("-" if value is None else str(value))


def _heads_text(heads: list, weights: list | None) -> str:
    if not heads:
        return "-"
    if not weights:
        return ", ".join(f"({layer}, {head})" for layer, head in heads)
    return ", ".join(f"({layer}, {head}) x {w:.2f}" for (layer, head), w in zip(heads, weights))


def render_card(config: dict) -> str:
    """The model card (Markdown) of a preset, rendered from its config (so card and config never disagree)."""
    card = config.get("card", {})
    heads = card.get("heads", [])
    weights = card.get("weights")
    inference = InferenceSettings.from_dict(config.get("inference"))
    train = config.get("train_config", {})
    history = config.get("history", [])
    lines = [f"# {config.get('preset', 'HeadRank preset')}", ""]
    lines += [card.get("summary", "A HeadRank preset: selected attention heads and a LoRA alignment adapter."), ""]
    lines += ["## Base model", "",
              f"- `{config['base_model']}`: {card.get('base_model_description', '')}",
              f"- License of the base model: {card.get('base_model_license', 'see the base model')}. "
              "This preset ships only the head set and the adapter; the base weights are fetched on first use.", ""]
    lines += ["## How it was built", "",
              f"- Training data: {card.get('training_data', '-')}",
              f"- Command (one step, from scratch): `{card.get('command', '-')}`",
              *([f"- Built here as: {'; then '.join(f'`{c}`' for c in card['built_with'])}"]
                if card.get("built_with") else []),
              f"- Commit of the code that built it: `{card.get('commit', '-')}`",
              f"- Heads ({len(heads)}{', weighted' if weights else ''}): {_heads_text(heads, weights)}; "
              f"L* = {card.get('deepest_layer', '-')}",
              f"- Adapter: LoRA r {train.get('lora_r', '-')} on {', '.join(train.get('target_modules', []))} "
              f"({train.get('lora_layers', '-')}), lr {train.get('lr', '-')}, {train.get('lists_per_query', 1)} "
              f"shuffled list(s) per training query, up to {train.get('epochs', '-')} epochs, best epoch by "
              "validation nDCG@10",
              "- Validation nDCG@10 by epoch (epoch 0 = the untrained head set): "
              + (" -> ".join(f"{row['val_ndcg@10']:.4f}" for row in history) or "-"), ""]
    lines += ["## Inference settings", "", f"{inference.describe()}.", "",
              card.get("settings_choice", ""), ""]
    validation = card.get("validation", [])
    if validation:
        lines += ["| setting (validation) | " + " | ".join(validation[0]["ndcg@10"]) + " |",
                  "|---|" + "---|" * len(validation[0]["ndcg@10"])]
        lines += [f"| {row['setting']} | " + " | ".join(_fmt(v) for v in row["ndcg@10"].values()) + " |"
                  for row in validation]
        lines += [""]
    quality = card.get("quality", [])
    if quality:
        sets = list(quality[0]["ndcg@10"])
        lines += ["## Quality: nDCG@10, K = 20 (BM25 top 20), reporting sets never used for any choice", "",
                  "| method | " + " | ".join(sets) + " |", "|---|" + "---|" * len(sets)]
        lines += [f"| {row['method']} | " + " | ".join(_fmt(v) for v in row["ndcg@10"].values()) + " |"
                  for row in quality]
        lines += ["", card.get("quality_source", ""), ""]
    latency = card.get("latency", [])
    if latency:
        lines += ["## Latency at N = 20 (this project's 2-core CPU machine, float32)", "",
                  "| method | s per list | time / this preset | formatting success | answers = input order | "
                  "decoded tokens per window |", "|---|---|---|---|---|---|"]
        for row in latency:
            pct = [f"{100 * row[k]:.0f}%" if isinstance(row.get(k), float) else "-"
                   for k in ("formatting_success", "identity_share")]
            tokens = f"{row['tokens_per_window']:.1f}" if isinstance(row.get("tokens_per_window"), float) else "-"
            lines.append(f"| {row['method']} | {row['seconds_per_list']:.2f} | {row.get('ratio_to_preset', 1.0):.2f}x "
                         f"| {pct[0]} | {pct[1]} | {tokens} |")
        lines += ["", card.get("latency_source", ""), ""]
    weaknesses = card.get("weaknesses", [])
    if weaknesses:
        lines += ["## Known weaknesses", ""] + [f"- {w}" for w in weaknesses] + [""]
    lines += ["## Use", "", "```python", "from headrank import HeadRanker", "",
              f"ranker = HeadRanker.from_pretrained({config.get('preset', 'path/to/preset')!r})",
              "ranker.rank(query, passages, top_k=10)", "```", "",
              "Scores are listwise: comparable within one call only.", ""]
    return "\n".join(lines)


INFERENCE_CANDIDATES = (
    InferenceSettings(),
    InferenceSettings(fuse_first_stage=0.5),
    InferenceSettings(both_orders=True),
    InferenceSettings(both_orders=True, fuse_first_stage=0.5),
)


def choose_inference(ranker, lists, qrels, candidates=INFERENCE_CANDIDATES,
                     on_list=None) -> tuple[InferenceSettings, list[dict]]:
    """Pick the inference settings with the best validation nDCG@10 (ties: the first, i.e. the cheapest).

    ``lists``: (qid, query, [(docid, text), ...]) in first-stage order, validation queries only. Each list is
    read once as given and once reversed; every candidate is computed from those two passes. Returns the
    choice and one row per candidate (for the model card).
    """
    import ir_measures

    from headrank.fusion import fuse_with_first_stage, rank_positions

    if not lists:
        raise ValueError("no validation lists to choose inference settings on")
    if ranker.both_orders or ranker.fuse_first_stage or ranker.window:
        raise ValueError("choose_inference needs a ranker that reads one order without fusion or windows")
    forward, backward = {}, {}
    for done, (qid, query, docs) in enumerate(lists, start=1):
        texts = [text for _, text in docs]
        forward[qid] = ranker.score(query, texts)
        backward[qid] = ranker.score(query, texts[::-1])[::-1]
        if on_list:
            on_list(done, len(lists))
    metric = ir_measures.parse_measure("nDCG@10")
    judged = {q: {d: int(g) for d, g in qrels.get(q, {}).items()} for q, _, _ in lists}
    rows = []
    for settings in candidates:
        run = {}
        for qid, _, docs in lists:
            scores = forward[qid]
            if settings.both_orders:
                scores = [(a + b) / 2 for a, b in zip(forward[qid], backward[qid])]
            if settings.fuse_first_stage:
                scores = fuse_with_first_stage(scores, settings.fuse_first_stage)
            ranks = rank_positions(scores)  # ties broken by position, as rank() and evaluate do (not by docid)
            run[qid] = {docid: float(len(docs) - r) for (docid, _), r in zip(docs, ranks)}
        value = ir_measures.calc_aggregate([metric], judged, run)[metric]
        rows.append({"setting": settings.describe(), "inference": settings.to_dict(), "ndcg@10": float(value)})
    best = max(range(len(rows)), key=lambda i: (round(rows[i]["ndcg@10"], 6), -i))
    return candidates[best], rows


def validation_lists(head_set, bench, depth: int = 20) -> list[tuple[str, str, list[tuple[str, str]]]]:
    """The validation queries recorded by a head set's selection, as first-stage candidate lists of ``depth``."""
    val = [q for q in head_set.selection.get("val_queries", []) if q in bench.queries]
    if not val:
        raise ValueError(f"the head set records no validation queries on {bench.name}")
    return [(q, bench.queries[q], [(c.docid, c.text) for c in bench.candidates[q][:depth]]) for q in val]


def package_checkpoint(checkpoint: str | Path, out: str | Path, name: str, bench, depth: int = 20,
                       device: str = "auto", dtype: str = "auto", card: dict | None = None,
                       on_list=None) -> Preset:
    """Choose a trained checkpoint's inference settings on its validation queries and write it as a preset."""
    from headrank.heads import HeadSet
    from headrank.ranker import HeadRanker

    import dataclasses

    from headrank.models import load_model

    head_set = HeadSet.load(Path(checkpoint) / HEADSET_NAME)
    lists = validation_lists(head_set, bench, depth)
    base = load_model(load_checkpoint_config(checkpoint)["base_model"], device=device, dtype=dtype)
    head_set.check_fingerprint(base)
    if head_set.fingerprint != base.fingerprint:  # an older dtype-specific fingerprint: record today's
        head_set = dataclasses.replace(head_set, fingerprint=base.fingerprint)
    del base
    ranker = HeadRanker.from_pretrained(str(checkpoint), device=device, dtype=dtype, both_orders=False,
                                        fuse_first_stage=0, window=0)
    inference, rows = choose_inference(ranker, lists, bench.qrels, on_list=on_list)
    card = {**(card or {}), "validation": [{"setting": r["setting"], "ndcg@10": {
        f"{bench.name} validation ({len(lists)} queries)": r["ndcg@10"]}} for r in rows]}
    return build_preset(checkpoint, out, name, inference, card, head_set=head_set)


def build_from_scratch(model: str, out: str | Path, name: str, bench, train_config, work_dir: str | Path,
                       selection_args: dict | None = None, device: str = "auto", train_dtype: str = "float32",
                       cache_dir: Path | None = None, card: dict | None = None, progress=None) -> Preset:
    """The whole recipe: select heads, train the alignment, choose inference settings, write the preset.

    Resumable: the head set and the checkpoint in ``work_dir`` are reused when they exist (training resumes
    from its last finished epoch). ``progress(stage, done, total)`` is told about long stages.
    """
    from headrank.align import train_head_set
    from headrank.heads import HeadSet
    from headrank.ranker import HeadRanker
    from headrank.selection import select_head_set

    work = Path(work_dir)
    work.mkdir(parents=True, exist_ok=True)
    heads_path, ckpt = work / "headset.json", work / "checkpoint"
    args = dict(selection_args or {})
    depth = args.get("depth", 20)
    if heads_path.is_file():
        head_set = HeadSet.load(heads_path)
    else:
        icr = HeadRanker.from_pretrained(model, method="icr", device=device, dtype=train_dtype,
                                         max_passage_tokens=args.pop("max_passage_tokens", None))
        head_set, _, _ = select_head_set(
            icr, bench, cache_dir=cache_dir, **args,
            on_list=(lambda done, total: progress("observing heads", done, total)) if progress else None)
        head_set.save(heads_path)
        del icr
    on_phase = (lambda stage, done, total: progress(stage, done, total)) if progress else None
    on_step = (lambda epoch, step, loss: progress(f"epoch {epoch}", step, None)) if progress else None
    train_head_set(head_set, bench, train_config, ckpt, model=model, device=device, dtype=train_dtype, resume=True,
                   on_phase=on_phase, on_step=on_step)
    return package_checkpoint(ckpt, out, name, bench, depth=depth, device=device, dtype=train_dtype, card=card,
                              on_list=(lambda done, total: progress("choosing inference settings", done, total))
                              if progress else None)
