"""Ship the robust choice (scripts/robust_choice.py) into the default preset: head set, weights, fusion weight and
safety valve; the adapter stays. Fills the card's heads and validation table from the recorded choice; quality
and latency rows come after, from scripts/card_quality.py (quality) and scripts/preset_card_numbers.py (latency).

    PYTHONPATH=src python scripts/ship_robust.py --choice results/robust-choice-qwen.json \
        --candidate runs/preset-robust --preset src/headrank/presets/headrank-qwen2.5-coder-0.5b \
        --card scripts/cards/headrank-qwen2.5-coder-0.5b.json
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

from headrank.checkpoint import CONFIG_NAME, HEADSET_NAME
from headrank.heads import HeadSet
from headrank.presets.card import head_fields, update_card

NAMES = {"dl21-val": "DL21 val", "nfcorpus-dev": "NFCorpus dev", "cranfield": "Cranfield", "cisi": "CISI",
         "npl": "NPL"}


PREVIOUS = "previous default: 13 weighted heads, 24 layers, fused (RRF 0.5)"


def validation_rows(choice: dict, previous: str = PREVIOUS) -> list[dict]:
    """BM25, the previous default and the chosen setting per validation domain, and the leave-one-out estimate."""
    def row(label: str, values: dict) -> dict:
        out = {f"{NAMES[d]} ({choice['queries'][d][1]})": v for d, v in values.items()}
        out["mean of five"] = sum(values.values()) / len(values)
        return {"setting": label, "ndcg@10": out}

    bm25 = choice["bm25"]
    return [row("BM25 (first-stage order)", bm25),
            row(previous, choice["shipped"]["ndcg"]),
            row(f"this preset: {len(choice['chosen']['heads'])} heads, {choice['chosen']['deepest']} layers, fused "
                f"(RRF {choice['chosen']['fuse']:g}) + safety valve", choice["chosen"]["ndcg"]),
            row("leave-one-domain-out estimate (chosen without the domain)",
                {d: bm25[d] + v["gain"] for d, v in choice["lodo"].items()})]


def write_card(preset: Path, head_set: HeadSet, validation: list[dict], card_file: Path | None) -> None:
    """The card's head fields and validation table, then the card file's text fields, re-rendered into README.md."""
    card = {**head_fields(head_set), "validation": validation}
    if card_file:
        card.update(json.loads(card_file.read_text()))
    update_card(preset, card)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--choice", type=Path, required=True)
    parser.add_argument("--candidate", type=Path, required=True, help="the folder robust_choice --write-preset wrote")
    parser.add_argument("--preset", type=Path, required=True)
    parser.add_argument("--card", type=Path, help="card fields (JSON) to merge: summary, training data, weaknesses")
    parser.add_argument("--previous", default=PREVIOUS, help="the validation table's label of the replaced setting")
    args = parser.parse_args()
    choice = json.loads(args.choice.read_text())
    shutil.copy(args.candidate / HEADSET_NAME, args.preset / HEADSET_NAME)
    config = json.loads((args.preset / CONFIG_NAME).read_text())
    config["inference"] = json.loads((args.candidate / CONFIG_NAME).read_text())["inference"]
    (args.preset / CONFIG_NAME).write_text(json.dumps(config, indent=2) + "\n")
    head_set = HeadSet.load(args.preset / HEADSET_NAME)
    write_card(args.preset, head_set, validation_rows(choice, args.previous), args.card)
    print(f"{args.preset}: {len(head_set.heads)} heads (L* {head_set.deepest_layer}), inference {config['inference']}")


if __name__ == "__main__":
    main()
