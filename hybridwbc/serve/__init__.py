"""The serving wing: the saved, hash-checked model folder and everything that uses it.

:mod:`~hybridwbc.serve.pipeline` (``WBCPipeline``: featurizer + fitted classifier, saved and
verified), :mod:`~hybridwbc.serve.pyfunc` (the same as an MLflow pyfunc model; registry),
:mod:`~hybridwbc.serve.pyfunc_entry` (MLflow's model-from-code file),
:mod:`~hybridwbc.serve.predict` (``python -m hybridwbc.predict``),
:mod:`~hybridwbc.serve.compose` (``python -m hybridwbc.compose``) and
:mod:`~hybridwbc.serve.prefit` (a saved model as a fitted stage). Estimators never import it.
"""
