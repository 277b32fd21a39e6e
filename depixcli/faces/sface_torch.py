"""SFace as a differentiable torch module, for an identity loss in training.

The network is the SFace ONNX that `identity.SFaceIdentity` runs through OpenCV (`identity.find_model_files`:
`face_recognition_sface_2021dec_int8bq.onnx`, weights int8 block-quantised, activations float). Its
weights are dequantised once (`(q - zero_point) * scale` per block, ONNX `DequantizeLinear`) and loaded
into `SFaceNet`, a MobileFaceNet written out by hand: 3x3 conv, 13 depthwise-separable blocks (four of
stride 2: 112 -> 7 px), BatchNorm + PReLU after every conv, a BatchNorm over the 1024 x 7 x 7 map, a linear
layer to 128 and a last BatchNorm. Reading the ONNX needs the `onnx` package (`pip install "depix[train]"`).

Alignment is differentiable in the image: SFace wants the 112 x 112 face that `cv2.FaceRecognizerSF.alignCrop`
cuts, a similarity transform taking five landmarks (eyes, nose tip, mouth corners, YuNet's order) onto
`SFACE_TEMPLATE`, bilinear, zeros outside. Here the transform is fitted in numpy (landmarks are constants:
YuNet's on the ground truth, or the canonical head-crop landmarks) and applied with `grid_sample`, so
gradients flow to the pixels of the crop.

Boundaries: crops `(N, 3, S, S)` float in [0, 1], RGB; landmarks `(N, 5, 2)` or `(5, 2)` px in pixel-index
coordinates of the crop (pixel centres at integers, as `identity.Alignment.landmarks`); embeddings
`(N, 128)` float, unit L2 norm. The module is frozen (no parameter needs a gradient) and stays in eval
mode: `.train()` does not switch its BatchNorms to batch statistics.
"""

from __future__ import annotations

import functools
import os

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from depixcli.errors import BackendError
from depixcli.faces.identity import CANONICAL_LANDMARKS, find_model_files

FACE_SIZE = 112  # px, side of SFace's aligned input
EMBED_DIM = 128  # SFace feature size
# (5, 2) px: where `cv2.FaceRecognizerSF.alignCrop` puts the five landmarks in the 112 x 112 face
SFACE_TEMPLATE = np.array(
    [[38.2946, 51.6963], [73.5318, 51.5014], [56.0252, 71.7366], [41.5493, 92.3655], [70.7299, 92.2041]]
)
STEM_CHANNELS = 32  # conv_1 output
# conv_2 .. conv_14: (pointwise output channels, stride of the depthwise conv before it)
BLOCKS = ((64, 1), (128, 2), (128, 1), (256, 2), (256, 1), (512, 2), (512, 1), (512, 1), (512, 1), (512, 1),
          (512, 1), (1024, 2), (1024, 1))
CONV_BN_EPS = 1e-3  # BatchNorm epsilon after each conv (from the ONNX graph)
HEAD_BN_EPS = 2e-5  # epsilon of the two BatchNorms of the head (bn1, fc1)
FINAL_SIDE = 7  # px, side of the last feature map (112 / 2**4)


class ConvBNPReLU(nn.Sequential):
    def __init__(self, c_in: int, c_out: int, kernel: int, stride: int, groups: int):
        super().__init__(
            nn.Conv2d(c_in, c_out, kernel, stride, kernel // 2, groups=groups, bias=False),
            nn.BatchNorm2d(c_out, eps=CONV_BN_EPS),
            nn.PReLU(c_out),
        )


class SFaceNet(nn.Module):
    """`(N, 3, 112, 112)` float [0, 1] RGB aligned faces -> `(N, 128)` SFace features (not normalised)."""

    def __init__(self):
        super().__init__()
        self.register_buffer("input_mean", torch.zeros(1))  # graph input: (255 x - mean) * scale
        self.register_buffer("input_scale", torch.ones(1))
        layers = {"conv_1": ConvBNPReLU(3, STEM_CHANNELS, 3, 1, 1)}
        c = STEM_CHANNELS
        for k, (c_out, stride) in enumerate(BLOCKS, start=2):
            layers[f"conv_{k}_dw"] = ConvBNPReLU(c, c, 3, stride, c)
            layers[f"conv_{k}"] = ConvBNPReLU(c, c_out, 1, 1, 1)
            c = c_out
        self.features = nn.Sequential(*layers.values())
        self.layer_names = list(layers)
        self.bn1 = nn.BatchNorm2d(c, eps=HEAD_BN_EPS)
        self.fc = nn.Linear(c * FINAL_SIDE**2, EMBED_DIM)
        self.fc_bn = nn.BatchNorm1d(EMBED_DIM, eps=HEAD_BN_EPS)

    def forward(self, faces: torch.Tensor) -> torch.Tensor:
        x = (faces * 255.0 - self.input_mean) * self.input_scale
        x = self.bn1(self.features(x))
        return self.fc_bn(self.fc(x.flatten(1)))

    def train(self, mode: bool = True):
        """Always eval mode: the BatchNorms keep SFace's statistics even inside a module being trained."""
        return super().train(False)


def dequantize(q: np.ndarray, scale: np.ndarray, zero_point: np.ndarray | None, axis: int, block: int) -> np.ndarray:
    """ONNX DequantizeLinear with blocks: `(q - zp) * scale`, scale and zp repeated `block` times along `axis`."""
    zp = np.zeros_like(scale) if zero_point is None else zero_point.astype(np.float32)
    if scale.ndim == 0 or scale.size == 1:
        return (q.astype(np.float32) - zp.reshape(())) * scale.reshape(())
    rep = lambda a: np.repeat(a, block, axis=axis).take(range(q.shape[axis]), axis=axis)  # noqa: E731
    return (q.astype(np.float32) - rep(zp)) * rep(scale.astype(np.float32))


def onnx_weights(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """Float32 tensors of the SFace ONNX by their graph names (`conv_3_dw_conv2d_weight`, `fc1_gamma`, ...)."""
    try:
        import onnx
        from onnx import numpy_helper
    except ImportError:
        raise BackendError("the SFace identity loss reads the ONNX file with the onnx package: "
                           "pip install onnx (or depix[train])") from None
    try:
        graph = onnx.load(str(path)).graph
    except Exception as exc:  # OSError, protobuf DecodeError, ...: one line, not a traceback
        raise BackendError(f"{path}: cannot read the SFace ONNX ({type(exc).__name__}: {exc})") from None
    raw = {i.name: numpy_helper.to_array(i) for i in graph.initializer}
    out = {k: v.astype(np.float32) for k, v in raw.items() if v.dtype == np.float32}
    for node in graph.node:
        attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
        if node.op_type == "DequantizeLinear":
            q, s, *zp = (raw.get(n) for n in node.input)
            zero = zp[0] if zp else None
            out[node.output[0]] = dequantize(q, s, zero, attrs.get("axis", 1), attrs.get("block_size", 0))
        elif node.op_type == "Reshape" and node.input[0] in out and node.input[1] in raw:
            out[node.output[0]] = out[node.input[0]].reshape(raw[node.input[1]])
    renamed = {}
    for suffix in ("_reshaped", "_dequantized", ""):  # the reshaped form wins where both exist
        for name, value in out.items():
            if name.endswith(suffix):
                renamed.setdefault(name[: len(name) - len(suffix)], value)
    return renamed


def _put(param: torch.Tensor, value: np.ndarray, name: str) -> None:
    value = np.asarray(value, np.float32).reshape(-1) if param.ndim == 1 else np.asarray(value, np.float32)
    if tuple(value.shape) != tuple(param.shape):
        raise BackendError(f"SFace ONNX tensor {name} has shape {value.shape}, expected {tuple(param.shape)}")
    param.data.copy_(torch.from_numpy(value))


def _put_bn(bn: nn.BatchNorm2d | nn.BatchNorm1d, w: dict[str, np.ndarray], prefix: str) -> None:
    pairs = (("weight", "gamma"), ("bias", "beta"), ("running_mean", "moving_mean"), ("running_var", "moving_var"))
    for attr, key in pairs:
        _put(getattr(bn, attr), w[f"{prefix}_{key}"], f"{prefix}_{key}")


def build_sface_net(path: str | os.PathLike | None = None) -> SFaceNet:
    """`SFaceNet` with the dequantised weights of the SFace ONNX (default: `identity.find_model_files`'s)."""
    path = find_model_files()[1] if path is None else path
    w = onnx_weights(path)
    net = SFaceNet()
    try:
        net.input_mean.fill_(float(w["scalar_op1"].reshape(())))
        net.input_scale.fill_(float(w["scalar_op2"].reshape(())))
        for name, block in zip(net.layer_names, net.features):
            conv, bn, prelu = block
            _put(conv.weight, w[f"{name}_conv2d_weight"], f"{name}_conv2d_weight")
            _put_bn(bn, w, f"{name}_batchnorm")
            _put(prelu.weight, w[f"{name}_relu_gamma"], f"{name}_relu_gamma")
        _put_bn(net.bn1, w, "bn1")
        _put(net.fc.weight, w["pre_fc1_weight"], "pre_fc1_weight")
        _put(net.fc.bias, w["pre_fc1_bias"], "pre_fc1_bias")
        _put_bn(net.fc_bn, w, "fc1")
    except KeyError as exc:
        raise BackendError(f"{path}: not the SFace ONNX depix knows (no tensor {exc.args[0]})") from None
    return net.requires_grad_(False).eval()


@functools.lru_cache(maxsize=4)
def load_sface_net(device: str = "cpu", path: str | None = None) -> SFaceNet:
    """The frozen SFace network on `device`, built once per (device, path) and shared."""
    return build_sface_net(path).to(device)


def similarity_to_template(landmarks: np.ndarray) -> np.ndarray:
    """`(N, 2, 3)` float64 least-squares similarity transforms (rotation, uniform scale, shift; no reflection)
    taking `(N, 5, 2)` landmarks (pixel-index coordinates) onto `SFACE_TEMPLATE` (Umeyama 1991)."""
    src = np.asarray(landmarks, np.float64).reshape(-1, 5, 2)
    dst = SFACE_TEMPLATE
    mu_s, mu_d = src.mean(1, keepdims=True), dst.mean(0)
    s0, d0 = src - mu_s, dst - mu_d
    cov = np.einsum("ki,nkj->nij", d0, s0) / 5  # (N, 2, 2) dst x src
    u, sig, vt = np.linalg.svd(cov)
    sign = np.ones((len(src), 2))
    sign[:, 1] = np.sign(np.linalg.det(u) * np.linalg.det(vt))
    rot = np.einsum("nij,nj,njk->nik", u, sign, vt)
    scale = (sig * sign).sum(1) / (s0**2).sum((1, 2)) * 5
    lin = rot * scale[:, None, None]
    shift = mu_d - np.einsum("nij,nj->ni", lin, mu_s[:, 0])
    return np.concatenate([lin, shift[:, :, None]], axis=2)


def align_faces(images: torch.Tensor, matrices: np.ndarray | torch.Tensor) -> torch.Tensor:
    """`(N, 3, S, S)` crops -> `(N, 3, 112, 112)` faces, differentiably: output px (u, v) samples the crop at
    `inverse(matrices[n]) @ (u, v, 1)` (pixel-index coordinates), bilinear, zeros outside (cv2.warpAffine's)."""
    n, _, h, w = images.shape
    m = torch.as_tensor(matrices, dtype=torch.float64).reshape(-1, 2, 3).cpu()
    if len(m) not in (1, n):
        raise ValueError(f"{len(m)} transforms for {n} images")
    full = torch.cat([m, torch.tensor([[[0.0, 0.0, 1.0]]], dtype=torch.float64).expand(len(m), 1, 3)], 1)
    inv = torch.linalg.inv(full)[:, :2]  # (N, 2, 3): face px -> crop px
    # crop px -> grid_sample's [-1, 1] (align_corners=False: x_n = (2 x + 1) / W - 1)
    to_norm = torch.tensor([[2.0 / w, 0.0, 1.0 / w - 1.0], [0.0, 2.0 / h, 1.0 / h - 1.0]], dtype=torch.float64)
    theta = to_norm[:, :2] @ inv
    theta[:, :, 2] += to_norm[:, 2]
    r = torch.arange(FACE_SIZE, dtype=torch.float64)
    vv, uu = torch.meshgrid(r, r, indexing="ij")
    base = torch.stack([uu, vv, torch.ones_like(uu)], -1).reshape(-1, 3)  # (112*112, 3) face px
    grid = torch.einsum("nij,pj->npi", theta, base).reshape(len(m), FACE_SIZE, FACE_SIZE, 2)
    grid = grid.to(device=images.device, dtype=images.dtype).expand(n, -1, -1, -1)
    return F.grid_sample(images, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


def canonical_landmarks(size: int) -> np.ndarray:
    """`(5, 2)` landmarks of a depix head crop of side `size` (identity.CANONICAL_LANDMARKS), pixel-index px."""
    return CANONICAL_LANDMARKS * size - 0.5


def identity_embedding(images: torch.Tensor, landmarks: np.ndarray | None = None,
                       net: SFaceNet | None = None) -> torch.Tensor:
    """`(N, 128)` unit SFace embeddings of `(N, 3, S, S)` float [0, 1] RGB head crops, differentiable in the crops.

    landmarks: `(N, 5, 2)` or `(5, 2)` px, pixel-index coordinates of the crop (e.g. `SFaceIdentity.align(gt)
    .landmarks` of the ground truth); None: the canonical head-crop landmarks (`canonical_landmarks(S)`).
    net: an `SFaceNet`; None: `load_sface_net(images.device)`.
    """
    if images.ndim != 4 or images.shape[1] != 3:
        raise ValueError(f"expected (N, 3, S, S) images, got {tuple(images.shape)}")
    lm = canonical_landmarks(images.shape[-1]) if landmarks is None else landmarks
    if torch.is_tensor(lm):
        lm = lm.detach().cpu().numpy()
    lm = np.asarray(lm, np.float64)
    if lm.shape not in ((5, 2), (len(images), 5, 2)):
        raise ValueError(f"expected (5, 2) or ({len(images)}, 5, 2) landmarks, got {lm.shape}")
    net = load_sface_net(str(images.device)) if net is None else net
    faces = align_faces(images, similarity_to_template(lm))
    return F.normalize(net(faces).float(), dim=1)


def identity_loss(pred: torch.Tensor, target: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
    """1 - cosine of `(N, 128)` embeddings (`identity_embedding` of the output and of the ground truth):
    0 = same SFace identity; `reduction` "mean" -> scalar, "none" -> `(N,)`."""
    loss = 1.0 - F.cosine_similarity(pred, target, dim=1)
    if reduction == "none":
        return loss
    if reduction != "mean":
        raise ValueError(f"reduction must be 'mean' or 'none', got {reduction!r}")
    return loss.mean()
