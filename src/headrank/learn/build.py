"""Making presets: package a trained checkpoint (``build_preset``, ``package_checkpoint``), choose its inference
settings on validation lists (``choose_inference``), or run the whole recipe (``build_from_scratch``)."""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

from headrank.engine.checkpoint import (
    ADAPTER_DIR,
    CONFIG_NAME,
    HEADSET_NAME,
    InferenceSettings,
    load_checkpoint_config,
    uses_adapter,
)
from headrank.engine.presets import CARD_NAME, Preset, load_preset
from headrank.learn.card import head_fields, render_card

logger = logging.getLogger(__name__)


def build_preset(checkpoint: str | Path, out: str | Path, name: str, inference: InferenceSettings,
                 card: dict | None = None, head_set=None) -> Preset:
    """Package a trained checkpoint as a preset: config with inference settings and card, head set, adapter, card.

    The training state (optimizer, RNG; tens of MB) is left behind: a preset is for inference. ``head_set``
    replaces the checkpoint's (e.g. the same heads with a re-computed fingerprint). A checkpoint without adapter
    (``"adapter": false``) gives a preset without one.
    """
    checkpoint, out = Path(checkpoint), Path(out)
    config = load_checkpoint_config(checkpoint)
    adapter = uses_adapter(checkpoint, config)
    if out.exists() and any(out.iterdir()) and not (out / CONFIG_NAME).is_file():
        raise FileExistsError(f"{out} exists and is not a preset directory; refusing to overwrite it")
    out.mkdir(parents=True, exist_ok=True)
    from headrank.engine.heads import HeadSet

    head_set = head_set or HeadSet.load(checkpoint / HEADSET_NAME)
    head_set.save(out / HEADSET_NAME)
    if out.resolve() != checkpoint.resolve():
        shutil.rmtree(out / ADAPTER_DIR, ignore_errors=True)  # a stale adapter must not outlive the checkpoint's
        if adapter:
            (out / ADAPTER_DIR).mkdir()
            for item in (checkpoint / ADAPTER_DIR).iterdir():  # the adapter; peft's template README stays behind
                if item.name == "adapter_config.json" or item.suffix == ".safetensors":
                    shutil.copyfile(item, out / ADAPTER_DIR / item.name)
    card = {**(card or {}), **head_fields(head_set)}
    config = {**config, "preset": name, "inference": inference.to_dict(), "card": card}
    (out / CONFIG_NAME).write_text(json.dumps(config, indent=2) + "\n")
    (out / CARD_NAME).write_text(render_card(config, out))
    return load_preset(out)


# build-preset's candidates on its one validation domain: one pass or both orders, unfused or fused with the
# first stage (RRF, w 0.5), no valve. A dozen queries of one domain cannot choose among the hundreds of settings
# `headrank choose` compares on several domains; the rule (learn.choose) is the same.
BUILD_FUSIONS = (0.0, 0.5)
ORDERS = {"one pass": False, "both orders": True}


def choose_inference(ranker, lists, qrels, on_list=None) -> tuple[InferenceSettings, list[dict]]:
    """The inference settings with the best validation nDCG@10 by the every-domain rule (``learn.choose``) on one
    domain; ties go to the cheaper (one pass before both orders, unfused before fused).

    ``lists``: (qid, query, [(docid, text), ...]) in first-stage order, validation queries only. Each list is
    read once as given and once reversed; every candidate is computed from those two passes. Returns the
    choice and one row per candidate (for the model card).
    """
    from headrank.learn.choose import Domain, ScoredList, Setting, Table, choose

    if not lists:
        raise ValueError("no validation lists to choose inference settings on")
    if ranker.both_orders or ranker.fuse_first_stage or ranker.window:
        raise ValueError("choose_inference needs a ranker that reads one order without fusion or windows")
    forward, both = [], []
    for done, (qid, query, docs) in enumerate(lists, start=1):
        texts = [text for _, text in docs]
        # raw attention scores: a preset's own valve must not leak into the candidates it is compared with
        ahead = ranker.score(query, texts, safety_valve=False)
        back = ranker.score(query, texts[::-1], safety_valve=False)[::-1]
        forward.append(ScoredList(qid, tuple(d for d, _ in docs), tuple(ahead)))
        both.append([(a + b) / 2 for a, b in zip(ahead, back)])
        if on_list:
            on_list(done, len(lists))
    domain = Domain("validation", forward, qrels, len(lists))
    tables = {"one pass": {"validation": Table.build(domain, BUILD_FUSIONS)},
              "both orders": {"validation": Table.build(domain.with_scores(both), BUILD_FUSIONS)}}
    choice = choose(tables, 0.0, BUILD_FUSIONS, valves=False)
    rows = []
    for label, table in tables.items():
        for fuse in BUILD_FUSIONS:
            settings = InferenceSettings(both_orders=ORDERS[label], fuse_first_stage=fuse or None)
            rows.append({"setting": settings.describe(), "inference": settings.to_dict(),
                         "ndcg@10": table["validation"].mean(Setting(fuse))})
    return InferenceSettings(both_orders=ORDERS[choice.label], fuse_first_stage=choice.setting.fuse or None), rows


def validation_lists(head_set, bench, depth: int = 20) -> list[tuple[str, str, list[tuple[str, str]]]]:
    """The validation queries recorded by a head set's selection, as first-stage candidate lists of ``depth``."""
    val = [q for q in head_set.split_queries("val") if q in bench.queries]
    if not val:
        raise ValueError(f"the head set records no validation queries on {bench.name}")
    return [(q, bench.queries[q], [(c.docid, c.text) for c in bench.candidates[q][:depth]]) for q in val]


MIN_QUERIES = 10  # below this many training or validation queries, a preset's choices are mostly noise


def _small_data_warning(train: int, val: int, card: dict | None) -> dict:
    """A loud warning (log and the card's first weakness) when heads or settings were chosen on very few
    queries: the card must not read as a validated preset."""
    if train >= MIN_QUERIES and val >= MIN_QUERIES:
        return {}
    text = (f"Chosen on only {train} training and {val} validation queries (fewer than {MIN_QUERIES}): its heads "
            "and inference settings are close to a guess; validate it on your own queries before relying on it.")
    logger.warning("%s", text)
    return {"weaknesses": [text, *(card or {}).get("weaknesses", [])]}


def package_checkpoint(checkpoint: str | Path, out: str | Path, name: str, bench, depth: int = 20,
                       device: str = "auto", dtype: str = "auto", card: dict | None = None,
                       on_list=None) -> Preset:
    """Choose a trained checkpoint's inference settings on its validation queries and write it as a preset."""
    import dataclasses

    from headrank.engine.heads import HeadSet
    from headrank.engine.models import load_model
    from headrank.engine.ranker import HeadRanker

    head_set = HeadSet.load(Path(checkpoint) / HEADSET_NAME)
    lists = validation_lists(head_set, bench, depth)
    base = load_model(load_checkpoint_config(checkpoint)["base_model"], device=device, dtype=dtype)
    head_set.check_fingerprint(base)
    if head_set.fingerprint != base.fingerprint:  # an older dtype-specific fingerprint: record today's
        head_set = dataclasses.replace(head_set, fingerprint=base.fingerprint)
    del base
    ranker = HeadRanker.from_pretrained(str(checkpoint), device=device, dtype=dtype, both_orders=False,
                                        fuse_first_stage=0, window=0, safety_valve=False)
    inference, rows = choose_inference(ranker, lists, bench.qrels, on_list=on_list)
    card = {**(card or {}), **_small_data_warning(len(head_set.split_queries("train")), len(lists), card)}
    card = {**card, "validation": [{"setting": r["setting"], "ndcg@10": {
        f"{bench.name} validation ({len(lists)} queries)": r["ndcg@10"]}} for r in rows]}
    return build_preset(checkpoint, out, name, inference, card, head_set=head_set)


def build_from_scratch(model: str, out: str | Path, name: str, bench, train_config, work_dir: str | Path,
                       selection_args: dict | None = None, device: str = "auto", train_dtype: str = "float32",
                       cache_dir: Path | None = None, card: dict | None = None, progress=None) -> Preset:
    """The whole recipe: select heads, train the alignment, choose inference settings, write the preset.

    Resumable: the head set and the checkpoint in ``work_dir`` are reused when they exist (training resumes
    from its last finished epoch). ``progress(stage, done, total)`` is told about long stages.
    """
    from headrank.engine.heads import HeadSet
    from headrank.engine.ranker import HeadRanker
    from headrank.learn.align import train_head_set
    from headrank.learn.selection import select_head_set

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
