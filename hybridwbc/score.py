"""Entry point ``python -m hybridwbc.score``: batch scoring on Spark (see :mod:`hybridwbc.scale.spark`)."""

from hybridwbc.scale.spark import main

__all__ = ["main"]

if __name__ == "__main__":
    raise SystemExit(main())
