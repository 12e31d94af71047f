"""Detection scores: boxes matched one-to-one by IoU, recall and precision.

Boxes are ``(x0, y0, x1, y1)`` in pixels (half-open or closed: the same convention on both sides).
:func:`match_boxes` pairs detections with reference boxes greedily by decreasing IoU; a pair
counts when its IoU is at least ``threshold`` (0.5, the PASCAL VOC rule). Recall is matched
reference boxes / reference boxes, precision matched detections / detections.
"""

from __future__ import annotations

__all__ = ["box_iou", "match_boxes", "detection_scores"]


def box_iou(a, b) -> float:
    """Intersection over union of two ``(x0, y0, x1, y1)`` boxes (0 when they do not meet)."""
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def match_boxes(dets, refs, threshold: float = 0.5) -> list[tuple[int, int]]:
    """``(detection index, reference index)`` pairs, one-to-one, greedily by decreasing IoU >= ``threshold``."""
    pairs = sorted(((box_iou(d, g), i, j) for i, d in enumerate(dets) for j, g in enumerate(refs)), reverse=True)
    used_d, used_g, out = set(), set(), []
    for v, i, j in pairs:
        if v < threshold:
            break
        if i in used_d or j in used_g:
            continue
        used_d.add(i)
        used_g.add(j)
        out.append((i, j))
    return out


def detection_scores(n_matched: int, n_dets: int, n_refs: int) -> dict:
    """``recall``, ``precision`` (NaN with nothing to divide by) and the counts."""
    nan = float("nan")
    return {"recall": n_matched / n_refs if n_refs else nan, "precision": n_matched / n_dets if n_dets else nan,
            "matched": int(n_matched), "n_detections": int(n_dets), "n_references": int(n_refs)}
