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
    "DataLayoutError",
    "ImageReadError",
    "NoCellFoundError",
    "ModelLoadError",
    "WeightsUnavailableError",
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


class WeightsUnavailableError(HybridWBCError, RuntimeError):
    """Pretrained backbone weights could not be obtained (offline, bad file)."""
