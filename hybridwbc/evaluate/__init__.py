"""Evaluation: the one place where models are split, fitted, scored and given confidence intervals.

:mod:`~hybridwbc.evaluate.protocol` fits on training splits only and predicts the held-out rows;
:mod:`~hybridwbc.evaluate.metrics` scores predictions (bootstrap intervals that resample whole
subjects, McNemar, subject aggregation, binary collapse); :mod:`~hybridwbc.evaluate.method`
evaluates one method of a run and writes its files; :mod:`~hybridwbc.evaluate.compare` ranks the
methods of a comparison. ``from hybridwbc.evaluate import ...`` of the names below keeps working.
"""

from hybridwbc.evaluate.metrics import (
                                        EvaluationResult,
                                        aggregate_by_group,
                                        bootstrap_ci,
                                        classification_metrics,
                                        evaluate_predictions,
                                        mcnemar,
                                        most_confident_errors,
                                        per_class_report,
                                        to_binary,
)
from hybridwbc.evaluate.protocol import Predictions, final_model, fit_estimator, predict_out_of_sample

__all__ = [
    "Predictions", "EvaluationResult", "fit_estimator", "predict_out_of_sample", "final_model",
    "classification_metrics", "bootstrap_ci", "per_class_report", "evaluate_predictions",
    "to_binary", "mcnemar", "aggregate_by_group", "most_confident_errors",
]
