"""Entry point ``python -m hybridwbc.verify``: apply a reviewer's corrections to an analysis.

A thin shim: the implementation is :mod:`hybridwbc.serve.verify` (see its docstring for the arguments).
"""

from hybridwbc.serve.verify import main

__all__ = ["main"]

if __name__ == "__main__":
    raise SystemExit(main())
