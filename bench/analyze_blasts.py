"""Per-field blast percentage on B-ALL smear fields (``all_pbs``) from a cell model with a blast class.

Analyses the first ``--n`` fields of each ``all_pbs`` class (Benign, Early, Pre, Pro; 224x224) with
``hybridwbc.serve.analyze.analyze`` (``tracking=none``), then scores each field by its blast percentage
(the share of its counted cells labelled with a blast class, e.g. ``all`` for a C-NMC ALL/HEM model) and
reports the AUC of that score for benign vs B-ALL fields. Two readings: as analysed (cells outside the
model's domain are ``uncertain`` and not counted: a field with no counted cell scores 0), and ``forced``
(each located cell's most probable class, the domain check ignored).

Usage::

    python bench/analyze_blasts.py --model <model with a blast class> [--root ../shared/data/all_pbs] [--n 40]
        [--crop 450] [--window cell]

The last line printed is JSON: ``auc``, ``auc_forced``, mean blast percentages per group, and the counts.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from hybridwbc.evaluate.differential import BLAST_CLASSES  # noqa: E402

GROUPS = ("Benign", "Early", "Pre", "Pro")


def blast_scores(cells, fields, forced: bool) -> dict:
    """Field -> blast percentage of its cells (counted ones, or every located one with ``forced``)."""
    pcols = [c for c in cells.columns if c.startswith("p_")]
    blasts = {f"p_{c}" for c in [p[2:] for p in pcols] if c.lower() in BLAST_CLASSES}
    if not blasts:
        raise SystemExit(f"The model has no blast class (classes {[p[2:] for p in pcols]}); expected one of "
                         f"{BLAST_CLASSES}.")
    if forced:
        use = cells[cells["status"] != "error"]
        is_blast = use[pcols].astype(float).idxmax(axis=1).isin(blasts)
    else:
        use = cells[(cells["status"] == "ok") & (cells["label"] != "uncertain") & ~cells["border"]]
        is_blast = use["label"].map(lambda v: f"p_{v}" in blasts)
    share = is_blast.astype(float).groupby(use["path"]).mean() * 100
    return {p: float(share.get(p, 0.0)) for p in fields["path"]}


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", required=True)
    ap.add_argument("--root", type=Path, default=Path(__file__).resolve().parents[2] / "shared" / "data" / "all_pbs")
    ap.add_argument("--n", type=int, default=40)
    ap.add_argument("--crop", type=int, default=450)
    ap.add_argument("--window", default="cell")
    ap.add_argument("--out", type=Path, default=Path("/tmp/bench_analyze_blasts"))
    args = ap.parse_args(argv)
    import pandas as pd
    from sklearn.metrics import roc_auc_score

    from hybridwbc.serve.analyze import analyze

    shutil.rmtree(args.out, ignore_errors=True)
    for g in GROUPS:
        (args.out / "fields" / g).mkdir(parents=True)
        for p in sorted((args.root / g).glob("*.jpg"))[: args.n]:
            (args.out / "fields" / g / p.name).symlink_to(p.resolve())
    window = args.window if args.window == "cell" else int(args.window)
    analyze(args.model, str(args.out / "fields"), str(args.out / "analysis"), n_jobs=1, crop=args.crop,
            window=window, tracking="none")
    cells = pd.read_csv(args.out / "analysis" / "cells.csv", keep_default_na=False)
    cells["border"] = cells["border"].astype(str).str.lower() == "true"
    fields = pd.read_csv(args.out / "analysis" / "fields.csv", keep_default_na=False)
    fields = fields[fields["status"] == "ok"]
    y = (fields["sample"] != "Benign").astype(int).to_numpy()
    out = {"n_fields": int(len(fields)), "n_cells": int(len(cells)),
           "n_counted": int(((cells["status"] == "ok") & (cells["label"] != "uncertain")).sum())}
    for key, forced in (("", False), ("_forced", True)):
        s = blast_scores(cells, fields, forced)
        score = fields["path"].map(s).to_numpy()
        out[f"auc{key}"] = float(roc_auc_score(y, score)) if 0 < y.sum() < len(y) else float("nan")
        for g in GROUPS:
            out[f"blast_pct{key}_{g}"] = float(score[(fields["sample"] == g).to_numpy()].mean())
    print(f"all_pbs: {out['n_fields']} fields, {out['n_cells']} cells ({out['n_counted']} counted); AUC benign vs "
          f"B-ALL of the blast percentage {out['auc']:.3f}, forced {out['auc_forced']:.3f}")
    print(json.dumps(out))
    return out


if __name__ == "__main__":
    main()
