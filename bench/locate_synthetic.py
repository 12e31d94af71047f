"""White-cell detection on synthetic smear fields whose cells are known by construction.

Each 640x480 field (``hybridwbc.data.slides.draw_field``, seeds 0..n-1) holds five white cells of the five
wbc5 types among red cells and ten platelets, one cut by the border and, with ``--touching 1``, one pair
touching. Detections (``hybridwbc.segment.locate.locate_cells``) are matched one-to-one to the drawn cells
(IoU >= 0.5); the flags (``border``, ``overlap``) of matched cells are compared with the truth.

Usage::

    python bench/locate_synthetic.py [--n 40] [--touching 0] [--cell-size 160] [--min-nucleus-frac 0.002]

The last line printed is JSON: ``recall``, ``precision``, ``inside_recall`` (cells not cut by the border),
``flags_right`` and the counts.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from hybridwbc.data.slides import draw_field  # noqa: E402
from hybridwbc.evaluate.detection import detection_scores, match_boxes  # noqa: E402
from hybridwbc.segment import Segmenter  # noqa: E402
from hybridwbc.segment.locate import locate_cells  # noqa: E402

CLASSES = ["basophil", "eosinophil", "lymphocyte", "monocyte", "neutrophil"]


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=40)
    ap.add_argument("--touching", type=int, default=0)
    ap.add_argument("--cell-size", type=int, default=160)
    ap.add_argument("--min-nucleus-frac", type=float, default=0.002)
    args = ap.parse_args(argv)
    seg = Segmenter(min_nucleus_frac=args.min_nucleus_frac)
    m = nd = nr = inside = inside_found = 0
    flags = []
    for seed in range(args.n):
        rng = np.random.default_rng(seed)
        f = draw_field(rng, list(rng.choice(CLASSES, 5)), cell_size=args.cell_size, n_touching=args.touching,
                       n_border=1, n_platelets=10, classes=CLASSES)
        found = locate_cells(f.image, seg)
        pairs = match_boxes([(c.bbox[1], c.bbox[0], c.bbox[3], c.bbox[2]) for c in found],
                            [(c.bbox[1], c.bbox[0], c.bbox[3], c.bbox[2]) for c in f.cells])
        m, nd, nr = m + len(pairs), nd + len(found), nr + len(f.cells)
        inside += sum(not c.border for c in f.cells)
        inside_found += sum(not f.cells[j].border for _, j in pairs)
        flags += [(found[i].border, found[i].overlap) == (f.cells[j].border, f.cells[j].touching) for i, j in pairs]
    res = {**detection_scores(m, nd, nr), "inside_recall": inside_found / max(1, inside),
           "flags_right": float(np.mean(flags)) if flags else float("nan"), "n_fields": args.n,
           "touching": args.touching, "min_nucleus_frac": args.min_nucleus_frac}
    print(f"synthetic fields: recall {res['recall']:.3f}, precision {res['precision']:.3f}, inside recall "
          f"{res['inside_recall']:.3f}, flags right {res['flags_right']:.3f}")
    print(json.dumps(res))
    return res


if __name__ == "__main__":
    main()
