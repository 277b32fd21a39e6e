"""Axis-aligned boxes `(x0, y0, x1, y1)` in continuous px (see `geometry.crop`): the one box-overlap measure
(`iou`), overlap relative to the smaller box, and scaling about the centre."""

from __future__ import annotations


def _intersection(a, b) -> float:
    iw = max(0.0, min(float(a[2]), float(b[2])) - max(float(a[0]), float(b[0])))
    ih = max(0.0, min(float(a[3]), float(b[3])) - max(float(a[1]), float(b[1])))
    return iw * ih


def area(box) -> float:
    """Area px^2 of an xyxy box (negative for an inverted one)."""
    return (float(box[2]) - float(box[0])) * (float(box[3]) - float(box[1]))


def iou(a, b) -> float:
    """Intersection over union of two xyxy boxes; 0 when they do not overlap or the union is empty."""
    inter = _intersection(a, b)
    union = area(a) + area(b) - inter
    return inter / union if union > 0 else 0.0


def overlap_smaller(a, b) -> float:
    """Intersection over the smaller box's area (at least 1 px^2): 1 when one box holds the other."""
    return _intersection(a, b) / max(min(area(a), area(b)), 1.0)


def scale_box(box, scale: float) -> tuple[float, float, float, float]:
    """Scale an xyxy box about its centre."""
    x0, y0, x1, y1 = (float(v) for v in box)
    cx, cy, hw, hh = (x0 + x1) / 2, (y0 + y1) / 2, (x1 - x0) * scale / 2, (y1 - y0) * scale / 2
    return (cx - hw, cy - hh, cx + hw, cy + hh)
