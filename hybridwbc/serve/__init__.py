"""The serving wing: the saved, hash-checked model folder and everything that uses it.

:mod:`~hybridwbc.serve.pipeline` (``WBCPipeline``: featurizer + fitted classifier, saved and
verified), :mod:`~hybridwbc.serve.pyfunc` (the same as an MLflow pyfunc model; registry),
:mod:`~hybridwbc.serve.pyfunc_entry` (MLflow's model-from-code file),
:mod:`~hybridwbc.serve.predict` (``python -m hybridwbc.predict``),
:mod:`~hybridwbc.serve.compose` (``python -m hybridwbc.compose``),
:mod:`~hybridwbc.serve.prefit` (a saved model as a fitted stage), and the whole-field analysis:
:mod:`~hybridwbc.serve.analyze` (``python -m hybridwbc.analyze``), :mod:`~hybridwbc.serve.fields` (one field:
read, locate, crop; classify crops) and :mod:`~hybridwbc.serve.verify` (``python -m hybridwbc.verify``).
Estimators never import it.
"""
