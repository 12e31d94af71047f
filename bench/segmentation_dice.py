"""Segmentation Dice on synthetic cells (10 per class, 128 px, seed 123), smear and black backgrounds."""
import sys; sys.path.insert(0, __import__('pathlib').Path(__file__).resolve().parents[1].as_posix())
import numpy as np
from hybridwbc.data.synthetic import PROFILES, draw_cell
from hybridwbc.segment import segment, dice
for bg in ("smear","black"):
    for name in ("lymphocyte","neutrophil","monocyte","eosinophil","basophil","ig","erythroblast"):
        rng=np.random.default_rng(123); dn=[]; dc=[]
        for _ in range(10):
            c=draw_cell(rng,PROFILES[name],size=128,background=bg); p=segment(c.image,"auto").primary
            dn.append(dice(p.nucleus,c.nucleus)); dc.append(dice(p.cell,c.cell))
        print(f"{bg:5s} {name:12s} nucleus {np.mean(dn):.3f} cell {np.mean(dc):.3f}")
