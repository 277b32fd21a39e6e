"""How `depix eval` judges each method's outputs against the ground truth: PSNR and SSIM (metrics.py), and
identity: SFace cosine to the ground truth and re-id rank-1 (alignment from the ground truth, shared by every
method), and the same from dlib's ResNet descriptor when dlib is installed: the judge no model trains on.
Crops are `(N, S, S, 3)` uint8 RGB.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from depixcli.evaluate.config import PSNR_CAP
from depixcli.evaluate.metrics import psnr, ssim
from depixcli.evaluate.protocols import Sample
from depixcli.faces.identity import Gallery, cosine, gallery_frames, normalize, rank1
from depixcli.io.progress import progress_bar


@dataclass(frozen=True, eq=False)
class IdentityReference:
    """Everything identity scoring needs from the ground truth of the evaluated samples."""

    alignments: list  # identity.Alignment per sample, from the ground-truth crop
    embeddings: np.ndarray  # (N, 128) unit SFace embeddings of the ground truth
    identities: list[str]  # per sample
    tracks: list[str]  # per sample (track ids)
    gallery: object  # identity.Gallery
    tracks_without_far_frames: int
    dlib: object | None = None  # identity.DlibIdentity
    dlib_shapes: list | None = None  # per sample, fitted on the ground truth
    dlib_descriptors: np.ndarray | None = None  # (N, 128)
    dlib_gallery: object | None = None  # identity.Gallery of dlib descriptors (same frames as `gallery`)


def identity_reference(sface, dlib, tracks, samples: Sequence[Sample], gts: np.ndarray,
                       quiet: bool = True) -> IdentityReference:
    """Align and embed the ground truth of every sample; build the re-id gallery (identity.py's protocol)."""
    align = [sface.align(g) for g in progress_bar(desc="align", unit="crop", quiet=quiet, leave=False, iterable=gts)]
    queries: dict[int, list[int]] = {}
    for s in samples:
        queries.setdefault(s.track, []).append(s.centre)
    per_identity: dict[str, dict[str, np.ndarray]] = {}
    per_identity_dlib: dict[str, dict[str, np.ndarray]] = {}
    near = 0
    for t, q in progress_bar(desc="gallery", unit="track", quiet=quiet, leave=False, iterable=sorted(queries.items())):
        frames, far = gallery_frames(len(tracks[t].frames), q)
        near += not far
        imgs = [tracks[t].frames[i] for i in frames]
        aligns = [sface.align(i) for i in imgs]
        emb = sface.embed(imgs, aligns)
        per_identity.setdefault(tracks[t].identity, {})[tracks[t].track_id] = emb.mean(axis=0)
        if dlib is not None:
            desc = dlib.descriptors(imgs, [dlib.shape(i, a) for i, a in zip(imgs, aligns)])
            per_identity_dlib.setdefault(tracks[t].identity, {})[tracks[t].track_id] = normalize(desc).mean(axis=0)
    shapes = [dlib.shape(g, a) for g, a in zip(gts, align)] if dlib is not None else None
    return IdentityReference(
        alignments=align,
        embeddings=sface.embed(gts, align),
        identities=[tracks[s.track].identity for s in samples],
        tracks=[tracks[s.track].track_id for s in samples],
        gallery=Gallery(per_identity),
        tracks_without_far_frames=near,
        dlib=dlib,
        dlib_shapes=shapes,
        dlib_descriptors=dlib.descriptors(gts, shapes) if dlib is not None else None,
        dlib_gallery=Gallery(per_identity_dlib) if dlib is not None else None,
    )


def score(out: np.ndarray, gts: np.ndarray, ref: IdentityReference, sface, channel: str) -> dict[str, np.ndarray]:
    """Per-sample metrics `(N,)` of one method's outputs against the ground truth."""
    emb = sface.embed(out, ref.alignments)
    values = {
        "psnr": np.minimum(psnr(gts, out, channel), PSNR_CAP),
        "ssim": ssim(gts, out, channel),
        "sface_cos": cosine(ref.embeddings, emb).astype(np.float64),
        "rank1": rank1(emb, ref.identities, ref.tracks, ref.gallery).astype(np.float64),
    }
    if ref.dlib is not None:
        desc = ref.dlib.descriptors(out, ref.dlib_shapes)
        values["dlib_cos"] = cosine(ref.dlib_descriptors, desc).astype(np.float64)
        values["dlib_rank1"] = rank1(desc, ref.identities, ref.tracks, ref.dlib_gallery).astype(np.float64)
        values["dlib_dist"] = np.linalg.norm(desc - ref.dlib_descriptors, axis=1).astype(np.float64)
    return values
