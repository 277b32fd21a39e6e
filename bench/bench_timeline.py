"""Recall of `depix audit`'s leak timeline on real clips, and what `depix pixelate`'s fail-secure masks change.

Per clip (its first `--max-frames` frames, re-encoded as the clean cut):
1. timeline: the cut is anonymised four ways - `depix pixelate` (16 blocks), deface's box blur, deface's
   20 px corner-sample mosaic and deface's black fill (`exposure.other_tool`, over pixelate's face boxes) -
   with the anonymised frame replaced by the clean one on 1 frame (a third into the longest face track)
   and on 5 frames (two thirds into it). `audit_video` (`--frames` scored per track, no recommendation)
   then gives the exposed ranges. Recall = faces (audit track x frame) on a dropped frame that the audit
   reports as exposed / faces on dropped frames whose coverage could be judged; false alarms = frames
   elsewhere (where the mask is intact) reported uncovered or partly covered; frames elsewhere that SFace
   still matches as they are (a fine mosaic) are counted apart: that is a finding, not a false alarm.
2. `--failsecure`: the cut pixelated with the fail-secure masks (default) and without (`--pad 0 --bridge 0`);
   a referee detector (CenterFace, not the YuNet that pixelate uses) runs on every frame of the cut; a face
   it finds counts as uncovered when less than `--cover` of its box lies under the mosaic rects of that
   frame (from the sidecar).

    python bench/bench_timeline.py CLIPS... -o /work/scratch/audit/bench --max-frames 150
"""

import argparse
import json
import sys
from pathlib import Path

from bench_audit import CachedDetector, cut_clip as cut  # noqa: E402  (bench/ is the script's directory)
from bench_pixelate import covered  # noqa: E402

KINDS = ("pixelate", "blur", "mosaic", "fill")


def clean_cut(src: str, out: Path, max_frames: int) -> tuple[str, Path]:
    """The clip's name and its clean cut (the first `max_frames` frames re-encoded), made once in `out`."""
    name = Path(src).stem
    clean = out / f"{name}.mp4"
    if not clean.exists():
        cut(src, clean, max_frames)
    return name, clean


def drops_for(tracks) -> list[int]:
    """One dropped frame a third into the longest track, and five from two thirds into it."""
    tr = max(tracks, key=len)
    f0, n = int(tr.frames[0]), len(tr)
    one = f0 + n // 3
    five = f0 + (2 * n) // 3
    return [one] + list(range(five, min(five + 5, f0 + n)))


def anonymised(clean: Path, pix: Path, boxes, kind: str, drops: set, out: Path) -> None:
    from depixcli.exposure import other_tool
    from depixcli.io.codec import EncodeOptions
    from depixcli.io.encode import VideoWriter
    from depixcli.io.video import probe, read_frames

    with VideoWriter(out, probe(clean), EncodeOptions(crf=18)) as w:
        for c, p in zip(read_frames(clean), read_frames(pix)):
            if c.index in drops:
                img = c.image
            elif kind == "pixelate":
                img = p.image
            else:
                img = other_tool(c.image, boxes[c.index], kind)
            w.write(img, c.pts)


def timeline(args, clips, out: Path) -> dict:
    from depixcli.audit.verdict import AuditConfig
    from depixcli.audit.video import audit_video
    from depixcli.faces.detect import load_detector
    from depixcli.faces.identity import SFaceIdentity
    from depixcli.io.sidecar import read_sidecar
    from depixcli.pixelate import PixelateConfig, detect_tracks, pixelate_video
    from depixcli.model.reconstructor import load_reconstructor

    model = load_reconstructor(args.weights, "auto")
    identity = SFaceIdentity()
    cfg = AuditConfig(weights=args.weights, frames=args.frames, recommend=False, dlib=False)  # the timeline's per-frame
    # match is SFace's; dlib's track scores would only add time to what the bench measures
    results = []
    for src in clips:
        name, clean = clean_cut(src, out, args.max_frames)
        det = CachedDetector(load_detector("yunet"))
        pix = out / f"{name}.pix.mp4"
        pixelate_video(clean, pix, PixelateConfig(preset="ultrafast"), boxes_out=out / f"{name}.pix.json",
                       detector=det)
        side = read_sidecar(out / f"{name}.pix.json")
        boxes = [[f["box"] for f in fr["faces"]] for fr in side["frames"]]
        _, tracks = detect_tracks(clean, PixelateConfig(), detector=det)
        if not tracks:
            print(f"{name}: no face", file=sys.stderr)
            continue
        drops = drops_for(tracks)
        for kind in KINDS:
            anon = out / f"{name}.{kind}.mp4"
            anonymised(clean, pix, boxes, kind, set(drops), anon)
            rep = audit_video(anon, clean, cfg, model=model, identity=identity, detector=det)
            on_drop, found, unjudged, false, matching = 0, 0, 0, 0, 0
            for t in rep.tracks:
                exposed = {f for r in t.exposed for f in range(r.start_frame, r.end_frame + 1)}
                span = set(range(t.first_frame, t.last_frame + 1))
                for f in set(drops) & span:
                    state = t.states[f - t.first_frame]
                    if state == "not judged":
                        unjudged += 1
                        continue
                    on_drop += 1
                    found += f in exposed
                for f in exposed - set(drops):  # elsewhere: uncovered / partly covered (false alarms) or still
                    state = t.states[f - t.first_frame]  # recognisable as is (a real finding about the mosaic)
                    matching += state == "matching"
                    false += state != "matching"
            row = {"clip": name, "kind": kind, "tracks": len(rep.tracks), "drops": drops, "faces_on_drops": on_drop,
                   "found": found, "not_judged": unjudged, "false_alarm_frames": false,
                   "matching_frames_elsewhere": matching, "frames": rep.frames,
                   "verdicts": [t.verdict for t in rep.tracks]}
            results.append(row)
            print(json.dumps(row), file=sys.stderr, flush=True)
    return {"timeline": results}


def failsecure(args, clips, out: Path) -> dict:
    from depixcli.faces.detect import load_detector
    from depixcli.io.sidecar import read_sidecar
    from depixcli.io.video import read_frames
    from depixcli.pixelate import PixelateConfig, pixelate_video

    referee = load_detector("centerface")
    rows = []
    for src in clips:
        name, clean = clean_cut(src, out, args.max_frames)
        faces = [referee.detect(f.image) for f in read_frames(clean)]
        row = {"clip": name, "referee_faces": sum(len(f) for f in faces)}
        for way, cfg in (("before", PixelateConfig(preset="ultrafast", pad_s=0.0, bridge_s=0.0)),
                         ("after", PixelateConfig(preset="ultrafast"))):
            pixelate_video(clean, out / f"{name}.{way}.mp4", cfg, boxes_out=out / f"{name}.{way}.json")
            side = read_sidecar(out / f"{name}.{way}.json")
            bad = 0
            for fr, dets in zip(side["frames"], faces):
                rects = [face["grid"].rect for face in fr["faces"]]
                bad += sum(covered(d.box, rects) < args.cover for d in dets)
            row[way] = bad
        rows.append(row)
        print(json.dumps(row), file=sys.stderr, flush=True)
    return {"failsecure": rows}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("clips", nargs="+")
    ap.add_argument("-o", "--out", required=True)
    ap.add_argument("--max-frames", type=int, default=150)
    ap.add_argument("--frames", type=int, default=10, help="frames scored per track (the attacks)")
    ap.add_argument("-w", "--weights", default=None)
    ap.add_argument("--cover", type=float, default=0.8, help="least covered share of a referee face box")
    ap.add_argument("--failsecure", action="store_true", help="measure fail-secure masks instead of the timeline")
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    res = failsecure(args, args.clips, out) if args.failsecure else timeline(args, args.clips, out)
    rows = res.get("timeline") or res.get("failsecure")
    if args.failsecure:
        tot = {k: sum(r[k] for r in rows) for k in ("referee_faces", "before", "after")}
        print(f"fail-secure, {len(rows)} clips, first {args.max_frames} frames, CenterFace referee on every frame: "
              f"{tot['referee_faces']} faces; uncovered (< {args.cover:.0%} under a mosaic): "
              f"before {tot['before']}, after {tot['after']}")
    else:
        for kind in KINDS:
            rs = [r for r in rows if r["kind"] == kind]
            n, f = sum(r["faces_on_drops"] for r in rs), sum(r["found"] for r in rs)
            print(f"{kind:9s} clips {len(rs)}: dropped faces found {f}/{n} (recall {f / max(n, 1):.1%}), "
                  f"not judged {sum(r['not_judged'] for r in rs)}, false-alarm frames "
                  f"{sum(r['false_alarm_frames'] for r in rs)}, frames still recognisable as is elsewhere "
                  f"{sum(r['matching_frames_elsewhere'] for r in rs)}")
    (out / ("failsecure.json" if args.failsecure else "timeline.json")).write_text(json.dumps(res, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
