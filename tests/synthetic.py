"""Test media made on the fly, shared by the test modules (conftest.py wraps some as fixtures): the tiny model
config, synthetic face clips with a mosaic, head crops of the astronaut, and crop datasets of synthetic tracks."""

import json
from types import SimpleNamespace

import cv2
import numpy as np

from depixcli.geometry.crop import crop, head_box
from depixcli.geometry.mosaic import apply_mosaic, grid_from_blocks
from depixcli.io.synthetic import synthetic_face_frames, write_test_clip
from depixcli.model.config import ModelConfig
from depixcli.restore.blend import rect_for_face

TINY = ModelConfig(crop_size=32, window=1, stride=2, stn_size=16, stn_widths=(4, 4, 4, 4, 4), width=4)  # random
SIZE = (160, 120)  # px, w x h of the synthetic face clips
FACE = (62.0, 34.0, 98.0, 82.0)  # px, a face box near the synthetic face's mean position
ASTRONAUT_FACE = (178.0, 62.6, 268.4, 176.4)  # px, YuNet's face box on skimage's astronaut (measured once)
TRACK_SIZE = 32  # px, side of the synthetic crop tracks


def mosaic_clip(path, n, frames_with_mosaic=None, audio=False, blocks=8):
    """Synthetic face clip of n frames with a `blocks` x `blocks` mosaic over `rect_for_face(FACE)` on the chosen
    frames (all by default); returns the mosaic's grid."""
    grid = grid_from_blocks(rect_for_face(FACE), blocks)
    chosen = range(n) if frames_with_mosaic is None else frames_with_mosaic
    images = [apply_mosaic(f, grid) if i in chosen else f for i, f in enumerate(synthetic_face_frames(n, SIZE))]
    write_test_clip(path, images, audio=audio)
    return grid


def head_crop(image, dx=0.0, size=128):
    """Head crop of the astronaut around its face box, shifted dx px: `(size, size, 3)` uint8 RGB."""
    x0, y0, x1, y1 = ASTRONAUT_FACE
    return crop(image, head_box((x0 + dx, y0, x1 + dx, y1)), size)


def area_mosaic(img, blocks=16):
    """The paper's mosaic of a whole image: `blocks` x `blocks` area means (OpenCV INTER_AREA), nearest-upsampled."""
    small = cv2.resize(img, (blocks, blocks), interpolation=cv2.INTER_AREA)
    return cv2.resize(small, img.shape[:2][::-1], interpolation=cv2.INTER_NEAREST)


def synthetic_tracks(n: int, T: int, seed: int, prefix: str, S: int = TRACK_SIZE) -> list:
    """Moving blob + stripes tracks: objects with .frames (T, S, S, 3) uint8 RGB and .identity."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:S, 0:S]
    out = []
    for k in range(n):
        phase = rng.uniform(0, 6)
        frames = []
        for t in range(T):
            cx, cy = S / 2 + 4 * np.sin(t / 4 + phase), S / 2 + 3 * np.cos(t / 5)
            img = np.stack([(np.sin((xx - cx) / 3) + 1) * 110, ((yy - cy) ** 2 + (xx - cx) ** 2 < 60) * 200.0,
                            np.full((S, S), 40.0 + 30 * k)], -1)
            frames.append(img.astype(np.uint8))
        out.append(SimpleNamespace(frames=np.stack(frames), identity=f"{prefix}{k}"))
    return out


def write_crop_dir(root, tracks_by_split: dict, S: int = TRACK_SIZE) -> None:
    """A crop dataset in dataset/'s format (index.json + tracks/*.mp4) of the given tracks, written with cv2."""
    (root / "tracks").mkdir(parents=True)
    entries = []
    for split, tracks in tracks_by_split.items():
        for i, t in enumerate(tracks):
            name = f"{split}{i}"
            w = cv2.VideoWriter(str(root / "tracks" / f"{name}.mp4"), cv2.VideoWriter_fourcc(*"mp4v"), 25.0, (S, S))
            for f in t.frames:
                w.write(cv2.cvtColor(f, cv2.COLOR_RGB2BGR))
            w.release()
            entries.append({"file": f"tracks/{name}.mp4", "track_id": name, "source": f"{name}.mp4",
                            "identity": t.identity, "split": split, "fps": 25.0, "frames": len(t.frames),
                            "first_frame": 0, "boxes": [[S / 2, S / 2, S]] * len(t.frames)})
    index = {"format": "depix-crops", "version": 1, "crop_size": S, "tracks": entries}
    (root / "index.json").write_text(json.dumps(index))
