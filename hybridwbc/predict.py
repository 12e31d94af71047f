"""Predict image files with a saved model.

    python -m hybridwbc.predict model=<model dir> input=<folder, file or glob> output=<file.csv> [n_jobs=1]

Writes one row per image: ``path``, ``label``, ``confidence``, one ``p_<class>``
column per class, and ``status`` / ``error``. An image that cannot be read or
holds no cell gets ``status=error`` with the reason; it never stops the batch.
"""

from __future__ import annotations

import glob
import os
import sys
from pathlib import Path

from hybridwbc.errors import ConfigError, DataLayoutError, HybridWBCError

__all__ = ["main", "collect_inputs", "parse_args", "predict"]

USAGE = ("usage: python -m hybridwbc.predict model=<model dir> input=<folder, file or glob> "
         "output=<file.csv> [n_jobs=1]")
_KEYS = {"model", "input", "output", "n_jobs"}


def parse_args(argv: list[str]) -> dict:
    """Parse ``key=value`` arguments.

    Raises
    ------
    ConfigError
        On an unknown key, a missing required key, or an argument without ``=``.
    """
    args: dict[str, str] = {}
    for a in argv:
        if a in ("-h", "--help"):
            print(__doc__)
            raise SystemExit(0)
        if "=" not in a:
            raise ConfigError(f"Argument {a!r} is not key=value. {USAGE}")
        k, v = a.split("=", 1)
        if k not in _KEYS:
            raise ConfigError(f"Unknown argument {k!r}. Expected one of {sorted(_KEYS)}. {USAGE}")
        args[k] = v
    missing = {"model", "input", "output"} - set(args)
    if missing:
        raise ConfigError(f"Missing argument(s) {sorted(missing)}. {USAGE}")
    try:
        args["n_jobs"] = int(args.get("n_jobs", 1))
    except ValueError as exc:
        raise ConfigError(f"n_jobs must be an integer; received {args['n_jobs']!r}.") from exc
    return args


def collect_inputs(spec: str) -> list[str]:
    """Image paths named by a folder (searched recursively), a file, or a glob pattern.

    Raises
    ------
    DataLayoutError
        If nothing matches, or a folder holds no image files.
    """
    from hybridwbc.data.io import IMAGE_SUFFIXES
    from hybridwbc.data.manifest import _walk_images

    p = Path(spec).expanduser()
    if p.is_dir():
        found = [str(x) for x in _walk_images(p, [])]
        if not found:
            raise DataLayoutError(
                f"Input folder {spec!r} holds no image files ({', '.join(IMAGE_SUFFIXES)}). "
                "Fix: point input= at a folder of cell images, one image file, or a glob."
            )
        return found
    if p.is_file() or p.is_symlink():
        return [str(p)]
    matches = sorted(m for m in glob.glob(os.path.expanduser(spec), recursive=True) if os.path.isfile(m))
    if not matches:
        raise DataLayoutError(
            f"Input {spec!r} is not a file or folder and matches no files as a glob. "
            "Fix: check the path (quote globs so the shell leaves them alone)."
        )
    return matches


def predict(model: str, input: str, output: str, n_jobs: int = 1):
    """Load ``model``, predict every image named by ``input`` and write ``output`` (CSV).

    Returns
    -------
    DataFrame
        What was written.
    """
    from hybridwbc.pipeline import WBCPipeline

    pipe = WBCPipeline.load(model)
    paths = collect_inputs(input)
    df = pipe.predict_paths(paths, n_jobs=n_jobs, progress=len(paths) > 20)
    out = Path(output)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    df.to_csv(tmp, index=False)
    os.replace(tmp, out)
    n_err = int((df["status"] != "ok").sum())
    print(f"hybridwbc: predicted {len(df) - n_err} of {len(df)} images -> {out}"
          + (f" ({n_err} errors, see the status/error columns)" if n_err else ""), flush=True)
    return df


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point; returns the exit status."""
    try:
        args = parse_args(sys.argv[1:] if argv is None else argv)
        predict(**args)
    except HybridWBCError as exc:
        print(f"hybridwbc: error: {exc}", file=sys.stderr, flush=True)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
