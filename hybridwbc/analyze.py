"""Entry point ``python -m hybridwbc.analyze``: find, classify and count the white cells of smear fields.

A thin shim: the implementation is :mod:`hybridwbc.serve.analyze` (see its docstring for the arguments).
"""

from hybridwbc.serve.analyze import main

__all__ = ["main"]

if __name__ == "__main__":
    raise SystemExit(main())
