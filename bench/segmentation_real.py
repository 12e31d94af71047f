"""Segmentation Dice on real cells against experts' masks (``wbcseg``: CellaVision blog and Jiangxi Tecom).

For every image of ``<root>/{cvblog,tecom}/images`` the expert mask ``masks/<stem>.png`` gives
nucleus (255), cytoplasm (128) and the rest (0: background and red cells). Each cytoplasm method
segments the image with ``Segmenter(mode="crop", cytoplasm_method=...)``, side by side on the same
image (so the times compare under the same load); an image where no cell is found scores Dice 0.
Per set and method it prints the mean and median Dice of nucleus, cytoplasm and whole cell, the
share of cells below Dice 0.8, the same on the two halves of the set (files in name order,
alternately: half A takes the 1st, 3rd, ...; half B the others) and the time per cell.

The gallery (``--gallery``) shows the ten cells of lowest whole-cell Dice under the last method,
at thumbnail size, with the expert's outlines (green) and ours (magenta).

Usage::

    python bench/segmentation_real.py [--root ../shared/data/wbcseg] [--methods cluster split colour]
                                      [--gallery experiments/segmentation/wbcseg_worst.png]

The last line printed is JSON: ``cvblog_nucleus``, ``cvblog_cell``, ``tecom_nucleus``,
``tecom_cell`` (means under the last method), then ``methods``: every figure per method, set and half,
and ``time_ratio`` (time per cell of the last method over the first's).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import cv2  # noqa: E402
import numpy as np  # noqa: E402

from hybridwbc.data.io import read_image  # noqa: E402
from hybridwbc.errors import NoCellFoundError  # noqa: E402
from hybridwbc.segment import Segmenter, dice  # noqa: E402

SETS = ("cvblog", "tecom")
CLASSES = ("nucleus", "cytoplasm", "cell")


def default_root() -> Path:
    env = os.environ.get("HYBRIDWBC_DATA")
    base = Path(env) if env else Path(__file__).resolve().parents[2] / "shared" / "data"
    return base / "wbcseg"


def expert_masks(path: Path) -> dict:
    """Expert nucleus, cytoplasm and cell masks ((H, W) bool) of one mask PNG."""
    m = read_image(path)
    m = m[..., 0] if m.ndim == 3 else m
    return {"nucleus": m > 191, "cytoplasm": (m > 63) & (m <= 191), "cell": m > 63}


def score(segmenter: Segmenter, image: np.ndarray, truth: dict) -> tuple[dict, float, object]:
    """Dice per class, seconds, and the primary cell (None when no cell is found)."""
    t0 = time.perf_counter()
    try:
        cell = segmenter.segment(image).primary
    except NoCellFoundError:
        cell = None
    seconds = time.perf_counter() - t0
    if cell is None:
        return {k: 0.0 for k in CLASSES}, seconds, None
    ours = {"nucleus": cell.nucleus, "cytoplasm": cell.cytoplasm, "cell": cell.cell}
    return {k: dice(ours[k], truth[k]) for k in CLASSES}, seconds, cell


def summary(rows: list) -> dict:
    """Mean, median and share below 0.8 per class of a list of Dice dicts."""
    out = {}
    for k in CLASSES:
        v = np.array([r[k] for r in rows], float)
        out[k] = {"mean": round(float(v.mean()), 4), "median": round(float(np.median(v)), 4),
                  "below_0.8": round(float((v < 0.8).mean()), 4)}
    return out


def outline(tile: np.ndarray, mask: np.ndarray, colour: tuple) -> None:
    contours, _ = cv2.findContours(mask.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
    cv2.drawContours(tile, contours, -1, colour, 1)


def gallery(worst: list, path: Path, side: int = 128) -> None:
    """Thumbnails of the worst cells, expert outlines green, ours magenta, 5 per row."""
    tiles = []
    for name, _dset, image, truth, cell in worst:
        small = cv2.resize(image, (side, side), interpolation=cv2.INTER_AREA)

        def fit(m):
            return cv2.resize(m.astype(np.uint8), (side, side), interpolation=cv2.INTER_NEAREST).astype(bool)
        for key in ("cell", "nucleus"):
            outline(small, fit(truth[key]), (0, 200, 0))
        if cell is not None:
            outline(small, fit(cell.cell), (230, 0, 230))
            outline(small, fit(cell.nucleus), (230, 0, 230))
        label = np.full((18, side, 3), 255, np.uint8)
        cv2.putText(label, name, (3, 13), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (0, 0, 0), 1, cv2.LINE_AA)
        tiles.append(np.vstack([small, label]))
    while len(tiles) % 5:
        tiles.append(np.full_like(tiles[0], 255))
    rows = [np.hstack(tiles[i:i + 5]) for i in range(0, len(tiles), 5)]
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), cv2.cvtColor(np.vstack(rows), cv2.COLOR_RGB2BGR), [cv2.IMWRITE_PNG_COMPRESSION, 9])


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--root", type=Path, default=default_root())
    ap.add_argument("--methods", nargs="+", default=["cluster", "split", "colour"])
    ap.add_argument("--gallery", type=Path, default=Path("experiments/segmentation/wbcseg_worst.png"))
    ap.add_argument("--n-worst", type=int, default=10)
    args = ap.parse_args(argv)
    if not args.root.is_dir():
        raise SystemExit(f"{args.root} is not a folder: pass --root <path to wbcseg> or set HYBRIDWBC_DATA.")
    segmenters = {m: Segmenter(mode="crop", cytoplasm_method=m) for m in args.methods}
    last = args.methods[-1]
    figures = {m: {} for m in args.methods}
    seconds = {m: 0.0 for m in args.methods}
    n_cells = 0
    scored = []
    for dset in SETS:
        paths = sorted((args.root / dset / "images").glob("*.bmp"))
        rows = {m: [] for m in args.methods}
        for path in paths:
            image = read_image(path)
            truth = expert_masks(args.root / dset / "masks" / f"{path.stem}.png")
            for m, seg in segmenters.items():
                d, s, cell = score(seg, image, truth)
                rows[m].append(d)
                seconds[m] += s
                if m == last:
                    scored.append((d["cell"], f"{dset} {path.stem} {d['cell']:.2f}", dset, path, truth, cell))
        n_cells += len(paths)
        for m in args.methods:
            figures[m][dset] = {"all": summary(rows[m]), "half_A": summary(rows[m][0::2]),
                                "half_B": summary(rows[m][1::2]), "n": len(paths)}
            f = figures[m][dset]
            print(f"{dset:6s} {m:8s} n={len(paths):3d} " + "  ".join(
                f"{k} mean {f['all'][k]['mean']:.3f} median {f['all'][k]['median']:.3f} "
                f"<0.8 {f['all'][k]['below_0.8']:.2f} (A {f['half_A'][k]['mean']:.3f} B {f['half_B'][k]['mean']:.3f})"
                for k in CLASSES))
    ms = {m: round(1000.0 * seconds[m] / max(1, n_cells), 2) for m in args.methods}
    print("ms per cell: " + ", ".join(f"{m} {v:.1f}" for m, v in ms.items()))
    scored.sort(key=lambda r: r[0])
    worst = [(name, dset, read_image(path), truth, cell) for _, name, dset, path, truth, cell in scored[:args.n_worst]]
    if worst:
        gallery(worst, args.gallery)
        print(f"gallery of the {len(worst)} worst cells ({last}): {args.gallery}")
    out = {f"{d}_{k}": figures[last][d]["all"][k]["mean"] for d in SETS for k in ("nucleus", "cell")}
    out.update({"method": last, "ms_per_cell": ms, "time_ratio": round(ms[last] / max(1e-9, ms[args.methods[0]]), 3),
                "worst": [r[1] for r in scored[:args.n_worst]], "methods": figures})
    print(json.dumps(out))
    return out


if __name__ == "__main__":
    main()
