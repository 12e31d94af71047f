"""MLflow "model from code" entry point of the hybridwbc pyfunc model.

:func:`hybridwbc.serve.pyfunc.save_pyfunc` / :func:`~hybridwbc.serve.pyfunc.log_pyfunc`
store this file as the model's ``python_model.py``; MLflow runs it when it
loads the model, and it names the model class. The fitted pipeline itself is
the model's ``pipeline`` artifact, loaded (after its hashes are checked) by
:meth:`hybridwbc.serve.pyfunc.PyfuncLogic.load_context`.
"""

from mlflow.models import set_model
from mlflow.pyfunc import PythonModel

from hybridwbc.serve.pyfunc import PyfuncLogic


class WBCPyfunc(PyfuncLogic, PythonModel):
    """The hybridwbc pipeline as an MLflow ``PythonModel`` (logic in :class:`hybridwbc.serve.pyfunc.PyfuncLogic`)."""


set_model(WBCPyfunc())
