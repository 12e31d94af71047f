"""A comparison of methods evaluated on the same rows and splits: the ranking and a McNemar test.

:func:`compare_methods` ranks the methods by balanced accuracy on all test rows (a row a method
skipped, e.g. no cell found, counts wrong: a method cannot rank higher by scoring fewer cells),
writes ``comparison.csv`` (one row per method, with its MLflow run id) and ``mcnemar.json`` (exact
McNemar test of the best against the runner-up, on their paired predictions over all test rows).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from hybridwbc.errors import DataLayoutError
from hybridwbc.evaluate.metrics import mcnemar
from hybridwbc.evaluate.protocol import SKIPPED

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
    ranked = sorted(results, key=lambda n: -results[n]["metrics"].get("all_balanced_accuracy",
                                                                        results[n]["metrics"]["balanced_accuracy"]))
    rows = []
    for n in ranked:
        r = {"method": n, "run_id": results[n]["run_id"]}
        r.update({k: v for k, v in results[n]["metrics"].items()})
        rows.append(r)
    best, second = ranked[0], ranked[1]
    a, b = (_all_rows(results[n]["pred"]) for n in (best, second))
    if not np.array_equal(a[0], b[0]):
        raise DataLayoutError(
            f"Methods {best!r} and {second!r} were evaluated on different test rows; a comparison needs every "
            "method on the same splits. This is a bug in the evaluation protocol."
        )
    y_true = np.where(a[1] == None, b[1], a[1])  # noqa: E711 - a row A skipped takes its label from B
    test = mcnemar(y_true, a[2], b[2])
    pd.DataFrame(rows).to_csv(run_dir / "comparison.csv", index=False)
    out = {"best": best, "runner_up": second, **test}
    (run_dir / "mcnemar.json").write_text(json.dumps(out, indent=2))
    return out


def _all_rows(pred) -> tuple:
    """``(rows, y_true, y_pred)`` over all test rows, sorted by row; skipped rows predicted :data:`SKIPPED`."""
    rows = np.concatenate([pred.rows, pred.skipped])
    y_true = np.concatenate([pred.y_true, np.full(len(pred.skipped), None, dtype=object)])
    y_pred = np.concatenate([pred.y_pred, np.full(len(pred.skipped), SKIPPED, dtype=object)])
    order = np.argsort(rows, kind="stable")
    return rows[order], y_true[order], y_pred[order]
