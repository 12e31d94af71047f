"""Heat maps of predicted images (``predict ... explain=true``): what the model's CNN looked at.

For each row ``predict`` answered (``ok`` or ``out_of_domain``), the CNN inside the model
(:func:`hybridwbc.models.parts.trained_cnn`) gives a Grad-CAM map for the label the model predicted
(the CNN's own predicted class where the CNN does not know that label, e.g. a cascade's
``lymphocyte:all``), drawn over the image with the segmentation outline, one PNG per image.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from hybridwbc.data.atomic import atomic_path
from hybridwbc.errors import ConfigError
from hybridwbc.models.parts import trained_cnn

__all__ = ["pipeline_of", "require_cnn", "write_heatmaps", "heat_thumbs"]


def pipeline_of(model):
    """The :class:`~hybridwbc.serve.pipeline.WBCPipeline` of a loaded model (itself, or a pyfunc model's)."""
    from hybridwbc.serve.pipeline import WBCPipeline

    if isinstance(model, WBCPipeline):
        return model
    inner = model.unwrap_python_model() if hasattr(model, "unwrap_python_model") else None
    return getattr(inner, "pipeline", None)


def require_cnn(model, spec: str):
    """The trained CNN of a loaded model, for heat maps.

    Raises
    ------
    ConfigError
        If the model holds no CNN (a classical model has no heat map), naming the model.
    """
    pipeline = pipeline_of(model)
    cnn = trained_cnn(pipeline.estimator) if pipeline is not None else None
    if cnn is None:
        raise ConfigError(f"explain=true needs a model with a CNN; {spec!r} has none "
                          f"({type(getattr(pipeline, 'estimator', model)).__name__}). Fix: drop explain=true, or "
                          "use a CNN-based model (cnn_softmax, cnn_svm, cnn_rf, hybrid, cascade).")
    return cnn


def _file_name(i: int, path: str) -> str:
    stem = re.sub(r"[^A-Za-z0-9._-]+", "_", Path(os.fsdecode(path)).stem)[:60] or "image"
    return f"{i:05d}_{stem}.png"


def _overlay(cnn, segment, image, label, known):
    """The Grad-CAM map of ``label`` (the CNN's own prediction if it does not know ``label``) over ``image``,
    with the segmentation outline: ``(H, W, 3) uint8``."""
    from hybridwbc.report.overlay import heatmap_overlay, primary_masks

    res = cnn.explain([image], str(label) if str(label) in known else None)
    nucleus, cytoplasm = primary_masks(segment, image)
    return heatmap_overlay(image, res.maps[0], nucleus, cytoplasm)


def heat_thumbs(model, crops, labels, side: int = 96) -> list[str]:
    """Per encoded cell crop, its heat map for its label as a ``side``-pixel base64 JPEG (``""`` where the
    crop cannot be decoded or ``labels`` holds ``""``, an unanswered cell): the review page shows them.

    Raises
    ------
    ConfigError
        If the model holds no CNN (:func:`require_cnn`).
    """
    import base64
    import io

    from PIL import Image

    from hybridwbc.data.io import read_image
    from hybridwbc.errors import HybridWBCError

    cnn = require_cnn(model, "model")
    segment = getattr(pipeline_of(model).featurizer, "segment", None)
    known = {str(c) for c in cnn.classes_}
    out = []
    for data, label in zip(crops, labels):
        try:
            image = read_image(data) if label else None
        except HybridWBCError:
            image = None
        if image is None:
            out.append("")
            continue
        buf = io.BytesIO()
        Image.fromarray(_overlay(cnn, segment, image, label, known)).resize((side, side)).save(buf, "JPEG", quality=85)
        out.append(base64.b64encode(buf.getvalue()).decode("ascii"))
    return out


def write_heatmaps(model, frame, folder) -> list[str]:
    """Write one heat-map PNG per answered row of ``predict``'s result into ``folder``.

    Parameters
    ----------
    model : WBCPipeline or pyfunc model holding a CNN (see :func:`require_cnn`)
    frame : DataFrame
        ``predict``'s rows (``path``, ``label``, ``status``).
    folder : path-like
        Created if needed.

    Returns
    -------
    list of str
        Per row, the PNG written, or ``""`` (an error row, an unreadable image).
    """
    from PIL import Image

    from hybridwbc.data.io import read_image
    from hybridwbc.errors import HybridWBCError

    pipeline = pipeline_of(model)
    cnn = require_cnn(model, "model")
    known = {str(c) for c in cnn.classes_}
    segment = getattr(pipeline.featurizer, "segment", None)
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for i, (path, label, status) in enumerate(zip(frame["path"], frame["label"], frame["status"])):
        if status == "error":
            out.append("")
            continue
        try:
            image = read_image(path)
        except HybridWBCError:
            out.append("")
            continue
        target = folder / _file_name(i, path)
        with atomic_path(target) as tmp:
            Image.fromarray(_overlay(cnn, segment, image, label, known)).save(tmp, format="PNG")
        out.append(str(target))
    return out
