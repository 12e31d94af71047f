"""Result tables written from the MLflow store.

    python -m hybridwbc.tables <experiment> [<experiment> ...] [--ensure] [--timing] [--uri URI] [--out experiments]

For each experiment, the latest finished top-level run is read; a comparison
run contributes one row per method (its nested runs). Each cell shows the
value and its 95% bootstrap interval, and each row names its MLflow run id.
``--ensure`` first runs the experiment (``python -m hybridwbc.run
+experiment=<name>``) when the store has no finished run of its current config
(the ``config_hash`` tag: the resolved config without paths and tracking).
Writes ``<out>/<experiment>/results.md`` and ``results.csv``; each ``results.md``
ends with where the run's time went. ``--timing`` also writes ``<out>/timing.md``:
one row per experiment, wall time split into data scan, feature extraction,
training and prediction (of which CNN training) and evaluation.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd

from hybridwbc.cli import print_error, run_cli

__all__ = ["latest_run", "collect_rows", "run_timing", "format_markdown", "write_tables", "write_timing", "main"]

COLUMNS = ["accuracy", "balanced_accuracy", "f1_weighted", "f1_macro"]
BINARY = ["sensitivity", "specificity", "roc_auc"]
VARIANTS = [("", ""), ("subject_", " (per subject)"), ("leaky_", " (LEAKY random cell split)"),
            ("binary_", " (benign vs B-ALL)")]


def _client(uri: str):
    import mlflow
    from mlflow.tracking import MlflowClient

    mlflow.set_tracking_uri(uri)
    return MlflowClient(tracking_uri=uri)


def latest_run(client, experiment: str, config_hash: str | None = None):
    """The newest FINISHED top-level run of ``experiment`` (with that ``config_hash`` tag, if given), or ``None``."""
    exp = client.get_experiment_by_name(experiment)
    if exp is None:
        return None
    filt = "attributes.status = 'FINISHED'"
    if config_hash:
        filt += f" and tags.config_hash = '{config_hash}'"
    runs = client.search_runs([exp.experiment_id], filter_string=filt,
                              order_by=["attributes.start_time DESC"], max_results=200)
    top = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    return top[0] if top else None


def collect_rows(client, run) -> pd.DataFrame:
    """One row per method (and per reported variant) of a run, with metrics and run ids."""
    methods = [(_method_name(r), r) for r in _children(client, run)]
    rows = []
    for name, r in methods:
        m = r.data.metrics
        for order, (prefix, suffix) in enumerate(VARIANTS):
            if f"{prefix}accuracy" not in m:
                continue
            row = {"method": f"{name}{suffix}", "run_id": r.info.run_id, "_variant": order}
            for k in COLUMNS + BINARY:
                if f"{prefix}{k}" in m:
                    row[k] = m[f"{prefix}{k}"]
                    row[f"{k}_ci_low"] = m.get(f"{prefix}{k}_ci_low")
                    row[f"{k}_ci_high"] = m.get(f"{prefix}{k}_ci_high")
            rows.append(row)
    df = pd.DataFrame(rows)
    if not df.empty:
        df = (df.sort_values(["_variant", "balanced_accuracy"], ascending=[True, False], kind="stable")
                .drop(columns="_variant").reset_index(drop=True))
    return df


def _method_name(run) -> str:
    """A method's name: the ``method`` param of a comparison's child, else the classifier's name."""
    return run.data.params.get("method", run.data.params.get("classifier.name", run.info.run_name or "method"))


def _children(client, run) -> list:
    """The runs that hold a run's methods: its nested runs if it is a comparison, else itself."""
    if run.data.tags.get("role") != "comparison":
        return [run]
    return client.search_runs([run.info.experiment_id],
                              filter_string=f"tags.mlflow.parentRunId = '{run.info.run_id}'",
                              order_by=["attributes.start_time ASC"], max_results=200)


def run_timing(client, run) -> dict:
    """Where the wall time of a run went, in seconds, from the metrics the run logged.

    Returns
    -------
    dict
        ``wall`` (start to end of the top-level run), ``data`` (manifest scan),
        ``features`` (handcrafted/simple feature extraction, cached by content
        hash), ``train_predict`` (fitting and predicting every method on every
        split, CNN embedding included), ``cnn_training`` (the part of it spent
        training CNNs that were not in the trained-model cache), ``evaluation``
        (metrics, bootstrap intervals, plots) and ``other`` (the rest: refits
        on all rows for cross-validation, saving models, logging). ``methods``
        maps each method to its ``train_predict``, ``cnn_training`` and ``evaluation``.
    """
    m = run.data.metrics
    wall = (run.info.end_time - run.info.start_time) / 1000.0 if run.info.end_time else float("nan")
    methods = {}
    for child in _children(client, run):
        cm = child.data.metrics
        methods[_method_name(child)] = {"train_predict": cm.get("fit_predict_s", 0.0),
                                        "cnn_training": cm.get("cnn_fit_s", 0.0), "evaluation": cm.get("eval_s", 0.0)}
        m = {**cm, **m}
    out = {"wall": wall, "data": m.get("data_s", 0.0), "features": m.get("features_s", 0.0)}
    for k in ("train_predict", "cnn_training", "evaluation"):
        out[k] = float(sum(v[k] for v in methods.values()))
    out["other"] = wall - out["data"] - out["features"] - out["train_predict"] - out["evaluation"]
    out["methods"] = methods
    return out


def _timing_lines(t: dict) -> list:
    lines = ["", "## Time", "",
             f"Wall {t['wall'] / 60:.1f} min: data scan {t['data']:.0f} s, feature extraction {t['features']:.0f} s, "
             f"training and prediction {t['train_predict']:.0f} s (of which CNN training {t['cnn_training']:.0f} s), "
             f"evaluation {t['evaluation']:.0f} s, other (refits, saving, logging) {t['other']:.0f} s. Cached "
             "features, embeddings and trained CNNs make a rerun faster; these are the times of this run.", ""]
    if len(t["methods"]) > 1:
        lines += ["| method | training + prediction (s) | of which CNN training (s) | evaluation (s) |",
                  "|---|---|---|---|"]
        lines += [f"| {n} | {v['train_predict']:.0f} | {v['cnn_training']:.0f} | {v['evaluation']:.0f} |"
                  for n, v in t["methods"].items()]
    return lines


def _cell(row, k) -> str:
    v = row.get(k)
    if v is None or pd.isna(v):
        return ""
    lo, hi = row.get(f"{k}_ci_low"), row.get(f"{k}_ci_high")
    if lo is None or pd.isna(lo):
        return f"{v:.3f}"
    return f"{v:.3f} [{lo:.3f}, {hi:.3f}]"


def format_markdown(experiment: str, run, df: pd.DataFrame, mcnemar: dict | None = None,
                    timing: dict | None = None) -> str:
    """The ``results.md`` text: provenance, then the table."""
    cols = COLUMNS + [k for k in BINARY if k in df.columns]
    tags, params = run.data.tags, run.data.params
    lines = [
        f"# {experiment}: results",
        "",
        f"- Command: `{tags.get('command', f'python -m hybridwbc.run +experiment={experiment}')}` "
        "(regenerate the tables: `make tables`)",
        f"- MLflow run: `{run.info.run_id}` (experiment `{experiment}`, store `mlflow.db`)",
        f"- Data: {tags.get('data.source', '?')} ({tags.get('data.root', '?')}), manifest hash "
        f"`{tags.get('data.manifest_hash', '?')}`; features `{params.get('features.name', '?')}`; "
        f"protocol `{params.get('eval.protocol', '?')}`"
        + (f", {params.get('eval.n_splits')} folds" if params.get("eval.protocol") == "cv" else
           f", test share {params.get('eval.test_size')}") + f"; seed {params.get('seed', '?')}",
        f"- Code: git commit `{tags.get('git_commit', '?')}`",
        f"- Cells: value [95% bootstrap CI, resampling {tags.get('ci.resampling', 'images')}]; rows grouped by "
        "variant (per cell, per subject, leaky split, binary) and sorted by balanced accuracy",
    ]
    if mcnemar:
        lines.append(f"- McNemar, best (`{mcnemar['best']}`) vs runner-up (`{mcnemar['runner_up']}`): "
                     f"b = {mcnemar['b']}, c = {mcnemar['c']}, p = {mcnemar['p_value']:.3g}")
    lines += ["", "| method | " + " | ".join(cols) + " | MLflow run |",
              "|---" * (len(cols) + 2) + "|"]
    for _, row in df.iterrows():
        lines.append(f"| {row['method']} | " + " | ".join(_cell(row, k) for k in cols) + f" | `{row['run_id']}` |")
    if timing:
        lines += _timing_lines(timing)
    return "\n".join(lines) + "\n"


def _mcnemar(client, run) -> dict | None:
    if run.data.tags.get("role") != "comparison":
        return None
    import mlflow

    try:
        text = mlflow.artifacts.load_text(f"runs:/{run.info.run_id}/mcnemar.json")
    except Exception:  # noqa: BLE001 - an older run without the artifact
        return None
    return json.loads(text)


def write_tables(experiment: str, uri: str, out: str | os.PathLike) -> Path:
    """Write ``results.md`` and ``results.csv`` of ``experiment`` under ``out``.

    Raises
    ------
    DataLayoutError
        If the store holds no finished run of the experiment.
    """
    from hybridwbc.errors import DataLayoutError

    client = _client(uri)
    run = latest_run(client, experiment)
    if run is None:
        raise DataLayoutError(
            f"No finished MLflow run of experiment {experiment!r} in {uri}. "
            f"Fix: run `python -m hybridwbc.run +experiment={experiment}` (or `make tables`)."
        )
    df = collect_rows(client, run)
    folder = Path(out) / experiment
    folder.mkdir(parents=True, exist_ok=True)
    df.to_csv(folder / "results.csv", index=False)
    (folder / "results.md").write_text(format_markdown(experiment, run, df, _mcnemar(client, run),
                                                       run_timing(client, run)))
    return folder / "results.md"


def write_timing(experiments, uri: str, out: str | os.PathLike) -> Path:
    """Write ``<out>/timing.md``: the time split of the latest run of each experiment, and the total.

    Raises
    ------
    DataLayoutError
        If the store holds no finished run of one of the experiments.
    """
    from hybridwbc.errors import DataLayoutError

    client = _client(uri)
    keys = ["wall", "data", "features", "train_predict", "cnn_training", "evaluation", "other"]
    lines = ["# Where the time of `make tables` goes", "",
             "Minutes per experiment, from the metrics each MLflow run logged (written by "
             "`python -m hybridwbc.tables --timing ...`, the last step of `make tables`). CNN training is "
             "part of training + prediction. Times depend on what the caches already held.", "",
             "| experiment | MLflow run | wall | data scan | feature extraction | training + prediction | "
             "of which CNN training | evaluation | other |", "|---" * 9 + "|"]
    total = dict.fromkeys(keys, 0.0)
    for name in experiments:
        run = latest_run(client, name)
        if run is None:
            raise DataLayoutError(f"No finished MLflow run of experiment {name!r} in {uri}. "
                                  f"Fix: run `python -m hybridwbc.run +experiment={name}` (or `make tables`).")
        t = run_timing(client, run)
        for k in keys:
            total[k] += t[k]
        lines.append(f"| {name} | `{run.info.run_id}` | " + " | ".join(f"{t[k] / 60:.1f}" for k in keys) + " |")
    lines.append("| **total** | | " + " | ".join(f"**{total[k] / 60:.1f}**" for k in keys) + " |")
    path = Path(out) / "timing.md"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")
    return path


def _current_hash(experiment: str) -> str:
    from hybridwbc.config import compose_experiment, config_hash

    return config_hash(compose_experiment(experiment))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m hybridwbc.tables", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("experiments", nargs="+")
    parser.add_argument("--uri", default=f"sqlite:///{Path.cwd() / 'mlflow.db'}")
    parser.add_argument("--out", default="experiments")
    parser.add_argument("--ensure", action="store_true", help="run experiments that have no finished run")
    parser.add_argument("--timing", action="store_true", help="also write <out>/timing.md for these experiments")
    parser.add_argument("overrides", nargs="*", default=[], help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    return run_cli(lambda: _write(args))


def _write(args) -> int:
    for name in args.experiments:
        if args.ensure and latest_run(_client(args.uri), name, _current_hash(name)) is None:
            print(f"hybridwbc: no finished run of {name!r} with its current config: running it", flush=True)
            try:
                subprocess.run([sys.executable, "-m", "hybridwbc.run", f"+experiment={name}",
                                f"tracking.uri={args.uri}", "progress=false"], check=True)
            except subprocess.CalledProcessError as exc:
                return print_error(f"the experiment run failed ({exc}); see its output above.")
        print(f"hybridwbc: wrote {write_tables(name, args.uri, args.out)}", flush=True)
    if args.timing:
        print(f"hybridwbc: wrote {write_timing(args.experiments, args.uri, args.out)}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
