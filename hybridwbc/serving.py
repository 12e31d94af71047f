"""Entry point ``python -m hybridwbc.serving register|save``: the pipeline as an MLflow pyfunc model.

A thin shim: the implementation is :mod:`hybridwbc.serve.pyfunc` (see its docstring). ``PyfuncLogic``
is re-exported because pyfunc models logged before the layout change name it here in their
``python_model.py``.
"""

from hybridwbc.serve.pyfunc import PyfuncLogic, main

__all__ = ["PyfuncLogic", "main"]

if __name__ == "__main__":
    raise SystemExit(main())
