"""A paper-ready report of one experiment, written from the MLflow store.

    python -m hybridwbc.report <experiment> [...] [--run RUN_ID] [--uri URI] [--out reports] [--allow-synthetic]

For each experiment (or the one run given by ``--run``), :func:`write_report` writes into
``<out>/<experiment>/``:

- ``report.md``: a methods paragraph (data, splits, models, hyperparameter search, metrics, CIs, software
  versions), the result tables of :mod:`hybridwbc.report.tables`, and a reporting checklist
  (:data:`CHECKLIST`: CLAIM 2024 / TRIPOD+AI topics) filled where the run records the answer and marked
  **AUTHORS** where only the authors know it;
- ``tables.tex``: the same result tables in LaTeX (``booktabs``).

The run is the one ``make tables`` would publish (:func:`~hybridwbc.report.tables.tabled_run`: the current
config and code, real data; ``--allow-synthetic`` for demos), or ``--run``. Every number comes from the run.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import pandas as pd

from hybridwbc.cli import run_cli
from hybridwbc.report.card import protocol_sentence
from hybridwbc.report.tables import (
    COLUMNS,
    VARIANTS,
    collect_rows,
    format_cell,
    format_markdown,
    load_mcnemar,
    method_runs,
    portable,
    run_timing,
    store_client,
    tabled_run,
)

__all__ = ["CHECKLIST", "methods_paragraph", "search_grids", "format_latex", "checklist", "write_report", "main"]

AUTHORS = "**AUTHORS**: not recorded by the framework"


def _config(run) -> dict:
    """The run's resolved ``config.yaml`` artifact as a dict (``{}`` if the run has none)."""
    import mlflow
    import yaml

    try:
        return yaml.safe_load(mlflow.artifacts.load_text(f"runs:/{run.info.run_id}/config.yaml")) or {}
    except Exception:  # noqa: BLE001 - a run logged without its config: the paragraph says less
        return {}


def search_grids(node, path: str = "") -> list:
    """``(where, grid)`` of every ``param_grid`` in a classifier's config tree (a GridSearchCV node or
    ``search``), depth first."""
    out = []
    if isinstance(node, dict):
        if isinstance(node.get("param_grid"), dict):
            out.append((path or "estimator", node["param_grid"]))
        for k, v in node.items():
            if k != "param_grid":
                out += search_grids(v, f"{path}.{k}" if path else str(k))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            out += search_grids(v, f"{path}[{i}]")
    return out


def _methods_of(cfg: dict) -> dict:
    return dict(cfg.get("methods") or {}) or ({cfg["classifier"]["name"]: cfg["classifier"]} if cfg.get("classifier")
                                              else {})


def _models_sentence(cfg: dict, params: dict) -> str:
    methods = _methods_of(cfg)
    feats = cfg.get("features", {}).get("name", params.get("features.name", "?"))
    parts = []
    for name, m in methods.items():
        grids = search_grids(m.get("estimator")) + ([("search", m["search"]["param_grid"])]
                                                      if (m.get("search") or {}).get("param_grid") else [])
        grid = "; ".join(", ".join(f"{k} in {v}" for k, v in g.items()) for _, g in grids)
        parts.append(f"`{name}` (classifier `{m.get('name', name)}`, input {m.get('input', 'features')}"
                     + (f"; grid: {grid}" if grid else "; fixed hyperparameters, no search") + ")")
    search = ("Hyperparameters were chosen by grouped, stratified inner cross-validation on the training rows of "
              "each split only, scored by balanced accuracy." if any("grid:" in p for p in parts) else "")
    return (f"Features: `{feats}`. Methods: " + "; ".join(parts) + ". " + search).strip()


def methods_paragraph(run, cfg: dict, children: list) -> str:
    """The methods paragraph of a run (Markdown), from its params, tags, config and its methods' metrics."""
    tags, params = run.data.tags, run.data.params
    data = cfg.get("data", {})
    m = children[0].data.metrics if children else run.data.metrics
    subjects = tags.get("ci.resampling") == "subjects"
    real = tags.get("data.source") == "real"
    source = "the real" if real else "the built-in SYNTHETIC"
    n_img, n_skip = m.get("n_images", run.data.metrics.get("n_images")), m.get("n_skipped")
    data_s = (f"We used {source} data set `{data.get('name', params.get('data.name', '?'))}`"
              + (f" ({data['acquisition']})" if data.get("acquisition") and real else "")
              + (f"; licence {data['licence']}" if data.get("licence") and real else "")
              + (f": {n_img:.0f} images, of which {n_skip:.0f} were skipped as unreadable or with no cell found"
                 if n_img is not None and n_skip is not None else "")
              + f" (manifest hash `{tags.get('data.manifest_hash', '?')}`).")
    split = "Evaluation: " + protocol_sentence(params, subjects)
    metrics = ("Metrics: balanced accuracy (the ranking metric, on all test rows with a skipped row counted "
               "wrong), accuracy, macro and weighted F1" + (", sensitivity, specificity and ROC AUC" if
                                                             "roc_auc" in m else "")
               + "; calibration by expected calibration error and Brier score; intervals are 95% bootstrap "
               f"percentile intervals resampling {'subjects' if subjects else 'images'}"
               + ("; the best method was compared with the runner-up by an exact McNemar test on paired "
                  "predictions" if tags.get("role") == "comparison" else "") + ".")
    versions = ", ".join(f"{k[8:]} {v}" for k, v in sorted(tags.items()) if k.startswith("version.") and v != "absent")
    software = (f"Software: {versions}; code at git commit `{tags.get('git_commit', '?')}` (code version "
                f"`{tags.get('code_version', '?')}`), seed {params.get('seed', '?')}.")
    return " ".join([data_s, split, _models_sentence(cfg, params), metrics, software])


def _tex(text: str) -> str:
    return (str(text).replace("\\", r"\textbackslash{}").replace("_", r"\_").replace("%", r"\%")
            .replace("&", r"\&").replace("#", r"\#"))


def format_latex(experiment: str, df: pd.DataFrame) -> str:
    """The result tables as LaTeX ``table`` environments (``booktabs``), one per reported variant."""
    out = [f"% {experiment}: written by python -m hybridwbc.report from the MLflow store (needs booktabs)"]
    for prefix, _, heading in VARIANTS:
        part = df[df["variant"] == (prefix.rstrip("_") or "cell")] if "variant" in df.columns else df.iloc[:0]
        if part.empty:
            continue
        cols = COLUMNS + [k for k in ("sensitivity", "specificity", "roc_auc") if k in part and part[k].notna().any()]
        out += ["\\begin{table}[t]", "\\centering", "\\small",
                f"\\caption{{{_tex(experiment)}: {_tex(heading)}. Value [95\\% bootstrap CI].}}",
                "\\begin{tabular}{l" + "c" * len(cols) + "}", "\\toprule",
                "Method & " + " & ".join(_tex(c.replace("_", " ")) for c in cols) + " \\\\", "\\midrule"]
        out += [_tex(row["method"]) + " & " + " & ".join(_tex(format_cell(row, c)) for c in cols) + " \\\\"
                for _, row in part.iterrows()]
        out += ["\\bottomrule", "\\end{tabular}", "\\end{table}", ""]
    return "\n".join(out)


#: The reporting items the framework can answer, by checklist topic (CLAIM 2024 / TRIPOD+AI); item numbers are
#: left to the authors, who fill in the official checklist.
CHECKLIST = ("data sources", "eligibility and exclusions", "reference standard (labels)", "data partitions",
             "leakage controls", "model", "hyperparameter search", "metrics", "uncertainty (CIs)",
             "comparison of methods", "calibration", "failure analysis", "external validation", "sample size",
             "software and code", "ethics, consent, funding, intended use")


def _answers(run, cfg: dict, m: dict) -> dict:
    tags, params = run.data.tags, run.data.params
    subjects = tags.get("ci.resampling") == "subjects"
    data = cfg.get("data", {})
    return {
        "data sources": (f"`{data.get('name', '?')}`; {data.get('citation') or AUTHORS}" if tags.get("data.source")
                         == "real" else "the built-in synthetic cells: no real data (a demonstration, not a result)"),
        "eligibility and exclusions": f"{m.get('n_skipped', 0):.0f} images skipped (unreadable or no cell found), "
                                      "each listed with its reason in `skipped.csv`",
        "reference standard (labels)": "labels as released with the data set (folder or file names); " + AUTHORS
                                       + " (who labelled, how)",
        "data partitions": protocol_sentence(params, subjects),
        "leakage controls": ("splits grouped by " + ("subject" if subjects else "image content hash (exact duplicates "
                             "never straddle a split)") + f"; {m.get('n_cross_split_duplicates', 0):.0f} duplicates "
                             "across splits; hyperparameters, calibration and early stopping use training rows only"),
        "model": _models_sentence(cfg, params),
        "hyperparameter search": "grouped inner cross-validation on training rows (grids in the methods paragraph)",
        "metrics": "balanced accuracy, accuracy, macro/weighted F1 (+ sensitivity, specificity, ROC AUC if binary)",
        "uncertainty (CIs)": f"95% bootstrap percentile intervals, {params.get('eval.n_bootstrap', '?')} resamples of "
                             f"{'subjects' if subjects else 'images'}",
        "comparison of methods": ("exact McNemar test, best vs runner-up" if tags.get("role") == "comparison"
                                  else "single method: none"),
        "calibration": (f"ECE {m['ece']:.3f}, Brier {m['brier']:.3f} (held-out predictions); reliability.png"
                        if "ece" in m and "brier" in m else AUTHORS),
        "failure analysis": "per-class report, most confident errors (errors_most_confident.png), share outside "
                            f"the applicability domain {m.get('ood_share_test', float('nan')):.3f}",
        "external validation": AUTHORS + ": this run evaluates on splits of one development data set only",
        "sample size": f"{m.get('n_images', run.data.metrics.get('n_images', float('nan'))):.0f} images; "
                       "justification: " + AUTHORS,
        "software and code": f"git commit `{tags.get('git_commit', '?')}`, versions in the methods paragraph",
        "ethics, consent, funding, intended use": AUTHORS,
    }


def checklist(run, cfg: dict, children: list) -> str:
    """The reporting checklist (Markdown table): each :data:`CHECKLIST` topic, filled or marked for the authors."""
    m = children[0].data.metrics if children else run.data.metrics
    answers = _answers(run, cfg, m)
    lines = ["| topic (CLAIM 2024 / TRIPOD+AI) | status | what the run records |", "|---|---|---|"]
    for topic in CHECKLIST:
        text = " ".join(str(answers[topic]).split())
        status = "for the authors" if text.startswith(AUTHORS) else ("partly" if AUTHORS in text else "filled")
        lines.append(f"| {topic} | {status} | {text.replace('|', '/')} |")
    return "\n".join(lines)


def _method_runs_best_first(client, run) -> list:
    best = run.data.tags.get("best_method")
    return sorted(method_runs(client, run), key=lambda r: r.data.params.get("method") != best)


def write_report(experiment: str | None, uri: str, out: str | os.PathLike, run_id: str | None = None,
                 overrides=(), allow_synthetic: bool = False) -> Path:
    """Write ``report.md`` and ``tables.tex`` under ``<out>/<experiment>/``; the path of ``report.md``.

    ``run_id`` reports that run (its experiment tag names the folder); otherwise the run ``make tables``
    would publish for ``experiment``.

    Raises
    ------
    DataLayoutError
        If the store holds no run of the experiment's current identity, or no run ``run_id``.
    """
    from hybridwbc.errors import DataLayoutError
    from hybridwbc.tracking import quiet_third_party

    client = store_client(uri)
    quiet_third_party()
    if run_id:
        try:
            run = client.get_run(run_id)
        except Exception as exc:  # noqa: BLE001 - MLflow raises its own exception for an unknown id
            raise DataLayoutError(f"No run {run_id!r} in the MLflow store {uri}: pass the id the run's summary "
                                  "printed (or the UI shows), and the store it was made in (--uri).") from exc
        experiment = run.data.tags.get("experiment") or experiment or run.info.experiment_id
    else:
        try:
            run = tabled_run(client, experiment, uri, overrides, allow_synthetic)
        except DataLayoutError as exc:
            raise DataLayoutError(f"{exc} Or report any run by its id: python -m hybridwbc.report --run <run id> "
                                  f"--uri {uri} (make report RUN=<run id>).") from exc
    cfg, children = _config(run), _method_runs_best_first(client, run)
    df = collect_rows(client, run)
    tags = run.data.tags
    roots = [str(Path(tags["data.root"]).parent)] if tags.get("data.root") else []
    tables = format_markdown(experiment, run, df, load_mcnemar(client, run), run_timing(client, run),
                             cfg.get("notes") or ())
    text = "\n".join([f"# {experiment}: report", "",
                      f"Written by `python -m hybridwbc.report` from MLflow run `{run.info.run_id}` "
                      f"({run.info.run_name}). Check every sentence before it goes into a paper.", "",
                      "## Methods", "", portable(methods_paragraph(run, cfg, children), roots), "",
                      "## Results", "", tables.split("\n", 1)[1],
                      "## Reporting checklist (CLAIM 2024 / TRIPOD+AI)", "",
                      "Topics the framework can answer are filled from the run; the rest are marked **AUTHORS**. "
                      "Copy the answers into the official checklists, which number the items.", "",
                      portable(checklist(run, cfg, children), roots), ""])
    folder = Path(out) / experiment
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "report.md").write_text(text)
    (folder / "tables.tex").write_text(format_latex(experiment, df))
    return folder / "report.md"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m hybridwbc.report", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("experiments", nargs="*", help="experiments whose tabled run to report")
    parser.add_argument("--run", dest="run_id", help="report this MLflow run instead (any run, by id)")
    parser.add_argument("--uri", default="sqlite:///mlflow.db", help="MLflow store (default: ./mlflow.db)")
    parser.add_argument("--out", default="reports", help="folder of the reports (default: reports/)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="a config override the reported runs were made with")
    parser.add_argument("--allow-synthetic", action="store_true",
                        help="report runs on the built-in synthetic data (demos and tests only; never publish)")
    args = parser.parse_args(argv)
    if not args.experiments and not args.run_id:
        parser.error("name an experiment (e.g. all_hem_compare) or pass --run <MLflow run id>")
    return run_cli(lambda: _write(args))


def _write(args) -> int:
    targets = args.experiments or [None]
    for name in targets:
        path = write_report(name, args.uri, args.out, args.run_id, args.overrides, args.allow_synthetic)
        print(f"hybridwbc: wrote {path} and {path.with_name('tables.tex')}", flush=True)
    return 0
