#!/usr/bin/env python3
"""Render the tables of docs/RESULTS.md from the JSON files written by `python -m core.train --out`.

    python scripts/results_tables.py docs/results/*.json
"""

from __future__ import annotations

import json
import sys

import os

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from core.metrics import mean_std as ms, paired_p as pval  # noqa: E402

KS = ("k=0", "k=5", "k=10", "k=20", "k=all")


def meld_table(results: dict, ref: dict) -> str:
    rows = ["| variant | weighted F1 | UAR | fear F1 | disgust F1 | p vs full (wF1) | seeds |", "|---|---|---|---|---|---|---|"]
    for ab, rs in results.items():
        w = [r["weighted_f1"] for r in rs]
        rows.append(f"| {ab} | {ms(w)} | {ms([r['uar'] for r in rs])} | {ms([r['per_class_f1']['fear'] for r in rs])} | "
                    f"{ms([r['per_class_f1']['disgust'] for r in rs])} | "
                    f"{'' if ab == 'full' else pval([r['weighted_f1'] for r in ref], w)} | {len(rs)} |")
    return "\n".join(rows)


def ravdess_table(results: dict, ref: dict) -> str:
    rows = ["| variant | " + " | ".join(f"UAR {k}" for k in KS) + " | wF1 k=all | p vs full (UAR k=all) |",
            "|---|" + "---|" * (len(KS) + 2)]
    for ab, rs in results.items():
        cells = [ms([r[k]["uar"] for r in rs]) for k in KS]
        w = ms([r["k=all"]["weighted_f1"] for r in rs])
        p = "" if ab == "full" else pval([r["k=all"]["uar"] for r in ref], [r["k=all"]["uar"] for r in rs])
        rows.append(f"| {ab} | " + " | ".join(cells) + f" | {w} | {p} |")
    return "\n".join(rows)


def main() -> None:
    """The reference for p-values is the `full` variant of the first file given for each dataset."""
    loaded = [(path, json.load(open(path))) for path in sys.argv[1:]]
    refs: dict[str, list] = {}
    for _, res in loaded:
        if "full" in res["results"]:
            refs.setdefault(res["dataset"], res["results"]["full"])
    for path, res in loaded:
        ref = refs.get(res["dataset"], [])
        print(f"### {path}\n`{res.get('command', '')}` ({res.get('seconds', '?')} s)\n")
        print(meld_table(res["results"], ref) if res["dataset"] == "meld" else ravdess_table(res["results"], ref))
        print()


if __name__ == "__main__":
    main()


def lambda_table(files: dict[str, str], ref_label: str) -> str:
    """MELD weighted F1 per speaker-loss weight; files maps a lambda label to (json path, variant)."""
    runs = {}
    for lam, spec in files.items():
        path, variant = spec.split(":")
        runs[lam] = [r["weighted_f1"] for r in json.load(open(path))["results"][variant]]
    rows = ["| λ | weighted F1 | p vs λ=" + ref_label + " |", "|---|---|---|"]
    for lam, v in runs.items():
        rows.append(f"| {lam} | {ms(v)} | {'' if lam == ref_label else pval(runs[ref_label], v)} |")
    return "\n".join(rows)
