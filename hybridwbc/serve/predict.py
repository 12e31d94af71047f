"""Predict image files with a saved model.

    python -m hybridwbc.predict model=<model> input=<folder, file, glob or CSV> output=<file.csv>
                                [n_jobs=-1] [min_confidence=0] [max_pixels=64000000] [explain=false]

``model`` is a run's ``model/`` folder (the hash-checked WBCPipeline), a pyfunc
model folder (:mod:`hybridwbc.serve.pyfunc`; loaded through ``mlflow.pyfunc`` after
its hashes are checked, the same object ``mlflow models serve`` serves), or an
MLflow model URI (``models:/<name>/<version>``, ``runs:/<run id>/pyfunc``;
``MLFLOW_TRACKING_URI`` names the store, default ``sqlite:///mlflow.db``).

``input`` is a folder (searched recursively), one image file, a quoted glob, or
a CSV manifest with a ``path`` column (relative paths resolve against the CSV's
folder; a path leaving that folder becomes an error row).

Writes one row per image: ``path``, ``label``, ``confidence``, one ``p_<class>``
column per class, and ``status`` / ``error``. An image that cannot be read or
holds no cell gets ``status=error`` with the reason; it never stops the batch.
A symlink loop or a folder that cannot be listed, met while walking ``input``,
is an error row too. An image unlike the model's training cells (outside its
applicability domain) gets ``status=out_of_domain`` and the label ``uncertain``,
with its probabilities; the summary line counts those rows.
``n_jobs``: worker processes that read and featurize the images; ``-1`` (the
default) uses every core this process may run on, ``n_jobs=1`` this process only.
Below ``min_confidence`` the label is ``uncertain`` (the probabilities are still
written): send those cells to a human. ``max_pixels`` bounds ``width * height``
of any image decoded. File names that are not valid UTF-8 are written with
backslash escapes (``\\xe9``).
``explain=true`` (models holding a CNN) also writes a Grad-CAM heat map per answered image, over the
image with the segmentation outline, into ``<output stem>_heatmaps/``, and its path in a ``heatmap`` column
(:mod:`hybridwbc.serve.heatmaps`).
"""

from __future__ import annotations

import glob
import os
import re
import sys
from pathlib import Path

from hybridwbc.cli import parse_key_values, run_cli
from hybridwbc.data.atomic import atomic_path
from hybridwbc.errors import ConfigError, DataLayoutError

__all__ = ["main", "collect_inputs", "collect_rows", "load_model", "parse_args", "predict"]

USAGE = ("usage: python -m hybridwbc.predict model=<model dir, pyfunc dir or models:/ URI> "
         "input=<folder, file, glob or CSV> output=<file.csv> [n_jobs=-1] [min_confidence=0] [max_pixels=64000000] "
         "[explain=false]")
_KEYS = {"model", "input", "output", "n_jobs", "min_confidence", "max_pixels", "explain"}


def parse_args(argv: list[str]) -> dict:
    """Parse ``key=value`` arguments.

    Raises
    ------
    ConfigError
        On an unknown key, a missing required key, or an argument without ``=``.
    """
    args = parse_key_values(argv, _KEYS, {"model", "input", "output"}, USAGE, __doc__)
    from hybridwbc.serve.pipeline import check_max_pixels, check_min_confidence
    from hybridwbc.serve.workers import resolve_n_jobs

    args["n_jobs"] = resolve_n_jobs(args.get("n_jobs"))

    args["min_confidence"] = check_min_confidence(args.get("min_confidence", 0.0))
    if "max_pixels" in args:
        args["max_pixels"] = check_max_pixels(args["max_pixels"])
    if "explain" in args:
        flag = str(args["explain"]).strip().lower()
        if flag not in ("true", "false", "1", "0"):
            raise ConfigError(f"explain must be true or false; received {args['explain']!r}. {USAGE}")
        args["explain"] = flag in ("true", "1")
    return args


def collect_inputs(spec: str) -> tuple[list[str], dict[int, str]]:
    """Image paths named by a folder (searched recursively), a file, or a glob pattern.

    Returns
    -------
    paths : list of str
        One per row: the images found, then what a folder walk could not take (a symlink loop,
        a folder that cannot be listed, a broken or looping link), so that each is reported.
    errors : dict of int to str
        Row -> reason, for the rows of the walk's problems.

    Raises
    ------
    DataLayoutError
        If nothing matches, or a folder holds no image files and no problem to report.
    """
    from hybridwbc.data.io import IMAGE_SUFFIXES
    from hybridwbc.data.manifest import walk_images

    p = Path(spec).expanduser()
    if p.is_dir():
        problems: list[dict] = []
        found = [str(x) for x in walk_images(p, problems, check_names=False, report_other=False)]
        if not found and not problems:
            raise DataLayoutError(
                f"Input folder {spec!r} holds no image files ({', '.join(IMAGE_SUFFIXES)}). "
                "Fix: point input= at a folder of cell images, one image file, or a glob."
            )
        errors = {len(found) + k: f"ImageReadError: {r['reason']}" for k, r in enumerate(problems)}
        return found + [r["path"] for r in problems], errors
    if p.is_file() or p.is_symlink():
        return [str(p)], {}
    matches = sorted(m for m in glob.glob(os.path.expanduser(spec), recursive=True) if os.path.isfile(m))
    if not matches:
        raise DataLayoutError(
            f"Input {spec!r} is not a file or folder and matches no files as a glob. "
            "Fix: check the path (quote globs so the shell leaves them alone)."
        )
    return matches, {}


def collect_rows(spec: str) -> tuple[list[str], dict[int, str]]:
    """Like :func:`collect_inputs`, and also reads a CSV manifest (a ``.csv`` file with a ``path`` column).

    Returns
    -------
    paths : list of str
        One per row.
    errors : dict of int to str
        Rows that are refused before reading (a CSV path outside the CSV's folder; a symlink
        loop or unreadable folder met while walking a folder).

    Raises
    ------
    DataLayoutError
        As :func:`collect_inputs`; for a CSV, if it cannot be read, lacks a
        ``path`` column, or has no rows.
    """
    p = Path(spec).expanduser()
    if not (p.is_file() and p.suffix.lower() == ".csv"):
        return collect_inputs(spec)
    import pandas as pd

    try:
        df = pd.read_csv(p, dtype=str, keep_default_na=False)
    except (OSError, ValueError, UnicodeDecodeError) as exc:
        raise DataLayoutError(f"Cannot read CSV manifest {spec!r} ({exc}). Expected a CSV with a 'path' column.") \
            from exc
    if "path" not in df.columns or not len(df):
        raise DataLayoutError(
            f"CSV manifest {spec!r} has no 'path' column or no rows (columns {list(df.columns)}, {len(df)} rows). "
            "Fix: one image path per row under a 'path' header; relative paths resolve against the CSV's folder."
        )
    base = p.parent.resolve()
    paths, errors = [], {}
    for i, raw in enumerate(df["path"].tolist()):
        q = Path(raw)
        full = q if q.is_absolute() else base / q
        paths.append(str(full))
        try:
            inside = full.resolve(strict=False).is_relative_to(base)
        except (OSError, RuntimeError) as exc:
            errors[i] = f"ImageReadError: unresolvable path ({exc})"
            continue
        if not inside:
            errors[i] = (f"ImageReadError: path outside the manifest's folder {str(base)!r}; refused. "
                         "Fix: move the image under that folder or the CSV next to the images.")
    return paths, errors


def display_path(path: str) -> str:
    """``path`` as valid UTF-8 text: bytes of a non-UTF-8 file name appear as ``\\xNN`` escapes."""
    try:
        return os.fsencode(path).decode("utf-8", "backslashreplace")
    except (TypeError, ValueError):
        return str(path)


def load_model(spec: str):
    """The model ``predict`` uses: a :class:`~hybridwbc.serve.pipeline.WBCPipeline` (``model/`` folder) or an
    ``mlflow.pyfunc`` model (a pyfunc folder, or a ``models:/`` / ``runs:/`` URI), hash-checked first.

    Raises
    ------
    ModelLoadError
        If the folder is neither, or its files do not match their recorded hashes.
    """
    from hybridwbc.serve.pipeline import WBCPipeline
    from hybridwbc.serve.pyfunc import is_pyfunc_dir, load_pyfunc

    if re.match(r"^[a-z][a-z0-9+.-]*:/", spec) and not Path(spec).exists():
        import mlflow

        from hybridwbc.errors import ModelLoadError

        mlflow.set_tracking_uri(os.environ.get("MLFLOW_TRACKING_URI", f"sqlite:///{Path.cwd() / 'mlflow.db'}"))
        try:
            local = mlflow.artifacts.download_artifacts(artifact_uri=spec)
        except Exception as exc:  # noqa: BLE001 - MLflow raises many types for an unknown URI
            raise ModelLoadError(f"Cannot download model {spec!r} ({type(exc).__name__}: {exc}). Fix: check the URI "
                                 "and MLFLOW_TRACKING_URI.") from exc
        return load_pyfunc(local)
    if is_pyfunc_dir(spec):
        return load_pyfunc(spec)
    return WBCPipeline.load(spec)


def predict(model: str, input: str, output: str, n_jobs: int | None = None, min_confidence: float = 0.0,
            max_pixels: int | None = None, explain: bool = False):
    """Load ``model``, predict every image named by ``input`` and write ``output`` (CSV).

    ``n_jobs``: worker processes for reading and featurizing; ``None`` or ``-1`` all cores, ``1`` none.
    ``explain``: also write a heat map per answered image (:func:`hybridwbc.serve.heatmaps.write_heatmaps`);
    a model without a CNN is refused before anything is predicted (``ConfigError``).

    Returns
    -------
    DataFrame
        What was written.
    """
    import pandas as pd

    from hybridwbc.serve.pipeline import OUT_OF_DOMAIN, UNCERTAIN, WBCPipeline, result_frame
    from hybridwbc.serve.workers import resolve_n_jobs

    n_jobs = resolve_n_jobs(n_jobs)
    obj = load_model(model)
    if explain:
        from hybridwbc.serve.heatmaps import require_cnn

        require_cnn(obj, model)
    paths, refused = collect_rows(input)
    good = [i for i in range(len(paths)) if i not in refused]
    todo = [paths[i] for i in good]
    if isinstance(obj, WBCPipeline):
        part = obj.predict_paths(todo, n_jobs=n_jobs, progress=len(todo) > 20, min_confidence=min_confidence,
                                 max_pixels=max_pixels)
        classes = obj.classes_
    else:
        from mlflow.exceptions import MlflowException

        params = {"min_confidence": float(min_confidence), "n_jobs": int(n_jobs)}
        if max_pixels is not None:
            params["max_pixels"] = int(max_pixels)
        try:
            part = obj.predict(pd.DataFrame({"path": pd.Series(todo, dtype=object)}), params=params)
        except MlflowException as exc:
            raise ConfigError(exc.message) from exc
        classes = [c[2:] for c in part.columns if c.startswith("p_")]
    if refused:
        import numpy as np

        df = result_frame(paths, classes, np.full((len(paths), len(classes)), np.nan), np.zeros(len(paths), bool),
                          refused)
        for col in df.columns:
            values = df[col].to_numpy(dtype=object if df[col].dtype == object else None).copy()
            values[good] = part[col].to_numpy()
            df[col] = pd.Series(values, dtype=df[col].dtype)
    else:
        df = part
    out = Path(output)
    out.parent.mkdir(parents=True, exist_ok=True)
    if explain:
        from hybridwbc.serve.heatmaps import write_heatmaps

        df["heatmap"] = write_heatmaps(obj, df, out.with_name(out.stem + "_heatmaps"))
    shown = df.assign(path=df["path"].map(display_path))
    with atomic_path(out) as tmp:
        shown.to_csv(tmp, index=False, encoding="utf-8", errors="backslashreplace")
    n_err = int((df["status"] == "error").sum())
    n_ood = int((df["status"] == OUT_OF_DOMAIN).sum())
    n_unc = int(((df["label"] == UNCERTAIN) & (df["status"] == "ok")).sum()) if min_confidence > 0 else 0
    print(f"hybridwbc: predicted {len(df) - n_err - n_ood} of {len(df)} images -> {out}"
          + (f" ({n_err} errors, see the status/error columns)" if n_err else "")
          + (f"; {n_ood} outside the model's training domain (status {OUT_OF_DOMAIN}, label '{UNCERTAIN}')"
             if n_ood else "")
          + (f"; {n_unc} below min_confidence={min_confidence} labelled '{UNCERTAIN}'" if n_unc else ""), flush=True)
    return df


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point (``python -m hybridwbc.predict``); returns the exit status."""
    def command():
        predict(**parse_args(sys.argv[1:] if argv is None else argv))

    return run_cli(command)


if __name__ == "__main__":
    raise SystemExit(main())
