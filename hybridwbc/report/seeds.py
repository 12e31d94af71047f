"""The ``seeds`` table: each method's mean ± sd over the seeds of a sweep.

    python -m hybridwbc.tables --seeds <experiment> [--sweep <id>] [--uri URI] [--out experiments]

A sweep (``python -m hybridwbc.run -m +experiment=wbc5 seed=0,1,2,3,4 classifier=svm,cascade
hydra/launcher=joblib``; see :mod:`hybridwbc.scale.sweep`) nests its jobs' runs under one parent run per
experiment, tagged ``sweep.id``. This table reads the latest sweep (or ``--sweep``), groups the finished
jobs' methods by everything the sweep varied except the seed, and writes
``<out>/<experiment>/seeds.md`` and ``seeds.csv``: per group, the number of seeds, mean ± sd (n - 1) and
the range of each metric, and the run ids. Failed jobs are counted, never averaged.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd

from hybridwbc.report.tables import COLUMNS, method_name, method_runs, portable

__all__ = ["sweep_parent", "seed_rows", "seed_table", "write_seeds"]

#: Params that may vary between a sweep's jobs and name a group (the seed is what is averaged over).
GROUP_PARAMS = ("method", "classifier.name", "features.name", "data.name", "eval.protocol")


def sweep_parent(client, experiment: str, sweep_id: str | None = None):
    """The parent run of ``experiment``'s latest sweep (or of sweep ``sweep_id``).

    Raises
    ------
    DataLayoutError
        If the experiment or the sweep is not in the store.
    """
    from hybridwbc.errors import DataLayoutError

    exp = client.get_experiment_by_name(experiment)
    filt = "tags.role = 'sweep'" + (f" and tags.`sweep.id` = '{sweep_id}'" if sweep_id else "")
    runs = [] if exp is None else client.search_runs([exp.experiment_id], filter_string=filt,
                                                     order_by=["attributes.start_time DESC"], max_results=1)
    if not runs:
        what = f"sweep {sweep_id!r}" if sweep_id else "sweep"
        raise DataLayoutError(
            f"Experiment {experiment!r} has no {what} in this store. Fix: run one, e.g. `python -m hybridwbc.run -m "
            f"+experiment={experiment} seed=0,1,2 hydra/launcher=joblib` (or `make sweep`), with the same tracking.uri."
        )
    return runs[0]


def seed_rows(client, parent) -> tuple[pd.DataFrame, dict]:
    """One row per (job, method) of a sweep: its group params, seed, metrics and run id; and the jobs'
    status counts."""
    jobs = client.search_runs([parent.info.experiment_id],
                              filter_string=f"tags.mlflow.parentRunId = '{parent.info.run_id}'",
                              order_by=["attributes.start_time ASC"], max_results=5000)
    status: dict = {}
    rows = []
    for job in jobs:
        status[job.info.status] = status.get(job.info.status, 0) + 1
        if job.info.status != "FINISHED":
            continue
        for r in method_runs(client, job):
            p, m = {**job.data.params, **r.data.params}, r.data.metrics
            row = {k: p.get(k) for k in GROUP_PARAMS if k != "method"}
            row.update({"method": method_name(r), "seed": p.get("seed"), "run_id": r.info.run_id})
            row.update({k: m[k] for k in COLUMNS if k in m})
            rows.append(row)
    return pd.DataFrame(rows), status


def seed_table(rows: pd.DataFrame) -> pd.DataFrame:
    """Mean, sd (ddof=1), min and max over seeds per group; a group is every :data:`GROUP_PARAMS` value that
    varies in the sweep (the method always)."""
    keys = ["method"] + [k for k in GROUP_PARAMS if k != "method" and k in rows and rows[k].nunique() > 1
                         and not (rows[k].astype(str) == rows["method"].astype(str)).all()]  # not the method again
    out = []
    for key, g in rows.groupby(keys, sort=False):
        key = key if isinstance(key, tuple) else (key,)
        row = dict(zip(keys, key))
        row.update({"n_seeds": g["seed"].nunique(), "seeds": ",".join(sorted(map(str, g["seed"].unique())))})
        for k in COLUMNS:
            if k in g:
                v = g[k].dropna().to_numpy(float)
                row.update({f"{k}_mean": v.mean() if len(v) else np.nan,
                            f"{k}_sd": v.std(ddof=1) if len(v) > 1 else np.nan,
                            f"{k}_min": v.min() if len(v) else np.nan, f"{k}_max": v.max() if len(v) else np.nan})
        row["run_ids"] = " ".join(g["run_id"])
        out.append(row)
    df = pd.DataFrame(out)
    return df.sort_values("balanced_accuracy_mean", ascending=False, kind="stable").reset_index(drop=True)


def _markdown(experiment: str, parent, table: pd.DataFrame, status: dict, roots=()) -> str:
    tags = parent.data.tags
    lines = [f"# {experiment}: mean ± sd over seeds", "",
             f"- Sweep `{tags.get('sweep.id')}` ({tags.get('sweep.launcher', '?')}), parent run "
             f"`{parent.info.run_id}`; jobs by status: {status}",
             f"- Command: `{portable(tags.get('command', '?'), roots)}`",
             "- Each cell: mean ± sd (n - 1) over seeds [min, max], on each job's own held-out split; a failed job is "
             "counted above, never averaged. Regenerate: `make sweep` (or the command, then "
             f"`python -m hybridwbc.tables --seeds {experiment}`).",
             "", "| method | seeds | " + " | ".join(COLUMNS) + " |", "|---|---|" + "---|" * len(COLUMNS)]
    keys = [c for c in table.columns if c in GROUP_PARAMS and c != "method"]
    for _, r in table.iterrows():
        name = r["method"] + "".join(f" · {r[k]}" for k in keys)
        cells = [f"{r[f'{k}_mean']:.3f} ± {r[f'{k}_sd']:.3f} [{r[f'{k}_min']:.3f}, {r[f'{k}_max']:.3f}]"
                 if f"{k}_mean" in r else "" for k in COLUMNS]
        lines.append(f"| {name} | {r['n_seeds']} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def write_seeds(experiment: str, uri: str, out: str | os.PathLike, sweep_id: str | None = None) -> Path:
    """Write ``<out>/<experiment>/seeds.md`` and ``seeds.csv`` from a sweep; returns the Markdown path.

    Raises
    ------
    DataLayoutError
        If there is no such sweep, or none of its jobs finished.
    """
    from hybridwbc.errors import DataLayoutError
    from hybridwbc.report.tables import store_client

    client = store_client(uri)
    parent = sweep_parent(client, experiment, sweep_id)
    rows, status = seed_rows(client, parent)
    if rows.empty:
        sweep = parent.data.tags.get("sweep.id")
        raise DataLayoutError(f"Sweep {sweep!r} of {experiment!r} has no finished job (jobs by status: {status}). "
                              "Fix: read the jobs' errors in the MLflow UI; rerun the sweep.")
    table = seed_table(rows)
    folder = Path(out) / experiment
    folder.mkdir(parents=True, exist_ok=True)
    table.to_csv(folder / "seeds.csv", index=False)
    roots = [str(Path(uri[len("sqlite:///"):]).parent)] if uri.startswith("sqlite:///") else []  # the store's folder
    (folder / "seeds.md").write_text(_markdown(experiment, parent, table, status, roots))
    return folder / "seeds.md"
