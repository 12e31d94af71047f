"""Whole-field analysis on BCCD: speed beside predict on the same cells pre-cropped, detection, per-field type.

One command runs, on the first ``--n`` annotated BCCD fields (640x480):

1. ``hybridwbc.serve.analyze.analyze`` end to end (read, locate, crop, classify, count, write tables,
   GeoJSON and the review page; no MLflow), timed: fields/s, cells/s, and the median seconds per field
   (``fields.csv``'s ``seconds``, measured with ``--batch 1``, so each field's time holds its own
   locating and the classification of the field before it: the same work per field).
2. The baseline: the same cells, cropped beforehand (untimed) and written as PNG files, predicted by
   ``hybridwbc.serve.predict.predict`` with the same ``n_jobs``. ``ratio_vs_precropped`` is analyze's
   seconds per cell over predict's: the cost of locating.
3. Detection: the analysed cells' boxes against the VOC ``WBC`` boxes (IoU >= 0.5, one-to-one).
4. Type: for the fields ``bccd/labels.csv`` types, the field's answer is the label of its most
   confident cell not ``uncertain``; accuracy with its 95% Wilson interval (a field with no answer counts wrong).
   ``type_accuracy_forced`` takes each cell's most probable class even where the applicability-domain check
   made it ``uncertain``: what the model would say without that check.

Usage::

    python bench/analyze.py --model <saved model> [--root ../shared/data/bccd] [--n 100] [--n-jobs 1]
        [--crop 360] [--window cell] [--out /tmp/bench_analyze]

The last line printed is JSON with ``field_s_median``, ``fields_per_s``, ``cells_per_s``, ``recall``,
``precision``, ``ratio_vs_precropped``, ``type_accuracy`` and its interval, and the counts.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from detection import default_root, wbc_boxes  # noqa: E402

from hybridwbc.evaluate.detection import detection_scores, match_boxes  # noqa: E402
from hybridwbc.evaluate.differential import wilson_interval  # noqa: E402


def precrop(paths, out: Path, crop: int, window) -> int:
    """Write every located cell of ``paths`` as a PNG crop into ``out`` (untimed); returns the number."""
    from hybridwbc.serve.fields import CropSettings, process_field

    out.mkdir(parents=True, exist_ok=True)
    n = 0
    for p in paths:
        rec = process_field(str(p), CropSettings(crop=crop, window=window))
        for k, data in enumerate(rec["crops"]):
            (out / f"{Path(p).stem}_{k}.png").write_bytes(data)
            n += 1
    return n


def detection(cells, root: Path, stems) -> dict:
    """Recall and precision of the analysed cells against the VOC WBC boxes."""
    m = nd = nr = 0
    for stem in stems:
        refs = wbc_boxes(root / "Annotations" / f"{stem}.xml")
        mine = cells[cells["field"] == f"{stem}.jpg"]
        dets = mine[["col0", "row0", "col1", "row1"]].to_numpy().tolist()
        m += len(match_boxes(dets, refs))
        nd += len(dets)
        nr += len(refs)
    return detection_scores(m, nd, nr)


def field_types(cells, root: Path, stems) -> dict:
    """Per-field type accuracy against ``labels.csv`` (most confident non-uncertain cell per field)."""
    import pandas as pd

    labels_csv = root / "labels.csv"
    if not labels_csv.is_file():
        return {}
    truth = pd.read_csv(labels_csv).set_index("image")["category"]
    stems = [s for s in stems if s in truth.index]
    ok = cells[(cells["status"] == "ok") & (cells["label"] != "uncertain")]
    pcols = [c for c in cells.columns if c.startswith("p_")]
    answered = cells[cells["status"] != "error"].copy()
    answered["forced"] = answered[pcols].astype(float).idxmax(axis=1).str[2:]  # the argmax, domain check ignored
    out = {"type_fields": len(stems)}
    for key, table, col in (("type_accuracy", ok, "label"), ("type_accuracy_forced", answered, "forced")):
        right = 0
        for s in stems:
            mine = table[table["field"] == f"{s}.jpg"]
            answer = mine.sort_values("confidence").iloc[-1][col] if len(mine) else None
            right += answer == truth[s]
        lo, hi = wilson_interval(right, len(stems))
        out.update({key: right / len(stems) if stems else float("nan"), f"{key}_ci": [lo, hi]})
    return out


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", required=True)
    ap.add_argument("--root", type=Path, default=default_root())
    ap.add_argument("--n", type=int, default=100)
    ap.add_argument("--n-jobs", type=int, default=1)
    ap.add_argument("--crop", type=int, default=360)
    ap.add_argument("--window", default="cell")
    ap.add_argument("--out", type=Path, default=Path("/tmp/bench_analyze"))
    args = ap.parse_args(argv)
    import pandas as pd

    from hybridwbc.serve.analyze import analyze
    from hybridwbc.serve.predict import predict

    window = args.window if args.window == "cell" else int(args.window)
    stems = [x.stem for x in sorted((args.root / "Annotations").glob("*.xml"))][: args.n]
    if not stems:
        raise SystemExit(f"No annotations under {args.root / 'Annotations'}; pass --root.")
    shutil.rmtree(args.out, ignore_errors=True)
    fields_dir = args.out / "fields"
    fields_dir.mkdir(parents=True)
    for s in stems:  # a folder of just these fields (links, not copies)
        (fields_dir / f"{s}.jpg").symlink_to((args.root / "JPEGImages" / f"{s}.jpg").resolve())
    n_crops = precrop(sorted(fields_dir.iterdir()), args.out / "crops", args.crop, window)
    t0 = time.perf_counter()
    predict(args.model, str(args.out / "crops"), str(args.out / "precropped.csv"), n_jobs=args.n_jobs)
    t_pre = time.perf_counter() - t0
    t0 = time.perf_counter()
    analyze(args.model, str(fields_dir), str(args.out / "analysis"), n_jobs=args.n_jobs, crop=args.crop,
                  window=window, batch=1, tracking="none")
    t_an = time.perf_counter() - t0
    cells = pd.read_csv(args.out / "analysis" / "cells.csv", keep_default_na=False)
    fields = pd.read_csv(args.out / "analysis" / "fields.csv", keep_default_na=False)
    out = {"n_fields": len(stems), "n_cells": int(len(cells)), "n_precropped": n_crops,
           "field_s_median": float(fields["seconds"].median()), "fields_per_s": len(stems) / t_an,
           "cells_per_s": len(cells) / t_an, "precropped_cells_per_s": n_crops / t_pre if t_pre else float("nan"),
           "analyze_s": round(t_an, 2), "precropped_s": round(t_pre, 2)}
    out["ratio_vs_precropped"] = (t_an / max(1, len(cells))) / (t_pre / max(1, n_crops))
    out.update(detection(cells, args.root, stems))
    out.update(field_types(cells, args.root, stems))
    out["n_jobs"], out["model"] = args.n_jobs, str(args.model)
    print(f"analyze: {len(stems)} fields, {len(cells)} cells in {t_an:.1f} s ({out['fields_per_s']:.2f} fields/s, "
          f"median {out['field_s_median']:.2f} s/field); predict on the same cells pre-cropped {t_pre:.1f} s; "
          f"ratio {out['ratio_vs_precropped']:.2f}; detection recall {out['recall']:.3f} precision "
          f"{out['precision']:.3f}; type accuracy {out.get('type_accuracy', float('nan')):.3f}")
    print(json.dumps(out))
    return out


if __name__ == "__main__":
    main()
