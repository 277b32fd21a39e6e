"""What `depix audit` decides and reports: its config (`AuditConfig`), the scores of each attack, the mosaic
analysis, per-track verdicts (`judge`, `track_audits`) and the report (`AuditReport`).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np

from depixcli.errors import ConfigError
from depixcli.exposure import COVERED, UNCOVERED, ExposedRange, exposed_ranges
from depixcli.faces.identity import DLIB_THRESHOLD, normalize

SFACE_THRESHOLD = 0.363  # cosine, SFace's published same-person threshold (OpenCV Zoo, LFW)
HOLD_MEDIAN = 0.2  # cosine: a track holds only when every attack's median cosine stays below this ...
NULL_MARGIN = 0.1  # cosine: ... or within this of what a featureless face scores (see `judge`)
LEAK_SHARE = 0.10  # share of scored frames above SFACE_THRESHOLD from which a track leaks
REID_MIN_GALLERY = 10  # entries: rank 1 in a gallery this large counts as re-identified (chance <= 10 %)
METRIC_CROP = 128  # px, side of the head crops compared (as `depix eval` and `depix run --pixelate`)
DEFAULT_FRAMES = 60  # frames scored per track, evenly spread (0: all)
SMOOTH_SIGMA_CELLS = 0.5  # naive smoothing: Gaussian sigma in mosaic blocks
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
    "second judge": f"dlib's ResNet face descriptor (same person under Euclidean distance {DLIB_THRESHOLD}) on the "
                    "three attacks and re-identification, when installed: no depix model trains on it, while SFace "
                    "can be a training loss of the reconstruction model (see sface_trained)",
    "not run": "other face recognisers, other reconstruction models, human viewers who know the person",
}
LIMITS = ("The audit only judges faces. It cannot judge what else identifies a person: voice, clothing, tattoos, "
          "name tags, licence plates, places, body shape and gait, or what the story says.")


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
    dlib: bool = True  # also judge identity by dlib's descriptor when dlib and its weights import
    start: float = 0.0  # s, audit from this timestamp on
    duration: float | None = None  # s, audit this long (None: to the end)
    confirmed: bool = False  # the user confirmed nothing but the faces identifies the people (--nothing-else-...)
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


@dataclass
class AttackScore:
    median: float  # cosine to the original, median over the scored frames
    above: float  # share of scored frames with cosine >= SFACE_THRESHOLD
    matched: float  # share of scored frames with cosine >= SFACE_THRESHOLD and >= featureless + NULL_MARGIN
    max: float  # highest cosine of a frame
    rank: int  # re-identification rank of the person (1 = best match) among `gallery` entries
    gallery: int  # gallery entries (this video's tracks + --gallery photos)


@dataclass
class DlibScore:
    """dlib's ResNet descriptor on one attack: the identity judge no depix model trains on."""
    median: float  # Euclidean descriptor distance to the original (lower = closer), median over the scored frames
    under: float  # share of scored frames with distance < DLIB_THRESHOLD
    matched: float  # share of scored frames under DLIB_THRESHOLD where the featureless face of the frame is not
    min: float  # lowest distance of a frame
    rank: int  # re-identification rank (1 = best match) among `gallery` entries, by cosine of descriptors
    gallery: int  # gallery entries (this video's tracks + --gallery photos described by dlib)


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
    dlib: dict[str, DlibScore] | None = None  # per attack, the second judge (None: dlib not used)
    dlib_featureless: float | None = None  # median distance of the featureless face
    dlib_featureless_rank: int | None = None  # re-identification rank of the featureless face by dlib
    dlib_verdict: str | None = None  # "holds" | "leaks": dlib's call on the attacks (`judge_dlib`), not the verdict
    dlib_reasons: list[str] = field(default_factory=list)
    judges_agree: bool | None = None  # dlib's call = the identity verdict (None: not compared, see `disagreement`)


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
    dlib: str = "dlib not used"  # the second identity judge: its version, or one line saying why it was not used
    sface_trained: bool | None = None  # SFace was a training loss of the reconstruction model (None: unknown)
    masks: dict = field(default_factory=dict, repr=False)  # frame -> [(track, position, box)] --repair masks

    def to_dict(self) -> dict:
        d = asdict(self)
        for t in d["tracks"]:
            for k in ("sheet", "sheet_exposed", "states"):
                t.pop(k, None)
            if t["dlib"] is None:  # dlib not used: no dlib fields
                for k in DLIB_FIELDS:
                    t.pop(k, None)
        d.pop("masks", None)
        used = any(t.dlib is not None for t in self.tracks)
        return {"version": 2, "sface_threshold": SFACE_THRESHOLD, "hold_median": HOLD_MEDIAN,
                "leak_share": LEAK_SHARE, **({"dlib_threshold": DLIB_THRESHOLD} if used else {}),
                "coverage": {"covered": COVERED, "uncovered": UNCOVERED},
                "attacker_model": ATTACKER_MODEL, "limits": LIMITS, **d}


DLIB_FIELDS = ("dlib", "dlib_featureless", "dlib_featureless_rank", "dlib_verdict", "dlib_reasons", "judges_agree")


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
        held.append(f"re-identification not tested: a gallery of {s.gallery} face(s), fewer than {REID_MIN_GALLERY}")
    return "holds", held


def judge_dlib(scores: dict[str, DlibScore], featureless_rank: int = 0) -> tuple[str, list[str]]:
    """dlib's own call on one track, `("holds" | "leaks", reasons)`: an attack leaks when at least LEAK_SHARE of
    the scored frames fall under DLIB_THRESHOLD where the featureless face of that frame does not
    (`DlibScore.matched`), or when it re-identifies the person at rank 1 in a gallery of at least
    REID_MIN_GALLERY entries where the featureless face does not. It never sets the verdict (SFace's rules do:
    see `depixcli.audit`); the report says where the two judges disagree."""
    reasons = []
    for name, s in scores.items():
        if s.matched >= LEAK_SHARE:
            reasons.append(f"{name}: {s.matched:.0%} of frames under dlib's same-person distance {DLIB_THRESHOLD}")
        if s.rank == 1 and s.gallery >= REID_MIN_GALLERY and featureless_rank != 1:
            reasons.append(f"{name}: re-identified by dlib, rank 1 of {s.gallery}")
    if reasons:
        return "leaks", reasons
    best = min(scores, key=lambda k: scores[k].median)
    return "holds", [f"lowest median dlib distance {scores[best].median:.2f} ({best}); at most "
                     f"{max(v.matched for v in scores.values()):.0%} of frames under {DLIB_THRESHOLD}"]


def dlib_scores(d: dict, entries: np.ndarray, i: int) -> tuple[dict[str, DlibScore], float, int]:
    """`(per attack DlibScore, featureless median distance, featureless rank)` of track `i` from `score_track`'s
    dlib measurements `d` (`entries`: the dlib gallery, every track's entry then the photos)."""
    null = np.array(d["null"])
    scores = {}
    for name in ATTACKS:
        c = np.array(d["dist"][name])
        scores[name] = DlibScore(
            median=round(float(np.median(c)), 4), under=round(float(np.mean(c < DLIB_THRESHOLD)), 4),
            matched=round(float(np.mean((c < DLIB_THRESHOLD) & (null >= DLIB_THRESHOLD))), 4),
            min=round(float(c.min()), 4), rank=rank_of(d["probe"][name], entries, i), gallery=len(entries))
    return scores, round(float(np.median(null)), 4), rank_of(d["probe_blank"], entries, i)


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


def recommend(ladder: list[dict]) -> dict | None:
    """The finest mosaic of `strength_ladder` that held on this face (`depix pixelate --blocks N`), or --secure."""
    if not ladder:
        return None
    held = [r for r in ladder if r["verdict"] == "holds"]
    best = held[0]["blocks"] if held else None
    return {"blocks": best, "command": f"depix pixelate --blocks {best}" if best else "depix pixelate --secure",
            "ladder": ladder}


def rank_of(probe: np.ndarray, entries: np.ndarray, own: int) -> int:
    """1 + the number of gallery entries closer (cosine) to `probe` than entry `own`."""
    sims = normalize(entries) @ normalize(probe[None])[0]
    return 1 + int(np.sum(sims > sims[own]))


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


def track_audits(done: list[dict], photos: np.ndarray | None = None, frame_s: float = 0.04,
                 dlib_photos: np.ndarray | None = None) -> list[TrackAudit]:
    """Ranks (gallery: every track's entry, then `photos` `(G, 128)`; dlib's: every track's dlib entry, then
    `dlib_photos`), timelines, verdicts and reasons per track; `frame_s`: one frame's duration (s)."""
    entries = np.array([d["entry"] for d in done], np.float32).reshape(-1, 128)
    if photos is not None and len(photos):
        entries = np.concatenate([entries, np.asarray(photos, np.float32)])
    dlib_entries = None
    if done and all(d.get("dlib") is not None for d in done):
        dlib_entries = np.array([d["dlib"]["entry"] for d in done], np.float32).reshape(-1, 128)
        if dlib_photos is not None and len(dlib_photos):
            dlib_entries = np.concatenate([dlib_entries, np.asarray(dlib_photos, np.float32)])
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
        if dlib_entries is not None:
            t = out[-1]
            t.dlib, t.dlib_featureless, t.dlib_featureless_rank = dlib_scores(d["dlib"], dlib_entries, i)
            t.dlib_verdict, t.dlib_reasons = judge_dlib(t.dlib, t.dlib_featureless_rank)
            t.judges_agree = t.dlib_verdict == identity_verdict if identity_verdict != "not judged" else None
    return out
