"""Entry point ``python -m hybridwbc.tables``: result tables written from the MLflow store.

A thin shim: the implementation is :mod:`hybridwbc.report.tables` (see its docstring for the arguments).
"""

from hybridwbc.report.tables import main

__all__ = ["main"]

if __name__ == "__main__":
    raise SystemExit(main())
