"""Fill a preset's model card with its measured latency rows (from `benchmarks/preset_card.py`) and any extra
card fields; its quality rows come from recorded result files by `scripts/card_quality.py write`.

    python scripts/preset_card_numbers.py PRESET_DIR --latency lat.json [--card-extra extra.json]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from headrank.learn.card import update_card


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("preset", type=Path)
    parser.add_argument("--latency", type=Path)
    parser.add_argument("--card-extra", type=Path)
    args = parser.parse_args()
    card: dict = {}
    if args.latency:
        measured = json.loads(args.latency.read_text())
        card["latency"] = measured["latency"]
        meta = measured["latency_meta"]
        card["latency_source"] = (f"`PYTHONPATH=src python benchmarks/preset_card.py --preset {args.preset.name} "
                                  f"--queries {meta['lists']}`: mean over the first {meta['lists']} DL19 lists "
                                  f"(after one warm-up), {meta['threads']} torch threads, torch {meta['torch']}, "
                                  "float32 on this project's 2-core CPU machine, methods timed one after the other "
                                  "in one process.")
    if args.card_extra:
        card.update(json.loads(args.card_extra.read_text()))
    preset = update_card(args.preset, card)
    print(json.dumps(preset.headline, indent=2))


if __name__ == "__main__":
    main()
