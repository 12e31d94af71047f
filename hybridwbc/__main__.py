"""``hybridwbc <command> [args]`` (also ``python -m hybridwbc``): one entry point for the daily commands.

Each command is the module a researcher would otherwise call with ``python -m``, imported only when it
is used (so ``hybridwbc --help`` starts in a blink):

    hybridwbc run +experiment=all_hem        python -m hybridwbc.run ...      (Hydra overrides)
    hybridwbc predict model=... input=...    python -m hybridwbc.predict ...
    hybridwbc analyze ...                    python -m hybridwbc.analyze ...
    hybridwbc tables all_hem_compare         python -m hybridwbc.tables ...
    hybridwbc check ../shared/data           python -m hybridwbc.data check ...
    hybridwbc report --run <id>              python -m hybridwbc.report ...

``hybridwbc <command> --help`` shows that command's own help.
"""

from __future__ import annotations

import importlib
import sys

from hybridwbc.cli import print_error

__all__ = ["COMMANDS", "main"]

#: command -> (module, what it does, arguments put before the user's)
COMMANDS = {
    "run": ("hybridwbc.run", "run an experiment: featurize, fit, evaluate, save, track (Hydra overrides)", ()),
    "predict": ("hybridwbc.serve.predict", "label images with a saved model (model=... input=... output=...)", ()),
    "analyze": ("hybridwbc.analyze", "analyse the runs of an experiment from the MLflow store", ()),
    "tables": ("hybridwbc.report.tables", "write experiments/<name>/results.md from the MLflow store", ()),
    "check": ("hybridwbc.data.__main__", "report what a data root holds, per data set and class", ("check",)),
    "report": ("hybridwbc.report.paper", "methods paragraph, tables (Markdown, LaTeX) and checklist of a run", ()),
}


def _usage() -> str:
    width = max(map(len, COMMANDS))
    lines = ["usage: hybridwbc <command> [args]   (hybridwbc <command> --help for its own arguments)", "",
             "commands:"]
    lines += [f"  {name:<{width}}  {what}" for name, (_, what, _) in COMMANDS.items()]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Dispatch ``argv`` (default ``sys.argv[1:]``) to the command's ``main``; returns the exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(_usage())
        return 0 if argv else 2
    name, rest = argv[0], argv[1:]
    if name not in COMMANDS:
        return print_error(f"unknown command {name!r}; the commands are {', '.join(COMMANDS)} "
                           "(hybridwbc --help lists them).")
    module_name, _, before = COMMANDS[name]
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name != module_name:
            raise
        return print_error(f"`hybridwbc {name}` needs the module {module_name}, which this installation lacks; "
                           "update hybridwbc (git pull, then pip install -e .).")
    if name == "run":  # a Hydra app: it reads its overrides from sys.argv
        sys.argv = [f"hybridwbc {name}", *rest]
        status = module.main()
        return 0 if status is None or isinstance(status, float) else int(status)
    status = module.main([*before, *rest])
    return 0 if status is None else int(status)


if __name__ == "__main__":
    raise SystemExit(main())
