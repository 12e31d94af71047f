"""Sweeps through Hydra launchers: MLflow set up before the jobs, and each job's share of the cores.

``python -m hybridwbc.run -m +experiment=wbc5 seed=0,1,2,3,4 classifier=svm,cascade hydra/launcher=joblib``
runs the 10 jobs in parallel processes (hydra-joblib-launcher, loky backend). Two things make that work:

* :class:`MLflowSweepCallback` (listed under ``hydra.callbacks`` in ``conf/config.yaml``) runs in the launching
  process before any job starts: it creates the store and each swept experiment (parallel creation on sqlite
  races) and one parent run per experiment, so the UI shows the sweep's runs nested and comparable; every
  job's run is tagged ``sweep.id``. When the sweep ends the parents are closed with the jobs' counts
  (``runs_finished``, ``runs_failed``); a sweep that dies closes them ``FAILED``.
* :func:`job_budget` and :func:`apply_budget` cap nested parallelism: a job of a sweep with ``J`` parallel jobs
  on ``C`` cores gets ``max(1, C // J)`` workers for feature extraction, random forests, BLAS/OpenMP and
  TensorFlow, so jobs × inner workers never exceed the cores. Submitit jobs get ``cpus_per_task``.
"""

from __future__ import annotations

import atexit
import logging
import os
import time

from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf, open_dict

__all__ = ["MLflowSweepCallback", "swept_experiments", "job_budget", "apply_budget"]

log = logging.getLogger(__name__)

#: Environment variables that size the thread pools of BLAS, OpenMP and TensorFlow (read when they start).
THREAD_ENV = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "TF_NUM_INTRAOP_THREADS")


def swept_experiments(config: DictConfig) -> list[str]:
    """The MLflow experiments a sweep's jobs log to: ``tracking.experiment_name`` if set, else every value the
    sweep gives ``experiment`` (``+experiment=a,b``), else the one experiment of the config (or ``default``)."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    if config.tracking.get("experiment_name"):
        return [str(config.tracking.experiment_name)]
    names = []
    for o in OverridesParser.create().parse_overrides(list(config.hydra.overrides.task)):
        if o.key_or_group == "experiment":
            names += [str(v) for v in o.sweep_string_iterator()] if o.is_sweep_override() else [str(o.value())]
    if not names:
        names = [str(config.hydra.runtime.choices.get("experiment") or "default")]
    return list(dict.fromkeys(names))


class MLflowSweepCallback(Callback):
    """Hydra callback: open the sweep's MLflow experiments and parent runs before the jobs, close them after."""

    def __init__(self) -> None:
        self.info: dict | None = None

    def on_multirun_start(self, config: DictConfig, **kwargs) -> None:
        from hydra.core.hydra_config import HydraConfig

        from hybridwbc.tracking import open_sweep

        HydraConfig.instance().set_config(config)  # the default store (${paths.root}) needs ${hydra:runtime.cwd}
        if not config.tracking.enabled:
            return
        launcher = str(config.hydra.launcher.get("_target_", "")).rsplit(".", 1)[-1]
        sweep_id = time.strftime("%Y%m%d-%H%M%S") + f"-{os.getpid()}"
        command = " ".join(["python -m hybridwbc.run -m", *config.hydra.overrides.task])
        self.info = open_sweep(config.tracking.uri, config.tracking.artifact_root, swept_experiments(config),
                               sweep_id, launcher, command)
        atexit.register(self._close, "FAILED")

    def on_multirun_end(self, config: DictConfig, **kwargs) -> None:
        counts = self._close("FINISHED")
        if counts:
            print(f"hybridwbc: sweep {self.id}: runs per experiment and status {counts}; "
                  f"seed table: python -m hybridwbc.tables --seeds {' '.join(counts)} --uri {config.tracking.uri}",
                  flush=True)

    @property
    def id(self) -> str | None:
        return None if self.info is None else self.info["id"]

    def _close(self, status: str) -> dict:
        from hybridwbc.tracking import close_sweep

        if self.info is None or self.info.get("closed"):
            return {}
        self.info["closed"] = True
        return close_sweep(self.info, status)


def job_budget(mode, launcher: DictConfig | dict | None, cores: int) -> int | None:
    """Inner workers one job may use: ``None`` (no cap) outside a multirun or with the sequential launcher.

    ``launcher``: the job's ``hydra.launcher`` node. Joblib runs ``n_jobs`` jobs at once (``-1``: one per core,
    ``-k``: cores + 1 - k, as joblib counts) and each gets ``max(1, cores // n_jobs)``; a submitit job gets its
    ``cpus_per_task`` (1 if unset: the local executor starts every job at once).
    """
    from hydra.types import RunMode

    if mode != RunMode.MULTIRUN or not launcher:
        return None
    target = str(launcher.get("_target_", ""))
    if "joblib" in target.lower():
        n = int(launcher.get("n_jobs") or -1)
        n = n if n > 0 else max(1, cores + 1 + n)
        return max(1, cores // min(n, cores))
    if "submitit" in target.lower():
        return max(1, int(launcher.get("cpus_per_task") or 1))
    return None


def apply_budget(cfg: DictConfig, budget: int | None) -> dict:
    """Cap every ``n_jobs`` of the config (features, classifiers, methods) and the thread pools at ``budget``.

    Sets :data:`THREAD_ENV` (TensorFlow is imported later, lazily) and threadpoolctl's limits for libraries
    already loaded. Returns ``{config key: (old, new)}`` of what changed; nothing when ``budget`` is ``None``.
    """
    if budget is None:
        return {}
    from threadpoolctl import threadpool_limits

    for var in THREAD_ENV:
        os.environ[var] = str(budget)
    os.environ["TF_NUM_INTEROP_THREADS"] = "1"
    threadpool_limits(budget)
    changed = {}
    for section in ("features", "classifier", "methods"):
        node = cfg.get(section)
        if isinstance(node, DictConfig):
            _cap(node, budget, section, changed)
    return changed


def _cap(node: DictConfig, budget: int, prefix: str, changed: dict) -> None:
    for key in list(node.keys()):
        if OmegaConf.is_missing(node, key):
            continue
        value, path = node.get(key), f"{prefix}.{key}"
        if isinstance(value, DictConfig):
            _cap(value, budget, path, changed)
        elif key == "n_jobs" and isinstance(value, int) and (value < 1 or value > budget):
            with open_dict(node):
                node[key] = budget
            changed[path] = (value, budget)
