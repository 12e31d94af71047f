"""Segmentation Dice on synthetic cells with known masks (10 per class, 128 px, seed 123).

Light (PBC-like, with red cells) and black (C-NMC-like) backgrounds; prints mean nucleus and
whole-cell Dice per class and ends with one JSON line: per-class figures and the minima.

    PYTHONPATH=. python bench/segmentation_dice.py
"""
import json
import sys
from pathlib import Path

sys.path.insert(0, Path(__file__).resolve().parents[1].as_posix())

import numpy as np  # noqa: E402

from hybridwbc.data.synthetic import PROFILES, draw_cell  # noqa: E402
from hybridwbc.segment import dice, segment  # noqa: E402

CLASSES = ("lymphocyte", "neutrophil", "monocyte", "eosinophil", "basophil", "ig", "erythroblast")

figures = {}
for bg in ("smear", "black"):
    for name in CLASSES:
        rng = np.random.default_rng(123)
        dn, dc = [], []
        for _ in range(10):
            c = draw_cell(rng, PROFILES[name], size=128, background=bg)
            p = segment(c.image, "auto").primary
            dn.append(dice(p.nucleus, c.nucleus))
            dc.append(dice(p.cell, c.cell))
        figures[f"{bg}/{name}"] = {"nucleus": round(float(np.mean(dn)), 4), "cell": round(float(np.mean(dc)), 4)}
        print(f"{bg:5s} {name:12s} nucleus {np.mean(dn):.3f} cell {np.mean(dc):.3f}")
print(json.dumps({"min_nucleus_dice": min(v["nucleus"] for v in figures.values()),
                  "min_cell_dice": min(v["cell"] for v in figures.values()), "classes": figures}))
