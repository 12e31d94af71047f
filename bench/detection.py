"""White-cell detection on BCCD: field-mode segmentation vs the VOC WBC boxes.

Each cell that :func:`hybridwbc.segment.segment` finds in ``field`` mode gives
one detection, its bounding box. Detections are matched one-to-one to the
annotated ``WBC`` boxes, greedily by decreasing IoU, and a match counts when
IoU >= ``--iou`` (0.5). Recall = matched boxes / annotated boxes; precision =
matched detections / detections. An image where no cell is found contributes
no detection.

Usage::

    python bench/detection.py [--root ../shared/data/bccd] [--n N] [--iou 0.5]

The last line printed is JSON: ``{"recall", "precision", "n_images",
"n_boxes", "n_detections", "matched", "seconds"}``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


from hybridwbc.data.fieldcells import wbc_boxes  # noqa: E402
from hybridwbc.data.io import read_image  # noqa: E402
from hybridwbc.errors import NoCellFoundError  # noqa: E402
from hybridwbc.evaluate.detection import box_iou as iou  # noqa: E402
from hybridwbc.segment import segment  # noqa: E402


def default_root() -> Path:
    env = os.environ.get("HYBRIDWBC_DATA")
    base = Path(env) if env else Path(__file__).resolve().parents[2] / "shared" / "data"
    return base / "bccd"


def match(dets, gts, thr):
    pairs = sorted(((iou(d, g), i, j) for i, d in enumerate(dets) for j, g in enumerate(gts)), reverse=True)
    used_d, used_g, n = set(), set(), 0
    for v, i, j in pairs:
        if v < thr:
            break
        if i in used_d or j in used_g:
            continue
        used_d.add(i)
        used_g.add(j)
        n += 1
    return n


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--root", type=Path, default=default_root())
    ap.add_argument("--n", type=int, default=0, help="first N images only (0: all)")
    ap.add_argument("--iou", type=float, default=0.5)
    ap.add_argument("--verbose", action="store_true")
    args = ap.parse_args(argv)
    ann = sorted((args.root / "Annotations").glob("*.xml"))
    if args.n:
        ann = ann[: args.n]
    if not ann:
        raise SystemExit(f"No annotations under {args.root / 'Annotations'}; pass --root.")
    n_boxes = n_det = matched = 0
    t0 = time.perf_counter()
    for xml in ann:
        gts = wbc_boxes(xml)
        img_path = args.root / "JPEGImages" / (xml.stem + ".jpg")
        image = read_image(img_path)
        try:
            seg = segment(image, "field")
            dets = [(c.bbox[1], c.bbox[0], c.bbox[3], c.bbox[2]) for c in seg.cells]
        except NoCellFoundError:
            dets = []
        m = match(dets, gts, args.iou)
        if args.verbose and (m < len(gts) or m < len(dets)):
            print(f"{xml.stem}: boxes={len(gts)} dets={len(dets)} matched={m} "
                  f"best_iou={[round(max([iou(d, g) for d in dets] or [0]), 2) for g in gts]}")
        n_boxes += len(gts)
        n_det += len(dets)
        matched += m
    secs = time.perf_counter() - t0
    res = {
        "recall": matched / max(1, n_boxes),
        "precision": matched / max(1, n_det),
        "n_images": len(ann),
        "n_boxes": n_boxes,
        "n_detections": n_det,
        "matched": matched,
        "seconds": round(secs, 2),
    }
    print(f"BCCD WBC detection over {len(ann)} images at IoU >= {args.iou}: "
          f"recall {res['recall']:.3f} ({matched}/{n_boxes}), precision {res['precision']:.3f} "
          f"({matched}/{n_det}), {secs:.1f} s")
    print(json.dumps(res))
    return res


if __name__ == "__main__":
    main()
