"""Exceptions raised by hybridwbc.

Every error the framework raises on purpose derives from :class:`HybridWBCError`,
and each subclass also subclasses the matching builtin, so callers can catch
either ``HybridWBCError`` or the usual ``ValueError`` / ``FileNotFoundError`` /
``TypeError``.

Messages follow one pattern: what is wrong, what was expected, what was
received, and how to fix it.
"""

from __future__ import annotations

__all__ = [
    "HybridWBCError",
    "ConfigError",
    "LeakageError",
    "DataLayoutError",
    "ImageReadError",
    "NoCellFoundError",
    "ModelLoadError",
    "WeightsUnavailableError",
    "PartialPredictionError",
]


class HybridWBCError(Exception):
    """Base class of every error raised on purpose by hybridwbc."""


class ConfigError(HybridWBCError, ValueError):
    """A configuration value is invalid (unknown name, out-of-range number)."""


class DataLayoutError(HybridWBCError, FileNotFoundError):
    """A data root is missing, empty, or not laid out as the loader expects."""


class ImageReadError(HybridWBCError, ValueError):
    """One image file could not be decoded into an RGB ``uint8`` array.

    Raised per file. Data loaders catch it, skip the file, count it and list
    it in ``skipped.csv``; it never stops a whole run.
    """


class NoCellFoundError(HybridWBCError, ValueError):
    """Segmentation found no plausible white cell in an image."""


class ModelLoadError(HybridWBCError, FileNotFoundError):
    """A saved model directory is missing, incomplete, or fails its checks."""


class LeakageError(HybridWBCError, ValueError):
    """An evaluation would score images a model (or a pretrained backbone) was trained on."""


class WeightsUnavailableError(HybridWBCError, RuntimeError):
    """Pretrained backbone weights could not be obtained (offline, bad file)."""


class PartialPredictionError(HybridWBCError, ValueError):
    """A classifier answered some rows of a batch and could not answer others.

    Raised by ``predict_proba`` of a composite whose part fails on some rows (a saved ALL/HEM
    head that cannot read an image, finds no cell in it, or finds it outside its training
    domain), instead of inventing probabilities for them. The saved pipeline turns ``reasons``
    into error rows and keeps ``proba`` for the other rows.

    Parameters
    ----------
    reasons : dict of int to str
        Row position (in the ``X`` passed) -> why that row has no answer.
    proba : ndarray of shape (n_samples, n_classes), dtype float64
        Probabilities of every row; the rows of ``reasons`` are NaN.
    """

    def __init__(self, reasons: dict, proba):
        self.reasons = {int(k): str(v) for k, v in reasons.items()}
        self.proba = proba
        first = min(self.reasons) if self.reasons else None
        example = f"; e.g. row {first}: {self.reasons[first]}" if first is not None else ""
        super().__init__(f"{len(self.reasons)} of {len(proba)} rows could not be predicted{example}")

    def __reduce__(self):
        return type(self), (self.reasons, self.proba)
