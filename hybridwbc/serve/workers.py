"""How many worker processes prediction uses: all cores by default.

``predict`` reads, decodes, segments and featurizes images in worker processes
(joblib), then the classifier answers all featurized images in one batch in this
process. Every saved model, handcrafted or CNN, featurizes each image (a CNN model
for its applicability domain and, in the cascade, its stage-1 columns), so the
default is the same for every kind: all cores this process may run on. A CNN's
``predict_proba`` runs afterwards in this process, on TensorFlow's own threads, so
the workers never compete with it (``bench/predict_throughput.py`` measures both
settings for handcrafted, CNN and cascade models). The served pyfunc model keeps
``n_jobs=1`` as its default param: a server scales across requests with its own
workers, and most requests hold one image.
"""

from __future__ import annotations

import os

from hybridwbc.errors import ConfigError

__all__ = ["available_cores", "resolve_n_jobs"]


def available_cores() -> int:
    """Cores this process may run on (its CPU affinity where the OS reports it, else ``os.cpu_count()``)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def resolve_n_jobs(n_jobs) -> int:
    """Worker processes for ``n_jobs``: ``None`` or ``-1`` = all cores (:func:`available_cores`), ``k >= 1`` = ``k``.

    Raises
    ------
    ConfigError
        If ``n_jobs`` is not an integer, or is 0 or below -1.
    """
    if n_jobs is None:
        return available_cores()
    if isinstance(n_jobs, bool) or not isinstance(n_jobs, int):
        try:
            value = int(str(n_jobs).strip())
        except ValueError as exc:
            raise ConfigError(f"n_jobs must be an integer; received {n_jobs!r}. Fix: n_jobs=-1 (all cores, the "
                              "default) or a number of processes >= 1.") from exc
    else:
        value = n_jobs
    if value == -1:
        return available_cores()
    if value < 1:
        raise ConfigError(f"n_jobs must be -1 (all cores) or >= 1; received {n_jobs!r}. Fix: n_jobs=-1 or n_jobs=1.")
    return value
