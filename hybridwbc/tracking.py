"""Experiment tracking: the one place that talks to MLflow.

:class:`Tracker` is a context manager around one run. With tracking enabled it
sets the tracking URI explicitly (sqlite by default; MLflow's file store is
deprecated), creates the experiment with an artifact location under
``mlartifacts/``, and logs params, metrics, tags and artifacts. With tracking
disabled every call is a no-op, and artifacts stay in the Hydra run folder.
A run that raises is ended with status ``FAILED`` and its error is logged.
MLflow is imported lazily.

So that the MLflow UI reads at a glance: runs are named ``<experiment> · <method> · seed <k>``
(:func:`run_name`; a comparison's methods are nested under it), experiments carry the tag the UI reads for
the experiment type (:data:`EXPERIMENT_KIND_TAG` = ``custom_model_development``, so they open on the
model-training view, not the GenAI one), each run logs its data as an MLflow dataset
(:meth:`Tracker.log_dataset`: name, source, digest, rows; the Dataset column), and
:func:`quiet_third_party` silences MLflow's progress bars and INFO chatter.
"""

from __future__ import annotations

import contextlib
import logging
import os
import subprocess
import traceback
from pathlib import Path
from typing import Any, Mapping

__all__ = ["Tracker", "fail_runs_on_sigterm", "sigterm_fails_runs", "RunTerminated", "flatten", "run_name",
           "dataset_name", "quiet_third_party", "OnceFilter", "EXPERIMENT_KIND_TAG", "EXPERIMENT_KIND", "UI_QUERY",
           "ensure_experiment", "open_sweep", "close_sweep", "SWEEP_ENV"]

log = logging.getLogger(__name__)

_MAX_PARAM = 500

#: The experiment tag MLflow's UI (3.x) reads to pick an experiment's view (``mlflow/server/js``: the
#: ``ExperimentKind`` enum); ``custom_model_development`` is its "Machine learning" (model-training) view.
EXPERIMENT_KIND_TAG = "mlflow.experimentKind"
EXPERIMENT_KIND = "custom_model_development"
#: MLflow 3.17's UI takes the view from a global "GenAI | Model training" switch (default GenAI), kept in the
#: browser, and ignores the tag; this query string on a UI address selects the model-training view.
UI_QUERY = "workflowType=machine_learning"


def run_name(experiment: str, method: str, seed) -> str:
    """The run name the UI lists: ``<experiment> · <method> · seed <k>``."""
    return f"{experiment} · {method} · seed {seed}"


def dataset_name(data: str, source: str) -> str:
    """The name a run's dataset has in the UI: the data set's name, marked when it is the synthetic stand-in."""
    return data if source == "real" else f"{data} (built-in synthetic)"


class OnceFilter(logging.Filter):
    """Let each message through once: a repeat that differs only in numbers or addresses is dropped."""

    def __init__(self):
        super().__init__()
        self.seen: set[str] = set()

    def filter(self, record: logging.LogRecord) -> bool:
        import re

        key = re.sub(r"0x[0-9a-fA-F]+|\d+", "#", record.getMessage())
        if key in self.seen:
            return False
        self.seen.add(key)
        return True


def quiet_third_party() -> None:
    """No MLflow progress bars ("Downloading artifacts") or INFO lines (database creation, signature
    checks), and no TensorFlow C++ INFO/WARNING lines (oneDNN, CPU features, dataset-cache notices repeated per
    split) in a run's log; Python warnings and errors still show. Idempotent. Call it before TensorFlow is
    imported (its C++ log level is read then; ``TF_CPP_MIN_LOG_LEVEL`` set by the user wins) and again after
    MLflow is (MLflow sets its loggers' level when it is imported)."""
    os.environ["MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"] = "false"
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    for name in ("tensorflow", "absl"):  # e.g. "triggered tf.function retracing", once per split otherwise
        logger = logging.getLogger(name)
        if not any(isinstance(f, OnceFilter) for f in logger.filters):
            logger.addFilter(OnceFilter())
    for name in ("mlflow", "alembic", "urllib3"):
        logging.getLogger(name).setLevel(logging.WARNING)


def flatten(d: Mapping, prefix: str = "") -> dict[str, Any]:
    """Flatten nested mappings into ``a.b.c`` keys (lists become their string form)."""
    out: dict[str, Any] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, Mapping):
            out.update(flatten(v, key + "."))
        else:
            out[key] = v
    return out


#: Files the framework itself writes into the tree; changes to them do not make a run ``-dirty``
#: (``make tables`` rewrites one table before it runs the next experiment).
GENERATED = (":(exclude,glob)experiments/*/results.md", ":(exclude,glob)experiments/*/results.csv",
             ":(exclude)experiments/timing.md")


def git_commit(root: str | os.PathLike) -> str:
    """The project's current git commit, with ``-dirty`` if the tree has changes; ``""`` outside git.

    Changes to the result tables the framework writes (:data:`GENERATED`) do not count.
    """
    try:
        sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True,
                             timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "--", ".", *GENERATED],
                               cwd=root, capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""
    return f"{sha}-dirty" if sha and dirty else sha


def library_versions() -> dict[str, str]:
    """Versions of the libraries a result depends on."""
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for name in ("hybridwbc", "numpy", "scikit-learn", "scikit-image", "opencv-python-headless", "tensorflow-cpu",
                 "keras", "hydra-core", "mlflow", "pandas"):
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            out[name] = "absent"
    return out


class Tracker:
    """One tracked run.

    Parameters
    ----------
    enabled : bool
    uri : str
        MLflow tracking URI, e.g. ``sqlite:////abs/path/mlflow.db``.
    artifact_root : str
        Folder under which each experiment's artifacts go.
    experiment : str
        MLflow experiment name (the Hydra experiment).
    run_name : str, optional
    """

    def __init__(self, enabled: bool, uri: str, artifact_root: str, experiment: str, run_name: str | None = None):
        self.enabled = enabled
        self.uri = uri
        self.artifact_root = artifact_root
        self.experiment = experiment
        self.run_name = run_name
        self.run_id: str | None = None
        self._mlflow = None
        self._parent: "Tracker | None" = None
        self._experiment_id: str | None = None
        self._dataset: tuple | None = None

    @property
    def is_child(self) -> bool:
        """Whether this tracker is a nested run of a comparison."""
        return self._parent is not None

    def child(self, name: str) -> "Tracker":
        """A tracker for a nested run (one method of a comparison) inside this one."""
        c = Tracker(self.enabled, self.uri, self.artifact_root, self.experiment, name)
        c._parent = self
        return c

    def __enter__(self) -> "Tracker":
        if not self.enabled:
            return self
        import mlflow

        quiet_third_party()
        self._mlflow = mlflow
        if self._parent is not None:
            run = mlflow.start_run(experiment_id=self._parent._experiment_id, run_name=self.run_name, nested=True)
            self._experiment_id = self._parent._experiment_id
            self.run_id = run.info.run_id
            with self._failing_on_error():
                mlflow.set_tag("parent_run_id", self._parent.run_id)
                if self._parent._dataset is not None:  # each method's run shows the data it was evaluated on
                    self.log_dataset(*self._parent._dataset)
            return self
        exp_id = ensure_experiment(self.uri, self.experiment, self.artifact_root)
        self._experiment_id = exp_id
        sweep = sweep_context(self.experiment)
        run = mlflow.start_run(experiment_id=exp_id, run_name=self.run_name, parent_run_id=sweep.get("parent"))
        self.run_id = run.info.run_id
        with self._failing_on_error():
            if sweep:
                mlflow.set_tags({"sweep.id": sweep["id"], "sweep.launcher": sweep["launcher"]})
        log.debug("MLflow run %s in experiment %r (%s)", self.run_id, self.experiment, self.uri)
        return self

    @contextlib.contextmanager
    def _failing_on_error(self):
        """Inside ``__enter__``, after the run started: an error (or a signal) there ends this run FAILED before
        it propagates, since ``__exit__`` is not called when ``__enter__`` raises."""
        try:
            yield
        except BaseException as exc:
            self._end(exc)
            raise

    def _end(self, exc: BaseException | None) -> None:
        """End this tracker's own run (by its id): ``FAILED`` with the error when ``exc`` is given, else
        ``FINISHED``. A nested run still open above it (one whose ``__enter__`` or ``__exit__`` was cut short)
        is ended ``FAILED`` first, so the status lands on this run and not on whichever run is active."""
        mlflow = self._mlflow
        client = mlflow.MlflowClient(tracking_uri=self.uri)
        status = "FINISHED"
        if exc is not None:
            status = "FAILED"
            client.set_tag(self.run_id, "error", f"{type(exc).__name__}: {exc}"[:5000])
            client.log_text(self.run_id, "".join(traceback.format_exception(type(exc), exc, exc.__traceback__)),
                            "error.txt")
        if client.get_run(self.run_id).info.status == "RUNNING":  # still open, so on MLflow's fluent stack
            while (active := mlflow.active_run()) is not None and active.info.run_id != self.run_id:
                mlflow.end_run(status="FAILED")
            if active is not None:
                mlflow.end_run(status=status)
                return
        # ended already by someone else (or not on the stack): set the status by id, leave other runs alone
        client.set_terminated(self.run_id, status=status)

    def __exit__(self, exc_type, exc, tb) -> bool:
        if not self.enabled or self._mlflow is None:
            return False
        self._end(exc)
        return False

    def log_params(self, params: Mapping[str, Any]) -> None:
        if self._mlflow is None:
            return
        import re

        clean = {re.sub(r"[^\w\-. :/]", "_", k)[:250]: (str(v)[:_MAX_PARAM] if v is not None else "null")
                 for k, v in params.items()}
        self._mlflow.log_params(clean)

    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None) -> None:
        if self._mlflow is None:
            return
        import math

        clean = {k.replace("@", "_"): float(v) for k, v in metrics.items()
                 if v is not None and math.isfinite(float(v))}
        self._mlflow.log_metrics(clean, step=step)

    def set_tags(self, tags: Mapping[str, Any]) -> None:
        if self._mlflow is None:
            return
        self._mlflow.set_tags({k: str(v) for k, v in tags.items()})

    def log_artifact(self, path: str | os.PathLike, artifact_path: str | None = None) -> None:
        if self._mlflow is None:
            return
        p = Path(path)
        if p.is_dir():
            self._mlflow.log_artifacts(str(p), artifact_path=artifact_path)
        elif p.is_file():
            self._mlflow.log_artifact(str(p), artifact_path=artifact_path)

    def log_dataset(self, table, name: str, source: str | os.PathLike, digest: str, context: str = "training") -> None:
        """Log the run's data (``mlflow.log_input``): a dataset named ``name`` read from the folder ``source``,
        identified by ``digest`` (the manifest hash), whose profile counts ``table``'s rows. ``table`` is the
        manifest (one row per image); MLflow stores its schema and row count, not the rows."""
        self._dataset = (table, name, source, digest, context)
        if self._mlflow is None:
            return
        import json

        from mlflow.data import from_pandas
        from mlflow.data.dataset_source_registry import get_dataset_source_from_json

        # a local folder, named explicitly: resolving a bare path makes MLflow warn that it is ambiguous
        src = get_dataset_source_from_json(json.dumps({"uri": str(source)}), "local")
        self._mlflow.log_input(from_pandas(table, source=src, name=name, digest=digest[:36]), context=context)

    def log_headline(self, metrics: Mapping[str, float]) -> None:
        """Log the headline metric (:func:`hybridwbc.report.summary.headline_key`: balanced accuracy on all
        test rows) and its 95% CI bounds as ``headline.balanced_accuracy`` (``.ci_low``, ``.ci_high``): three
        columns to pick in the UI, the same on a single run, a method's run and a comparison (its best)."""
        from hybridwbc.report.summary import headline_key

        key = headline_key(dict(metrics))
        self.log_metrics({f"headline.balanced_accuracy{s}": metrics.get(f"{key}{k}")
                          for s, k in (("", ""), (".ci_low", "_ci_low"), (".ci_high", "_ci_high"))})

    def describe(self, text: str) -> None:
        """Set the run's description (the note the UI shows on the run page)."""
        self.set_tags({"mlflow.note.content": text})

#: Environment variable through which a sweep's launcher process tells its jobs (in other processes, on
#: other machines under SLURM) the sweep id and each experiment's parent run: ``{"id", "launcher", "parents"}``.
SWEEP_ENV = "HYBRIDWBC_SWEEP"


class RunTerminated(SystemExit):
    """SIGTERM, raised as an exception: exits with status 143 (128 + 15, the shell's code for death by SIGTERM)
    after every ``with`` block has closed; ``str()`` is the reason the runs record."""

    def __init__(self, reason: str):
        super().__init__(143)
        self.reason = reason

    def __str__(self) -> str:
        return self.reason


def fail_runs_on_sigterm():
    """Let SIGTERM (``kill``, a scheduler's stop) end this process through Python's exception path, so each open
    :class:`Tracker` run ends ``FAILED`` with the error ``RunTerminated: terminated by SIGTERM ...`` instead of
    staying ``RUNNING``; the exit status is 143. Installed only in the main thread and only where SIGTERM still
    has its default action (a launcher's own handler is kept). Python runs the handler when the main thread is
    back in Python code, so a signal that arrives inside a long C call (a libsvm fit, a TensorFlow op) takes
    effect when that call returns; after the first one SIGTERM has its default action again.

    Returns the handler to restore afterwards (``signal.signal(signal.SIGTERM, old)``), or ``None`` when
    nothing was installed.
    """
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        return None
    old = signal.getsignal(signal.SIGTERM)
    if old is not signal.SIG_DFL:
        return None

    def _terminated(signum, frame):
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        raise RunTerminated("terminated by SIGTERM: the run was stopped from outside before it finished")

    signal.signal(signal.SIGTERM, _terminated)
    return old


@contextlib.contextmanager
def sigterm_fails_runs():
    """Context manager around a command: :func:`fail_runs_on_sigterm` inside it, the previous SIGTERM handler
    restored after it. Every entry point that may open a run (``hybridwbc.run`` and the
    :func:`~hybridwbc.cli.run_cli` commands: ``analyze``, ``predict``, ``verify``, ...) runs inside it."""
    import signal

    old = fail_runs_on_sigterm()
    try:
        yield
    finally:
        if old is not None:
            signal.signal(signal.SIGTERM, old)


def ensure_experiment(uri: str, name: str, artifact_root: str) -> str:
    """The id of MLflow experiment ``name`` in store ``uri``, created (and the sqlite store with it) if absent,
    tagged for the UI's model-training view (:data:`EXPERIMENT_KIND_TAG`).

    A local store (sqlite, a folder) gets the artifact location ``<artifact_root>/<name>``; a tracking server
    (``http(s)://``) keeps its own artifact root (``mlflow server --artifacts-destination``). Two processes
    creating the same experiment at once both get its id.
    """
    import mlflow
    from mlflow.exceptions import MlflowException

    if uri.startswith("sqlite:///"):
        Path(uri[len("sqlite:///"):]).parent.mkdir(parents=True, exist_ok=True)
    mlflow.set_tracking_uri(uri)
    exp = mlflow.get_experiment_by_name(name)
    if exp is None:
        remote = uri.startswith(("http://", "https://"))
        location = None if remote else (Path(artifact_root).resolve() / name).as_uri()
        try:
            return mlflow.create_experiment(name, artifact_location=location,
                                            tags={EXPERIMENT_KIND_TAG: EXPERIMENT_KIND})
        except MlflowException:
            exp = mlflow.get_experiment_by_name(name)
            if exp is None:
                raise
    if EXPERIMENT_KIND_TAG not in exp.tags:  # made before the tag existed: the UI would guess GenAI
        mlflow.MlflowClient().set_experiment_tag(exp.experiment_id, EXPERIMENT_KIND_TAG, EXPERIMENT_KIND)
    return exp.experiment_id


def sweep_context(experiment: str) -> dict:
    """This job's sweep (:data:`SWEEP_ENV`): ``{"id", "launcher", "parent"}`` (the parent run of ``experiment``,
    if the launcher opened one), or ``{}`` outside a sweep."""
    import json

    raw = os.environ.get(SWEEP_ENV)
    if not raw:
        return {}
    info = json.loads(raw)
    return {"id": info["id"], "launcher": info.get("launcher", ""), "parent": info.get("parents", {}).get(experiment)}


def open_sweep(uri: str, artifact_root: str, experiments, sweep_id: str, launcher: str, command: str) -> dict:
    """Before a sweep's jobs start: create the store and every experiment (parallel creation on sqlite races),
    and one parent run per experiment that the jobs' runs nest under (the UI groups and compares them).

    Returns the :data:`SWEEP_ENV` payload (also exported to the environment the jobs inherit).
    """
    import json

    from mlflow.tracking import MlflowClient

    parents = {}
    for name in experiments:
        exp_id = ensure_experiment(uri, name, artifact_root)
        run = MlflowClient(uri).create_run(exp_id, run_name=f"{name} · sweep {sweep_id}", tags={
            "sweep.id": sweep_id, "sweep.launcher": launcher, "role": "sweep", "experiment": name,
            "command": command})
        parents[name] = run.info.run_id
    info = {"id": sweep_id, "launcher": launcher, "uri": uri, "parents": parents}
    os.environ[SWEEP_ENV] = json.dumps(info)
    log.info("Sweep %s: parent run(s) %s in %s", sweep_id, parents, uri)
    return info


def close_sweep(info: dict, status: str = "FINISHED") -> dict:
    """End a sweep's parent runs with ``status``, logging how many of their jobs' runs finished and failed.

    Returns ``{experiment: {"FINISHED": n, "FAILED": m, ...}}``.
    """
    from mlflow.tracking import MlflowClient

    client = MlflowClient(info["uri"])
    counts = {}
    for name, parent in info.get("parents", {}).items():
        run = client.get_run(parent)
        children = client.search_runs([run.info.experiment_id], f"tags.`mlflow.parentRunId` = '{parent}'",
                                      max_results=5000)
        n = {}
        for c in children:
            n[c.info.status] = n.get(c.info.status, 0) + 1
        counts[name] = n
        for state, k in n.items():
            client.log_metric(parent, f"runs_{state.lower()}", k)
        ok = status == "FINISHED" and not n.get("FAILED")
        client.set_terminated(parent, status="FINISHED" if ok else "FAILED")
    os.environ.pop(SWEEP_ENV, None)
    return counts
