"""The attacks on an anonymised face: as it is, smoothed, and reconstructed by `depix run`'s model and paste
(`run_attacks`), their SFace cosines to the original (and dlib's distances, the second judge, when it is used), and
the trials of stronger mosaics (`strength_ladder`, SFace only).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, NamedTuple

import cv2
import numpy as np

from depixcli.audit.grid import analyse_mosaic, crop_alignment, grid_in_crop
from depixcli.audit.verdict import (
    ATTACKS,
    METRIC_CROP,
    NULL_MARGIN,
    SFACE_THRESHOLD,
    SMOOTH_SIGMA_CELLS,
    AttackScore,
    MosaicAnalysis,
    judge,
)
from depixcli.faces.identity import cosine, normalize
from depixcli.geometry.boxes import scale_box
from depixcli.geometry.crop import CropBox, crop, head_box
from depixcli.geometry.mosaic import MosaicGrid, apply_mosaic, grid_from_blocks
from depixcli.restore.blend import MAX_FEATHER, paste, rect_for_face

if TYPE_CHECKING:
    from depixcli.audit.plan import TrackPlan  # a plan holds these functions' inputs; plan imports attacks

FALLBACK_CELLS = 16  # blocks across the mosaic assumed when no grid is found (smoothing sigma, colour match)
LADDER_BLOCKS = (16, 12, 8, 6, 4)  # `depix pixelate --blocks N` tried on each face for the recommendation
LADDER_SCALE = 1.3  # mosaic box / face box of those trials (pixelate's default)
REGION_MARGIN = 2  # px kept around a paste's reach in the frame regions of the reconstruction attack


def attack_smooth(crop: np.ndarray, cell_crop_px: float) -> np.ndarray:
    """The naive attack: a Gaussian blur of sigma SMOOTH_SIGMA_CELLS blocks (crop px per block given)."""
    sigma = max(SMOOTH_SIGMA_CELLS * cell_crop_px, 1.0)
    return cv2.GaussianBlur(crop, (0, 0), sigma, borderType=cv2.BORDER_REPLICATE)


def frame_region(frame: np.ndarray, face) -> tuple[np.ndarray, tuple[int, int]]:
    """The part of `frame` a `depix run` paste over this face may read or change: its head box and the mosaic
    rect `depix pixelate` puts over it, grown by the paste's feather and REGION_MARGIN px, inside the frame.
    Returns a copy and its top-left corner `(x0, y0)` px in the frame."""
    bx, rx = head_box(face).xyxy, rect_for_face(face)
    pad = MAX_FEATHER + REGION_MARGIN
    H, W = frame.shape[:2]
    x0, y0 = max(int(np.floor(min(bx[0], rx[0]) - pad)), 0), max(int(np.floor(min(bx[1], rx[1]) - pad)), 0)
    x1, y1 = min(int(np.ceil(max(bx[2], rx[2]) + pad)), W), min(int(np.ceil(max(bx[3], rx[3]) + pad)), H)
    return frame[y0:y1, x0:x1].copy(), (x0, y0)


def shifted_grid(grid: MosaicGrid, dx: int, dy: int) -> MosaicGrid:
    """`grid` in the coordinates of a frame region whose corner is `(dx, dy)` px in the frame."""
    return MosaicGrid(grid.x0 - dx, grid.y0 - dy, grid.x1 - dx, grid.y1 - dy, grid.cell_w, grid.cell_h,
                      grid.origin_x - dx, grid.origin_y - dy, grid.mode)


def restore_attack(region, recon: np.ndarray, source_crop: np.ndarray, face, grid: MosaicGrid | None) -> np.ndarray:
    """The `reconstructed` attack's head crop (METRIC_CROP px): the model's `recon` of the head box pasted over
    the mosaic exactly as `depix run` pastes it (`restore.blend.paste`: evidence step, colour match, feathered
    mask) into the frame `region` (`frame_region`), then cropped as the other attacks are. `grid`: the mosaic
    located over the face (None: its rect is the one `depix pixelate` puts over the face, its blocks unknown)."""
    image, (dx, dy) = region
    box = head_box(face)
    local = CropBox(box.cx - dx, box.cy - dy, box.size)
    if grid is None:
        x0, y0, x1, y1 = rect_for_face(face)
        rect, cell, origin = (x0 - dx, y0 - dy, x1 - dx, y1 - dy), None, None
    else:
        g = shifted_grid(grid, dx, dy)
        rect, cell, origin = g.rect, (g.cell_w, g.cell_h), (g.origin_x, g.origin_y)
    pasted = paste(image, recon, local, rect, cell, source_crop, origin=origin, values="unclear")
    return crop(pasted, local, METRIC_CROP)


def resize_square(img: np.ndarray, size: int) -> np.ndarray:
    if img.shape[0] == size:
        return img
    interp = cv2.INTER_AREA if img.shape[0] > size else cv2.INTER_LINEAR
    return cv2.resize(img, (size, size), interpolation=interp)


def flat_face(crop: np.ndarray) -> np.ndarray:
    """The featureless face: a crop of the original's mean colour, flat (the no-information level)."""
    blank = np.empty_like(crop)
    blank[:] = np.rint(crop.reshape(-1, 3).mean(0)).astype(np.uint8)
    return blank


def identity_cosines(identity, original: np.ndarray, candidates: list, alignment) -> tuple[np.ndarray, np.ndarray]:
    """The report's identity measure, in one place: SFace cosine of each candidate crop to the original
    crop, all aligned with the original's landmarks. Returns `(cosines (N,), embeddings (1 + N, 128))`."""
    e = identity.embed([original, *candidates], [alignment] * (1 + len(candidates)))
    return np.asarray(cosine(e[:1], e[1:]), np.float64).reshape(-1), e


def dlib_distances(dlib, original: np.ndarray, candidates: list, alignment) -> tuple[np.ndarray, np.ndarray]:
    """The second judge's side of `identity_cosines`: Euclidean distance of each candidate crop's dlib descriptor
    to the original crop's, all chipped with dlib landmarks fitted on the original inside the alignment's face box
    (as `depix eval` does). Returns `(distances (N,), descriptors (1 + N, 128))`."""
    d = dlib.describe(original, alignment, candidates)
    return np.linalg.norm(d[1:] - d[0], axis=1).astype(np.float64), d


class Attacked(NamedTuple):
    """One scored frame's attacks, as `run_attacks` yields them."""
    position: int
    cosines: np.ndarray  # (4,) SFace cosine to the original: featureless, anonymised, smoothed, reconstructed
    embeddings: np.ndarray  # (5, 128) SFace: the original, then the four candidates
    recon: np.ndarray  # the reconstructed attack's crop
    distances: np.ndarray | None  # (4,) dlib distance of the four candidates (None: dlib not used)
    descriptors: np.ndarray | None  # (5, 128) dlib descriptors, as `embeddings`


def run_attacks(plan: TrackPlan, positions, anon: dict, model_in: dict, grids: dict, regions: dict, model, identity,
                batch_size: int, dlib=None):
    """The three attacks on the anonymised crops of `positions` (`anon`: METRIC_CROP crops, `model_in`:
    model-size crops of every stack position, `grids`: the mosaic grid over the face or None, `regions`: the
    anonymised frame around the face, `frame_region`), judged by SFace (`identity`) and by `dlib`
    (`identity.DlibIdentity`, or None). Yields `Attacked` per position."""
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
            recon = restore_attack(regions[p], r, model_in[p], face, grid)
            smooth = attack_smooth(anon[p], cell * METRIC_CROP / box.size)
            a = crop_alignment(plan.dets[p], box, METRIC_CROP)
            candidates = [flat_face(plan.orig[p]), anon[p], smooth, recon]
            cs, e = identity_cosines(identity, plan.orig[p], candidates, a)
            dist, desc = dlib_distances(dlib, plan.orig[p], candidates, a) if dlib is not None else (None, None)
            yield Attacked(p, cs, e, recon, dist, desc)


def strength_ladder(plan: TrackPlan, model, identity, batch_size: int) -> list[dict]:
    """The audit's own test of stronger mosaics on this face: per `LADDER_BLOCKS` N, the original's crops
    mosaicked as `depix pixelate --blocks N` does (N x N over 1.3 x the face box), attacked as above on up
    to `LADDER_FRAMES` scored frames. `[{"blocks", "verdict", "median": {attack: cosine}}]`, finest first."""
    out = []
    if not plan.ladder:
        return out
    for n in LADDER_BLOCKS:
        grids, anon, model_in, regions = {}, {}, {}, {}
        for p in set(plan.ladder) | {q for p in plan.ladder for q in plan.stacks[p]}:
            face = plan.track.boxes[p]
            box = head_box(face)
            g = grid_from_blocks(scale_box(face, LADDER_SCALE), n)
            grids[p] = g
            if p in plan.orig_model:
                model_in[p] = apply_mosaic(plan.orig_model[p], grid_in_crop(g, box, plan.orig_model[p].shape[0]))
            if p in plan.ladder:
                anon[p] = apply_mosaic(plan.orig[p], grid_in_crop(g, box, METRIC_CROP))
                image, (dx, dy) = plan.orig_regions[p]
                regions[p] = (apply_mosaic(image, shifted_grid(g, dx, dy)), (dx, dy))
        cos = {a: [] for a in ATTACKS}
        null = []
        attacked = run_attacks(plan, plan.ladder, anon, model_in, grids, regions, model, identity, batch_size)
        for at in attacked:
            cs = at.cosines
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


def score_track(plan: TrackPlan, model, identity, batch_size: int, dlib=None) -> dict:
    """Attacks and cosines of one track once all its frames are collected (and dlib's distances, its "dlib" entry,
    when `dlib` is given, else None); frees its crops."""
    frames = plan.timeline.frames

    tr = plan.track
    cos = {a: [] for a in ATTACKS}
    probes = {a: [] for a in ATTACKS}
    null, blanks = [], []  # cosine and embeddings of a featureless face: the original's mean colour, flat
    own = []  # embeddings of the original face (its self-consistency: SFace's quality of the original)
    excess = {a: [] for a in ATTACKS}  # per frame: cosine - the featureless face's cosine
    worst = (-2.0, None)
    dl = None if dlib is None else {"dist": {a: [] for a in ATTACKS}, "null": [], "probe": {a: [] for a in ATTACKS},
                                    "probe_blank": []}
    attacked = run_attacks(plan, plan.score, plan.anon, plan.model_in, plan.grids, plan.anon_regions, model,
                           identity, batch_size, dlib)
    for p, cs, e, recon, dist, desc in attacked:
        c = cs[1:]
        if dl is not None:
            dl["null"].append(float(dist[0]))
            for name, v, emb in zip(ATTACKS, dist[1:], normalize(desc[2:])):
                dl["dist"][name].append(float(v))
                if p in plan.query:
                    dl["probe"][name].append(emb)
            if p in plan.query:
                dl["probe_blank"].append(normalize(desc[1]))
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
                                      "reconstructed": recon, "cosines": [float(v) for v in c],
                                      "dlib": None if dist is None else [float(v) for v in dist[1:]]})
    obs = [{"grid": plan.grids[p], "face": tr.boxes[p], "errors": plan.errors[p]}
           for p in plan.score if plan.grids[p] is not None]
    mosaic = analyse_mosaic(obs, len(plan.score))
    widths = [plan.dets[p][2] - plan.dets[p][0] for p in plan.score]
    own = np.asarray(own, np.float32)
    selfc = cosine(own, np.mean(own, axis=0, keepdims=True)).reshape(-1)
    contrast = [float(plan.orig[p][32:96, 32:96].std()) for p in plan.score]  # grey levels, centre of the head
    ladder = strength_ladder(plan, model, identity, batch_size)
    if dl is not None:
        dl = {**dl, "probe": {k: np.mean(v, axis=0) for k, v in dl["probe"].items()},
              "probe_blank": np.mean(dl["probe_blank"], axis=0), "entry": np.mean(normalize(plan.dlib_entry), axis=0)}
    for d in (plan.orig, plan.anon, plan.model_in, plan.grids, plan.errors, plan.orig_model):
        d.clear()
    return {
        "plan": plan, "cos": cos, "excess": excess, "null": float(np.median(null)), "mosaic": mosaic,
        "face_px": float(np.median(widths)),
        "probe": {k: np.mean(v, axis=0) for k, v in probes.items()}, "probe_blank": np.mean(blanks, axis=0),
        "entry": np.mean(plan.entry, axis=0), "worst": worst, "ladder": ladder, "dlib": dl,
        "quality": {"score": float(np.median([plan.dets[p][4] for p in plan.score])),
                    "self_cosine": float(np.median(selfc)), "contrast": float(np.median(contrast)),
                    "detail": float(np.mean([f.cover is not None for f in frames])) if frames else 0.0},
    }
