"""The reporting wing: figures and tables, written from results (never computing them).

:mod:`~hybridwbc.report.plots` (confusion matrix, ROC, error gallery; the shared figure helpers),
:mod:`~hybridwbc.report.training` (CNN training curves), :mod:`~hybridwbc.report.calibration`
(reliability and risk-coverage figures), :mod:`~hybridwbc.report.overlay` (segmentation
overlays), :mod:`~hybridwbc.report.summary` (a run's summary lines),
:mod:`~hybridwbc.report.tables` (``results.md`` from the MLflow store), :mod:`~hybridwbc.report.card`
(``MODEL_CARD.md`` of a saved model) and :mod:`~hybridwbc.report.paper` (``python -m hybridwbc.report``:
methods paragraph, tables in Markdown and LaTeX, reporting checklist).
"""
