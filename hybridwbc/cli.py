"""What every command-line entry point shares: one line on stderr for an error, and the exit status.

``python -m hybridwbc.run``, ``.predict``, ``.compose``, ``.tables``, ``.serving`` and ``.data``
report a :class:`~hybridwbc.errors.HybridWBCError` as one line, ``hybridwbc: error: <message>``
(the message says what is wrong, what was expected and the fix), and exit with status 1; no
traceback. SIGTERM inside a command ends its MLflow runs ``FAILED``
(:func:`hybridwbc.tracking.sigterm_fails_runs`). At import this module reads nothing but
:mod:`hybridwbc.errors`, so the ground floor (:mod:`hybridwbc.data`) can use it.
"""

from __future__ import annotations

import sys
from typing import Callable

from hybridwbc.errors import ConfigError, HybridWBCError

__all__ = ["print_error", "run_cli", "parse_key_values"]


def print_error(message) -> int:
    """Print ``hybridwbc: error: <message>`` on stderr; returns 1, the exit status of a failed command."""
    print(f"hybridwbc: error: {message}", file=sys.stderr, flush=True)
    return 1


def run_cli(command: Callable[[], int | None], *also: type[BaseException]) -> int:
    """Run ``command()``; a :class:`HybridWBCError` (or one of ``also``) becomes :func:`print_error`'s line.

    Returns
    -------
    int
        ``command()``'s return value (``None`` counts as 0), or 1 after an error.
    """
    from hybridwbc.tracking import sigterm_fails_runs

    try:
        with sigterm_fails_runs():  # SIGTERM ends the command's MLflow runs FAILED (exit status 143)
            status = command()
    except (HybridWBCError, *also) as exc:
        return print_error(exc)
    return 0 if status is None else int(status)


def parse_key_values(argv: list[str], keys: set[str], required: set[str], usage: str, doc: str | None = None,
                     ) -> dict[str, str]:
    """Parse ``key=value`` command-line arguments (``predict``, ``analyze``, ``verify``, ``compose``, the Spark
    scorer) into a dict of strings; ``-h`` or ``--help`` prints ``doc`` and exits with status 0.

    Raises
    ------
    ConfigError
        On an argument without ``=``, a key not in ``keys``, or a missing ``required`` key; the message names
        the argument and the expected keys and ends with ``usage``.
    """
    args: dict[str, str] = {}
    for a in argv:
        if a in ("-h", "--help"):
            print(doc or usage)
            raise SystemExit(0)
        k, sep, v = a.partition("=")
        if not sep:
            raise ConfigError(f"Argument {a!r} is not key=value (keys: {sorted(keys)}). {usage}")
        if k not in keys:
            raise ConfigError(f"Unknown argument {k!r}: it is not one of {sorted(keys)}. {usage}")
        args[k] = v
    missing = required - set(args)
    if missing:
        raise ConfigError(f"Missing argument(s) {sorted(missing)}. {usage}")
    return args
