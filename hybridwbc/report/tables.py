"""Result tables written from the MLflow store.

    python -m hybridwbc.tables <experiment> [<experiment> ...] [--ensure] [--timing] [--uri URI] [--out experiments]
    python -m hybridwbc.tables --seeds <experiment> [--sweep <id>]   (mean ± sd over a sweep's seeds, report/seeds.py)

For each experiment, the latest finished top-level run *of the current identity* is read: its
``config_hash`` (the resolved config without paths and tracking), ``code_version`` (the package's code
and configs) and data source (real data; ``--allow-synthetic`` only for demos) must all match, so a
quick look (``data.max_per_class=50``), an old code version's run or a synthetic run is never tabled.
A comparison run contributes one row per method (its nested runs). Each cell shows the value and its
95% bootstrap interval; every group of rows says what its bootstrap resampled, and each method shows
its coverage (test rows scored and skipped). Each row names its MLflow run id. Cross-validated runs
also get a per-split table (mean ± sd and each split's value). ``--ensure`` first runs the experiment
(``python -m hybridwbc.run +experiment=<name>``) when the store has no finished run of its current
identity. Machine paths are written relative to the repository (store) or as the data set's name.
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

__all__ = ["store_client", "method_runs", "method_name", "latest_run", "check_data_unchanged", "current_identity",
           "tabled_run", "collect_rows",
           "run_timing", "portable", "format_markdown", "write_tables", "write_timing", "format_cell", "load_mcnemar",
           "main"]

COLUMNS = ["accuracy", "balanced_accuracy", "f1_weighted", "f1_macro"]
BINARY = ["sensitivity", "specificity", "roc_auc"]
#: (metric prefix, row suffix, group heading) of each reported variant, in table order.
VARIANTS = [("", "", "Per cell, on the test rows each method scored"),
            ("all_", " (all test rows)", "Per cell, on all test rows (a row the method skipped counts wrong)"),
            ("subject_", " (per subject)", "Per subject (cells' probabilities averaged per subject)"),
            ("leaky_", " (LEAKY random cell split)", "LEAKY random cell split (ignores subjects; for reference)"),
            ("binary_", " (benign vs B-ALL)", "Benign vs B-ALL")]
COVERAGE = ["n_test_rows", "n_scored", "n_skipped_test"]


def store_client(uri: str):
    """An ``MlflowClient`` of the store ``uri``, which is also made the tracking URI (for ``runs:/`` artifacts)."""
    import mlflow
    from mlflow.tracking import MlflowClient

    mlflow.set_tracking_uri(uri)
    return MlflowClient(tracking_uri=uri)


def latest_run(client, experiment: str, config_hash: str | None = None, code_version: str | None = None,
               real_only: bool = False):
    """The newest FINISHED top-level run of ``experiment`` with that ``config_hash`` and ``code_version``
    tags (each if given) and, with ``real_only``, made on real data; ``None`` if there is none."""
    exp = client.get_experiment_by_name(experiment)
    if exp is None:
        return None
    filt = "attributes.status = 'FINISHED'"
    if config_hash:
        filt += f" and tags.config_hash = '{config_hash}'"
    if code_version:
        filt += f" and tags.code_version = '{code_version}'"
    if real_only:
        filt += " and tags.`data.source` = 'real'"
    runs = client.search_runs([exp.experiment_id], filter_string=filt,
                              order_by=["attributes.start_time DESC"], max_results=200)
    top = [r for r in runs if "mlflow.parentRunId" not in r.data.tags
           and (not real_only or r.data.tags.get("data.source") == "real")]
    return top[0] if top else None


def current_identity(experiment: str, overrides=()) -> dict:
    """What a tabled run of ``experiment`` must match now: ``config_hash`` and ``code_version``."""
    from hybridwbc.config import code_version, compose_experiment, config_hash

    return {"config_hash": config_hash(compose_experiment(experiment, list(overrides))),
            "code_version": code_version()}


def check_data_unchanged(run, experiment: str, overrides=()) -> None:
    """Refuse to table a real-data run whose images changed since it ran: the manifest of the folder it read
    (its ``data.root`` tag, scanned again with the experiment's data settings) must have the run's
    ``data.manifest_hash`` (the content hashes, labels and subjects of the images).

    Raises
    ------
    DataLayoutError
        If the folder's manifest hash differs (images added, removed, replaced or relabelled), or the folder is gone.
    """
    from hybridwbc.config import compose_experiment
    from hybridwbc.data.dataset import load_dataset
    from hybridwbc.data.manifest import manifest_hash
    from hybridwbc.errors import DataLayoutError, HybridWBCError

    tags = run.data.tags
    if tags.get("data.source") != "real" or not tags.get("data.manifest_hash"):
        return
    cfg = compose_experiment(experiment, [*overrides, f"data.root={tags.get('data.root', '')}", "data.subdir=null"])
    try:
        now = manifest_hash(load_dataset(cfg.data, ".", cfg.paths.cache_dir, seed=cfg.seed).manifest)
    except HybridWBCError as exc:
        now = f"unreadable ({exc})"
    if now != tags["data.manifest_hash"]:
        raise DataLayoutError(
            f"The images run {run.info.run_id} of {experiment!r} read in {tags.get('data.root')!r} changed since it "
            f"ran (manifest hash {tags['data.manifest_hash']!r}, now {now!r}). Fix: rerun the experiment on the "
            f"current images (`python -m hybridwbc.run +experiment={experiment}`), then `make tables`."
        )


def tabled_run(client, experiment: str, uri: str, overrides=(), allow_synthetic: bool = False):
    """The run a table of ``experiment`` publishes: the latest of the current identity, on real data.

    Raises
    ------
    DataLayoutError
        If there is none, saying which part of the identity the latest run misses and how to fix it.
    """
    from hybridwbc.errors import DataLayoutError

    ident = current_identity(experiment, overrides)
    run = latest_run(client, experiment, **ident, real_only=not allow_synthetic)
    if run is not None:
        check_data_unchanged(run, experiment, overrides)
        return run
    last = latest_run(client, experiment)
    if last is None:
        why = "it has no finished run"
    else:
        tags = last.data.tags
        misses = [f"{k} {tags.get(k, '(none)')!r} (current {v!r})" for k, v in ident.items() if tags.get(k) != v]
        if not allow_synthetic and tags.get("data.source") != "real":
            misses.append(f"data source {tags.get('data.source', '(none)')!r} (tables need real data)")
        why = f"its latest run {last.info.run_id} differs in " + "; ".join(misses)
    raise DataLayoutError(
        f"No finished MLflow run of experiment {experiment!r} in {uri} matches the current config, code and real "
        f"data: {why}. Fix: `make tables` (reruns it), or `python -m hybridwbc.tables --ensure {experiment}`."
    )


def collect_rows(client, run) -> pd.DataFrame:
    """One row per method and reported variant of a run: metrics, CIs, what the CI resampled, coverage,
    per-split scores and run ids (the ``results.csv`` table)."""
    rows = []
    for name, r in ((method_name(r), r) for r in method_runs(client, run)):
        m, tags = r.data.metrics, r.data.tags
        for order, (prefix, suffix, _) in enumerate(VARIANTS):
            if f"{prefix}accuracy" not in m:
                continue
            key = f"ci.resampling.{prefix.rstrip('_') or 'cell'}"
            row = {"method": f"{name}{suffix}", "run_id": r.info.run_id, "variant": prefix.rstrip("_") or "cell",
                   "ci_resampling": tags.get(key, tags.get("ci.resampling", "")), "_variant": order}
            for k in COLUMNS + BINARY:
                if f"{prefix}{k}" in m:
                    row[k] = m[f"{prefix}{k}"]
                    row[f"{k}_ci_low"] = m.get(f"{prefix}{k}_ci_low")
                    row[f"{k}_ci_high"] = m.get(f"{prefix}{k}_ci_high")
            if prefix in ("", "all_"):
                row.update({k: m[k] for k in COVERAGE if k in m})
            if prefix == "":
                row.update({k: v for k, v in m.items() if k.startswith("split")})
            rows.append(row)
    df = pd.DataFrame(rows)
    if not df.empty:
        df = (df.sort_values(["_variant", "balanced_accuracy"], ascending=[True, False], kind="stable")
                .drop(columns="_variant").reset_index(drop=True))
    return df


def method_name(run) -> str:
    """A method's name: the ``method`` param of a comparison's child, else the classifier's name."""
    return run.data.params.get("method", run.data.params.get("classifier.name", run.info.run_name or "method"))


def method_runs(client, run) -> list:
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
        split, the leaky reference's splits and the refit on all rows under
        cross-validation, CNN embedding included), ``cnn_training`` (the part of
        it spent training CNNs that were not in the trained-model cache, in every
        one of those fits), ``evaluation`` (metrics, bootstrap intervals, plots)
        and ``other`` (the rest: saving models, logging). ``methods``
        maps each method to its ``train_predict``, ``cnn_training`` and ``evaluation``.
    """
    m = run.data.metrics
    wall = (run.info.end_time - run.info.start_time) / 1000.0 if run.info.end_time else float("nan")
    methods = {}
    for child in method_runs(client, run):
        cm = child.data.metrics
        methods[method_name(child)] = {
            "train_predict": sum(cm.get(k, 0.0) for k in ("fit_predict_s", "leaky_fit_predict_s", "refit_s")),
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
             f"evaluation {t['evaluation']:.0f} s, other (saving, logging) {t['other']:.0f} s. Cached "
             "features, embeddings and trained CNNs make a rerun faster; these are the times of this run.", ""]
    if len(t["methods"]) > 1:
        lines += ["| method | training + prediction (s) | of which CNN training (s) | evaluation (s) |",
                  "|---|---|---|---|"]
        lines += [f"| {n} | {v['train_predict']:.0f} | {v['cnn_training']:.0f} | {v['evaluation']:.0f} |"
                  for n, v in t["methods"].items()]
    return lines


def format_cell(row, k) -> str:
    v = row.get(k)
    if v is None or pd.isna(v):
        return ""
    lo, hi = row.get(f"{k}_ci_low"), row.get(f"{k}_ci_high")
    if lo is None or pd.isna(lo):
        return f"{v:.3f}"
    return f"{v:.3f} [{lo:.3f}, {hi:.3f}]"


def portable(text: str, roots=()) -> str:
    """``text`` without the machine's absolute paths: each of ``roots`` (and the working folder) becomes
    ``.``, and a ``sqlite:///<abs>/mlflow.db`` store its file name."""
    import re

    text = re.sub(r"sqlite:////\S*/([^/\s]+\.db)", r"sqlite:///\1", str(text))
    for root in sorted({str(Path(r)) for r in (*roots, Path.cwd()) if r}, key=len, reverse=True):
        if root not in ("/", "."):  # whole path components only: /work/main never rewrites /work/main2
            text = re.sub(re.escape(root) + r"(?=/|\s|$|['\"])", ".", text)
    return text


def _data_line(tags: dict, params: dict) -> str:
    root = tags.get("data.root", "")
    name = Path(root).name if root else params.get("data.name", "?")
    proto = params.get("eval.protocol", "?")
    split = (f", {params.get('eval.n_splits')} folds" if proto == "cv" else
             f", test share {params.get('eval.test_size')}")
    return (f"- Data: {tags.get('data.source', '?')} (data set `{name}`), manifest hash "
            f"`{tags.get('data.manifest_hash', '?')}`; features `{params.get('features.name', '?')}`; "
            f"protocol `{proto}`{split}; seed {params.get('seed', '?')}")


def _variant_tables(df: pd.DataFrame) -> list:
    """One Markdown table per variant, each headed by what its interval resampled; coverage where known."""
    lines = []
    for prefix, _, heading in VARIANTS:
        part = df[df["variant"] == (prefix.rstrip("_") or "cell")] if "variant" in df.columns else df.iloc[:0]
        if part.empty:
            continue
        if prefix == "all_" and "n_skipped_test" in part.columns and (part["n_skipped_test"] == 0).all():
            lines += ["", f"### {heading}", "", "Every method scored every test row: the same numbers as above."]
            continue
        cols = COLUMNS + [k for k in BINARY if k in part.columns and part[k].notna().any()]
        cover = prefix in ("", "all_") and "n_scored" in part.columns
        units = sorted({str(u) for u in part["ci_resampling"] if str(u) and str(u) != "nan"}) or ["images"]
        lines += ["", f"### {heading}", "", f"95% bootstrap CI, resampling {' / '.join(units)}.", "",
                  "| method | " + " | ".join(cols) + (" | scored / test rows" if cover else "") + " | MLflow run |",
                  "|---" * (len(cols) + 2 + cover) + "|"]
        for _, row in part.iterrows():
            cov = (f" | {row['n_scored']:.0f} / {row['n_test_rows']:.0f}" if cover and pd.notna(row.get("n_scored"))
                   else (" | " if cover else ""))
            lines.append(f"| {row['method']} | " + " | ".join(format_cell(row, k) for k in cols) + cov
                         + f" | `{row['run_id']}` |")
    return lines


def _split_table(df: pd.DataFrame) -> list:
    """Per-split scores of a cross-validated run: mean ± sd over the splits and each split's value."""
    metric = "balanced_accuracy"
    cols = sorted((c for c in df.columns if c.startswith("split") and c.endswith(f"_{metric}")),
                  key=lambda c: int(c[5:].split("_")[0]))
    part = df[df["variant"] == "cell"] if cols else df.iloc[:0]
    if part.empty:
        return []
    lines = ["", f"### Repeated splits: {metric.replace('_', ' ')} per split", "",
             f"Mean ± sd over the {len(cols)} splits (each split scored on its own test rows), then each split.", "",
             "| method | mean ± sd | " + " | ".join(f"split {c[5:].split('_')[0]}" for c in cols) + " |",
             "|---" * (len(cols) + 2) + "|"]
    for _, row in part.iterrows():
        vals = row[cols].astype(float).to_numpy()
        lines.append(f"| {row['method']} | {vals.mean():.3f} ± {vals.std(ddof=1):.3f} | "
                     + " | ".join(f"{v:.3f}" for v in vals) + " |")
    return lines


def format_markdown(experiment: str, run, df: pd.DataFrame, mcnemar: dict | None = None,
                    timing: dict | None = None, notes=()) -> str:
    """The ``results.md`` text: provenance, notes, one table per variant, per-split scores, time."""
    tags, params = run.data.tags, run.data.params
    roots = [str(Path(tags["data.root"]).parent)] if tags.get("data.root") else []  # the data sets' folder
    lines = [
        f"# {experiment}: results",
        "",
        f"- Command: `{portable(tags.get('command', f'python -m hybridwbc.run +experiment={experiment}'), roots)}` "
        "(regenerate the tables: `make tables`)",
        f"- MLflow run: `{run.info.run_id}` (experiment `{experiment}`, store `mlflow.db`)",
        _data_line(tags, params),
        f"- Code: git commit `{tags.get('git_commit', '?')}`, code version `{tags.get('code_version', '?')}`",
        "- Cells: value [95% bootstrap CI]; within each group, rows sorted by balanced accuracy; the ranking "
        "and McNemar test use all test rows",
    ]
    if mcnemar:
        lines.append(f"- McNemar, best (`{mcnemar['best']}`) vs runner-up (`{mcnemar['runner_up']}`): "
                     f"b = {mcnemar['b']}, c = {mcnemar['c']}, p = {mcnemar['p_value']:.3g}")
    lines += [f"- **Note:** {' '.join(str(n).split())}" for n in notes]
    lines += _variant_tables(df) + _split_table(df)
    if timing:
        lines += _timing_lines(timing)
    return "\n".join(lines) + "\n"


def load_mcnemar(client, run) -> dict | None:
    if run.data.tags.get("role") != "comparison":
        return None
    import mlflow

    try:
        text = mlflow.artifacts.load_text(f"runs:/{run.info.run_id}/mcnemar.json")
    except Exception:  # noqa: BLE001 - an older run without the artifact
        return None
    return json.loads(text)


def write_tables(experiment: str, uri: str, out: str | os.PathLike, overrides=(),
                 allow_synthetic: bool = False) -> Path:
    """Write ``results.md`` and ``results.csv`` of ``experiment`` under ``out`` from its tabled run
    (:func:`tabled_run`: current config, code and real data).

    Raises
    ------
    DataLayoutError
        If the store holds no finished run of the experiment's current identity.
    """
    from hybridwbc.config import compose_experiment

    client = store_client(uri)
    run = tabled_run(client, experiment, uri, overrides, allow_synthetic)
    df = collect_rows(client, run)
    folder = Path(out) / experiment
    folder.mkdir(parents=True, exist_ok=True)
    df.to_csv(folder / "results.csv", index=False)
    notes = list(compose_experiment(experiment, list(overrides)).get("notes") or [])
    (folder / "results.md").write_text(format_markdown(experiment, run, df, load_mcnemar(client, run),
                                                       run_timing(client, run), notes))
    return folder / "results.md"


def write_timing(experiments, uri: str, out: str | os.PathLike, overrides=(), allow_synthetic: bool = False) -> Path:
    """Write ``<out>/timing.md``: the time split of the tabled run of each experiment, and the total.

    Raises
    ------
    DataLayoutError
        If the store holds no finished run of one of the experiments' current identity.
    """
    client = store_client(uri)
    keys = ["wall", "data", "features", "train_predict", "cnn_training", "evaluation", "other"]
    lines = ["# Where the time of `make tables` goes", "",
             "Minutes per experiment, from the metrics each MLflow run logged (written by "
             "`python -m hybridwbc.tables --timing ...`, the last step of `make tables`). CNN training is "
             "part of training + prediction. Times depend on what the caches already held.", "",
             "| experiment | MLflow run | wall | data scan | feature extraction | training + prediction | "
             "of which CNN training | evaluation | other |", "|---" * 9 + "|"]
    total = dict.fromkeys(keys, 0.0)
    for name in experiments:
        run = tabled_run(client, name, uri, overrides, allow_synthetic)
        t = run_timing(client, run)
        for k in keys:
            total[k] += t[k]
        lines.append(f"| {name} | `{run.info.run_id}` | " + " | ".join(f"{t[k] / 60:.1f}" for k in keys) + " |")
    lines.append("| **total** | | " + " | ".join(f"**{total[k] / 60:.1f}**" for k in keys) + " |")
    path = Path(out) / "timing.md"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")
    return path


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m hybridwbc.tables", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("experiments", nargs="+")
    parser.add_argument("--uri", default="sqlite:///mlflow.db", help="MLflow store (default: ./mlflow.db)")
    parser.add_argument("--out", default="experiments")
    parser.add_argument("--ensure", action="store_true",
                        help="first run experiments that have no finished run of their current config and code")
    parser.add_argument("--timing", action="store_true", help="also write <out>/timing.md for these experiments")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="a config override the tabled runs were (or --ensure runs them) made with")
    parser.add_argument("--allow-synthetic", action="store_true",
                        help="table runs on the built-in synthetic data (demos and tests only; never publish)")
    parser.add_argument("--seeds", action="store_true",
                        help="write <out>/<experiment>/seeds.md (mean ± sd over a sweep's seeds) instead")
    parser.add_argument("--sweep", default=None, help="with --seeds: the sweep id (default: the latest sweep)")
    args = parser.parse_args(argv)
    return run_cli(lambda: _write(args))


def _write(args) -> int:
    if args.seeds:
        from hybridwbc.report.seeds import write_seeds

        for name in args.experiments:
            print(f"hybridwbc: wrote {write_seeds(name, args.uri, args.out, args.sweep)}", flush=True)
        return 0
    for name in args.experiments:
        ident = current_identity(name, args.overrides)
        client = store_client(args.uri)
        if args.ensure and latest_run(client, name, **ident, real_only=not args.allow_synthetic) is None:
            print(f"hybridwbc: no finished run of {name!r} with its current config and code: running it", flush=True)
            try:
                subprocess.run([sys.executable, "-m", "hybridwbc.run", f"+experiment={name}",
                                f"tracking.uri={args.uri}", "progress=false", *args.overrides], check=True)
            except subprocess.CalledProcessError as exc:
                return print_error(f"the experiment run failed ({exc}); see its output above.")
        md = write_tables(name, args.uri, args.out, args.overrides, args.allow_synthetic)
        print(f"hybridwbc: wrote {md}", flush=True)
    if args.timing:
        path = write_timing(args.experiments, args.uri, args.out, args.overrides, args.allow_synthetic)
        print(f"hybridwbc: wrote {path}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
