"""Entry point ``python -m hybridwbc.report``: a paper-ready report from the MLflow store
(:mod:`hybridwbc.report.paper`; see its docstring for the arguments)."""

from hybridwbc.report.paper import main

if __name__ == "__main__":
    raise SystemExit(main())
