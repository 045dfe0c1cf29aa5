"""The model card of a preset: rendered from the ``card`` object of its config into README.md."""

from __future__ import annotations

import json
from pathlib import Path

from headrank.engine.checkpoint import CONFIG_NAME, InferenceSettings, load_checkpoint_config
from headrank.engine.presets import CARD_NAME, Preset, load_preset


def update_card(path: str | Path, card: dict) -> Preset:
    """Merge ``card`` into a preset's card (e.g. numbers measured after it was built) and re-render README.md."""
    path = Path(path)
    config = load_checkpoint_config(path)
    config["card"] = {**config.get("card", {}), **card}
    (path / CONFIG_NAME).write_text(json.dumps(config, indent=2) + "\n")
    (path / CARD_NAME).write_text(render_card(config, path))
    return load_preset(path)


def head_fields(head_set) -> dict:
    """The card's description of a head set: heads, L*, and weights scaled so the largest is 1."""
    weights = head_set.weights
    return {"heads": [list(h) for h in head_set.heads], "deepest_layer": head_set.deepest_layer,
            "weights": None if weights is None else [round(w / max(weights), 4) for w in weights]}


def _fmt(value) -> str:
    return f"{value:.4f}" if isinstance(value, float) else ("-" if value is None else str(value))


def _heads_text(heads: list, weights: list | None) -> str:
    if not heads:
        return "-"
    if not weights:
        return ", ".join(f"({layer}, {head})" for layer, head in heads)
    return ", ".join(f"({layer}, {head}) x {w:.2f}" for (layer, head), w in zip(heads, weights))


def _adapter_lines(train: dict, history: list[dict]) -> list[str]:
    return [f"- Adapter: LoRA r {train.get('lora_r', '-')} on {', '.join(train.get('target_modules', []))} "
            f"({train.get('lora_layers', '-')}), lr {train.get('lr', '-')}, {train.get('lists_per_query', 1)} "
            f"shuffled list(s) per training query, up to {train.get('epochs', '-')} epochs, best epoch by "
            "validation nDCG@10",
            "- Validation nDCG@10 by epoch (epoch 0 = the untrained head set): "
            + (" -> ".join(f"{row['val_ndcg@10']:.4f}" for row in history) or "-")]


def _int8_lines(int8: dict | None) -> list[str]:
    """The card's int8 section: time against float32 and nDCG@10 per set in both modes (recorded results)."""
    if not int8:
        return []
    lines = ["## int8 on CPU (`--quantize int8`)", "", int8["summary"], "",
             "| set | float32 | int8 | int8 - float32 | p (paired) |", "|---|---|---|---|---|"]
    lines += [f"| {name} | {row['float32']:.4f} | {row['int8']:.4f} | {row['diff']:+.4f} | {row['p_value']:.3f} |"
              for name, row in int8["sets"].items()]
    return lines + ["", int8["source"], ""]


def render_card(config: dict, path: str | Path | None = None) -> str:
    """The model card (Markdown) of a preset, rendered from its config (so card and config never disagree).
    ``path``: where the preset lives, for the card's loading line when its name is not a shipped preset."""
    card = config.get("card", {})
    lines = [f"# {config.get('preset', 'HeadRank preset')}", ""]
    lines += [card.get("summary", "A HeadRank preset: selected attention heads and a LoRA alignment adapter."), ""]
    lines += ["## Base model", "",
              f"- `{config['base_model']}`: {card.get('base_model_description', '')}",
              f"- License of the base model: {card.get('base_model_license', 'see the base model')}. "
              f"This preset ships only the head set{' and the adapter' if config.get('adapter', True) else ''}; "
              "the base weights are fetched on first use.", ""]
    lines += _built_lines(config, card)
    lines += ["## Inference settings", "", f"{InferenceSettings.from_dict(config.get('inference')).describe()}.", "",
              card.get("settings_choice", ""), ""]
    lines += _table_lines(card.get("validation", []), "setting", "setting (validation)")
    quality = card.get("quality", [])
    if quality:
        lines += ["## Quality: nDCG@10, K = 20 (BM25 top 20), reporting sets never used for any choice", ""]
        lines += _table_lines(quality, "method", "method")[:-1] + ["", card.get("quality_source", ""), ""]
    lines += _latency_lines(card)
    lines += _int8_lines(card.get("int8"))
    weaknesses = card.get("weaknesses", [])
    if weaknesses:
        lines += ["## Known weaknesses", ""] + [f"- {w}" for w in weaknesses] + [""]
    lines += _relevance_lines(config.get("relevance"), card.get("relevance_held_out"))
    lines += ["## Use", "", "```python", "from headrank import HeadRanker", "",
              f"ranker = HeadRanker.from_pretrained({_load_name(config, path)!r})",
              "ranker.rank(query, passages, top_k=10)", "```", "",
              "`score` orders one call's results and is comparable within that call only"
              + ("; `relevance` is the calibrated probability above, comparable across calls (the service's "
                 "`relevance_score`)." if config.get("relevance") else "."), ""]
    return "\n".join(lines)


def _built_lines(config: dict, card: dict) -> list[str]:
    heads, weights = card.get("heads", []), card.get("weights")
    return ["## How it was built", "",
            f"- Training data: {card.get('training_data', '-')}",
            f"- Command (one step, from scratch): `{card.get('command', '-')}`",
            *([f"- Built here as: {'; then '.join(f'`{c}`' for c in card['built_with'])}"]
              if card.get("built_with") else []),
            *([f"- Scripts named above that the tree no longer holds are at commit `{card['scripts_at']}` "
               f"(`git show {card['scripts_at']}:scripts/<name>`)"] if card.get("scripts_at") else []),
            f"- Commit of the code that built it: `{card.get('commit', '-')}`",
            f"- Heads ({len(heads)}{', weighted' if weights else ''}): {_heads_text(heads, weights)}; "
            f"L* = {card.get('deepest_layer', '-')}",
            *(_adapter_lines(config.get("train_config", {}), config.get("history", [])) if config.get("adapter", True)
              else ["- Adapter: none; the heads read the base model's own attention"]), ""]


def _table_lines(rows: list[dict], key: str, title: str) -> list[str]:
    """A table of nDCG@10 rows (``{key: label, "ndcg@10": {column: value}}``), blank line after; none if empty."""
    if not rows:
        return []
    columns = list(rows[0]["ndcg@10"])
    return (["| " + " | ".join([title, *columns]) + " |", "|---|" + "---|" * len(columns)]
            + [f"| {row[key]} | " + " | ".join(_fmt(v) for v in row["ndcg@10"].values()) + " |" for row in rows] + [""])


def _latency_lines(card: dict) -> list[str]:
    latency = card.get("latency", [])
    if not latency:
        return []
    lines = ["## Latency at N = 20 (this project's 2-core CPU machine, float32)", "",
             "| method | s per list | time / this preset | formatting success | answers = input order | "
             "decoded tokens per window |", "|---|---|---|---|---|---|"]
    for row in latency:
        pct = [f"{100 * row[k]:.0f}%" if isinstance(row.get(k), float) else "-"
               for k in ("formatting_success", "identity_share")]
        tokens = f"{row['tokens_per_window']:.1f}" if isinstance(row.get("tokens_per_window"), float) else "-"
        lines.append(f"| {row['method']} | {row['seconds_per_list']:.2f} | {row.get('ratio_to_preset', 1.0):.2f}x "
                     f"| {pct[0]} | {pct[1]} | {tokens} |")
    return lines + ["", card.get("latency_source", ""), ""]


def _load_name(config: dict, path: str | Path | None) -> str:
    """A shipped preset loads by name from anywhere; any other preset by its absolute path."""
    from headrank.engine.presets import is_preset_name

    name = config.get("preset")
    if name and is_preset_name(name):
        return name
    return str(Path(path).resolve()) if path is not None else (name or "path/to/preset")


def _relevance_lines(relevance: dict | None, held_out: dict | None) -> list[str]:
    if not relevance:
        return []
    from headrank.engine.relevance import RelevanceCalibration

    cal = RelevanceCalibration.from_dict(relevance)
    lines = ["## Relevance probabilities", "",
             f"{cal.describe()}: {cal.pairs} passages, {cal.positives} of them relevant; score = the heads' "
             "attention score of a passage, passages = how many its prompt held. This is what `relevance` on each "
             "result and the service's `relevance_score` carry; the order still follows the inference settings "
             f"above. Fitted with `{cal.command or 'headrank calibrate'}`.", ""]
    if held_out:
        lines += [f"Held out (two folds of the same lists): expected calibration error {held_out['ece']:.4f}; Brier "
                  f"score {held_out['brier']:.4f} against {held_out['brier_base_rate']:.4f} for always predicting "
                  f"the base rate ({held_out['relevant_rate']:.1%} relevant). The probabilities are honest on "
                  "average; how far they separate relevant from non-relevant passages is the heads' own ability.",
                  ""]
    return lines


# The validation domains' names in card tables.
DOMAIN_NAMES = {"dl21-val": "DL21 val", "nfcorpus-dev": "NFCorpus dev", "cranfield": "Cranfield", "cisi": "CISI",
                "npl": "NPL"}
PREVIOUS = "previous default: 13 weighted heads, 24 layers, fused (RRF 0.5)"


def validation_rows(choice: dict, previous: str = PREVIOUS) -> list[dict]:
    """A card's validation table from a recorded choice: BM25, the replaced setting and the chosen one per
    validation domain, and the leave-one-domain-out estimate (each with the mean of the domains)."""
    def row(label: str, values: dict) -> dict:
        out = {f"{DOMAIN_NAMES[d]} ({choice['queries'][d][1]})": v for d, v in values.items()}
        out["mean of five"] = sum(values.values()) / len(values)
        return {"setting": label, "ndcg@10": out}

    bm25 = choice["bm25"]
    return [row("BM25 (first-stage order)", bm25),
            row(previous, choice["shipped"]["ndcg"]),
            row(f"this preset: {len(choice['chosen']['heads'])} heads, {choice['chosen']['deepest']} layers, fused "
                f"(RRF {choice['chosen']['fuse']:g}) + safety valve", choice["chosen"]["ndcg"]),
            row("leave-one-domain-out estimate (chosen without the domain)",
                {d: bm25[d] + v["gain"] for d, v in choice["lodo"].items()})]


def write_card(preset: Path, head_set, validation: list[dict], card_file: Path | None) -> None:
    """The card's head fields and validation table, then the card file's text fields, re-rendered into README.md."""
    card = {**head_fields(head_set), "validation": validation}
    if card_file:
        card.update(json.loads(Path(card_file).read_text(encoding="utf-8")))
    update_card(preset, card)
