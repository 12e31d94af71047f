"""The fitted pipeline as one MLflow pyfunc model: saved, logged, registered, served.

A pyfunc model folder (``save_pyfunc``/``log_pyfunc``) holds

* ``artifacts/pipeline/``: the :class:`~hybridwbc.serve.pipeline.WBCPipeline` folder
  (pre-processing, segmentation, features, backbone and classifier in one
  object, with its own SHA-256 list, checked before it is unpickled);
* ``pyfunc_entry.py``: :mod:`hybridwbc.serve.pyfunc_entry`, MLflow's "model from
  code" (no pickled Python class; it needs the ``hybridwbc`` package installed);
* ``MLmodel`` with the signature, ``input_example.json``, the requirements;
* ``hybridwbc-files.json``: the SHA-256 of every other file, checked by
  :func:`load_pyfunc` (and ``python -m hybridwbc.predict``) before MLflow loads
  anything, and again inside the model before the pipeline is loaded.

Input: a pandas DataFrame with a ``path`` column (image file paths, read on the
machine running the model) and/or an ``image`` column (the encoded bytes of a
JPEG/PNG/BMP/TIFF file, as ``bytes`` or a base64 string; a ``data:...;base64,``
prefix is accepted). Per row, a non-empty ``image`` wins; ``path`` then only
names the row. Output: one row per input row, in order, with columns ``path``,
``label``, ``confidence``, ``p_<class>`` per class, ``status`` (``ok`` /
``out_of_domain`` / ``error``) and ``error``. Params (per call, or per REST request under
``"params"``): ``min_confidence`` (abstain below it: label ``uncertain``),
``max_pixels`` (largest ``width * height`` decoded) and ``n_jobs``.

Serve on loopback::

    mlflow models serve -m <pyfunc dir or models:/name/version> --env-manager local -h 127.0.0.1 -p 5001
    curl -s http://127.0.0.1:5001/invocations -H 'Content-Type: application/json' \\
        -d '{"dataframe_split": {"columns": ["path", "image"], "data": [["cell.jpg", "<base64>"]]},
             "params": {"min_confidence": 0.6}}'

Register a run's model: ``python -m hybridwbc.serving register --run <run id>``
(``make register RUN=<id>``).
"""

from __future__ import annotations

import argparse
import base64
import binascii
import json
import os
import re
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from hybridwbc.cli import run_cli
from hybridwbc.data.manifest import file_sha256
from hybridwbc.errors import ConfigError, HybridWBCError, ModelLoadError
from hybridwbc.features.base import jsonable
from hybridwbc.models.parts import trained_cnn
from hybridwbc.serve.pipeline import (
    WBCPipeline,
    check_max_pixels,
    check_min_confidence,
    require_file,
    result_frame,
    verify_files,
)

__all__ = [
    "PyfuncLogic", "predict_frame", "save_pyfunc", "log_pyfunc", "load_pyfunc", "verify_pyfunc_dir", "is_pyfunc_dir",
    "model_signature", "input_example", "decode_image", "register", "FILES", "PIPELINE_ARTIFACT",
    "DEFAULT_NAME",
]

#: Name of the file listing the SHA-256 of every file of a saved pyfunc folder.
FILES = "hybridwbc-files.json"
#: Artifact key (and folder under ``artifacts/``) of the WBCPipeline.
PIPELINE_ARTIFACT = "pipeline"
#: Default name of the pyfunc model logged in a run.
DEFAULT_NAME = "pyfunc"

_DATA_URL = re.compile(r"^data:[^,]*;base64,", re.I)

#: Files MLflow itself writes into a model folder after it is logged (registry bookkeeping, never loaded as code).
_UNSEALED = {FILES, "registered_model_meta"}


def _list_files(folder: Path) -> dict[str, str]:
    out = {}
    for p in sorted(folder.rglob("*")):
        if p.is_file() and p.name not in _UNSEALED and "__pycache__" not in p.parts:
            out[p.relative_to(folder).as_posix()] = file_sha256(p)
    return out


def is_pyfunc_dir(path: str | os.PathLike) -> bool:
    """Whether ``path`` is a folder holding an MLflow ``MLmodel`` file."""
    return (Path(path) / "MLmodel").is_file()


def verify_pyfunc_dir(path: str | os.PathLike) -> Path:
    """Check every file listed in ``hybridwbc-files.json`` against its SHA-256.

    Returns
    -------
    pathlib.Path of the folder.

    Raises
    ------
    ModelLoadError
        If the folder, the list, or a listed file is missing, the list is
        unreadable, or a hash differs.
    """
    folder = Path(path)
    listing = require_file(folder, FILES, "a hybridwbc pyfunc model folder, or one saved without its hash list",
                           "pass the folder written by hybridwbc.serve.pyfunc.save_pyfunc (or a run's model/ folder).")
    try:
        files = dict(json.loads(listing.read_text())["files"])
    except (ValueError, KeyError, TypeError) as exc:
        raise ModelLoadError(f"{str(listing)!r} is not a valid hybridwbc file list ({exc}).") from exc
    verify_files(folder, files, FILES)
    return folder


def decode_image(value: Any) -> bytes:
    """The encoded bytes in one ``image`` cell: ``bytes`` as they are, a ``str`` as base64.

    Raises
    ------
    ValueError
        If a string is not valid base64, or the value is neither bytes nor str.
    """
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value)
    if isinstance(value, str):
        text = _DATA_URL.sub("", value.strip())
        try:
            return base64.b64decode("".join(text.split()), validate=True)
        except (binascii.Error, ValueError) as exc:
            raise ValueError(f"the image column holds a string that is not valid base64 ({exc})") from exc
    raise ValueError(f"the image column must hold bytes or a base64 string; received {type(value).__name__}")


def _blank(v) -> bool:
    if v is None:
        return True
    if isinstance(v, float) and np.isnan(v):
        return True
    if isinstance(v, (str, bytes, bytearray)) and len(v) == 0:
        return True
    return v is pd.NA


def predict_frame(pipeline, frame: pd.DataFrame, min_confidence: float = 0.0, max_pixels: int | None = None,
                  n_jobs: int = 1) -> pd.DataFrame:
    """Predict a DataFrame with ``path`` and/or ``image`` columns (see the module docstring).

    Returns
    -------
    DataFrame
        ``path, label, confidence, p_<class>..., status, error``; one row per input row, in order.

    Raises
    ------
    ConfigError
        If the frame has neither a ``path`` nor an ``image`` column, or a param is invalid.
    """
    min_confidence = check_min_confidence(min_confidence)
    if max_pixels is not None:
        max_pixels = check_max_pixels(max_pixels)
    if not isinstance(frame, pd.DataFrame):
        frame = pd.DataFrame(frame)
    if "path" not in frame.columns and "image" not in frame.columns:
        raise ConfigError(
            f"The input has columns {list(frame.columns)}; expected a 'path' column (image file paths) and/or an "
            "'image' column (encoded image bytes, or base64 strings). Fix the request."
        )
    n = len(frame)
    paths = frame["path"].tolist() if "path" in frame.columns else [None] * n
    images = frame["image"].tolist() if "image" in frame.columns else [None] * n
    names, sources, errors = [], [], {}
    for i, (p, im) in enumerate(zip(paths, images)):
        name = os.fsdecode(p) if isinstance(p, bytes) else ("" if _blank(p) else str(p))
        names.append(name or f"image[{i}]")
        if not _blank(im):
            try:
                sources.append(decode_image(im))
            except ValueError as exc:
                sources.append(None)
                errors[i] = f"ImageReadError: {exc}"
        elif not _blank(p):
            sources.append(p if isinstance(p, bytes) else str(p))
        else:
            sources.append(None)
            errors[i] = "ImageReadError: the row has neither a path nor an image"
    good = [i for i in range(n) if i not in errors]
    classes = pipeline.classes_
    out = result_frame(names, classes, np.full((n, len(classes)), np.nan), np.zeros(n, bool), errors)
    if good:
        part = pipeline.predict_sources([sources[i] for i in good], names=[names[i] for i in good], n_jobs=n_jobs,
                                        min_confidence=min_confidence, max_pixels=max_pixels)
        for col in out.columns:
            values = out[col].to_numpy(dtype=object if out[col].dtype == object else None).copy()
            values[good] = part[col].to_numpy()
            out[col] = pd.Series(values, dtype=out[col].dtype)
    return out


class PyfuncLogic:
    """What the MLflow ``PythonModel`` does (see the module docstring).

    :mod:`hybridwbc.serve.pyfunc_entry` defines ``WBCPyfunc(PyfuncLogic, mlflow.pyfunc.PythonModel)``; the
    logic lives here so that importing this module does not import ``mlflow.pyfunc``.
    """

    def load_context(self, context) -> None:
        """Verify the model folder's hashes, then load the pipeline (itself hash-checked)."""
        folder = Path(context.artifacts[PIPELINE_ARTIFACT])
        root = folder.parent.parent
        if (root / FILES).is_file():
            verify_pyfunc_dir(root)
        self.pipeline = WBCPipeline.load(folder)

    def predict(self, context, model_input, params=None):  # no type hints: the signature is explicit
        """Predict a batch; see :func:`predict_frame`. Bad requests raise an ``MlflowException``
        (HTTP 400 from the server) with one clear message; bad images are error rows."""
        from mlflow.exceptions import MlflowException
        from mlflow.protos.databricks_pb2 import INVALID_PARAMETER_VALUE

        params = dict(params or {})
        try:
            return predict_frame(self.pipeline, model_input, min_confidence=params.get("min_confidence", 0.0),
                                 max_pixels=params.get("max_pixels"), n_jobs=int(params.get("n_jobs", 1) or 1))
        except HybridWBCError as exc:
            raise MlflowException(str(exc), error_code=INVALID_PARAMETER_VALUE) from exc


def model_signature(classes) -> "Any":
    """The pyfunc signature: inputs ``path``/``image`` (optional strings), the output columns, and the params."""
    from mlflow.models import ModelSignature
    from mlflow.types.schema import ColSpec, ParamSchema, ParamSpec, Schema

    from hybridwbc.data.io import DEFAULT_MAX_PIXELS

    inputs = Schema([ColSpec("string", "path", required=False), ColSpec("string", "image", required=False)])
    outputs = Schema([ColSpec("string", "path"), ColSpec("string", "label"), ColSpec("double", "confidence"),
                      *[ColSpec("double", f"p_{c}") for c in classes],
                      ColSpec("string", "status"), ColSpec("string", "error")])
    params = ParamSchema([ParamSpec("min_confidence", "double", 0.0),
                          ParamSpec("max_pixels", "long", int(DEFAULT_MAX_PIXELS)),
                          ParamSpec("n_jobs", "long", 1)])
    return ModelSignature(inputs=inputs, outputs=outputs, params=params)


def input_example(size: int = 96) -> pd.DataFrame:
    """A one-row input: a synthetic lymphocyte-like cell as a base64 PNG, named ``example.png``."""
    import io

    from PIL import Image

    from hybridwbc.data.synthetic import PROFILES, draw_cell

    img = draw_cell(np.random.default_rng(0), PROFILES["lymphocyte"], size=size).image
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, format="PNG")
    return pd.DataFrame({"path": ["example.png"], "image": [base64.b64encode(buf.getvalue()).decode("ascii")]})


def _requirements(pipeline) -> list[str]:
    from importlib.metadata import PackageNotFoundError, version

    names = ["mlflow", "scikit-learn", "numpy", "scipy", "pandas", "pillow", "joblib", "opencv-python-headless",
             "scikit-image", "tqdm"]
    if trained_cnn(pipeline.estimator) is not None:
        names += ["tensorflow-cpu", "keras"]
    out = []
    for n in names:
        try:
            out.append(f"{n}=={version(n)}")
        except PackageNotFoundError:
            pass
    return out


def _entry_file() -> str:
    return str(Path(__file__).with_name("pyfunc_entry.py"))


def _seal(folder: Path) -> Path:
    (folder / FILES).write_text(json.dumps({"format": "hybridwbc-pyfunc/1", "files": _list_files(folder)},
                                           indent=2, sort_keys=True))
    return folder


def save_pyfunc(pipeline, path: str | os.PathLike, example: bool = True) -> Path:
    """Save ``pipeline`` as an MLflow pyfunc model folder at ``path`` (which must not exist).

    Parameters
    ----------
    pipeline : WBCPipeline
    path : path-like
    example : bool, default True
        Store :func:`input_example` (MLflow runs the model on it once, to check it).

    Returns
    -------
    pathlib.Path of the folder.

    Raises
    ------
    ModelLoadError
        If ``path`` already exists.
    """
    import mlflow

    path = Path(path)
    if path.exists():
        raise ModelLoadError(f"Cannot save the pyfunc model to {str(path)!r}: it already exists. Choose a new folder.")
    with tempfile.TemporaryDirectory(prefix="hybridwbc-pyfunc-") as tmp:
        pdir = pipeline.save(Path(tmp) / PIPELINE_ARTIFACT)
        mlflow.pyfunc.save_model(
            str(path), python_model=_entry_file(), artifacts={PIPELINE_ARTIFACT: str(pdir)},
            signature=model_signature(pipeline.classes_), input_example=input_example() if example else None,
            pip_requirements=_requirements(pipeline), metadata={"hybridwbc": _meta(pipeline)})
    return _seal(path)


def _meta(pipeline) -> dict:
    return {"classes": pipeline.classes_, "input_kind": pipeline.input_kind,
            "featurizer": type(pipeline.featurizer).__name__, "estimator": type(pipeline.estimator).__name__,
            "info": jsonable(pipeline.info)}


def log_pyfunc(pipeline, name: str = DEFAULT_NAME, registered_model_name: str | None = None,
               example: bool = True):
    """Log ``pipeline`` as a pyfunc model of the active MLflow run (``runs:/<run id>/<name>``).

    Logged with :func:`mlflow.pyfunc.log_model` (signature, input example,
    requirements); then the logged files are hashed and ``hybridwbc-files.json``
    is added to the logged model, so a downloaded or registered copy can be
    verified before it is loaded.

    Returns
    -------
    mlflow.models.model.ModelInfo
        ``model_uri`` is ``models:/<model id>``.

    Raises
    ------
    ConfigError
        If no MLflow run is active.
    """
    import mlflow
    from mlflow.tracking import MlflowClient

    if mlflow.active_run() is None:
        raise ConfigError("log_pyfunc needs an active MLflow run (mlflow.start_run()); none is active.")
    with tempfile.TemporaryDirectory(prefix="hybridwbc-pyfunc-") as tmp:
        pdir = pipeline.save(Path(tmp) / PIPELINE_ARTIFACT)
        info = mlflow.pyfunc.log_model(
            name=name, python_model=_entry_file(), artifacts={PIPELINE_ARTIFACT: str(pdir)},
            signature=model_signature(pipeline.classes_), input_example=input_example() if example else None,
            pip_requirements=_requirements(pipeline), metadata={"hybridwbc": _meta(pipeline)})
        local = Path(mlflow.artifacts.download_artifacts(artifact_uri=info.model_uri, dst_path=str(Path(tmp) / "dl")))
        _seal(local)
        MlflowClient().log_model_artifact(info.model_id, str(local / FILES))
    if registered_model_name:
        mlflow.register_model(info.model_uri, registered_model_name)
    return info


def load_pyfunc(path: str | os.PathLike):
    """Verify a pyfunc folder's hashes, then ``mlflow.pyfunc.load_model`` it.

    Raises
    ------
    ModelLoadError
        As :func:`verify_pyfunc_dir`, or if ``path`` holds no ``MLmodel``.
    """
    import mlflow

    require_file(path, "MLmodel", "an MLflow model folder", "pass a pyfunc model folder (or a run's model/ folder).")
    verify_pyfunc_dir(path)
    return mlflow.pyfunc.load_model(str(path))


def register(run_id: str, tracking_uri: str, name: str | None = None, model_name: str = DEFAULT_NAME) -> dict:
    """Register a run's pyfunc model in the MLflow model registry.

    When the run logged no pyfunc model (runs made before it was logged), one
    is built from the run's ``model/`` artifact (the hash-checked WBCPipeline
    folder) and logged into the run first.

    Parameters
    ----------
    run_id : str
    tracking_uri : str
        E.g. ``sqlite:////abs/path/mlflow.db``; the registry lives in the same store.
    name : str, optional
        Registered model name; default ``hybridwbc-<experiment>`` (the run's ``experiment`` tag).
    model_name : str, default "pyfunc"

    Returns
    -------
    dict with ``name``, ``version``, ``source`` (the logged model URI) and ``built`` (whether it was built now).

    Raises
    ------
    ModelLoadError
        If the run does not exist, or has neither a pyfunc model nor a ``model/`` artifact.
    """
    import mlflow
    from mlflow.exceptions import MlflowException
    from mlflow.tracking import MlflowClient

    mlflow.set_tracking_uri(tracking_uri)
    client = MlflowClient(tracking_uri=tracking_uri)
    try:
        run = client.get_run(run_id)
    except MlflowException as exc:
        raise ModelLoadError(f"No MLflow run {run_id!r} in {tracking_uri} ({exc.message}). Fix: RUN=<a run id "
                             "from the MLflow UI or the run's summary line>.") from exc
    name = name or f"hybridwbc-{run.data.tags.get('experiment', 'model')}"
    found = [m for m in mlflow.search_logged_models(experiment_ids=[run.info.experiment_id],
                                                    filter_string=f"source_run_id = '{run_id}'",
                                                    output_format="list") if m.name == model_name]
    built = False
    if found:
        uri = f"models:/{found[-1].model_id}"
    else:
        with tempfile.TemporaryDirectory(prefix="hybridwbc-register-") as tmp:
            try:
                local = mlflow.artifacts.download_artifacts(run_id=run_id, artifact_path="model", dst_path=tmp)
            except (MlflowException, OSError) as exc:
                raise ModelLoadError(
                    f"Run {run_id} has no pyfunc model {model_name!r} and no model/ artifact to build one from "
                    f"({exc}). Fix: register a run that finished training."
                ) from exc
            pipe = WBCPipeline.load(local)
            mlflow.start_run(run_id=run_id)
            try:
                uri = log_pyfunc(pipe, name=model_name).model_uri
            finally:  # re-opened only to log the model: the run keeps the status its training gave it
                mlflow.end_run(status=run.info.status)
            built = True
    mv = mlflow.register_model(uri, name)
    return {"name": name, "version": int(mv.version), "source": uri, "built": built}


def main(argv: list[str] | None = None) -> int:
    """``python -m hybridwbc.serving register --run <id> [--name N] [--tracking-uri URI]``,
    or ``python -m hybridwbc.serving save --model <model dir> --out <pyfunc dir>``."""
    ap = argparse.ArgumentParser(prog="python -m hybridwbc.serving")
    sub = ap.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("register", help="register a run's pyfunc model in the model registry")
    r.add_argument("--run", required=True)
    r.add_argument("--name", default=None)
    r.add_argument("--tracking-uri", default=f"sqlite:///{Path.cwd() / 'mlflow.db'}")
    s = sub.add_parser("save", help="save a model/ folder (WBCPipeline) as a pyfunc folder")
    s.add_argument("--model", required=True)
    s.add_argument("--out", required=True)
    args = ap.parse_args(argv)
    return run_cli(lambda: _command(args))


def _command(args) -> None:
    if args.cmd == "register":
        out = register(args.run, args.tracking_uri, args.name)
        print(f"hybridwbc: registered {out['source']} as {out['name']!r} version {out['version']}"
              + (" (pyfunc built from the run's model/ folder)" if out["built"] else ""), flush=True)
        print(f"serve it: mlflow models serve -m 'models:/{out['name']}/{out['version']}' --env-manager local "
              f"-h 127.0.0.1 -p 5001   (with MLFLOW_TRACKING_URI={args.tracking_uri})", flush=True)
    else:
        out = save_pyfunc(WBCPipeline.load(args.model), args.out)
        print(f"hybridwbc: saved pyfunc model to {out}", flush=True)


if __name__ == "__main__":
    raise SystemExit(main())
