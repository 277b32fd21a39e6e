"""Are cheaper detection settings equivalent for the exported crop boxes?

For a sample of clips, builds the export's head-crop boxes with a reference setting (detector on every
frame, long side 640 px) and with cheaper ones (every N-th frame, smaller detector input), and reports
per setting: track frames covered relative to the reference, mean |centre| and |size| difference of
the crop boxes in % of the crop size, the PSNR between the 128 px crops each gives, and detector time.

    python bench/bench_track_settings.py /work/shared/data/clips.csv --clip-every 15 \
        --settings 1:640,1:320,2:320,3:320
"""

import argparse
import time

import numpy as np

from depixcli.dataset.config import MIN_TRACK
from depixcli.dataset.inputs import clip_fps_frames, clip_frames, collect_inputs, readable_inputs
from depixcli.faces.detect import load_detector
from depixcli.faces.track import TrackConfig, build_tracks
from depixcli.geometry.boxes import iou
from depixcli.geometry.crop import crop, head_box


def boxes_for(path, every, max_side, frames):
    det = load_detector("yunet", max_side=max_side)
    t0 = time.perf_counter()
    per = [det.detect(f) if i % every == 0 else [] for i, f in enumerate(frames)]
    secs = time.perf_counter() - t0
    tracks = build_tracks(per, TrackConfig(min_length=MIN_TRACK, max_gap=TrackConfig().max_gap * every))
    return tracks, secs


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("inputs", nargs="+")
    ap.add_argument("--clip-every", type=int, default=15)
    ap.add_argument("--max-frames", type=int, default=300, help="frames per clip (memory)")
    ap.add_argument("--settings", default="1:640,1:320,2:320,3:320", help="every:max_side,... first = reference")
    args = ap.parse_args()
    import cv2

    cv2.setNumThreads(1)
    settings = [tuple(int(v) for v in s.split(":")) for s in args.settings.split(",")]
    clips = readable_inputs(collect_inputs(args.inputs))[:: args.clip_every]
    stats = {s: {"cover": [], "dc": [], "ds": [], "se": 0.0, "n": 0, "secs": 0.0, "ref": 0} for s in settings}
    for c in clips:
        frames = []
        for i, f in enumerate(clip_frames(c.path)):
            if i >= args.max_frames:
                break
            frames.append(f)
        ref_tracks, secs = boxes_for(c.path, *settings[0], frames)
        stats[settings[0]]["secs"] += secs
        for s in settings[1:]:
            tracks, secs = boxes_for(c.path, *s, frames)
            st = stats[s]
            st["secs"] += secs
            for rt in ref_tracks:
                st["ref"] += len(rt)
                for i in rt.frames:
                    rb = rt.box_at(i)
                    cand = [t.box_at(i) for t in tracks if t.box_at(i) is not None]
                    cand = [b for b in cand if iou(b, rb) > 0.3]
                    if not cand:
                        continue
                    b = max(cand, key=lambda b: iou(b, rb))
                    hr, hb = head_box(rb), head_box(b)
                    st["cover"].append(1)
                    st["dc"].append(np.hypot(hr.cx - hb.cx, hr.cy - hb.cy) / hr.size)
                    st["ds"].append(abs(hr.size - hb.size) / hr.size)
                    a = crop(frames[i], hr, 128).astype(np.float64)
                    st["se"] += float(np.mean((a - crop(frames[i], hb, 128)) ** 2))
                    st["n"] += 1
    n_frames = sum(min(args.max_frames, clip_fps_frames(c.path)[1]) for c in clips)
    print(f"{len(clips)} clips, <= {args.max_frames} frames each; reference every={settings[0][0]} "
          f"max_side={settings[0][1]}: {stats[settings[0]]['secs'] / n_frames * 1000:.1f} ms/frame detector")
    print(f"{'every':>5} {'side':>5} {'covered':>8} {'centre %':>8} {'size %':>7} {'crop PSNR':>9} {'det ms/fr':>9}")
    for s in settings[1:]:
        st = stats[s]
        psnr = 10 * np.log10(255**2 / (st["se"] / max(st["n"], 1)))
        print(f"{s[0]:>5} {s[1]:>5} {len(st['cover']) / max(st['ref'], 1):8.3f} {100 * np.mean(st['dc']):8.2f} "
              f"{100 * np.mean(st['ds']):7.2f} {psnr:9.2f} {st['secs'] / n_frames * 1000:9.1f}")


if __name__ == "__main__":
    main()
