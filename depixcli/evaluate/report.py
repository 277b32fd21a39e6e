"""What `depix eval` tells its reader: the text table (`format_table`), the JSON report (`write_json`, with
`metric_notes` saying what each number is) and the PNG grid of examples (`write_grid`)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import cv2
import numpy as np

from depixcli.errors import OutputError
from depixcli.evaluate.config import PSNR_CAP
from depixcli.evaluate.metrics import CHANNEL_NAMES
from depixcli.io.files import write_atomic

GRID_LABEL_PX = 18  # px, height of the label bands in the PNG grid
METRICS = ("psnr", "ssim", "sface_cos", "rank1", "dlib_cos", "dlib_rank1", "dlib_dist", "flicker", "tof")
METRIC_LABELS = {
    "psnr": "PSNR dB",
    "ssim": "SSIM",
    "sface_cos": "SFace cos",
    "rank1": "rank-1",
    "dlib_cos": "dlib cos",
    "dlib_rank1": "dlib r-1",
    "dlib_dist": "dlib dist",
    "flicker": "flicker",
    "tof": "tOF px",
}
METRIC_FORMATS = {"psnr": "{:.2f}", "ssim": "{:.4f}", "sface_cos": "{:.4f}", "rank1": "{:.3f}", "dlib_cos": "{:.4f}",
                  "dlib_rank1": "{:.3f}", "dlib_dist": "{:.4f}", "flicker": "{:.3f}", "tof": "{:.3f}"}


def metric_notes(channel: str) -> dict[str, str]:
    """metric -> what its number is, for the JSON report."""
    return {
        "psnr": f"mean per-image PSNR on {CHANNEL_NAMES[channel]}, data range 1, capped at {PSNR_CAP} dB",
        "ssim": f"mean SSIM (Gaussian 11x11, sigma 1.5, valid region) on {CHANNEL_NAMES[channel]}",
        "sface_cos": "mean cosine of SFace embeddings to the ground truth's (alignment from the ground truth)",
        "rank1": "re-identification rank-1 against one ground-truth gallery entry per identity",
        "dlib_cos": "mean cosine of dlib ResNet descriptors to the ground truth's (dlib landmarks fitted on it)",
        "dlib_rank1": "re-identification rank-1 by dlib descriptors (cosine), same gallery frames as rank1",
        "flicker": "mean |Δoutput - Δtruth| of consecutive frames in the face box, luma, 8-bit grey levels "
                   "(temporal.py; one run of flicker_frames frames per track; lower is steadier)",
        "tof": "mean length (px) of the difference of Farneback optical flows of output and truth pairs in "
               "the face box (temporal.py; lower is steadier)",
        "dlib_dist": "mean Euclidean distance of dlib ResNet descriptors to the ground truth's (lower is closer; "
                     "dlib's same-person threshold 0.6)",
    }


def format_table(report: dict) -> str:
    """Aligned text table per protocol: rows methods, columns metrics, with the difference to bicubic."""
    metrics = [m for m in METRICS if any(m in r for p in report["protocols"].values() for r in p["methods"].values())]
    ds, gal = report["dataset"], report["gallery"]
    lines = [
        f"{ds['samples']} samples from {ds['tracks']} tracks of {ds['identities']} people "
        f"(split {ds['split']}, {report['config']['frames_per_track']} frames per track); "
        f"PSNR/SSIM on {'luma Y' + chr(39) + ' (BT.601)' if report['config']['channel'] == 'y' else 'RGB'}",
        f"identity: SFace, alignment from the ground truth ({report['alignment']['detected']} YuNet, "
        f"{report['alignment']['canonical']} canonical); rank-1 gallery of {gal['identities']} people, "
        f"chance {gal['chance']:.3f}, ground truth {gal['gt_rank1']:.3f}"
        + (f" (dlib {gal['gt_dlib_rank1']:.3f})" if gal.get("gt_dlib_rank1") is not None else ""),
        f"second identity judge: {report['dlib']}",
    ]
    runs = report["dataset"].get("flicker_runs") or []
    if runs:
        lines.append(f"flicker, tOF: {len(runs)} runs of up to {max(r[2] for r in runs)} consecutive frames (one per "
                     "track), face box; lower is steadier, 0 = changes exactly as the truth does")
    head = ["method"]
    for m in metrics:
        head += [METRIC_LABELS[m], "Δ"]
    for name, proto in report["protocols"].items():
        rows = [head]
        base = proto["methods"]["bicubic"]
        for method, vals in proto["methods"].items():
            row = [method]
            for m in metrics:
                fmt = METRIC_FORMATS[m]
                if vals.get(m) is None:  # not measured for this row
                    row += ["", ""]
                    continue
                row.append(fmt.format(vals[m]))
                if method == "bicubic" or base.get(m) is None:
                    row.append("")
                    continue
                delta = vals[m] - base[m]
                row.append(("+" if delta >= 0 else "") + fmt.format(delta))
            rows.append(row)
        widths = [max(len(r[i]) for r in rows) for i in range(len(head))]
        lines.append("")
        lines.append(f"[{name}] {proto['description']}  (Δ: vs bicubic)")
        for r in rows:
            cells = [r[0].ljust(widths[0])] + [c.rjust(w) for c, w in zip(r[1:], widths[1:])]
            lines.append("  ".join(cells).rstrip())
    return "\n".join(lines)


def json_ready(obj):
    if isinstance(obj, dict):
        return {str(k): json_ready(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_ready(v) for v in obj]
    if isinstance(obj, (np.floating, float)):
        v = float(obj)
        return v if np.isfinite(v) else None
    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, Path):
        return str(obj)
    return obj


def check_output(path: str | os.PathLike) -> None:
    """OutputError now, before a long evaluation, if `path` cannot be written later."""
    parent = Path(path).resolve().parent
    if not parent.is_dir():
        raise OutputError(f"{path}: directory {parent} does not exist")
    if not os.access(parent, os.W_OK):
        raise OutputError(f"{path}: directory {parent} is not writable")


def write_json(report: dict, path: str | os.PathLike) -> None:
    """The report without its example images, as JSON (non-finite numbers become null)."""
    data = {k: v for k, v in report.items() if k != "examples"}
    write_atomic(path, (json.dumps(json_ready(data), indent=1, allow_nan=False) + "\n").encode())


def grid_image(report: dict) -> np.ndarray:
    """`(H, W, 3)` uint8 RGB grid: per protocol a label band, then rows GT | nearest | bicubic | models."""
    cols = ["gt"] + report["methods"]
    blocks = []
    size = report["dataset"]["crop_size"]
    width = size * len(cols)

    def band(texts: list[str], shade: int) -> np.ndarray:
        img = np.full((GRID_LABEL_PX, width, 3), shade, np.uint8)
        for k, t in enumerate(texts):
            cv2.putText(img, t, (k * size + 3, GRID_LABEL_PX - 5), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (255, 255, 255), 1,
                        cv2.LINE_AA)
        return img

    blocks.append(band(["ground truth"] + report["methods"], 40))
    for protocol, ex in report["examples"].items():
        if len(ex["gt"]) == 0:
            continue
        blocks.append(band([protocol], 90))
        blocks.append(np.concatenate([np.concatenate(list(ex[c]), axis=0) for c in cols], axis=1))
    return np.concatenate(blocks, axis=0)


def write_grid(report: dict, path: str | os.PathLike) -> None:
    """PNG of `grid_image(report)`."""
    ok, buf = cv2.imencode(".png", np.ascontiguousarray(grid_image(report)[..., ::-1]))
    if not ok:
        raise OutputError(f"{path}: PNG encoding failed")
    write_atomic(path, buf.tobytes())
