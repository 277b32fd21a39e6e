"""Measure issue 4's "Done when": does `depix run`, told nothing, find and restore pixelated faces?

    python bench/bench_restore.py CLIPS... --weights W.safetensors -o OUTDIR \\
        [--mosaic blocks16 blocks8 size10 opencv12] [--max-frames 60]

Run from the repository root with depix importable (`pip install -e . --no-deps`, or `PYTHONPATH=.`).
Per input clip (a clean face video) and per mosaic kind:

1. cut the clip to its first `--max-frames` frames (`OUTDIR/<clip>/clean.mp4`, audio kept): the reference;
2. pixelate it without telling `depix run` where: `blocks16` / `blocks8` = `depix pixelate --blocks N`
   (face-anchored N x N grid), `size10` = `depix pixelate --block-size 10` (image-anchored grid), both
   keeping their sidecar for scoring only; `opencv12` = a mosaic made independently of depix's mosaic
   code: YuNet face tracks (`pixelate.detect_tracks`), then per frame over the face box scaled 1.3,
   cv2.resize INTER_AREA down to 12 x 12 and INTER_NEAREST back up;
3. `run.run_video` on the pixelated video with automatic mosaic location (no --boxes / --region);
4. score every frame with a known face on the head crop of that face (`geometry.head_box`, the same
   crop in all three videos, `run.face_metrics`): PSNR, SSIM (luma) and SFace identity cosine to the
   clean crop, pixelated vs restored. "located %" is the share of those frames on which the restored
   video differs from the pixelated one inside the known mosaic rect clearly more than elsewhere
   (`LOCATED_MIN_LEVELS`, `LOCATED_RATIO`): the run found and replaced the mosaic there. Frame counts and
   audio are probed on all three videos.

Prints a table, writes `OUTDIR/restore.json` and one PNG per clip and mosaic,
`OUTDIR/<clip>__<mosaic>.png`: clean | pixelated | restored head crop of the middle scored frame.
The videos stay in `OUTDIR/<clip>/` for viewing.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

DEFAULT_MAX_FRAMES = 60  # frames kept of each clip
OPENCV_CELLS = 12  # cells across the face box of the `opencv12` mosaic
OPENCV_SCALE = 1.3  # mosaic box side / detector face box side (depix pixelate's default)
STRIP_CROP = 192  # px, side of each head crop in the PNG strips
LOCATED_MIN_LEVELS = 2.0  # grey levels (0..255 luma): least mean |restored - pixelated| inside the rect
LOCATED_RATIO = 3.0  # inside-rect mean change / mean change outside (encoder noise) for "located"
MOSAICS = ("blocks16", "blocks8", "size10", "opencv12")


# ------------------------------------------------------------------------------------------ inputs
def cut_clip(src: Path, dst: Path, max_frames: int):
    """The first `max_frames` frames of `src` (audio from `src`) -> `dst`; returns `dst`'s VideoInfo."""
    from depixcli.io.codec import EncodeOptions
    from depixcli.io.encode import VideoWriter
    from depixcli.io.video import probe, read_frames

    info = probe(src)
    with VideoWriter(dst, info, EncodeOptions(crf=16), audio_from=src if info.has_audio else None) as w:
        for frame in read_frames(src):
            if frame.index >= max_frames:
                break
            w.write(frame.image, frame.pts)
    return probe(dst)


def pixelate_depix(clean: Path, out: Path, kind: str) -> list[list[tuple]]:
    """`depix pixelate` with the kind's grid; per frame `[(tight face box, int mosaic rect)]` from its sidecar."""
    from depixcli.geometry.mosaic import clipped_rect
    from depixcli.io.sidecar import read_sidecar
    from depixcli.pixelate import PixelateConfig, pixelate_video

    config = {
        "blocks16": PixelateConfig(blocks=16),
        "blocks8": PixelateConfig(blocks=8),
        "size10": PixelateConfig(blocks=None, block_size=10),
    }[kind]
    sidecar = out.with_suffix(".json")
    pixelate_video(clean, out, config, boxes_out=sidecar)
    doc = read_sidecar(sidecar)
    hw = (doc["height"], doc["width"])
    return [[(face["box"], clipped_rect(face["grid"], hw)) for face in fr["faces"]] for fr in doc["frames"]]


def pixelate_opencv(clean: Path, out: Path) -> list[list[tuple]]:
    """OpenCV area-down / nearest-up mosaic over each tracked face box scaled OPENCV_SCALE (no depix grid)."""
    import cv2

    from depixcli.geometry.boxes import scale_box
    from depixcli.io.encode import VideoWriter
    from depixcli.io.video import read_frames
    from depixcli.pixelate import PixelateConfig, detect_tracks

    info, tracks = detect_tracks(clean, PixelateConfig())  # yunet + track.build_tracks
    per_frame: list[list[tuple]] = []
    with VideoWriter(out, info, audio_from=clean if info.has_audio else None) as writer:
        for frame in read_frames(clean):
            image, faces = frame.image.copy(), []
            for tr in tracks:
                box = tr.box_at(frame.index)
                if box is None:
                    continue
                x0, y0, x1, y1 = (int(round(v)) for v in scale_box(box, OPENCV_SCALE))
                x0, y0, x1, y1 = max(x0, 0), max(y0, 0), min(x1, info.width), min(y1, info.height)
                if x1 - x0 < OPENCV_CELLS or y1 - y0 < OPENCV_CELLS:
                    continue
                small = cv2.resize(image[y0:y1, x0:x1], (OPENCV_CELLS, OPENCV_CELLS), interpolation=cv2.INTER_AREA)
                image[y0:y1, x0:x1] = cv2.resize(small, (x1 - x0, y1 - y0), interpolation=cv2.INTER_NEAREST)
                faces.append((np.asarray(box, np.float64), (x0, y0, x1, y1)))
            writer.write(image, frame.pts)
            per_frame.append(faces)
    return per_frame


def pixelate(kind: str, clean: Path, out: Path) -> list[list[tuple]]:
    return pixelate_opencv(clean, out) if kind == "opencv12" else pixelate_depix(clean, out, kind)


# ------------------------------------------------------------------------------------------ scoring
def located(pixelated: np.ndarray, restored: np.ndarray, rect: tuple[int, int, int, int]) -> tuple[bool, float, float]:
    """Whether the run replaced the mosaic in `rect`: `(located, mean |change| inside, outside)` in grey levels.

    Outside excludes the rect grown by the paste's feather (`restore.blend.feather_width`) plus 2 px.
    """
    from depixcli.evaluate.metrics import luma
    from depixcli.restore.blend import feather_width

    d = np.abs(luma(restored.astype(np.float64)) - luma(pixelated.astype(np.float64)))
    x0, y0, x1, y1 = rect
    inside = float(d[y0:y1, x0:x1].mean())
    g = int(np.ceil(feather_width(rect))) + 2
    ring = np.ones(d.shape, bool)
    ring[max(y0 - g, 0):y1 + g, max(x0 - g, 0):x1 + g] = False
    outside = float(d[ring].mean()) if ring.any() else 0.0
    return inside >= max(LOCATED_MIN_LEVELS, LOCATED_RATIO * outside), inside, outside


def score(clean: Path, pix: Path, restored: Path, faces: list[list[tuple]], identity, strip: Path) -> dict:
    """Per-frame scores of the three videos decoded in lockstep, averaged over the frames with a known face."""
    import cv2

    from depixcli.geometry.crop import crop, head_box
    from depixcli.io.video import read_frames
    from depixcli.restore.research import face_metrics

    sums: dict[str, list[float]] = {}
    hits, changes, scored, decoded = 0, [], 0, [0, 0, 0]
    face_frames = [t for t, f in enumerate(faces) if f]
    middle = face_frames[len(face_frames) // 2] if face_frames else None
    streams = [read_frames(p) for p in (clean, pix, restored)]
    for frames in zip(*streams, strict=False):
        for k in range(3):
            decoded[k] += 1
        t = frames[0].index
        o, p, r = (f.image for f in frames)
        for face, rect in faces[t] if t < len(faces) else ():
            box = head_box(face)
            for name, (a, b) in face_metrics(o, p, r, box, identity).items():
                s = sums.setdefault(name, [0.0, 0.0])
                s[0] += a
                s[1] += b
            hit, inside, outside = located(p, r, rect)
            hits += hit
            changes.append((inside, outside))
            scored += 1
            if t == middle:
                row = np.concatenate([crop(img, box, STRIP_CROP) for img in (o, p, r)], axis=1)
                if not cv2.imwrite(str(strip), np.ascontiguousarray(row[..., ::-1])):
                    raise OSError(f"cannot write {strip}")
    for k, it in enumerate(streams):  # videos of unequal length: count what is left
        decoded[k] += sum(1 for _ in it)
    ch = np.array(changes).reshape(-1, 2)
    return {
        "face_frames_scored": scored,
        "located_frac": hits / scored if scored else 0.0,
        "change_inside_levels": float(ch[:, 0].mean()) if scored else None,
        "change_outside_levels": float(ch[:, 1].mean()) if scored else None,
        "metrics": {name: {"pixelated": a / scored, "restored": b / scored} for name, (a, b) in sums.items()},
        "decoded_frames": {"clean": decoded[0], "pixelated": decoded[1], "restored": decoded[2]},
        "strip": str(strip) if middle is not None else None,
    }


# ------------------------------------------------------------------------------------------ report
def measure(clip: Path, kind: str, clean: Path, work: Path, args, identity) -> dict:
    """Pixelate `clean` as `kind`, restore it with automatic location, score; one result row."""
    from depixcli.io.video import probe
    from depixcli.restore.config import RunConfig
    from depixcli.restore.run import run_video

    pix, restored = work / f"{kind}.pixelated.mp4", work / f"{kind}.restored.mp4"
    t0 = time.perf_counter()
    faces = pixelate(kind, clean, pix)
    t1 = time.perf_counter()
    stats = run_video(pix, restored, RunConfig(weights=args.weights, device=args.device, quiet=args.quiet))
    t2 = time.perf_counter()
    row = {"clip": clip.name, "mosaic": kind, "clean": str(clean), "pixelated": str(pix), "restored": str(restored)}
    row.update(score(clean, pix, restored, faces, identity, args.out / f"{clip.stem}__{kind}.png"))
    infos = {name: probe(p) for name, p in (("clean", clean), ("pixelated", pix), ("restored", restored))}
    row["probed_frames"] = {k: v.frames for k, v in infos.items()}
    row["audio"] = {k: v.has_audio for k, v in infos.items()}
    row["run"] = {"source": stats.source, "copied": stats.copied, "tracks": stats.tracks,
                  "frames_with_faces": stats.frames_with_faces, "block_sizes": stats.block_sizes,
                  "fps": stats.fps, "stage_s": stats.stage_s}
    row["seconds"] = {"pixelate": t1 - t0, "run": t2 - t1, "score": time.perf_counter() - t2}
    return row


METRIC_COLUMNS = (("PSNR dB", "PSNR pix->rest", "{:.2f}"), ("SSIM", "SSIM", "{:.3f}"),
                  ("identity cosine", "identity", "{:.3f}"))


def table(rows: list[dict]) -> str:
    head = ["clip", "mosaic", "frames c/p/r", "audio", "tracks", "located %"] + [c[1] for c in METRIC_COLUMNS]
    lines = [head]
    for r in rows:
        fr = r["decoded_frames"]
        cells = [r["clip"], r["mosaic"], f"{fr['clean']}/{fr['pixelated']}/{fr['restored']}",
                 "".join("y" if a else "n" for a in r["audio"].values()), str(r["run"]["tracks"]),
                 f"{100 * r['located_frac']:.0f}"]
        for name, _, fmt in METRIC_COLUMNS:
            m = r["metrics"].get(name)
            cells.append(f"{fmt.format(m['pixelated'])} -> {fmt.format(m['restored'])}" if m else "-")
        lines.append(cells)
    widths = [max(len(line[i]) for line in lines) for i in range(len(head))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(line, widths)).rstrip() for line in lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                 formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    ap.add_argument("clips", nargs="+", type=Path, help="clean face videos")
    ap.add_argument("--weights", required=True, help="depix weights (.safetensors) for depix run")
    ap.add_argument("-o", "--out", required=True, type=Path, help="output directory (created)")
    ap.add_argument("--mosaic", nargs="+", choices=MOSAICS, default=list(MOSAICS), help="mosaic kinds")
    ap.add_argument("--max-frames", type=int, default=DEFAULT_MAX_FRAMES, help="frames kept of each clip")
    ap.add_argument("--device", default="cpu", help="depix run device: auto | cpu | cuda")
    ap.add_argument("--threads", type=int, default=1, help="torch CPU threads (0: torch's default)")
    ap.add_argument("--quiet", action="store_true", help="no progress bars")
    ap.add_argument("--no-project", action="store_true",
                    help="paste without pulling reconstructions back to the observed block means "
                         "(restore.blend.PROJECT off), to measure what that step does")
    args = ap.parse_args(argv)
    if args.max_frames < 1:
        ap.error("--max-frames must be >= 1")

    import torch

    from depixcli.evaluate.report import write_json
    from depixcli.faces.identity import SFaceIdentity

    if args.threads:
        torch.set_num_threads(args.threads)
    if args.no_project:
        import depixcli.restore.blend

        depixcli.restore.blend.PROJECT = False
    args.out.mkdir(parents=True, exist_ok=True)
    identity = SFaceIdentity()
    t_start = time.perf_counter()
    rows = []
    for clip in args.clips:
        work = args.out / clip.stem
        work.mkdir(exist_ok=True)
        clean = work / "clean.mp4"
        cut_clip(clip, clean, args.max_frames)
        for kind in args.mosaic:
            row = measure(clip, kind, clean, work, args, identity)
            rows.append(row)
            print(table([row]).splitlines()[1], f"({sum(row['seconds'].values()):.0f} s)", file=sys.stderr)
    print(table(rows))
    report = {"weights": os.path.abspath(args.weights), "max_frames": args.max_frames, "device": args.device,
              "project": not args.no_project,
              "located_rule": {"min_levels": LOCATED_MIN_LEVELS, "ratio": LOCATED_RATIO},
              "wall_s": time.perf_counter() - t_start, "rows": rows}
    write_json(report, args.out / "restore.json")
    print(f"wrote {args.out / 'restore.json'} ({report['wall_s']:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
