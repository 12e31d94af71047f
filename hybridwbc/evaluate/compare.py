"""A comparison of methods evaluated on the same rows and splits: the ranking and a McNemar test.

:func:`compare_methods` ranks the methods by balanced accuracy, writes ``comparison.csv`` (one
row per method, with its MLflow run id) and ``mcnemar.json`` (exact McNemar test of the best
against the runner-up, on their paired predictions).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from hybridwbc.evaluate.metrics import mcnemar

__all__ = ["compare_methods"]


def compare_methods(results: dict, run_dir) -> dict:
    """Rank ``results`` (name -> ``{"metrics", "run_id", "pred"}``) and test the best against the runner-up.

    Returns
    -------
    dict
        ``best``, ``runner_up`` and the test's ``b``, ``c``, ``p_value``; ``comparison.csv`` and
        ``mcnemar.json`` are written to ``run_dir``.
    """
    run_dir = Path(run_dir)
    ranked = sorted(results, key=lambda n: -results[n]["metrics"]["balanced_accuracy"])
    rows = []
    for n in ranked:
        r = {"method": n, "run_id": results[n]["run_id"]}
        r.update({k: v for k, v in results[n]["metrics"].items()})
        rows.append(r)
    best, second = ranked[0], ranked[1]
    a, b = results[best]["pred"], results[second]["pred"]
    assert np.array_equal(a.rows, b.rows), "methods were evaluated on different rows"
    test = mcnemar(a.y_true, a.y_pred, b.y_pred)
    pd.DataFrame(rows).to_csv(run_dir / "comparison.csv", index=False)
    out = {"best": best, "runner_up": second, **test}
    (run_dir / "mcnemar.json").write_text(json.dumps(out, indent=2))
    return out
