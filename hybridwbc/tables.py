"""Result tables written from the MLflow store.

    python -m hybridwbc.tables <experiment> [<experiment> ...] [--ensure] [--uri URI] [--out experiments]

For each experiment, the latest finished top-level run is read; a comparison
run contributes one row per method (its nested runs). Each cell shows the
value and its 95% bootstrap interval, and each row names its MLflow run id.
``--ensure`` first runs the experiment (``python -m hybridwbc.run
+experiment=<name>``) when the store has no finished run of its current config
(the ``config_hash`` tag: the resolved config without paths and tracking).
Writes ``<out>/<experiment>/results.md`` and ``results.csv``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd

__all__ = ["latest_run", "collect_rows", "format_markdown", "write_tables", "main"]

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
    if run.data.tags.get("role") == "comparison":
        children = client.search_runs([run.info.experiment_id],
                                      filter_string=f"tags.mlflow.parentRunId = '{run.info.run_id}'",
                                      max_results=200)
        methods = [(c.data.params.get("method", c.info.run_name), c) for c in children]
    else:
        methods = [(run.data.params.get("classifier.name", "method"), run)]
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


def _cell(row, k) -> str:
    v = row.get(k)
    if v is None or pd.isna(v):
        return ""
    lo, hi = row.get(f"{k}_ci_low"), row.get(f"{k}_ci_high")
    if lo is None or pd.isna(lo):
        return f"{v:.3f}"
    return f"{v:.3f} [{lo:.3f}, {hi:.3f}]"


def format_markdown(experiment: str, run, df: pd.DataFrame, mcnemar: dict | None = None) -> str:
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
    (folder / "results.md").write_text(format_markdown(experiment, run, df, _mcnemar(client, run)))
    return folder / "results.md"


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
    parser.add_argument("overrides", nargs="*", default=[], help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    from hybridwbc.errors import HybridWBCError

    try:
        for name in args.experiments:
            if args.ensure and latest_run(_client(args.uri), name, _current_hash(name)) is None:
                print(f"hybridwbc: no finished run of {name!r} with its current config: running it", flush=True)
                subprocess.run([sys.executable, "-m", "hybridwbc.run", f"+experiment={name}",
                                f"tracking.uri={args.uri}", "progress=false"], check=True)
            print(f"hybridwbc: wrote {write_tables(name, args.uri, args.out)}", flush=True)
    except HybridWBCError as exc:
        print(f"hybridwbc: error: {exc}", file=sys.stderr)
        return 1
    except subprocess.CalledProcessError as exc:
        print(f"hybridwbc: error: the experiment run failed ({exc}); see its output above.", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
