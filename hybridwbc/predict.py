"""Entry point ``python -m hybridwbc.predict``: predict image files with a saved model.

A thin shim: the implementation is :mod:`hybridwbc.serve.predict` (see its docstring for the arguments).
"""

from hybridwbc.serve.predict import main

__all__ = ["main"]

if __name__ == "__main__":
    raise SystemExit(main())
