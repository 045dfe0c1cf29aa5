"""Markdown tables (for RESULTS.md) from a recipe-search JSON (scripts/recipe_search.py).

    python scripts/recipe_tables.py runs/recipe-qwen.json
"""

from __future__ import annotations

import json
import sys


def fmt(row: dict) -> str:
    return f"{row['val_macro']:.4f} / {row['val_dl21']:.4f} / {row['val_nfcorpus']:.4f}"


def short(label: str) -> str:
    return label.replace(" by D_h (plain sum)", "").replace("weights over ", "weighted ")


def main() -> None:
    data = json.loads(open(sys.argv[1]).read())
    rows, stage2 = data["rows"], data["stage2"]
    n = data["validation"]
    print(f"Stage 1: one pass over every validation list (DL21 {n['dl21']['queries']}, NFCorpus dev "
          f"{n['nfcorpus']['queries']} queries); macro = mean of the two domains.\n")
    print("| head set | selected on | heads | unfused: macro / DL21 / NFC | ⊕ first stage (RRF 0.5): macro / DL21 / NFC |")
    print("|---|---|---|---|---|")

    def pair(pred) -> tuple[dict, dict]:
        unfused = max((r for r in rows if pred(r) and r["fuse"] is None), key=lambda r: r["val_macro"])
        fused = max((r for r in rows if pred(r) and r["fuse"] == 0.5), key=lambda r: r["val_macro"])
        return unfused, fused

    u, f = pair(lambda r: r["recipe"].startswith("preset"))
    print(f"| shipped preset (4 heads, plain sum) | DL21 | 4 | {fmt(u)} | {fmt(f)} |")
    for select_on in ("dl21", "nfcorpus", "both"):
        for kind, prefix in (("best top-K, plain sum", "top-"), ("best weighted set", "weights")):
            u, f = pair(lambda r, s=select_on, p=prefix: r["select_on"] == s and r["recipe"].startswith(p))
            print(f"| {kind} ({short(u['recipe'])} / {short(f['recipe'])}) | {select_on} | "
                  f"{len(u['heads'])} / {len(f['heads'])} | {fmt(u)} | {fmt(f)} |")
    chosen = data["chosen"]
    print(f"\nChosen (best validation macro): {chosen['recipe']} selected on {chosen['select_on']}, "
          f"{len(chosen['heads'])} heads, fusion {chosen['fuse']}: {chosen['val_macro']:.4f}.\n")
    print("Top-K plain sets by where they were selected (unfused, one pass): DL21 validation / NFCorpus dev\n")
    print("| selected on | K = 4 | K = 8 | K = 16 | K = 32 |")
    print("|---|---|---|---|---|")
    for select_on in ("dl21", "nfcorpus", "both"):
        cells = []
        for k in (4, 8, 16, 32):
            r = next(r for r in rows if r["select_on"] == select_on and r.get("k") == k and r["fuse"] is None)
            cells.append(f"{r['val_dl21']:.4f} / {r['val_nfcorpus']:.4f}")
        print(f"| {select_on} | " + " | ".join(cells) + " |")
    sub = stage2[0]
    print(f"\nStage 2: reading order and a position prior, on the validation lists captured in both orders "
          f"(DL21 {sub['n_dl21']}, NFCorpus dev {sub['n_nfcorpus']}); macro / DL21 / NFC.\n")
    print("| head set | reading | position prior | unfused | ⊕ first stage (RRF 0.5) |")
    print("|---|---|---|---|---|")
    for label in ("chosen", "preset heads (plain sum)"):
        for mode, name in (("one", "one pass, as given"), ("rev", "one pass, reversed"), ("both", "both orders (2 passes)")):
            for prior in (False, True):
                cells = []
                for fuse in (None, 0.5):
                    r = next(r for r in stage2 if r["recipe"] == label and r["mode"] == mode and r["prior"] == prior
                             and r["fuse"] == fuse)
                    cells.append(fmt(r))
                print(f"| {label} | {name} | {'subtracted' if prior else '-'} | {cells[0]} | {cells[1]} |")


if __name__ == "__main__":
    main()
