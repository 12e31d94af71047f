"""Explanation artifacts of one method's evaluation: what the CNN looked at, which feature families count.

* **Grad-CAM gallery** (a method holding a trained CNN): per class, the most confident correct and the
  most confident wrong held-out cells, each explained by the CNN *of the split that predicted it*
  (never a model that trained on the cell), for the class the method predicted (the CNN's own
  prediction where the CNN does not know that class). The heat map is drawn over the image with the
  segmentation outline (nucleus yellow, cell green). ``gradcam_gallery.png`` and
  ``gradcam_gallery.csv`` (path, classes, confidence, the share of heat inside the nucleus and the cell).
* **Feature families** (a method reading handcrafted features, a cascade, a head on CNN embeddings and
  features): permutation importance
  by family on held-out rows (:mod:`hybridwbc.evaluate.importance`): ``family_importance.csv``,
  ``family_importance.md`` and ``family_importance.png``.
* **Per-cell contributions** (a random forest on handcrafted features, alone or as a cascade's stage 2):
  SHAP's tree explainer (the optional ``explain`` extra, ``shap``) on the cells of the error gallery,
  each explained by the forest of the split that predicted it, summed per feature family (SHAP values
  add up) for the predicted class, plus the five largest single contributions: ``shap_errors.csv``.

The CNN is reached through :func:`hybridwbc.models.parts.trained_cnn` and its ``explain`` method, so
this module imports no TensorFlow.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd

from hybridwbc.models.parts import trained_cnn

__all__ = ["gallery_rows", "cnn_gallery", "write_family_importance", "forest_view", "shap_errors",
           "write_explanations", "FILES"]

log = logging.getLogger("hybridwbc")

#: Files this module may write into a method's folder.
FILES = ("gradcam_gallery.png", "gradcam_gallery.csv", "family_importance.csv", "family_importance.md",
         "family_importance.png", "shap_errors.csv")


def gallery_rows(pred, n_per_class: int) -> list[tuple]:
    """The gallery's slots, one row of ``2 * n_per_class`` per true class (``pred.classes`` order):
    ``(position in pred or None, "correct" | "wrong", class)``, the most confident correct predictions then the
    most confident wrong ones, ``None`` where the class has fewer (so each class keeps its own row)."""
    out = []
    conf = pred.proba.max(axis=1)
    for c in pred.classes:
        for kind, mask in (("correct", (pred.y_true == c) & (pred.y_pred == c)),
                           ("wrong", (pred.y_true == c) & (pred.y_pred != c))):
            pos = np.flatnonzero(mask)
            top = [int(p) for p in pos[np.argsort(-conf[pos], kind="stable")[:int(n_per_class)]]]
            out += [(p, kind, str(c)) for p in top] + [(None, kind, str(c))] * (int(n_per_class) - len(top))
    return out


def _tile(cnn, image, pos: int, kind: str, pred, segment) -> tuple:
    """One gallery tile (heat map over the image, masks, caption) and its CSV record (without the path)."""
    from hybridwbc.report.overlay import heatmap_overlay, mass_share, primary_masks

    truth, said, conf = str(pred.y_true[pos]), str(pred.y_pred[pos]), float(pred.proba[pos].max())
    res = cnn.explain([image], said if said in {str(c) for c in cnn.classes_} else None)
    heat, explained = res.maps[0], str(cnn.classes_[res.target[0]])
    nucleus, cytoplasm = primary_masks(segment, image)
    caption = (f"{truth} ok" if kind == "correct" else f"WRONG {truth}->{said}") + f" ({conf:.2f})\nheat: {explained}"
    record = {"label": truth, "predicted": said, "kind": kind, "confidence": conf, "fold": int(pred.fold[pos]),
              "explained_class": explained,
              "heat_in_nucleus": mass_share(heat, nucleus) if nucleus is not None else np.nan,
              "heat_in_cell": mass_share(heat, nucleus | cytoplasm) if nucleus is not None else np.nan}
    return (heatmap_overlay(image, heat), nucleus, cytoplasm, caption), record


def cnn_gallery(paths, pred, fitted: list, out_dir, title: str, n_per_class: int = 2, segment=None) -> Path | None:
    """Write ``gradcam_gallery.png`` and ``.csv`` for the held-out cells of :func:`gallery_rows`.

    Parameters
    ----------
    paths : ndarray of shape (n,), str
        Image path of every row of the table ``pred.rows`` indexes.
    pred : Predictions
    fitted : list of fitted estimators, one per split (``pred.fold`` indexes it)
    out_dir : path-like
    title : str
    n_per_class : int, default 2
    segment : callable ``image -> Segmentation``, optional
        For the outlines (the run's featurizer's ``segment``).

    Returns
    -------
    pathlib.Path or None
        The PNG, or ``None`` when no split's model holds a trained CNN or there is nothing to show.
    """
    from hybridwbc.data.io import read_image
    from hybridwbc.errors import HybridWBCError
    from hybridwbc.report.overlay import overlay_grid

    slots = gallery_rows(pred, n_per_class)
    if trained_cnn(fitted[0]) is None or all(pos is None for pos, _, _ in slots):
        return None
    blank = np.full((32, 32, 3), 255, np.uint8)
    items, records = [], []
    for pos, kind, cls in slots:
        if pos is None:
            items.append((blank, None, None, f"{cls}: no {kind} cell"))
            continue
        path = str(paths[pred.rows[pos]])
        try:
            image = read_image(path)
        except HybridWBCError as exc:
            log.warning("Grad-CAM gallery: %s", exc)
            items.append((blank, None, None, f"{cls}: unreadable"))
            continue
        item, record = _tile(trained_cnn(fitted[int(pred.fold[pos])]), image, pos, kind, pred, segment)
        items.append(item)
        records.append({"path": path, **record})
    out_dir = Path(out_dir)
    pd.DataFrame(records).to_csv(out_dir / "gradcam_gallery.csv", index=False)
    return Path(overlay_grid(items, out_dir / "gradcam_gallery.png", ncols=2 * int(n_per_class), tile=2.4,
                             title=f"{title}: Grad-CAM on held-out cells\nper class the most confident correct, "
                                   "then wrong, predictions; nucleus yellow, cell green"))


def write_family_importance(fitted: list, splits: list, X, y, names, usable, out_dir, title: str,
                            n_repeats: int = 10, seed: int = 0, whole: bool = True, groups=None
                            ) -> pd.DataFrame | None:
    """Permutation importance by feature family on held-out rows, written as CSV, Markdown and a bar chart;
    ``None`` (nothing written) when no stage reads a feature family."""
    from hybridwbc.evaluate.importance import family_importance, importance_markdown
    from hybridwbc.report.plots import family_importance_png

    table = family_importance(fitted, splits, X, y, names, usable, n_repeats=n_repeats, seed=seed, whole=whole,
                              groups=groups)
    if table.empty:
        return None
    out_dir = Path(out_dir)
    table.to_csv(out_dir / "family_importance.csv", index=False)
    (out_dir / "family_importance.md").write_text(importance_markdown(table, title))
    family_importance_png(table, out_dir / "family_importance.png", f"{title}: permutation importance by family")
    return table


def forest_view(est, X, y, names) -> tuple | None:
    """``(forest, X_forest, column names, rows)``: the random forest inside ``est`` that decides the rows ``X``
    (``est`` itself, or a cascade's stage 2 on the rows of its classes), what it sees of them, and which rows
    (bool mask); ``None`` without a forest on named feature columns."""
    from sklearn.ensemble import RandomForestClassifier

    from hybridwbc.models.cascade import CascadeClassifier

    if isinstance(est, RandomForestClassifier):
        return est, np.asarray(X, dtype=np.float64), list(names), np.ones(len(X), bool)
    if isinstance(est, CascadeClassifier) and isinstance(getattr(est, "stage2_", None), RandomForestClassifier):
        base = np.array([str(v).split(":", 1)[0] for v in y], dtype=object)
        rows = np.isin(base, est.rest_)
        for stage, model, xs, _, cols, _ in est.stage_views(X, y):
            if stage == "stage2" and not any(str(c).startswith("embedding__") for c in cols):
                return model, np.asarray(xs, dtype=np.float64), list(cols), rows
    return None


def shap_errors(data, pred, fitted: list, X, names, out_dir) -> Path | None:
    """``shap_errors.csv``: SHAP tree-explainer contributions for the error gallery's cells (see the module
    docstring); ``None`` when no forest decides them or ``shap`` is not installed (logged)."""
    from hybridwbc.evaluate.importance import family_of
    from hybridwbc.evaluate.metrics import most_confident_errors

    worst = most_confident_errors(pred, int(data.cfg.eval.n_error_gallery))
    records = []
    for pos in worst:
        row = int(pred.rows[pos])
        view = forest_view(fitted[int(pred.fold[pos])], X[[row]], data.y[[row]], names)
        if view is None or not view[3][0]:
            continue
        try:
            import shap
        except ImportError:
            log.info("shap is not installed (pip install '.[explain]'): no per-cell contributions for the errors")
            return None
        forest, xs, cols, _ = view
        values = np.asarray(shap.TreeExplainer(forest).shap_values(xs))  # (1, n_features, n_classes)
        classes = [str(c) for c in forest.classes_]
        said = str(pred.y_pred[pos])
        k = classes.index(said) if said in classes else int(np.argmax(forest.predict_proba(xs)[0]))
        contrib = values[0, :, k]
        rec = {"path": str(data.kept["path"].iloc[row]), "label": str(pred.y_true[pos]), "predicted": said,
               "explained_class": classes[k], "fold": int(pred.fold[pos])}
        for fam in dict.fromkeys(family_of(c) for c in cols):
            rec[f"shap__{fam}"] = float(sum(v for c, v in zip(cols, contrib) if family_of(c) == fam))
        top = np.argsort(-np.abs(contrib), kind="stable")[:5]
        rec["top_features"] = "; ".join(f"{cols[j]}: {contrib[j]:+.3f}" for j in top)
        records.append(rec)
    if not records:
        return None
    path = Path(out_dir) / "shap_errors.csv"
    pd.DataFrame(records).to_csv(path, index=False)
    return path


def write_explanations(data, input_kind: str, pred, splits: list, fitted: list, X, names, usable, out_dir,
                       title: str) -> dict:
    """The explanation artifacts a method's evaluation writes (settings: ``eval.explain``); returns metrics
    (``importance.<stage>.<family>``: mean drops)."""
    settings = data.cfg.eval.get("explain")
    if settings is None or not settings.enabled:
        return {}
    cnn_gallery(data.model_paths, pred, fitted, out_dir, title, int(settings.gallery_per_class),
                data.segment)
    if names is None or not any(str(n) != "path" and "__" in str(n) for n in names):
        return {}
    whole = input_kind == "features"
    if whole:
        shap_errors(data, pred, fitted, X, names, out_dir)
    if not whole and not hasattr(fitted[0], "stage_views"):
        return {}  # predicting would run the CNN once per permutation; stages with views are scored directly
    table = write_family_importance(fitted, splits, X, data.y, names, usable, out_dir, title,
                                    n_repeats=int(settings.importance_repeats), seed=int(data.cfg.seed), whole=whole,
                                    groups=data.groups if data.subjects else None)
    if table is None:
        return {}
    return {f"importance.{r.stage}.{r.family}": float(r.drop_mean) for r in table.itertuples(index=False)}
