"""The reporting wing: figures and tables, written from results (never computing them).

:mod:`~hybridwbc.report.plots` (confusion matrix, ROC, error gallery; the shared figure helpers),
:mod:`~hybridwbc.report.training` (CNN training curves), :mod:`~hybridwbc.report.calibration`
(reliability and risk-coverage figures), :mod:`~hybridwbc.report.overlay` (segmentation
overlays), :mod:`~hybridwbc.report.summary` (a run's summary lines) and
:mod:`~hybridwbc.report.tables` (``results.md`` from the MLflow store).
"""
