"""Entry point ``python -m hybridwbc.compose``: attach a saved ALL/HEM head to a saved cascade.

A thin shim: the implementation is :mod:`hybridwbc.serve.compose` (see its docstring for the arguments).
"""

from hybridwbc.serve.compose import main

__all__ = ["main"]

if __name__ == "__main__":
    raise SystemExit(main())
