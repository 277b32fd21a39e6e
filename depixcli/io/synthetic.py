"""Synthetic test media: a moving face-like pattern, busy still scenes (a photo with text and a UI bar) and small
clips (with a tone, rotated) written from frames. For tests and benchmarks only; `depix` itself never makes them."""

from __future__ import annotations

import math
import os
from collections.abc import Iterable, Iterator
from fractions import Fraction

import av
import cv2
import numpy as np

from depixcli.io.codec import EncodeOptions, output_pix_fmt, set_quality
from depixcli.io.video import VideoInfo, probe

FACE_PERIOD_S = 4.0  # s per horizontal sweep of the synthetic face
TONE_HZ = 440.0  # synthetic audio tone
TONE_RATE = 48_000  # Hz sample rate
TONE_FRAME = 1024  # samples per audio frame (AAC frame size)
SCENE_CAPTION = "Hello depix 0123"  # text drawn three times on a busy scene


def _ellipse_cover(xx, yy, cx, cy, ax, ay):
    """Anti-aliased coverage in [0, 1] of an ellipse; xx, yy are pixel-centre coordinates."""
    r = np.sqrt(((xx - cx) / ax) ** 2 + ((yy - cy) / ay) ** 2)
    return np.clip((1.0 - r) * min(ax, ay) + 0.5, 0.0, 1.0)[..., None]


def synthetic_face_frames(n_frames: int, size: tuple[int, int] = (160, 120), fps: float = 25.0,
                          seed: int = 0) -> Iterator[np.ndarray]:
    """Deterministic moving face-like pattern: `(H, W, 3)` uint8 RGB frames, size = (w, h).

    A skin ellipse with hair, eyes and mouth drifts with sub-pixel motion over a static
    textured background.
    """
    w, h = size
    rng = np.random.default_rng(seed)
    coarse = rng.random((h // 8 + 2, w // 8 + 2, 3), dtype=np.float32)
    background = np.repeat(np.repeat(coarse, 8, 0), 8, 1)[:h, :w] * 90 + 60
    background += rng.normal(0, 8, (h, w, 3)).astype(np.float32)
    skin_noise = rng.normal(0, 5, (h, w, 1)).astype(np.float32)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32) + 0.5
    skin, hair = np.array([224, 172, 140], np.float32), np.array([60, 40, 30], np.float32)
    eye, mouth = np.array([30, 30, 40], np.float32), np.array([170, 50, 60], np.float32)
    ay = 0.22 * h  # face half-height, px
    ax = 0.75 * ay
    for i in range(n_frames):
        t = i / fps
        cx = w * (0.5 + 0.2 * math.sin(2 * math.pi * t / FACE_PERIOD_S))
        cy = h * (0.5 + 0.05 * math.cos(2 * math.pi * t / FACE_PERIOD_S))
        x0, x1 = max(0, int(cx - 1.3 * ax) - 1), min(w, int(cx + 1.3 * ax) + 2)
        y0, y1 = max(0, int(cy - 1.4 * ay) - 1), min(h, int(cy + 1.2 * ay) + 2)
        img = background.copy()
        win, sx, sy = img[y0:y1, x0:x1], xx[y0:y1, x0:x1], yy[y0:y1, x0:x1]
        layers = [
            (_ellipse_cover(sx, sy, cx, cy - 0.25 * ay, 1.1 * ax, 0.95 * ay), hair),
            (_ellipse_cover(sx, sy, cx, cy, ax, ay), skin + skin_noise[y0:y1, x0:x1]),
            (_ellipse_cover(sx, sy, cx - 0.4 * ax, cy - 0.2 * ay, 0.16 * ax, 0.1 * ay), eye),
            (_ellipse_cover(sx, sy, cx + 0.4 * ax, cy - 0.2 * ay, 0.16 * ax, 0.1 * ay), eye),
            (_ellipse_cover(sx, sy, cx, cy + 0.5 * ay, 0.4 * ax, 0.08 * ay), mouth),
        ]
        for cover, colour in layers:
            win[:] = win * (1 - cover) + colour * cover
        yield np.clip(img, 0, 255).astype(np.uint8)


def busy_scene(photo: np.ndarray, rng: np.random.Generator, size: tuple[int, int], noise: float = 0.0,
               caption: str = SCENE_CAPTION) -> np.ndarray:
    """A natural-ish frame `(H, W, 3)` uint8 RGB, size = (w, h): `photo` (RGB) resized, Gaussian sensor noise of
    `noise` grey levels (none at 0), `caption` three times at places drawn from `rng`, and a "REC" UI bar."""
    w, h = size
    img = cv2.resize(photo, (w, h), interpolation=cv2.INTER_LINEAR)
    if noise:
        img = np.clip(img.astype(np.int16) + rng.normal(0, noise, img.shape), 0, 255).astype(np.uint8)
    for _ in range(3):
        org = (int(rng.integers(0, w - 300)), int(rng.integers(30, h)))
        cv2.putText(img, caption, org, cv2.FONT_HERSHEY_SIMPLEX, 1.0, (255, 255, 255), 2)
    cv2.rectangle(img, (10, 10), (200, 50), (40, 40, 40), -1)
    cv2.putText(img, "REC 00:12", (20, 40), cv2.FONT_HERSHEY_PLAIN, 1.5, (255, 0, 0), 2)
    return img


def write_test_clip(path: str | os.PathLike, frames: Iterable[np.ndarray], fps: float = 25,
                    audio: bool = False, audio_codec: str = "aac", rotation: int = 0,
                    options: EncodeOptions = EncodeOptions(crf=18, preset="ultrafast")) -> VideoInfo:
    """Write RGB frames to a small clip (tests, benchmarks); returns `probe(path)`.

    audio: add a sine tone of the clip's length in `audio_codec` (e.g. "aac", "pcm_mulaw").
    rotation: degrees clockwise a player should turn the picture; frames are stored turned the
    other way with a display matrix, so a rotation-aware reader gets `frames` back upright.
    """
    path = os.fspath(path)
    rate = Fraction(fps).limit_denominator(1001)
    quarter_turns = (rotation // 90) % 4
    with av.open(path, "w") as out:
        video = None
        tone = None
        sample = 0
        for i, image in enumerate(frames):
            stored = np.ascontiguousarray(np.rot90(image, quarter_turns))  # ccw: display turns it back cw
            if video is None:
                video = out.add_stream(options.codec, rate=rate)
                video.height, video.width = stored.shape[:2]
                video.pix_fmt = options.pix_fmt or output_pix_fmt("yuv420p", video.codec_context.codec,
                                                                  video.width, video.height)[0]
                set_quality(video.codec_context, options)
                if quarter_turns:
                    video.set_display_rotation(-90 * quarter_turns)  # counter-clockwise degrees
                if audio:
                    tone = out.add_stream(audio_codec, rate=TONE_RATE)
                    tone.layout = "mono"
                    tone_fmt = tone.codec_context.codec.audio_formats[0].name
                    resampler = av.AudioResampler(format=tone_fmt, layout="mono", rate=TONE_RATE)
            frame = av.VideoFrame.from_ndarray(stored, format="rgb24")
            frame.pts = i
            frame.time_base = 1 / rate
            out.mux(video.encode(frame))
            while tone is not None and sample < (i + 1) / rate * TONE_RATE:
                t = (sample + np.arange(TONE_FRAME)) / TONE_RATE
                pcm = (0.3 * np.sin(2 * np.pi * TONE_HZ * t)).astype(np.float32)[None]
                chunk = av.AudioFrame.from_ndarray(pcm, format="flt", layout="mono")
                chunk.sample_rate, chunk.pts, chunk.time_base = TONE_RATE, sample, Fraction(1, TONE_RATE)
                for converted in resampler.resample(chunk):
                    out.mux(tone.encode(converted))
                sample += TONE_FRAME
        if video is None:
            raise ValueError("write_test_clip needs at least one frame")
        out.mux(video.encode(None))
        if tone is not None:
            out.mux(tone.encode(None))
    return probe(path)


def make_synthetic_clip(path: str | os.PathLike, n_frames: int, size: tuple[int, int] = (160, 120),
                        fps: float = 25, audio: bool = False, **kwargs) -> VideoInfo:
    """Write `synthetic_face_frames(n_frames, size)` to `path` (kwargs: see write_test_clip)."""
    return write_test_clip(path, synthetic_face_frames(n_frames, size, fps), fps, audio, **kwargs)
