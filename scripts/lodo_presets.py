"""Write each validation domain's leave-one-domain-out preset: the rule of scripts/robust_choice.py applied
without that domain (recorded in results/robust-choice-qwen.json, "lodo"), as a checkpoint folder.

The shipped default was chosen on the classic collections' real judgments, so on them it is in-sample: adapting
to one of them is tested fairly from the preset that never saw it, which is what a new domain starts from.

    PYTHONPATH=src python scripts/lodo_presets.py --choice results/robust-choice-qwen.json --out runs/preset-lodo
    (writes runs/preset-lodo-<domain>/ per domain)
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from robust_choice import PRESET, write_preset  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--choice", type=Path, default=Path("results/robust-choice-qwen.json"))
    parser.add_argument("--out", type=Path, default=Path("runs/preset-lodo"), help="prefix: <out>-<domain>/")
    parser.add_argument("--base", type=Path, default=PRESET, help="the preset whose adapter the pool was captured with")
    args = parser.parse_args()
    for domain, entry in json.loads(args.choice.read_text())["lodo"].items():
        out = args.out.parent / f"{args.out.name}-{domain}"
        write_preset(entry["config"], out, args.base, name=f"lodo-without-{domain}")
        print(f"{domain}: {entry['config']['label']}, {len(entry['config']['heads'])} heads, fuse "
              f"{entry['config']['fuse']}, valve {entry['config']['valve']} -> {out}")


if __name__ == "__main__":
    main()
