"""Analyse whole smear fields: find every white cell, classify it, count the differential, write a review.

    python -m hybridwbc.analyze model=<model> input=<folder, file, glob or CSV> output=<dir>
        [n_jobs=-1] [min_confidence=0] [max_pixels=64000000] [crop=360] [window=cell] [cell_fraction=0.37]
        [min_count=100] [blast_threshold=5] [uncertain_share=0.2] [count_border=false] [report_fields=60]
        [batch=16] [min_nucleus_frac=0.002] [explain=false] [tracking=<MLflow URI, or none>]

``model`` is any saved cell model ``predict`` takes (a run's ``model/`` folder, a composed cascade,
a pyfunc folder or a ``models:/`` URI). ``input`` names field images: a folder (searched
recursively; each sub-folder is one sample, i.e. one slide), a file, a quoted glob, or a CSV with
a ``path`` column and optionally a ``sample`` column (default: each file's folder).

Each field is located (:func:`hybridwbc.segment.locate.locate_cells`: red cells and platelets
rejected, cells cut by the border flagged ``border``, touching cells flagged ``overlap``), each cell
is cropped as the model's training cells were (``crop``: the model's input side; ``window``: the
side cut from the field in pixels, or ``cell`` to scale by the cell's size, with
``cell_fraction``), and classified. ``min_nucleus_frac`` is the smallest nucleus the segmentation
keeps, as a share of the field (doubled in field mode): lower it for fields at a lower magnification,
where white cells span less than a sixth of the field's width. Below ``min_confidence``, or outside the model's training
domain, a cell is ``uncertain`` (counted apart, never assigned). A file that cannot be read is
an error row of ``fields.csv``; it never stops the batch. ``explain=true`` (models with a CNN) adds each
answered cell's Grad-CAM heat map to the review page (shown when the pointer rests on the cell).

Writes into ``output``: ``cells.csv`` (one row per cell), ``fields.csv`` (status, reason and counts
per field), ``samples.csv`` (the differential with 95% Wilson intervals, the blast percentage where the
model has a blast class, and flags), ``report.html`` (the review page: open it from disk, correct cells, download
``corrections.csv``), and ``geojson/<sample>/<field>.geojson`` (cells as QuPath objects). Apply
corrections with ``python -m hybridwbc.verify``. Every analysis is an MLflow run (experiment
``analyze``; ``tracking=none`` turns it off).
"""

from __future__ import annotations

import csv
import json
import math
import os
import sys
import time
from pathlib import Path

from hybridwbc.cli import parse_key_values, run_cli
from hybridwbc.errors import ConfigError

__all__ = ["main", "parse_args", "analyze", "collect_fields", "model_classes", "CELL_COLUMNS"]

USAGE = ("usage: python -m hybridwbc.analyze model=<model> input=<folder, file, glob or CSV> output=<dir> "
         "[n_jobs=-1] [min_confidence=0] [crop=360] [window=cell] [min_count=100] [tracking=<uri>|none] ...")
_INT = {"crop": 1, "min_count": 0, "report_fields": 0, "batch": 1}
_FLOAT = {"cell_fraction": (0.0, 1.0), "blast_threshold": (0.0, 100.0), "uncertain_share": (0.0, 1.0),
          "min_nucleus_frac": (0.0, 0.5)}
_KEYS = {"model", "input", "output", "n_jobs", "min_confidence", "max_pixels", "window", "count_border", "tracking",
         "explain",
         *_INT, *_FLOAT}
CELL_COLUMNS = ["sample", "field", "path", "cell_id", "row0", "col0", "row1", "col1", "row", "col", "area",
                "nucleus_area", "border", "overlap"]


def _number(key, value, kind):
    try:
        return kind(value)
    except (TypeError, ValueError):
        what = "an integer" if kind is int else "a number"
        raise ConfigError(f"{key} must be {what}; received {value!r}. {USAGE}") from None


def parse_args(argv: list[str]) -> dict:
    """Parse ``key=value`` arguments into :func:`analyze`'s keywords.

    Raises
    ------
    ConfigError
        On an argument without ``=``, an unknown or missing key, or a value out of range.
    """
    from hybridwbc.serve.predict import parse_args as predict_args

    args: dict = parse_key_values(argv, _KEYS, {"model", "input", "output"}, USAGE, __doc__)
    base = {k: args.pop(k) for k in ("model", "input", "output", "n_jobs", "min_confidence", "max_pixels", "explain")
            if k in args}
    base = predict_args([f"{k}={v}" for k, v in base.items()])
    for k, low in _INT.items():
        if k in args:
            args[k] = _number(k, args[k], int)
            if args[k] < low:
                raise ConfigError(f"{k} must be an integer >= {low}; received {args[k]}. {USAGE}")
    for k, (lo, hi) in _FLOAT.items():
        if k in args:
            args[k] = _number(k, args[k], float)
            if not lo <= args[k] <= hi or (k in ("cell_fraction", "min_nucleus_frac") and args[k] == 0):
                raise ConfigError(f"{k} must be in [{lo}, {hi}] (cell_fraction and min_nucleus_frac above 0); "
                                  f"received {args[k]}.")
    if "window" in args and args["window"] != "cell":
        args["window"] = _number("window", args["window"], int)
        if args["window"] < 8:
            raise ConfigError(f"window must be 'cell' or a side of at least 8 pixels; received {args['window']}.")
    if "count_border" in args:
        if args["count_border"].lower() not in ("true", "false", "1", "0"):
            raise ConfigError(f"count_border must be true or false; received {args['count_border']!r}.")
        args["count_border"] = args["count_border"].lower() in ("true", "1")
    return {**base, **args}


def collect_fields(spec: str) -> tuple[list[str], list[str], dict[int, str]]:
    """Field image paths, their samples, and rows refused before reading.

    A folder's sub-folder (relative to it) names each field's sample (``.`` files: the folder's own
    name); a CSV's ``sample`` column does, else each file's folder name.

    Raises
    ------
    DataLayoutError
        As :func:`hybridwbc.serve.predict.collect_rows`.
    """
    from hybridwbc.serve.predict import collect_rows

    paths, refused = collect_rows(spec)
    p = Path(spec).expanduser()
    samples = [Path(x).parent.name or "sample" for x in paths]
    if p.is_dir():
        samples = []
        for x in paths:
            rel = Path(os.path.relpath(x, p)).parent
            samples.append(p.resolve().name if str(rel) in (".", "") else rel.as_posix())
    elif p.is_file() and p.suffix.lower() == ".csv":
        import pandas as pd

        df = pd.read_csv(p, dtype=str, keep_default_na=False)
        if "sample" in df.columns:
            samples = [s or Path(x).parent.name for s, x in zip(df["sample"].tolist(), paths)]
    return paths, samples, refused


def model_classes(model) -> list[str]:
    """The class names of a :class:`~hybridwbc.serve.pipeline.WBCPipeline` or of a hybridwbc pyfunc model."""
    if hasattr(model, "classes_"):
        return list(model.classes_)
    schema = model.metadata.get_output_schema()
    return [n[2:] for n in schema.input_names() if n.startswith("p_")]


def _tracker(spec: str | None, output: Path):
    from hybridwbc.tracking import Tracker

    uri = spec if spec is not None else os.environ.get("MLFLOW_TRACKING_URI",
                                                        f"sqlite:///{Path.cwd() / 'mlflow.db'}")
    enabled = uri.lower() not in ("none", "disabled", "")
    root = Path(uri[len("sqlite:///"):]).parent if uri.startswith("sqlite:///") else Path.cwd()
    return Tracker(enabled, uri, str(root / "mlartifacts"), "analyze")


def _plain(v):
    """A JSON-ready value: numpy scalars as Python ones, NaN as None."""
    v = v.item() if hasattr(v, "item") else v
    return None if isinstance(v, float) and math.isnan(v) else v


def _guess(row: dict, classes) -> str:
    """The most probable class of a cell row ("" without probabilities): shown beside an uncertain cell."""
    p = [(float(row.get(f"p_{c}")), c) for c in classes if row.get(f"p_{c}") is not None
         and not math.isnan(float(row.get(f"p_{c}")))]
    return max(p)[1] if p else ""


def _cell_rows(sample, field, path, rec, part, classes) -> list[dict]:
    rows = []
    for k, cell in enumerate(rec["cells"]):
        p = part.iloc[k]
        status = {"ok": "ok", "error": "error"}.get(p["status"], "uncertain")
        reason = p["error"] if isinstance(p["error"], str) else ""
        if status == "ok" and p["label"] == "uncertain":
            status, reason = "uncertain", f"confidence {p['confidence']:.3f} below min_confidence"
        row = {"sample": sample, "field": field, "path": path, "cell_id": f"{sample}/{field}#{k}",
               "row0": cell.bbox[0], "col0": cell.bbox[1], "row1": cell.bbox[2], "col1": cell.bbox[3],
               "row": round(cell.centroid[0], 1), "col": round(cell.centroid[1], 1), "area": cell.area,
               "nucleus_area": cell.nucleus_area, "border": cell.border, "overlap": cell.overlap,
               "label": p["label"] if status != "error" else "", "confidence": p["confidence"]}
        row.update({f"p_{c}": p.get(f"p_{c}") for c in classes})
        row.update(status=status, reason=reason)
        rows.append(row)
    return rows


def _stream(paths, samples, refused, n_jobs, settings):
    """(index, record) per field, in batches processed by ``n_jobs`` workers."""
    from joblib import Parallel, delayed

    from hybridwbc.serve.fields import process_field

    todo = [i for i in range(len(paths)) if i not in refused]
    for i in refused:
        yield i, {"status": "error", "reason": refused[i], "height": 0, "width": 0, "cells": [], "crops": [],
                  "thumbs": [], "field_thumb": ""}
    if n_jobs == 1 or len(todo) < 2:
        for i in todo:
            yield i, process_field(paths[i], settings)
        return
    par = Parallel(n_jobs=n_jobs, return_as="generator")
    yield from zip(todo, par(delayed(process_field)(paths[i], settings) for i in todo))


def analyze(model: str, input: str, output: str, n_jobs: int | None = None, min_confidence: float = 0.0,
            max_pixels: int | None = None, crop: int = 360, window="cell", cell_fraction: float = 0.37,
            min_count: int = 100, blast_threshold: float = 5.0, uncertain_share: float = 0.2,
            count_border: bool = False, report_fields: int = 60, batch: int = 16, tracking: str | None = None,
            min_nucleus_frac: float = 0.002, explain: bool = False) -> dict:
    """Analyse every field named by ``input`` with ``model``; write the tables, GeoJSON and report to ``output``.

    Returns
    -------
    dict
        ``output`` (Path), ``n_fields``, ``n_error_fields``, ``n_cells``, ``seconds``, ``run_id``.
    """
    import pandas as pd

    from hybridwbc.evaluate.differential import CountRules
    from hybridwbc.serve.fields import CropSettings
    from hybridwbc.serve.predict import display_path, load_model
    from hybridwbc.serve.workers import resolve_n_jobs

    n_jobs = resolve_n_jobs(n_jobs)
    rules = CountRules(min_count=min_count, blast_threshold=blast_threshold, uncertain_share=uncertain_share,
                       count_border=count_border)
    out = Path(output)
    out.mkdir(parents=True, exist_ok=True)
    obj = load_model(model)
    if explain:
        from hybridwbc.serve.heatmaps import require_cnn

        require_cnn(obj, model)  # refused before any field is read
    classes = model_classes(obj)
    paths, samples, refused = collect_fields(input)
    settings = CropSettings(crop=crop, window=window, cell_fraction=cell_fraction, max_pixels=max_pixels,
                            field_thumb=480, min_nucleus_frac=min_nucleus_frac)
    tracker = _tracker(tracking, out)
    t0 = time.perf_counter()
    with tracker:
        tracker.log_params({"model": model, "input": input, "min_confidence": min_confidence, "crop": crop,
                            "window": window, "cell_fraction": cell_fraction, "min_count": min_count,
                            "blast_threshold": blast_threshold, "count_border": count_border,
                            "min_nucleus_frac": min_nucleus_frac,
                            "classes": ",".join(classes)})
        state = _run_fields(obj, classes, paths, samples, refused, out, n_jobs, min_confidence, settings,
                            report_fields, batch, explain)
        cells = pd.read_csv(out / "cells.csv", keep_default_na=False,
                            dtype={"sample": str, "field": str, "label": str, "status": str})
        fields = pd.read_csv(out / "fields.csv", keep_default_na=False, dtype={"sample": str, "field": str})
        result = _summarise(cells, fields, classes, rules, out, state, tracker)
    seconds = time.perf_counter() - t0
    print(f"hybridwbc: analysed {len(fields)} fields ({result['n_error_fields']} errors), {len(cells)} cells "
          f"({result['n_uncertain']} uncertain) in {seconds:.1f} s -> {display_path(str(out))}", flush=True)
    return {"output": out, "n_fields": len(fields), "n_error_fields": result["n_error_fields"],
            "n_cells": len(cells), "seconds": seconds, "run_id": tracker.run_id}


def _run_fields(obj, classes, paths, samples, refused, out, n_jobs, min_confidence, settings, report_fields,
                batch, explain=False) -> dict:
    """Stream the fields through locating and classification, appending to ``cells.csv`` and ``fields.csv``."""
    from hybridwbc.report.geojson import write_field_geojson
    from hybridwbc.serve.fields import classify_crops
    from hybridwbc.serve.predict import display_path

    cell_cols = CELL_COLUMNS + ["label", "confidence"] + [f"p_{c}" for c in classes] + ["status", "reason"]
    field_cols = ["sample", "field", "path", "status", "reason", "height", "width", "n_cells", "seconds"]
    state = {"report_cells": out / ".review_cells.jsonl", "report_fields": [], "n_fields": 0}
    keep = ("sample", "field", "cell_id", "row0", "col0", "row1", "col1", "border", "overlap", "label", "confidence",
            "status", "reason")
    with open(out / "cells.csv", "w", newline="", encoding="utf-8") as fc, \
            open(out / "fields.csv", "w", newline="", encoding="utf-8") as ff, \
            open(state["report_cells"], "w", encoding="utf-8") as fr:
        wc = csv.DictWriter(fc, fieldnames=cell_cols)
        wf = csv.DictWriter(ff, fieldnames=field_cols)
        wc.writeheader()
        wf.writeheader()
        pending: list = []

        def flush():
            crops = [c for _, r, _ in pending for c in r["crops"]]
            names = [f"{i}#{k}" for i, r, _ in pending for k in range(len(r["crops"]))]
            part = classify_crops(obj, crops, names, n_jobs, min_confidence) if crops else None
            heat = _heat(obj, crops, part) if explain and crops else None
            at = 0
            for i, rec, secs in pending:
                sample, path = samples[i], display_path(paths[i])
                field = Path(path).name
                n = len(rec["cells"])
                rows = _cell_rows(sample, field, path, rec, part.iloc[at:at + n], classes) if n else []
                at += n
                wc.writerows(rows)
                wf.writerow({"sample": sample, "field": field, "path": path, "status": rec["status"],
                             "reason": rec["reason"], "height": rec["height"], "width": rec["width"],
                             "n_cells": n, "seconds": round(secs, 4)})
                if rec["status"] == "ok":
                    write_field_geojson(out / "geojson" / sample / f"{Path(field).stem}.geojson", rows,
                                        rec["cells"], classes)
                for j, (r, t) in enumerate(zip(rows, rec["thumbs"])):  # the review page's cells wait on disk
                    fr.write(json.dumps({**{k: _plain(r[k]) for k in keep}, "thumb": t, "guess": _guess(r, classes),
                                         **({"heat": heat[at - n + j]} if heat else {})}) + "\n")
                if rec["field_thumb"] and len(state["report_fields"]) < report_fields:
                    state["report_fields"].append({"sample": sample, "field": field, "thumb": rec["field_thumb"],
                                                   "height": rec["height"], "width": rec["width"]})
            state["n_fields"] += len(pending)
            pending.clear()

        last = time.perf_counter()
        for i, rec in _stream(paths, samples, refused, n_jobs, settings):
            now = time.perf_counter()
            pending.append((i, rec, now - last))
            last = now
            if len(pending) >= batch:
                flush()
        if pending:
            flush()
    return state


def _heat(obj, crops, part) -> list[str]:
    """Heat-map thumbnails of the classified crops (:func:`hybridwbc.serve.heatmaps.heat_thumbs`): each for the
    label the model gave, or its top class for an ``uncertain`` cell; none for an error row."""
    from hybridwbc.serve.heatmaps import heat_thumbs

    probs = [c for c in part.columns if c.startswith("p_")]
    labels = [("" if st == "error" else (lab if lab != "uncertain" else max(probs, key=lambda c: row[c])[2:]))
              for (_, row), lab, st in zip(part.iterrows(), part["label"], part["status"])]
    return heat_thumbs(obj, crops, labels)


def _field_counts(fields, cells, classes, rules):
    """``fields`` with each field's ``n_counted``, ``n_uncertain``, ``n_border`` and ``n_<class>``."""
    import pandas as pd

    from hybridwbc.evaluate.differential import differential

    keys = ["n_counted", "n_uncertain", "n_border", *[f"n_{c}" for c in classes]]
    per = {}
    if len(cells):
        for key, g in cells.groupby(["sample", "field"], sort=False):
            d = differential(g, classes, rules)
            per[key] = {k: d[k] for k in keys}
    zero = dict.fromkeys(keys, 0)
    extra = pd.DataFrame([per.get(k, zero) for k in zip(fields["sample"], fields["field"])], columns=keys)
    return pd.concat([fields.reset_index(drop=True), extra], axis=1)


def _summarise(cells, fields, classes, rules, out, state, tracker) -> dict:
    """Write ``samples.csv``, the per-field counts and the report; log the counts and artifacts to the run."""
    import pandas as pd

    from hybridwbc.evaluate.differential import differential
    from hybridwbc.report.review import write_review

    if len(cells):
        cells = cells.assign(border=cells["border"].astype(str).str.lower() == "true")
    rows = []
    for sample, f in fields.groupby("sample", sort=True):
        c = cells[cells["sample"] == sample] if len(cells) else cells
        rows.append({"sample": sample, "n_fields": int(len(f)), "n_error_fields": int((f["status"] == "error").sum()),
                     **differential(c, classes, rules)})
    samples = pd.DataFrame(rows)
    samples.to_csv(out / "samples.csv", index=False)
    _field_counts(fields, cells, classes, rules).to_csv(out / "fields.csv", index=False)
    total = differential(cells, classes, rules) if len(cells) else {"n_counted": 0, "n_uncertain": 0}
    write_review(out / "report.html", classes, samples, state["report_cells"], state["report_fields"])
    os.remove(state["report_cells"])
    metrics = {"n_fields": len(fields), "n_error_fields": int((fields["status"] == "error").sum()),
               "n_cells": len(cells), "n_counted": total["n_counted"], "n_uncertain": total["n_uncertain"]}
    metrics.update({f"count.{c}": total.get(f"n_{c}", 0) for c in classes})
    metrics.update({f"pct.{c}": total.get(f"pct_{c}", float("nan")) for c in classes})
    tracker.log_metrics(metrics)
    for name in ("cells.csv", "fields.csv", "samples.csv", "report.html"):
        tracker.log_artifact(out / name)
    tracker.log_artifact(out / "geojson", "geojson")
    return metrics


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point (``python -m hybridwbc.analyze``); returns the exit status."""
    def command():
        analyze(**parse_args(sys.argv[1:] if argv is None else argv))

    return run_cli(command)


if __name__ == "__main__":
    raise SystemExit(main())
