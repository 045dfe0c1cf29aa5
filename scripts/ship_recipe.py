"""Write the recipe that won on validation (scripts/recipe_search.py) into a preset: its head set (weights
included) and inference settings; the adapter stays. The preset's card is then refreshed with measured
numbers by scripts/preset_card_numbers.py (latency) and scripts/card_quality.py (quality, from results/).

    PYTHONPATH=src python scripts/ship_recipe.py --recipe runs/recipe-qwen.json \
        --preset src/headrank/presets/headrank-qwen2.5-coder-0.5b
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from ship_robust import write_card  # noqa: E402

from headrank.checkpoint import CONFIG_NAME, HEADSET_NAME, InferenceSettings  # noqa: E402
from headrank.heads import HeadSet  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--recipe", type=Path, required=True)
    parser.add_argument("--preset", type=Path, required=True)
    parser.add_argument("--card", type=Path, help="card fields (JSON) to merge, e.g. summary and training_data")
    args = parser.parse_args()
    recipe = json.loads(args.recipe.read_text())
    chosen = recipe["chosen"]
    if chosen["mode"] != "one" or chosen.get("prior"):
        raise SystemExit("this script ships one-pass recipes without a position prior")
    head_set = HeadSet.load(args.preset / HEADSET_NAME)
    weights = chosen["weights"]
    plain = all(abs(w - 1.0) < 1e-12 for w in weights)
    new = dataclasses.replace(
        head_set, heads=tuple(tuple(h) for h in chosen["heads"]), weights=None if plain else tuple(weights),
        name=f"headrank-{chosen['select_on']}-{'weighted' if not plain else 'plain'}",
        selection={**{k: v for k, v in chosen.items() if k not in ("heads", "weights")},
                   "train": recipe["train"], "validation": recipe["validation"],
                   "adapter_heads": [list(h) for h in head_set.heads],
                   "adapter_selection": head_set.selection})
    new.save(args.preset / HEADSET_NAME)
    config_path = args.preset / CONFIG_NAME
    config = json.loads(config_path.read_text())
    config["inference"] = InferenceSettings(fuse_first_stage=chosen["fuse"]).to_dict()
    config_path.write_text(json.dumps(config, indent=2) + "\n")
    write_card(args.preset, new, recipe["card_validation"], args.card)
    print(f"{args.preset}: {len(new.heads)} heads (L* {new.deepest_layer}), "
          f"{'plain sum' if plain else 'weighted'}, fusion {chosen['fuse']}")


if __name__ == "__main__":
    main()
