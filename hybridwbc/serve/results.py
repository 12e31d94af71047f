"""The prediction table every entry point writes, and the checks of its two knobs.

One row per image: ``path, label, confidence, p_<class>..., status, error``. ``status`` is
``ok``, ``out_of_domain`` (outside the model's applicability domain: label ``uncertain``,
probabilities kept) or ``error`` (no answer: the reason in ``error``).
:mod:`hybridwbc.serve.pipeline` re-exports these names.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import pandas as pd

from hybridwbc.errors import ConfigError

__all__ = ["result_frame", "check_min_confidence", "check_max_pixels", "UNCERTAIN", "OUT_OF_DOMAIN"]

#: The label of a row the model abstains on (below ``min_confidence``, or outside its domain).
UNCERTAIN = "uncertain"
#: ``status`` of a row outside the model's applicability domain (label :data:`UNCERTAIN`).
OUT_OF_DOMAIN = "out_of_domain"


def check_min_confidence(value) -> float:
    """``value`` as a float in [0, 1].

    Raises
    ------
    ConfigError
        If it is not a number in [0, 1].
    """
    try:
        v = float(value)
    except (TypeError, ValueError):
        v = float("nan")
    if not 0.0 <= v <= 1.0:
        raise ConfigError(f"min_confidence must be a number in [0, 1]; received {value!r}.")
    return v


def check_max_pixels(value) -> int:
    """``value`` as a positive int.

    Raises
    ------
    ConfigError
        If it is not a positive integer.
    """
    try:
        v = int(value)
        if v != float(value):
            raise ValueError
    except (TypeError, ValueError, OverflowError):
        v = 0
    if v < 1:
        raise ConfigError(f"max_pixels must be a positive integer (width * height); received {value!r}.")
    return v


def result_frame(names: Sequence[str], classes: Sequence[str], proba: np.ndarray, ok: np.ndarray,
                 errors: dict, min_confidence: float = 0.0, outside: dict | None = None) -> pd.DataFrame:
    """The prediction table: ``path, label, confidence, p_<class>..., status, error``.

    Rows not ``ok`` get an empty label, NaN confidence and probabilities,
    ``status="error"`` and their reason from ``errors`` (row -> str). An ``ok``
    row whose confidence is below ``min_confidence`` is labelled ``uncertain``.
    An ``ok`` row in ``outside`` (row -> reason) keeps its probabilities and is
    labelled ``uncertain`` with ``status="out_of_domain"`` and the reason in ``error``.
    """
    outside = outside or {}
    n = len(names)
    proba = np.asarray(proba, dtype=np.float64).reshape(n, len(classes))
    ok = np.asarray(ok, dtype=bool)
    best = np.where(ok, np.argmax(np.where(ok[:, None], np.nan_to_num(proba, nan=-1.0), 0.0), axis=1), 0)
    conf = np.where(ok, proba[np.arange(n), best] if n else np.empty(0), np.nan)
    label = np.where(ok, np.asarray(list(classes), dtype=object)[best] if n else np.empty(0, object), "")
    if min_confidence > 0:
        label = np.where(ok & (conf < min_confidence), UNCERTAIN, label)
    out = pd.DataFrame({"path": pd.Series(list(names), dtype=object)})
    out["label"] = pd.Series(label, dtype=object)
    out["confidence"] = conf
    for j, c in enumerate(classes):
        out[f"p_{c}"] = np.where(ok, proba[:, j], np.nan)
    ood = np.array([ok[i] and i in outside for i in range(n)], dtype=bool)
    out.loc[ood, "label"] = UNCERTAIN
    out["status"] = np.where(ood, OUT_OF_DOMAIN, np.where(ok, "ok", "error")).astype(object)
    out["error"] = pd.Series([outside[i] if ood[i] else "" if ok[i] else errors.get(i, "error") for i in range(n)],
                             dtype=object)
    return out
