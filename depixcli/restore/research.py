"""--pixelate research mode: head-crop PSNR, SSIM and identity cosine of the pixelated and the restored frame
against the clean original.
"""

from __future__ import annotations

import numpy as np

from depixcli.errors import BackendError
from depixcli.evaluate.metrics import psnr, ssim
from depixcli.faces.identity import SFaceIdentity, cosine
from depixcli.geometry.crop import CropBox, crop

METRIC_CROP = 128  # px, side of the head crops compared by the --pixelate metrics


def face_metrics(original: np.ndarray, pixelated: np.ndarray, result: np.ndarray, box: CropBox, identity=None):
    """Head-crop scores of the pixelated and the reconstructed frame against the original.

    PSNR (dB) and SSIM on luma; with an `identity.SFaceIdentity`, the cosine of SFace embeddings
    (all three crops aligned by the landmarks found on the original). -> {name: (pixelated, reconstructed)}
    """
    o, p, r = (crop(img, box, METRIC_CROP) for img in (original, pixelated, result))
    scores = {
        "PSNR dB": (float(psnr(o, p)), float(psnr(o, r))),
        "SSIM": (float(ssim(o, p)), float(ssim(o, r))),
    }
    if identity is not None:

        a = identity.align(o)
        e = identity.embed([o, p, r], [a, a, a])
        scores["identity cosine"] = (float(cosine(e[0], e[1])), float(cosine(e[0], e[2])))
    return scores


def load_identity():
    """SFace for the identity score, or None when its model files are not installed (scores skip it)."""
    try:
        return SFaceIdentity()
    except BackendError:
        return None


class MetricSums:
    """Running sums of `face_metrics` over the restored frames of --pixelate. SFace is loaded at the first
    frame, in the thread that adds (it is not thread-safe)."""

    def __init__(self) -> None:
        self.sums: dict[str, list[float]] = {}
        self.identity = None
        self.loaded = False

    def add(self, original: np.ndarray, pixelated: np.ndarray, result: np.ndarray, boxes: list[CropBox]) -> None:
        if not self.loaded:
            self.identity, self.loaded = load_identity(), True
        for box in boxes:
            for name, (a, b) in face_metrics(original, pixelated, result, box, self.identity).items():
                s = self.sums.setdefault(name, [0.0, 0.0, 0.0])
                s[0] += a
                s[1] += b
                s[2] += 1

    def means(self) -> dict[str, dict[str, float]]:
        """{score name: {"pixelated": mean, "reconstructed": mean}} (`RunStats.metrics`)."""
        return {name: {"pixelated": a / n, "reconstructed": b / n} for name, (a, b, n) in self.sums.items()}
