"""`depix audit ANONYMISED --original ORIGINAL`: does an anonymised video still show who is in it?

Data flow (two streaming passes over both videos in lockstep, one frame of each at a time; only the frames
between `start` and `start + duration` s, numbered and timed as in the whole video: `window_frames`):

  pass 1  decode both -> refuse different sizes / frame counts -> detect faces on the ORIGINAL (boxes and
          landmarks only are kept) -> face tracks (`track.build_tracks`, as `depix pixelate` makes them)
  plan    per track: the frames scored (those with a detection, evenly spread, at most `frames`), the
          frames of its re-identification gallery entry, the frames of the model's window stacks
  pass 2  decode both -> per track and frame needed: head crops of the original and the anonymised frame
          (the same `geometry.head_box` of the original's face box in both), the mosaic located on the
          anonymised frame (`locate.locate_mosaics` around the face) -> when a track's last needed frame
          has passed: the three attacks, SFace cosines, mosaic analysis, verdict; its crops are dropped

The three leaks of a track, scored on every scored frame against the original's head crop of that frame:
  (a) `anonymised`: the anonymised face as it is;
  (b) `smoothed`: a Gaussian blur of it, sigma `SMOOTH_SIGMA_CELLS` mosaic blocks (anyone can do this);
  (c) `reconstructed`: depix's own reconstruction (`model.reconstructor.Reconstructor`, the model `depix run`
      uses) from window stacks of anonymised head crops, colour-matched and blended over the mosaic as
      `depix run` pastes it. The crop is the original's head box: the attack is told where the face is.
Every candidate is aligned for SFace with the landmarks YuNet found on the ORIGINAL frame
(`identity.SFaceIdentity.embed`), so all are cropped the same way. Per attack: the median cosine, the
share of scored frames above SFace's same-person threshold (`SFACE_THRESHOLD`), and the re-identification
rank: the mean embedding of the attack over the track's query frames against a gallery of one entry per
face track of the video (mean original embedding over that track's gallery frames, `identity.query_span`
/ `identity.gallery_frames`) plus one per `--gallery` photo; rank 1 = the person is the best match.

Mosaic analysis (model-free; explains why a mosaic leaks), on the scored frames where a mosaic grid is
found over the face: block size (px) and blocks across the mosaic; whether the grid is anchored to the
image (its phase in frame coordinates stays put while the face moves) or to the face (the face's phase
in the grid stays put); how many distinct grid phases the face shows (`PHASE_BINS` per axis: each new
phase samples the face differently, the evidence a multi-frame model combines; one when the face's phase
stays within `ANCHOR_SPREAD`); whether the block values
are means of the original's pixels, centre samples, or neither (quantised, noised, stale or filled).

Verdict per track: `leaks` when any attack has a median cosine >= `HOLD_MEDIAN` (and `NULL_MARGIN` above
what a featureless face of the original's mean colour scores, which SFace puts at up to ~0.3), or puts at
least `LEAK_SHARE` of the frames above `SFACE_THRESHOLD` (and `NULL_MARGIN` above the featureless face on
that frame), or re-identifies the person at rank 1 in a
gallery of at least `REID_MIN_GALLERY` entries (chance <= 1 / that) where a featureless face of the same
colour does not (see `judge`); else `holds`. Where the original's face is not reliable (narrower than
`SMALL_FACE`, detector score below `RELIABLE_SCORE`, contrast below `MIN_CONTRAST`, too few frames with fine
detail, or SFace not matching it to itself across frames: `unreliable_reasons`) identity is `not judged`.
The leak timeline (`depixcli.exposure`: coverage and the as-is cosine on every frame of every track, in
pass 2) overrides both: a track with an exposed frame leaks. The video leaks when a track does.
`strength_ladder` mosaics the original's own crops as `depix pixelate --blocks N` would and attacks them
the same way, for the recommendation. Output (text, table, CSV, JSON, sheet): `depixcli.audit_report`.
Frames are `(H, W, 3)` uint8 RGB; crops `(S, S, 3)` uint8 RGB.
"""

from __future__ import annotations

import math
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from depixcli.errors import ConfigError, InputError
from depixcli.exposure import COVERED, UNCOVERED, ExposedRange, Timeline, exposed_ranges, repair_masks
from depixcli.geometry.boxes import iou
from depixcli.geometry.mosaic import circular_spread
from depixcli.io.progress import bar_factory

SFACE_THRESHOLD = 0.363  # cosine, SFace's published same-person threshold (OpenCV Zoo, LFW)
HOLD_MEDIAN = 0.2  # cosine: a track holds only when every attack's median cosine stays below this ...
NULL_MARGIN = 0.1  # cosine: ... or within this of what a featureless face scores (see `judge`)
LEAK_SHARE = 0.10  # share of scored frames above SFACE_THRESHOLD from which a track leaks
REID_MIN_GALLERY = 10  # entries: rank 1 in a gallery this large counts as re-identified (chance <= 10 %)
METRIC_CROP = 128  # px, side of the head crops compared (as `depix eval` and `depix run --pixelate`)
DEFAULT_FRAMES = 60  # frames scored per track, evenly spread (0: all)
DETECT_MATCH_IOU = 0.3  # IoU: a frame's detection belongs to the track box it overlaps this much
SMOOTH_SIGMA_CELLS = 0.5  # naive smoothing: Gaussian sigma in mosaic blocks
FALLBACK_CELLS = 16  # blocks across the mosaic assumed when no grid is found (smoothing sigma, colour match)
LOCATE_MARGIN = 0.6  # the locator looks at the face box grown by this many face sizes on each side
LOCATE_FACE_PX = 160  # px: around larger faces the locator also tries a half-size copy (big blocks)
PHASE_BINS = 4  # bins per axis of the face centre's position within a block (16 phases at most)
PHASE_MIN_SHARE = 0.05  # share of the located frames a phase bin needs to count
ANCHOR_SPREAD = 0.12  # blocks: circular spread of a phase below which it counts as constant
MIN_MOTION_CELLS = 1.0  # blocks: a face moving less than this cannot tell image from face anchoring
VALUE_RATIO = 0.7  # block values are means (samples) when their error is below this share of the other's
VALUE_MAX_ERR = 6.0  # grey levels: block values further than this from both are neither means nor samples
SMALL_FACE = 40  # px, faces narrower than this in the original give unreliable identity scores
RELIABLE_SCORE = 0.75  # median detector score below which the original's "face" may be no face
MIN_SELF_COSINE = 0.5  # median cosine of the original's frames to their own mean below which SFace cannot hold it
MIN_CONTRAST = 10.0  # grey levels, std of the original's face centre below which it is too dark or flat
MIN_DETAIL = 0.5  # share of frames with enough detail to judge coverage, below which the face is too blurred
ATTACKS = ("anonymised", "smoothed", "reconstructed")
ATTACKER_MODEL = {  # what the audit tried: the attacks it ran and what the attacker is given
    "anonymised": "the anonymised face as it is, compared with the original by SFace (every frame with a detection)",
    "smoothed": f"a Gaussian smoothing of the anonymised face, sigma {SMOOTH_SIGMA_CELLS} mosaic blocks",
    "reconstructed": "depix's own multi-frame reconstruction (the model `depix run` uses), told where the face is",
    "re-identification": "rank of the person among the video's face tracks and --gallery photos",
    "coverage": "per frame, the share of the original face's fine detail the anonymised face hides",
    "not run": "other face recognisers, other reconstruction models, human viewers who know the person",
}
LIMITS = ("The audit only judges faces. It cannot judge what else identifies a person: voice, clothing, tattoos, "
          "name tags, licence plates, places, body shape and gait, or what the story says.")
LADDER_BLOCKS = (16, 12, 8, 6, 4)  # `depix pixelate --blocks N` tried on each face for the recommendation
LADDER_SCALE = 1.3  # mosaic box / face box of those trials (pixelate's default)
LADDER_FRAMES = 12  # scored frames per track the trials are attacked on
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")


@dataclass(frozen=True)
class AuditConfig:
    weights: str | None = None  # model file; None: the one `depix run` uses (model.weights.default_weights_path)
    device: str = "auto"  # auto | cpu | cuda, for the reconstruction
    frames: int = DEFAULT_FRAMES  # frames scored per track (0: every frame with a detection)
    gallery: str | None = None  # directory of face photos added to the re-identification gallery
    detector: str = "yunet"  # face detector on the original (must give landmarks: yunet or centerface)
    threshold: float | None = None  # detector score threshold (None: the detector's default)
    max_side: int = 640  # px, long side of the copy the detector sees
    batch_size: int = 8  # window stacks per model call
    recommend: bool = True  # try stronger mosaics on each face for a recommendation (LADDER_BLOCKS)
    start: float = 0.0  # s, audit from this timestamp on
    duration: float | None = None  # s, audit this long (None: to the end)
    quiet: bool = True

    def __post_init__(self) -> None:
        if self.frames < 0:
            raise ConfigError(f"frames per track must be >= 0, got {self.frames}")
        if self.batch_size < 1:
            raise ConfigError(f"batch size must be >= 1, got {self.batch_size}")
        if self.start < 0 or (self.duration is not None and self.duration <= 0):
            raise ConfigError(f"start must be >= 0 and duration > 0, got {self.start}, {self.duration}")
        if self.detector not in ("yunet", "centerface"):
            raise ConfigError(f"the audit needs landmarks: detector yunet or centerface, got {self.detector!r}")


# ------------------------------------------------------------------------------------------ report
@dataclass
class AttackScore:
    median: float  # cosine to the original, median over the scored frames
    above: float  # share of scored frames with cosine >= SFACE_THRESHOLD
    matched: float  # share of scored frames with cosine >= SFACE_THRESHOLD and >= featureless + NULL_MARGIN
    max: float  # highest cosine of a frame
    rank: int  # re-identification rank of the person (1 = best match) among `gallery` entries
    gallery: int  # gallery entries (this video's tracks + --gallery photos)


@dataclass
class MosaicAnalysis:
    located: float  # share of scored frames on which a mosaic grid was found over the face
    block_px: list[float] | None  # (w, h) px, median block size
    blocks: float | None  # blocks across the mosaic (median rect width / block width)
    face_blocks: float | None  # blocks across the original's (tight) face box
    anchor: str  # "image" | "face" | "static" (the face hardly moves) | "neither" | "none" (no grid)
    phases: int  # distinct grid phases the face shows (0 without a grid)
    values: str  # "means" | "samples" | "neither" | "unclear" | "none"
    value_err: list[float] | None  # grey levels: mean |anonymised block - original block mean|, ... - centre sample


@dataclass
class TrackAudit:
    id: int
    first_frame: int
    last_frame: int
    scored: int  # frames scored
    face_px: float  # median width of the original's face box
    featureless: float  # median cosine of a flat image of the original's mean colour (the no-information level)
    featureless_rank: int  # re-identification rank of that flat image (what colour alone gives)
    scores: dict[str, AttackScore]
    mosaic: MosaicAnalysis
    verdict: str  # "holds" | "leaks" | "not judged" (the original's face is not reliable, nothing exposed)
    reasons: list[str]
    worst_frame: int  # frame index the contact sheet shows (highest reconstruction cosine)
    first_time: float = 0.0  # s, timestamp of the first frame
    last_time: float = 0.0  # s, timestamp of the last frame
    identity_verdict: str = "holds"  # the attacks alone: "holds" | "leaks" | "not judged"
    unreliable: list[str] = field(default_factory=list)  # why the original's face cannot be judged (empty: it can)
    quality: dict = field(default_factory=dict)  # detector score, SFace self-cosine, contrast, detail share
    exposed: list[ExposedRange] = field(default_factory=list)  # the leak timeline
    exposed_frames: int = 0
    exposed_seconds: float = 0.0
    judged_frames: float = 0.0  # share of the track's frames whose coverage could be judged
    recommendation: dict | None = None  # strongest setting measured to hold (see `recommend`)
    sheet: dict | None = field(default=None, repr=False)  # crops of the worst frame (not serialised)
    sheet_exposed: dict | None = field(default=None, repr=False)  # crops of the worst exposed frame
    states: list = field(default_factory=list, repr=False)  # per frame: exposure kind or "covered"/"unjudged"


@dataclass
class AuditReport:
    anonymised: str
    original: str
    width: int
    height: int
    frames: int
    weights: str
    gallery_photos: int
    tracks: list[TrackAudit]
    verdict: str  # "holds" | "leaks" | "not judged"
    reasons: list[str]
    notes: list[str] = field(default_factory=list)
    fps: float = 25.0
    first_frame: int = 0  # frame number of the first frame audited (--start)
    first_time: float = 0.0  # s
    last_time: float = 0.0  # s
    sha256: dict = field(default_factory=dict)  # "anonymised", "original": hex digests of the files audited
    parameters: dict = field(default_factory=dict)  # the AuditConfig
    confirmed: bool = False  # the user confirmed nothing but the faces identifies the people
    repair: dict | None = None  # --repair: the repaired copy, frames masked, its new verdict and exposed frames
    masks: dict = field(default_factory=dict, repr=False)  # frame -> [(track, position, box)] --repair masks

    def to_dict(self) -> dict:
        d = asdict(self)
        for t in d["tracks"]:
            for k in ("sheet", "sheet_exposed", "states"):
                t.pop(k, None)
        d.pop("masks", None)
        return {"version": 2, "sface_threshold": SFACE_THRESHOLD, "hold_median": HOLD_MEDIAN,
                "leak_share": LEAK_SHARE, "coverage": {"covered": COVERED, "uncovered": UNCOVERED},
                "attacker_model": ATTACKER_MODEL, "limits": LIMITS, **d}


# ------------------------------------------------------------------------------------------ verdict
def judge(scores: dict[str, AttackScore], mosaic: MosaicAnalysis, featureless: float = 0.0,
          featureless_rank: int = 0) -> tuple[str, list[str]]:
    """`("holds" | "leaks", reasons)` for one track from its attack scores (see the module docstring).

    SFace gives a featureless image (a flat patch of the face's mean colour) a cosine of up to ~0.3 with
    some faces (the embeddings share a mean-face component), so a median at or above HOLD_MEDIAN leaks
    only when it also beats that `featureless` level by NULL_MARGIN: a solid fill must not "leak"; frames
    count towards LEAK_SHARE only when they beat it too (`AttackScore.matched`). Likewise
    rank 1 re-identifies only when the featureless image of the same colour does not reach rank 1 too
    (`featureless_rank`): the track's own gallery entry comes from the same video, whose lighting and
    colours alone can single it out among photos of other people.
    """
    reasons = []
    for name in ATTACKS:
        s = scores.get(name)
        if s is None:
            continue
        if s.median >= HOLD_MEDIAN and s.median >= featureless + NULL_MARGIN:
            reasons.append(f"{name}: median cosine {s.median:.2f} >= {HOLD_MEDIAN} "
                           f"(a featureless face scores {featureless:.2f})")
        if s.matched >= LEAK_SHARE:
            reasons.append(f"{name}: {s.matched:.0%} of frames matched (at or above SFace's same-person threshold "
                           f"{SFACE_THRESHOLD} and {NULL_MARGIN} above a featureless face)")
        if s.rank == 1 and s.gallery >= REID_MIN_GALLERY and featureless_rank != 1:
            reasons.append(f"{name}: re-identified, rank 1 of {s.gallery} (chance {1 / s.gallery:.0%}; "
                           f"the face's colour alone ranks {featureless_rank})")
    if reasons:
        return "leaks", reasons + explain(mosaic)
    best = max(scores, key=lambda k: scores[k].median)
    s = scores[best]
    held = [f"highest median cosine {s.median:.2f} ({best}), "
            + (f"< {HOLD_MEDIAN}" if s.median < HOLD_MEDIAN
               else f"within {NULL_MARGIN} of a featureless face's {featureless:.2f}")
            + f"; at most {max(v.matched for v in scores.values()):.0%} of frames matched"]
    if s.gallery >= REID_MIN_GALLERY:
        held.append(f"re-identification ranks {', '.join(str(scores[k].rank) for k in scores)} of {s.gallery} "
                    f"({', '.join(scores)}); the face's colour alone ranks {featureless_rank}")
    elif s.gallery:
        held.append(f"re-identification not tested: a gallery of {s.gallery} face(s) (add --gallery)")
    return "holds", held


def explain(m: MosaicAnalysis) -> list[str]:
    """Why a mosaic leaks, from the model-free analysis (empty when nothing stands out)."""
    out = []
    if m.anchor == "none":
        return ["no mosaic grid found over the face (a fill, a blur, or no anonymisation)"]
    if m.face_blocks is not None and m.face_blocks >= 8:
        out.append(f"fine mosaic: {m.face_blocks:.1f} blocks across the face")
    if m.phases > 1:
        where = {"image": "grid fixed to the image", "face": "grid moves with the face",
                 "static": "face hardly moves", "neither": "grid moves unlike the face"}[m.anchor]
        out.append(f"{where}: the face shows {m.phases} grid phases "
                   "(each samples it differently; a multi-frame model combines them)")
    if m.values == "means":
        out.append("block values are exact means of the face's pixels")
    return out


# ------------------------------------------------------------------------------------------ helpers
def to_crop(points: np.ndarray, box, size: int) -> np.ndarray:
    """Frame pixel-index coordinates `(..., 2)` -> pixel-index coordinates of an `size` crop of `box`."""
    x0, y0, _, _ = box.xyxy
    s = size / box.size
    return (np.asarray(points, np.float64) + 0.5 - (x0, y0)) * s - 0.5


def crop_alignment(det: np.ndarray, box, size: int):
    """`identity.Alignment` in crop coordinates from a detection row `(15,)`: box xyxy, score, 5 landmarks."""
    from depixcli.faces.identity import Alignment

    lm = to_crop(det[5:15].reshape(5, 2), box, size)
    b = to_crop(det[:4].reshape(2, 2) - 0.5, box, size) + 0.5  # continuous corners
    face = np.concatenate([[b[0, 0], b[0, 1], b[1, 0] - b[0, 0], b[1, 1] - b[0, 1]], lm.ravel(), [det[4]]])
    return Alignment(face.astype(np.float32), detected=True)


def locate_face_grid(image: np.ndarray, face_box) -> tuple | None:
    """The mosaic grid over a face: `(MosaicGrid, rect)` in frame coordinates, or None when none is found.

    The locator sees the face box grown by LOCATE_MARGIN face sizes each side; around large faces it
    also tries a half-size copy (blocks too large for it at full size). The region kept is the largest
    one containing the face box centre.
    """
    import cv2

    from depixcli.geometry.mosaic import MosaicGrid
    from depixcli.locate import locate_mosaics

    H, W = image.shape[:2]
    x0, y0, x1, y1 = (float(v) for v in face_box)
    side = max(x1 - x0, y1 - y0)
    m = LOCATE_MARGIN * side
    rx0, ry0 = max(int(x0 - m), 0), max(int(y0 - m), 0)
    rx1, ry1 = min(int(math.ceil(x1 + m)), W), min(int(math.ceil(y1 + m)), H)
    if rx1 - rx0 < 16 or ry1 - ry0 < 16:
        return None
    roi = image[ry0:ry1, rx0:rx1]
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    scales = [1.0] + ([0.5] if side > LOCATE_FACE_PX else [])
    for f in scales:
        img = roi if f == 1.0 else cv2.resize(roi, None, fx=f, fy=f, interpolation=cv2.INTER_AREA)
        fx, fy = roi.shape[1] / img.shape[1], roi.shape[0] / img.shape[0]
        best = None
        for r in locate_mosaics(img):
            gx0, gy0, gx1, gy1 = r.rect[0] * fx + rx0, r.rect[1] * fy + ry0, r.rect[2] * fx + rx0, r.rect[3] * fy + ry0
            if gx0 <= cx <= gx1 and gy0 <= cy <= gy1:
                area = (gx1 - gx0) * (gy1 - gy0)
                if best is None or area > best[0]:
                    grid = MosaicGrid(int(round(gx0)), int(round(gy0)), int(round(gx1)), int(round(gy1)),
                                      r.cell_w * fx, r.cell_h * fy, r.origin_x * fx + rx0, r.origin_y * fy + ry0)
                    best = (area, grid)
        if best is not None:
            return best[1]
    return None


def value_errors(original: np.ndarray, anonymised: np.ndarray, grid) -> tuple[float, float] | None:
    """Mean |anonymised block value - original block mean| and |... - original centre sample|, grey levels.

    Only blocks wholly inside the grid rect and the frame count; the anonymised value is the median of the
    block's interior (codec ringing at block edges left out). None when no whole block is visible.
    """
    from dataclasses import replace

    from depixcli.geometry.mosaic import cell_values, clipped_rect

    H, W = original.shape[:2]
    x0, y0, x1, y1 = clipped_rect(grid, (H, W))
    if x1 - x0 < 2 * grid.cell_w or y1 - y0 < 2 * grid.cell_h:
        return None
    means, cs, rs = cell_values(original, replace(grid, mode="mean"))
    samples, _, _ = cell_values(original, replace(grid, mode="center"))
    cw = np.diff(np.r_[cs, x1 - x0])
    ch = np.diff(np.r_[rs, y1 - y0])
    full_c = np.abs(cw - grid.cell_w) <= 1.0
    full_r = np.abs(ch - grid.cell_h) <= 1.0
    full_c[[0, -1]] = False  # border blocks may be cut by the rect
    full_r[[0, -1]] = False
    if not full_c.any() or not full_r.any():
        return None
    e_mean, e_sample = [], []
    roi = anonymised[y0:y1, x0:x1].astype(np.float64)
    inset_x, inset_y = int(grid.cell_w >= 5), int(grid.cell_h >= 5)
    for i in np.flatnonzero(full_r):
        for j in np.flatnonzero(full_c):
            block = roi[rs[i] + inset_y:rs[i] + ch[i] - inset_y, cs[j] + inset_x:cs[j] + cw[j] - inset_x]
            v = np.median(block.reshape(-1, block.shape[-1]), axis=0)
            e_mean.append(np.abs(v - means[i, j]).mean())
            e_sample.append(np.abs(v - samples[i, j]).mean())
    return float(np.mean(e_mean)), float(np.mean(e_sample))


def count_phases(rho_x: np.ndarray, rho_y: np.ndarray) -> int:
    """Distinct grid phases of the face: `PHASE_BINS` x `PHASE_BINS` bins of its position within a block
    (per axis, in blocks, [0, 1)), the bins centred on the mean phase so that a constant phase with
    measurement noise stays in one bin; a bin counts when it holds `PHASE_MIN_SHARE` of the frames."""
    keys = []
    for rho in (rho_x, rho_y):
        mean = np.angle(np.mean(np.exp(2j * np.pi * rho))) / (2 * np.pi)
        keys.append(np.floor(((rho - mean + 0.5 / PHASE_BINS) % 1.0) * PHASE_BINS).astype(int) % PHASE_BINS)
    _, counts = np.unique(np.stack(keys, 1), axis=0, return_counts=True)
    return int(np.sum(counts >= max(1, PHASE_MIN_SHARE * len(rho_x))))


def analyse_mosaic(obs: list[dict], n_scored: int) -> MosaicAnalysis:
    """Summarise per-frame grid observations `{"grid", "face": box, "errors"}` of one track."""
    if not obs:
        return MosaicAnalysis(0.0, None, None, None, "none", 0, "none", None)
    cw = np.array([o["grid"].cell_w for o in obs])
    ch = np.array([o["grid"].cell_h for o in obs])
    ox = np.array([o["grid"].origin_x for o in obs])
    oy = np.array([o["grid"].origin_y for o in obs])
    widths = np.array([o["grid"].x1 - o["grid"].x0 for o in obs], np.float64)
    faces = np.array([o["face"] for o in obs], np.float64)
    fcx, fcy = (faces[:, 0] + faces[:, 2]) / 2, (faces[:, 1] + faces[:, 3]) / 2
    # the face's phase within the grid, and the grid's phase in frame coordinates
    rho_x, rho_y = ((fcx - ox) / cw) % 1.0, ((fcy - oy) / ch) % 1.0
    phi_x, phi_y = (ox / cw) % 1.0, (oy / ch) % 1.0
    motion = max(np.ptp(fcx / cw), np.ptp(fcy / ch))
    face_still = max(circular_spread(rho_x), circular_spread(rho_y)) < ANCHOR_SPREAD
    # a phase constant within ANCHOR_SPREAD is one phase: with small blocks the detector's jitter of the
    # face centre (~0.5 px) alone can put a single frame across a bin edge
    phases = 1 if face_still else count_phases(rho_x, rho_y)
    image_still = (max(circular_spread(phi_x), circular_spread(phi_y)) < ANCHOR_SPREAD
                   and np.ptp(cw) <= 0.05 * np.median(cw))
    if motion < MIN_MOTION_CELLS:
        anchor = "static"
    elif image_still and not face_still:
        anchor = "image"
    elif face_still:
        anchor = "face"
    else:
        anchor = "neither"
    errs = np.array([o["errors"] for o in obs if o["errors"] is not None])
    if len(errs) == 0:
        values, value_err = "unclear", None
    else:
        em, es = (float(v) for v in np.median(errs, axis=0))
        value_err = [round(em, 2), round(es, 2)]
        if min(em, es) > VALUE_MAX_ERR:
            values = "neither"
        elif em < VALUE_RATIO * es:
            values = "means"
        elif es < VALUE_RATIO * em:
            values = "samples"
        else:
            values = "unclear"
    bw, bh = float(np.median(cw)), float(np.median(ch))
    return MosaicAnalysis(
        located=len(obs) / max(n_scored, 1), block_px=[round(bw, 2), round(bh, 2)],
        blocks=round(float(np.median(widths / cw)), 1),
        face_blocks=round(float(np.median((faces[:, 2] - faces[:, 0]) / cw)), 1),
        anchor=anchor, phases=phases, values=values, value_err=value_err,
    )


def attack_smooth(crop: np.ndarray, cell_crop_px: float) -> np.ndarray:
    """The naive attack: a Gaussian blur of sigma SMOOTH_SIGMA_CELLS blocks (crop px per block given)."""
    import cv2

    sigma = max(SMOOTH_SIGMA_CELLS * cell_crop_px, 1.0)
    return cv2.GaussianBlur(crop, (0, 0), sigma, borderType=cv2.BORDER_REPLICATE)


def blend_in_crop(anon: np.ndarray, recon: np.ndarray, box, rect, cell_px: float) -> np.ndarray:
    """`depix run`'s paste done in crop space: colour match `recon` to `anon`, blend it over the mosaic `rect`.

    anon, recon `(S, S, 3)` uint8 crops of `box`; rect xyxy and cell_px in frame px.
    """
    from depixcli.reconstruct import blend_mask, colour_match, colour_sigma, feather_width

    S = anon.shape[0]
    k = S / box.size
    sigma = max(colour_sigma(rect, cell_px) * k, 0.5)
    matched = colour_match(recon.astype(np.float32), anon.astype(np.float32), sigma)
    bx0, by0, _, _ = box.xyxy
    r = ((rect[0] - bx0) * k, (rect[1] - by0) * k, (rect[2] - bx0) * k, (rect[3] - by0) * k)
    mask = blend_mask(r, feather_width(rect) * k, (0, 0, S, S))[..., None]
    out = anon.astype(np.float32) * (1 - mask) + matched * mask
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def resize_square(img: np.ndarray, size: int) -> np.ndarray:
    import cv2

    if img.shape[0] == size:
        return img
    interp = cv2.INTER_AREA if img.shape[0] > size else cv2.INTER_LINEAR
    return cv2.resize(img, (size, size), interpolation=interp)


def gallery_photos(directory: str, identity, detector) -> tuple[list[str], np.ndarray, list[str]]:
    """Embeddings of the largest face in each image of `directory`: `(names, (G, 128) embeddings, notes)`."""
    d = Path(directory)
    if not d.is_dir():
        raise InputError(f"--gallery {directory}: not a directory")
    files = sorted(p for p in d.iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS)
    if not files:
        raise InputError(f"--gallery {directory}: no images ({', '.join(IMAGE_EXTENSIONS)})")
    return photo_embeddings(files, identity, detector)


def photo_embeddings(files, identity, detector) -> tuple[list[str], np.ndarray, list[str]]:
    """Embeddings of the largest face in each image file: `(names, (G, 128) embeddings, notes)`; files that
    cannot be read or show no face with landmarks are left out (and named in the notes)."""
    import cv2

    from depixcli.geometry.crop import crop, head_box

    names, feats, skipped = [], [], []
    for p in map(Path, files):
        bgr = cv2.imread(str(p), cv2.IMREAD_COLOR)
        if bgr is None:
            skipped.append(p.name)
            continue
        rgb = np.ascontiguousarray(bgr[..., ::-1])
        dets = detector.detect(rgb)
        if not dets or dets[0].landmarks is None:
            skipped.append(p.name)
            continue
        det = max(dets, key=lambda d_: (d_.box[2] - d_.box[0]) * (d_.box[3] - d_.box[1]))
        row = np.r_[det.box, det.score, np.asarray(det.landmarks).ravel()]
        box = head_box(det.box)
        feats.append(identity.embed([crop(rgb, box, METRIC_CROP)], [crop_alignment(row, box, METRIC_CROP)])[0])
        names.append(p.name)
    notes = [f"gallery: {len(skipped)} image(s) without a readable face skipped: {', '.join(skipped[:5])}"
             + (" ..." if len(skipped) > 5 else "")] if skipped else []
    return names, np.array(feats, np.float32).reshape(-1, 128), notes


# ------------------------------------------------------------------------------------------ passes
def find_faces(anonymised, original, config: AuditConfig = AuditConfig(), detector=None, progress=None):
    """Pass 1: check the two videos match; detect and track faces on the original.

    Returns `(VideoInfo of the original, frame count, per-frame detections [(k, 15) arrays: box xyxy,
    score, 5 landmarks x, y], tracks, clock [(frame number, timestamp s)])`, over the frames of the window
    `config.start`, `config.duration`. Raises InputError when sizes or frame counts differ.
    """
    from depixcli.faces.detect import load_detector
    from depixcli.faces.track import build_tracks
    from depixcli.io.video import probe

    a_info, o_info = probe(anonymised), probe(original)
    if (a_info.width, a_info.height) != (o_info.width, o_info.height):
        raise InputError(f"{anonymised} is {a_info.width}x{a_info.height} but {original} is "
                         f"{o_info.width}x{o_info.height}: not an anonymised copy of it")
    det = detector or load_detector(config.detector, threshold=config.threshold, max_side=config.max_side)
    per_frame, clock = [], []
    o_iter = window_frames(original, config.start, config.duration)
    a_iter = window_frames(anonymised, config.start, config.duration)
    while True:
        o, a = next(o_iter, None), next(a_iter, None)
        if o is None or a is None:
            if o is not None or a is not None:
                n = len(per_frame)
                n_o = n + (o is not None) + sum(1 for _ in o_iter)
                n_a = n + (a is not None) + sum(1 for _ in a_iter)
                raise InputError(f"{anonymised} has {n_a} frames but {original} has {n_o}: "
                                 "not an anonymised copy of it")
            break
        rows = [np.r_[d.box, d.score, np.asarray(d.landmarks, np.float64).ravel()]
                for d in det.detect(o.image) if d.landmarks is not None]
        per_frame.append(np.array(rows, np.float64).reshape(-1, 15))
        clock.append((o.index, round(o.time, 4)))
        if progress is not None:
            progress.update(1)
    return o_info, len(per_frame), per_frame, build_tracks([r[:, :5] for r in per_frame]), clock


@dataclass
class _Plan:
    """What pass 2 collects for one track (positions are offsets into the track's frames)."""

    track: object  # track.Track
    dets: dict[int, np.ndarray]  # position -> (15,) detection row on the original
    score: list[int]  # positions scored
    query: list[int]  # scored positions probing re-identification
    gallery: list[int]  # positions whose original embeddings make the track's gallery entry
    stacks: dict[int, list[int]]  # scored position -> positions of its model window stack
    last: int  # last frame index pass 2 needs for this track
    orig: dict = field(default_factory=dict)  # position -> METRIC_CROP crop of the original
    anon: dict = field(default_factory=dict)  # position -> METRIC_CROP crop of the anonymised frame
    model_in: dict = field(default_factory=dict)  # position -> model-size crop of the anonymised frame
    grids: dict = field(default_factory=dict)  # position -> located MosaicGrid (or None)
    errors: dict = field(default_factory=dict)  # position -> value_errors(...)
    entry: list = field(default_factory=list)  # original embeddings of the gallery positions
    timeline: Timeline = field(default_factory=Timeline)  # every frame's exposure
    ladder: list = field(default_factory=list)  # scored positions the strength ladder is tested on
    orig_model: dict = field(default_factory=dict)  # position -> model-size crop of the original (ladder stacks)


def plan_tracks(tracks, per_frame, frames: int, geometry, ladder: bool = False) -> tuple[list[_Plan], list[str]]:
    """Pick, per track, the frames to score, its gallery frames and the model's stack frames."""
    from depixcli.faces.identity import gallery_frames, query_span, spread_frames
    from depixcli.model.config import window_indices

    plans, notes = [], []
    for tr in tracks:
        dets = {}
        for k, (t, box, filled) in enumerate(zip(tr.frames, tr.boxes, tr.filled)):
            if filled:
                continue
            rows = per_frame[int(t)]
            ious = [iou(r[:4], box) for r in rows]
            if ious and max(ious) >= DETECT_MATCH_IOU:
                dets[k] = rows[int(np.argmax(ious))]
        if not dets:
            notes.append(f"track {tr.id}: no frame with landmarks; not scored")
            continue
        n = len(tr.frames)
        score = spread_frames(sorted(dets), frames) if frames else sorted(dets)
        query = [p for p in score if p < query_span(n)] or score
        wanted, _ = gallery_frames(n, query)
        have = np.array(sorted(dets))
        gallery = sorted({int(have[np.argmin(np.abs(have - p))]) for p in wanted})
        stacks = {p: window_indices(p, n, geometry.window, geometry.stride) for p in score}
        needed = set(score) | set(gallery) | {q for s in stacks.values() for q in s}
        plans.append(_Plan(tr, dets, score, query, gallery, stacks, int(tr.frames[0]) + max(needed),
                           ladder=spread_frames(score, LADDER_FRAMES) if ladder else []))
    return plans, notes


def flat_face(crop: np.ndarray) -> np.ndarray:
    """The featureless face: a crop of the original's mean colour, flat (the no-information level)."""
    blank = np.empty_like(crop)
    blank[:] = np.rint(crop.reshape(-1, 3).mean(0)).astype(np.uint8)
    return blank


def identity_cosines(identity, original: np.ndarray, candidates: list, alignment) -> tuple[np.ndarray, np.ndarray]:
    """The report's identity measure, in one place: SFace cosine of each candidate crop to the original
    crop, all aligned with the original's landmarks. Returns `(cosines (N,), embeddings (1 + N, 128))`."""
    from depixcli.faces.identity import cosine

    e = identity.embed([original, *candidates], [alignment] * (1 + len(candidates)))
    return np.asarray(cosine(e[:1], e[1:]), np.float64).reshape(-1), e


def _collect(plan: _Plan, k: int, orig: np.ndarray, anon: np.ndarray, identity, model_size: int,
             frame: int | None = None, time: float | None = None) -> None:
    """Pass 2, one frame of one track: its exposure (timeline), crops, mosaic grid, gallery embedding."""
    from depixcli.exposure import FrameExposure, coverage, face_patch
    from depixcli.geometry.crop import crop, head_box

    face = plan.track.boxes[k]
    box = head_box(face)
    cos, matched = None, False
    if k in plan.dets:  # the anonymised face as it is, on every frame with a detection
        o, a = crop(orig, box, METRIC_CROP), crop(anon, box, METRIC_CROP)
        c, _ = identity_cosines(identity, o, [flat_face(o), a], crop_alignment(plan.dets[k], box, METRIC_CROP))
        cos = round(float(c[1]), 4)
        matched = bool(c[1] >= SFACE_THRESHOLD and c[1] >= c[0] + NULL_MARGIN)
    frame = int(plan.track.frames[k]) if frame is None else frame
    fe = FrameExposure(frame, round(float(frame if time is None else time), 4),
                       coverage(face_patch(orig, face), face_patch(anon, face)), cos, matched)
    plan.timeline.frames.append(fe)
    plan.timeline.offer(fe, lambda: {"original": crop(orig, box, METRIC_CROP),
                                     "anonymised": crop(anon, box, METRIC_CROP)})
    if k in plan.gallery:
        a = crop_alignment(plan.dets[k], box, METRIC_CROP)
        plan.entry.append(identity.embed([crop(orig, box, METRIC_CROP)], [a])[0])
    if k in plan.stacks:
        plan.orig[k] = crop(orig, box, METRIC_CROP)
        plan.anon[k] = crop(anon, box, METRIC_CROP)
        grid = locate_face_grid(anon, face)
        plan.grids[k] = grid
        plan.errors[k] = value_errors(orig, anon, grid) if grid is not None else None
    if any(k in s for s in plan.stacks.values()):
        plan.model_in[k] = crop(anon, box, model_size)
    if any(k in plan.stacks[p] for p in plan.ladder):
        plan.orig_model[k] = crop(orig, box, model_size)


def run_attacks(plan: _Plan, positions, anon: dict, model_in: dict, grids: dict, model, identity, batch_size: int):
    """The three attacks on the anonymised crops of `positions` (`anon`: METRIC_CROP crops, `model_in`:
    model-size crops of every stack position, `grids`: the mosaic grid over the face or None). Yields
    `(position, cosines [featureless, anonymised, smoothed, reconstructed], embeddings (5, 128), recon crop)`."""
    from depixcli.geometry.crop import head_box
    from depixcli.reconstruct import rect_for_face

    tr = plan.track
    for i in range(0, len(positions), batch_size):
        batch = positions[i:i + batch_size]
        out = model(np.stack([np.stack([model_in[q] for q in plan.stacks[p]]) for p in batch]))
        for p, r in zip(batch, out):
            face = tr.boxes[p]
            box = head_box(face)
            grid = grids[p]
            rect = grid.rect if grid is not None else rect_for_face(face)
            cell = max(grid.cell_w, grid.cell_h) if grid is not None else (rect[2] - rect[0]) / FALLBACK_CELLS
            recon = resize_square(blend_in_crop(model_in[p], r, box, rect, cell), METRIC_CROP)
            smooth = attack_smooth(anon[p], cell * METRIC_CROP / box.size)
            a = crop_alignment(plan.dets[p], box, METRIC_CROP)
            cs, e = identity_cosines(identity, plan.orig[p], [flat_face(plan.orig[p]), anon[p], smooth, recon], a)
            yield p, cs, e, recon


def grid_in_crop(grid, box, size: int):
    """A frame-coordinate MosaicGrid -> the same grid over an `size` px crop of `box`."""
    from depixcli.geometry.mosaic import MosaicGrid

    k = size / box.size
    x0, y0, _, _ = box.xyxy
    r = grid.rect
    return MosaicGrid(int(round((r[0] - x0) * k)), int(round((r[1] - y0) * k)), int(round((r[2] - x0) * k)),
                      int(round((r[3] - y0) * k)), grid.cell_w * k, grid.cell_h * k,
                      (grid.origin_x - x0) * k, (grid.origin_y - y0) * k)


def strength_ladder(plan: _Plan, model, identity, batch_size: int) -> list[dict]:
    """The audit's own test of stronger mosaics on this face: per `LADDER_BLOCKS` N, the original's crops
    mosaicked as `depix pixelate --blocks N` does (N x N over 1.3 x the face box), attacked as above on up
    to `LADDER_FRAMES` scored frames. `[{"blocks", "verdict", "median": {attack: cosine}}]`, finest first."""
    from depixcli.geometry.boxes import scale_box
    from depixcli.geometry.crop import head_box
    from depixcli.geometry.mosaic import apply_mosaic, grid_from_blocks

    out = []
    if not plan.ladder:
        return out
    for n in LADDER_BLOCKS:
        grids, anon, model_in = {}, {}, {}
        for p in set(plan.ladder) | {q for p in plan.ladder for q in plan.stacks[p]}:
            face = plan.track.boxes[p]
            box = head_box(face)
            g = grid_from_blocks(scale_box(face, LADDER_SCALE), n)
            grids[p] = g
            if p in plan.orig_model:
                model_in[p] = apply_mosaic(plan.orig_model[p], grid_in_crop(g, box, plan.orig_model[p].shape[0]))
            if p in plan.ladder:
                anon[p] = apply_mosaic(plan.orig[p], grid_in_crop(g, box, METRIC_CROP))
        cos = {a: [] for a in ATTACKS}
        null = []
        for _, cs, _, _ in run_attacks(plan, plan.ladder, anon, model_in, grids, model, identity, batch_size):
            null.append(cs[0])
            for name, v in zip(ATTACKS, cs[1:]):
                cos[name].append(v)
        nl = np.array(null)
        scores = {}
        for a, c in cos.items():
            c = np.array(c)
            scores[a] = AttackScore(median=float(np.median(c)), above=float(np.mean(c >= SFACE_THRESHOLD)),
                                    matched=float(np.mean((c >= SFACE_THRESHOLD) & (c - nl >= NULL_MARGIN))),
                                    max=float(np.max(c)), rank=0, gallery=0)
        verdict, why = judge(scores, MosaicAnalysis(1.0, None, None, None, "face", 1, "means", None),
                             float(np.median(nl)))
        out.append({"blocks": n, "verdict": verdict, "median": {a: round(s.median, 3) for a, s in scores.items()},
                    "matched": {a: round(s.matched, 3) for a, s in scores.items()},
                    "why": why[0] if verdict == "leaks" else ""})
    return out


def recommend(ladder: list[dict]) -> dict | None:
    """The finest mosaic of `strength_ladder` that held on this face (`depix pixelate --blocks N`), or --secure."""
    if not ladder:
        return None
    held = [r for r in ladder if r["verdict"] == "holds"]
    best = held[0]["blocks"] if held else None
    return {"blocks": best, "command": f"depix pixelate --blocks {best}" if best else "depix pixelate --secure",
            "ladder": ladder}


def _finish(plan: _Plan, model, identity, batch_size: int) -> dict:
    """Attacks and cosines of one track once all its frames are collected; frees its crops."""
    from depixcli.faces.identity import cosine

    frames = plan.timeline.frames

    tr = plan.track
    cos = {a: [] for a in ATTACKS}
    probes = {a: [] for a in ATTACKS}
    null, blanks = [], []  # cosine and embeddings of a featureless face: the original's mean colour, flat
    own = []  # embeddings of the original face (its self-consistency: SFace's quality of the original)
    excess = {a: [] for a in ATTACKS}  # per frame: cosine - the featureless face's cosine
    worst = (-2.0, None)
    for p, cs, e, recon in run_attacks(plan, plan.score, plan.anon, plan.model_in, plan.grids, model, identity,
                                       batch_size):
        c = cs[1:]
        null.append(float(cs[0]))
        own.append(e[0])
        for name, v in zip(ATTACKS, c):
            excess[name].append(float(v) - null[-1])
        if p in plan.query:
            blanks.append(e[1])
        for name, v, emb in zip(ATTACKS, c, e[2:]):
            cos[name].append(float(v))
            if p in plan.query:
                probes[name].append(emb)
        if c[2] > worst[0]:
            worst = (float(c[2]), p, {"original": plan.orig[p], "anonymised": plan.anon[p],
                                      "reconstructed": recon, "cosines": [float(v) for v in c]})
    obs = [{"grid": plan.grids[p], "face": tr.boxes[p], "errors": plan.errors[p]}
           for p in plan.score if plan.grids[p] is not None]
    mosaic = analyse_mosaic(obs, len(plan.score))
    widths = [plan.dets[p][2] - plan.dets[p][0] for p in plan.score]
    own = np.asarray(own, np.float32)
    selfc = cosine(own, np.mean(own, axis=0, keepdims=True)).reshape(-1)
    contrast = [float(plan.orig[p][32:96, 32:96].std()) for p in plan.score]  # grey levels, centre of the head
    ladder = strength_ladder(plan, model, identity, batch_size)
    for d in (plan.orig, plan.anon, plan.model_in, plan.grids, plan.errors, plan.orig_model):
        d.clear()
    return {
        "plan": plan, "cos": cos, "excess": excess, "null": float(np.median(null)), "mosaic": mosaic,
        "face_px": float(np.median(widths)),
        "probe": {k: np.mean(v, axis=0) for k, v in probes.items()}, "probe_blank": np.mean(blanks, axis=0),
        "entry": np.mean(plan.entry, axis=0), "worst": worst, "ladder": ladder,
        "quality": {"score": float(np.median([plan.dets[p][4] for p in plan.score])),
                    "self_cosine": float(np.median(selfc)), "contrast": float(np.median(contrast)),
                    "detail": float(np.mean([f.cover is not None for f in frames])) if frames else 0.0},
    }


def rank_of(probe: np.ndarray, entries: np.ndarray, own: int) -> int:
    """1 + the number of gallery entries closer (cosine) to `probe` than entry `own`."""
    from depixcli.faces.identity import normalize

    sims = normalize(entries) @ normalize(probe[None])[0]
    return 1 + int(np.sum(sims > sims[own]))


def score_pass(pairs, plans: list[_Plan], model, identity, batch_size: int = 8, progress=None,
               clock: list | None = None) -> list[dict]:
    """Pass 2 over `(original, anonymised)` frame pairs (an iterable, streamed): each track's attacks are
    scored as soon as its last needed frame has passed, and its crops dropped. `clock[t]`: `(frame number,
    timestamp s)` of the t-th pair (default: t, t). Returns `_finish` results."""
    done = []
    pending = sorted(plans, key=lambda p: p.last)
    live = list(pending)  # tracks whose frames may still come (the timeline needs every frame)
    for t, (orig, anon) in enumerate(pairs):
        at = clock[t] if clock is not None else (t, float(t))
        for plan in live:
            k = t - int(plan.track.frames[0])
            if 0 <= k < len(plan.track.frames):
                _collect(plan, k, orig, anon, identity, model.geometry.crop_size, *at)
        live = [p for p in live if int(p.track.frames[-1]) > t]
        while pending and pending[0].last <= t and int(pending[0].track.frames[-1]) <= t:
            done.append(_finish(pending.pop(0), model, identity, batch_size))
        if progress is not None:
            progress.update(1)
    for plan in pending:  # the second decode ended early
        done.append(_finish(plan, model, identity, batch_size))
    return sorted(done, key=lambda d: d["plan"].track.id)


def unreliable_reasons(quality: dict, face_px: float) -> list[str]:
    """Why the original's face of a track cannot be judged by identity (empty: it can)."""
    out = []
    if face_px < SMALL_FACE:
        out.append(f"the face is only {face_px:.0f} px wide (at least {SMALL_FACE} needed)")
    if quality["score"] < RELIABLE_SCORE:
        out.append(f"the detector is unsure it is a face (score {quality['score']:.2f} < {RELIABLE_SCORE})")
    if quality["contrast"] < MIN_CONTRAST:
        out.append(f"the face is too dark or flat (contrast {quality['contrast']:.0f} < {MIN_CONTRAST:.0f} "
                   "grey levels)")
    if quality["detail"] < MIN_DETAIL:
        out.append(f"the face is too blurred: {quality['detail']:.0%} of its frames show fine detail")
    if quality["self_cosine"] < MIN_SELF_COSINE:
        out.append(f"SFace does not recognise the original face as itself across frames "
                   f"(cosine {quality['self_cosine']:.2f} < {MIN_SELF_COSINE})")
    return out


def frame_states(frames, reliable: bool) -> list[str]:
    """Per frame of a track: its exposure kind, or "covered", or "not judged" (the sheet's timeline bar)."""
    out = []
    for f in frames:
        if not reliable:
            f.matched = False
        k = f.kind
        out.append(k if k is not None else "covered" if f.cover is not None else "not judged")
    return out


def track_audits(done: list[dict], photos: np.ndarray | None = None, frame_s: float = 0.04) -> list[TrackAudit]:
    """Ranks (gallery: every track's entry, then `photos` `(G, 128)`), timelines, verdicts and reasons per
    track; `frame_s`: one frame's duration (s)."""
    entries = np.array([d["entry"] for d in done], np.float32).reshape(-1, 128)
    if photos is not None and len(photos):
        entries = np.concatenate([entries, np.asarray(photos, np.float32)])
    out = []
    for i, d in enumerate(done):
        scores = {}
        for name in ATTACKS:
            c = np.array(d["cos"][name])
            matched = (c >= SFACE_THRESHOLD) & (np.array(d["excess"][name]) >= NULL_MARGIN)
            scores[name] = AttackScore(
                median=round(float(np.median(c)), 4), above=round(float(np.mean(c >= SFACE_THRESHOLD)), 4),
                matched=round(float(np.mean(matched)), 4),
                max=round(float(c.max()), 4), rank=rank_of(d["probe"][name], entries, i), gallery=len(entries))
        blank_rank = rank_of(d["probe_blank"], entries, i)
        identity_verdict, reasons = judge(scores, d["mosaic"], d["null"], blank_rank)
        unreliable = unreliable_reasons(d["quality"], d["face_px"])
        if unreliable:
            identity_verdict, reasons = "not judged", [f"not judged: {r}" for r in unreliable]
        tr, tl = d["plan"].track, d["plan"].timeline
        states = frame_states(tl.frames, not unreliable)
        ranges = exposed_ranges(tr.id, tl.frames, frame_s)
        n_exp = sum(r.frames for r in ranges)
        if ranges:
            verdict = "leaks"
            reasons = [f"exposed on {n_exp} frame(s), {sum(r.seconds for r in ranges):.2f} s in "
                       f"{len(ranges)} stretch(es)"] + reasons
        else:
            verdict = identity_verdict
        worst_exp = tl.worst if ranges and tl.worst is not None and any(
            r.start_frame <= tl.worst[1] <= r.end_frame for r in ranges) else None
        first = tl.frames[0] if tl.frames else None
        last = tl.frames[-1] if tl.frames else None
        offset = first.frame - int(tr.frames[0]) if first else 0  # frame number - pass index
        out.append(TrackAudit(
            id=tr.id, first_frame=offset + int(tr.frames[0]), last_frame=offset + int(tr.frames[-1]),
            scored=len(d["plan"].score),
            face_px=round(d["face_px"], 1), featureless=round(d["null"], 4), featureless_rank=blank_rank,
            scores=scores, mosaic=d["mosaic"], verdict=verdict, reasons=reasons,
            worst_frame=offset + int(tr.frames[0]) + int(d["worst"][1]),
            first_time=first.time if first else 0.0, last_time=last.time if last else 0.0,
            identity_verdict=identity_verdict, unreliable=unreliable,
            quality={k: round(v, 3) for k, v in d["quality"].items()},
            recommendation=recommend(d["ladder"]), exposed=ranges, exposed_frames=n_exp,
            exposed_seconds=round(sum(r.seconds for r in ranges), 4),
            judged_frames=round(float(np.mean([f.cover is not None for f in tl.frames])), 3) if tl.frames else 0.0,
            sheet=d["worst"][2], sheet_exposed=None if worst_exp is None else {"frame": worst_exp[1], **worst_exp[2]},
            states=states))
    return out


def window_frames(path, start: float = 0.0, duration: float | None = None):
    """Decoded frames of `path` whose timestamp lies in [start, start + duration) s (all from `start` when
    duration is None); frame numbers and timestamps stay those of the whole video."""
    from depixcli.io.video import read_frames

    end = None if duration is None else start + duration
    for f in read_frames(path):
        if f.time < start - 1e-6:
            continue
        if end is not None and f.time >= end - 1e-6:
            break
        yield f


def sha256(path) -> str:
    """Hex SHA-256 of a file's bytes (the report names exactly what was audited)."""
    import hashlib

    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def audit_video(anonymised, original, config: AuditConfig = AuditConfig(), model=None, identity=None,
                detector=None, gallery: tuple | None = None, progress_factory=None) -> AuditReport:
    """Audit `anonymised` against `original` (see the module docstring).

    `model` (a `model.reconstructor.Reconstructor`), `identity` (`identity.SFaceIdentity`), `detector` and
    `gallery` (`gallery_photos(...)`'s result) may be passed in to reuse them over many videos.
    Raises InputError (videos differ, no face in the original), WeightsError, BackendError.
    """
    from depixcli.faces.identity import SFaceIdentity
    from depixcli.io.video import probe
    from depixcli.model.reconstructor import load_reconstructor
    from depixcli.model.weights import default_weights_path

    anonymised, original = os.fspath(anonymised), os.fspath(original)
    if config.weights is None and model is None:
        weights = str(default_weights_path())
    else:
        weights = config.weights or "(given)"
    model = model or load_reconstructor(config.weights, config.device)  # fail on bad weights before long work
    identity = identity or SFaceIdentity()
    if detector is None:
        from depixcli.faces.detect import load_detector

        detector = load_detector(config.detector, threshold=config.threshold, max_side=config.max_side)
    notes = []
    if gallery is None and config.gallery is not None:
        gallery = gallery_photos(config.gallery, identity, detector)
    if gallery is not None:
        notes += gallery[2]
    make = progress_factory or bar_factory(config.quiet)
    bar = make("audit 1/2 detect", probe(original).frames)
    try:
        info, n, per_frame, tracks, clock = find_faces(anonymised, original, config, detector, bar)
    finally:
        bar.close()
    if n == 0:
        raise InputError(f"{original}: no frame between {config.start:g} s and the end of the window")
    if not tracks:
        raise InputError(f"{original}: no face found in the original; nothing to audit")
    plans, more = plan_tracks(tracks, per_frame, config.frames, model.geometry, ladder=config.recommend)
    notes += more
    if not plans:
        raise InputError(f"{original}: no face with landmarks found in the original; nothing to audit")
    bar = make("audit 2/2 score", n)
    try:
        pairs = ((o.image, a.image) for o, a in zip(window_frames(original, config.start, config.duration),
                                                    window_frames(anonymised, config.start, config.duration)))
        done = score_pass(pairs, plans, model, identity, config.batch_size, bar, clock)
    finally:
        bar.close()
    out = track_audits(done, gallery[1] if gallery is not None else None, float(1 / info.fps))
    leaking = [t for t in out if t.verdict == "leaks"]
    if leaking:
        verdict = "leaks"
        reasons = [f"{len(leaking)} of {len(out)} face track(s) leak: " + ", ".join(str(t.id) for t in leaking)]
    elif any(t.verdict == "holds" for t in out):
        verdict, reasons = "holds", [f"{sum(t.verdict == 'holds' for t in out)} of {len(out)} face track(s) hold"]
        skipped = [t for t in out if t.verdict == "not judged"]
        if skipped:
            reasons.append(f"{len(skipped)} not judged (unreliable original face): "
                           + ", ".join(str(t.id) for t in skipped))
    else:
        verdict, reasons = "not judged", [f"none of the {len(out)} original face track(s) is reliable enough to judge"]
    by_id = {tr.id: tr for tr in tracks}
    offset = clock[0][0]  # frame number of pass index 0

    def track_box(tid: int, frame: int):
        tr = by_id[tid]
        k = frame - offset - int(tr.frames[0])
        return (k, tr.boxes[k]) if 0 <= k < len(tr.frames) else None

    masks = repair_masks([r for t in out for r in t.exposed], track_box)
    return AuditReport(anonymised, original, info.width, info.height, n, weights,
                       0 if gallery is None else len(gallery[0]), out, verdict, reasons, notes,
                       fps=float(info.fps), first_frame=clock[0][0], first_time=clock[0][1],
                       last_time=clock[-1][1],
                       sha256={"anonymised": sha256(anonymised), "original": sha256(original)},
                       parameters=asdict(config), masks=masks)
