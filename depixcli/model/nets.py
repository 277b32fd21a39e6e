"""Networks of "Neural Alignment for Face De-pixelization" (Shuvi et al. 2020): STN aligner, U-Net, PatchGAN.

Data flow of `Depixelator.forward`:
    stack (B, F, 3, S, S) float [0,1] RGB, mosaiced crops, centre frame at F // 2
    -> STN (on area-downscaled LR copies) predicts per-neighbour warp grids onto the centre
    -> neighbours warped at S x S, concatenated on channels, centre in the middle: (B, 3F, S, S)
    -> reconstruction U-Net -> (B, 3, S, S) float [0,1].

Blocks follow the paper's supplementary tables: DoubleConv = [Conv3x3 + BN + ReLU] x 2,
Down = MaxPool(2) + DoubleConv, Up = bilinear x2 + concat skip + DoubleConv.

`arch="compact"` (the CPU-trainable default, `CompactNet`) replaces STN + U-Net by a network that works at
the mosaic's own resolution: the stack is folded losslessly to S/2 x S/2 (PixelUnshuffle: every 128 px frame
becomes 12 channels at 64 px, where a 16-block mosaic's block is about 2 px), residual conv blocks run at
S/2 and S/4, and a sub-pixel convolution (PixelShuffle) brings a correction of the centre frame back to S.
No explicit alignment: the neighbours' misalignment is learnt from the data.
"""

from __future__ import annotations

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from depixcli.model.config import COMPACT_BLOCKS, COMPACT_WIDTH, DISC_WIDTH, GRID_CHANNELS, ModelConfig
from depixcli.model.grid import to_lr, warp, warp_dense


class DoubleConv(nn.Sequential):
    def __init__(self, cin: int, cout: int):
        super().__init__(
            nn.Conv2d(cin, cout, 3, padding=1, bias=False),
            nn.BatchNorm2d(cout),
            nn.ReLU(inplace=True),
            nn.Conv2d(cout, cout, 3, padding=1, bias=False),
            nn.BatchNorm2d(cout),
            nn.ReLU(inplace=True),
        )


class Down(nn.Sequential):
    def __init__(self, cin: int, cout: int):
        super().__init__(nn.MaxPool2d(2), DoubleConv(cin, cout))


class Up(nn.Module):
    """Bilinear x2, concatenate the skip, DoubleConv(c_in + c_skip, c_out)."""

    def __init__(self, cin: int, cskip: int, cout: int):
        super().__init__()
        self.conv = DoubleConv(cin + cskip, cout)

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        x = F.interpolate(x, size=skip.shape[-2:], mode="bilinear", align_corners=False)
        return self.conv(torch.cat([skip, x], dim=1))


class UNet(nn.Module):
    """Five-level U-Net: widths (w0..w4), four Downs, four Ups, 1x1 conv head (no activation)."""

    def __init__(self, cin: int, cout: int, widths: tuple[int, ...]):
        super().__init__()
        w0, w1, w2, w3, w4 = widths
        self.inc = DoubleConv(cin, w0)
        self.down1, self.down2, self.down3, self.down4 = Down(w0, w1), Down(w1, w2), Down(w2, w3), Down(w3, w4)
        self.up1, self.up2 = Up(w4, w3, w2), Up(w2, w2, w1)
        self.up3, self.up4 = Up(w1, w1, w0), Up(w0, w0, w0)
        self.head = nn.Conv2d(w0, cout, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x1 = self.inc(x)
        x2 = self.down1(x1)
        x3 = self.down2(x2)
        x4 = self.down3(x3)
        x = self.down4(x4)
        x = self.up1(x, x4)
        x = self.up2(x, x3)
        x = self.up3(x, x2)
        x = self.up4(x, x1)
        return self.head(x)


class ResBlock(nn.Module):
    """x + Conv3x3(ReLU(Conv3x3(x))), the last conv scaled down at init (EDSR-style, no BatchNorm)."""

    def __init__(self, c: int):
        super().__init__()
        self.conv1 = nn.Conv2d(c, c, 3, padding=1)
        self.conv2 = nn.Conv2d(c, c, 3, padding=1)
        with torch.no_grad():
            self.conv2.weight.mul_(0.1)
            self.conv2.bias.zero_()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv2(F.relu(self.conv1(x), inplace=True))


class CompactNet(nn.Module):
    """Multi-frame reconstruction at the mosaic's resolution: (B, F, 3, S, S) float [0,1] -> (B, 3, S, S).

    stack -> PixelUnshuffle(2) per frame, frames on channels: (B, 12F, S/2, S/2) -> conv -> `blocks` ResBlocks
    -> strided conv to S/4 (2w channels) -> `blocks` ResBlocks -> PixelShuffle back to S/2, + skip -> `blocks`
    ResBlocks -> conv to 12 channels -> PixelShuffle(2): a correction (B, 3, S, S) added to the centre frame.
    The last conv starts at zero, so an untrained net returns the centre frame.
    """

    def __init__(self, frames: int, width: int = COMPACT_WIDTH, blocks: int = COMPACT_BLOCKS, map_channels: int = 0):
        super().__init__()
        w = width
        self.map_channels = map_channels  # per frame, folded 4x like the frames
        self.head = nn.Conv2d(4 * (3 + map_channels) * frames, w, 3, padding=1)
        self.stage1 = nn.Sequential(*[ResBlock(w) for _ in range(blocks)])
        self.down = nn.Conv2d(w, 2 * w, 3, stride=2, padding=1)
        self.stage2 = nn.Sequential(*[ResBlock(2 * w) for _ in range(blocks)])
        self.up = nn.Conv2d(2 * w, 4 * w, 3, padding=1)  # -> PixelShuffle(2): w channels at S/2
        self.stage3 = nn.Sequential(*[ResBlock(w) for _ in range(blocks)])
        self.tail = nn.Conv2d(w, 12, 3, padding=1)  # -> PixelShuffle(2): 3 channels at S
        nn.init.zeros_(self.tail.weight)
        nn.init.zeros_(self.tail.bias)

    def forward(self, stack: torch.Tensor, maps: torch.Tensor | None = None) -> torch.Tensor:
        """stack (B, F, 3, S, S) float [0, 1]; maps (B, F, map_channels, S, S) float [0, 1] (`grid_maps`)."""
        B, Fr, C, S, _ = stack.shape
        x = F.pixel_unshuffle(stack.reshape(B * Fr, C, S, S), 2).reshape(B, Fr * C * 4, S // 2, S // 2)
        x = x * 2.0 - 1.0
        if self.map_channels:
            m = maps.reshape(B * Fr, self.map_channels, S, S).to(x.dtype)
            x = torch.cat([x, F.pixel_unshuffle(m, 2).reshape(B, -1, S // 2, S // 2)], 1)
        x1 = F.relu(self.head(x), inplace=True)
        x = self.stage1(x1)
        x = self.stage2(F.relu(self.down(x), inplace=True))
        x = F.pixel_shuffle(self.up(x), 2) + x1
        x = self.stage3(x)
        return F.pixel_shuffle(self.tail(F.relu(x)), 2)


class FlowAligner(nn.Module):
    """Flow of a neighbour onto the centre frame at low resolution: (a, b) (N, 3, L, L) float [0, 1] LR copies
    (a the centre, b the neighbour) -> (N, 2, L, L) offsets (x, y) in normalised [-1, 1] coordinates, at most
    `max_offset`: output pixel p of the warped neighbour takes b's value at p + offset (see `warp_dense`).

    Two scales (L and L/2), no normalisation; the last conv starts at zero, so the initial warp is the identity.
    """

    def __init__(self, width: int, max_offset: float):
        super().__init__()
        w = width
        self.enc1 = nn.Sequential(nn.Conv2d(6, w, 3, padding=1), nn.ReLU(inplace=True),
                                  nn.Conv2d(w, w, 3, padding=1), nn.ReLU(inplace=True))
        self.enc2 = nn.Sequential(nn.Conv2d(w, 2 * w, 3, stride=2, padding=1), nn.ReLU(inplace=True),
                                  nn.Conv2d(2 * w, 2 * w, 3, padding=1), nn.ReLU(inplace=True),
                                  nn.Conv2d(2 * w, 2 * w, 3, padding=1), nn.ReLU(inplace=True))
        self.up = nn.Conv2d(2 * w, 4 * w, 3, padding=1)  # -> PixelShuffle(2): w channels at L
        self.dec = nn.Sequential(nn.Conv2d(w, w, 3, padding=1), nn.ReLU(inplace=True))
        self.out = nn.Conv2d(w, 2, 3, padding=1)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)
        self.max_offset = max_offset

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        x1 = self.enc1(torch.cat([a, b], 1) * 2.0 - 1.0)
        x = F.pixel_shuffle(self.up(self.enc2(x1)), 2) + x1
        return self.max_offset * torch.tanh(self.out(self.dec(x)).float())


class AlignNet(nn.Module):
    """STN: U-Net on two LR frames (6 channels) -> (N, 2, g, g) offsets of the grid g_{B->A}.

    `forward(a, b)`: a, b (N, 3, L, L) float [0,1]; the offsets warp b onto a (see `warp`).
    The last conv starts at zero, so the initial warp is the identity.
    """

    def __init__(self, widths: tuple[int, ...], grid: int, max_offset: float):
        super().__init__()
        self.unet = UNet(6, 2, tuple(widths))
        nn.init.zeros_(self.unet.head.weight)
        nn.init.zeros_(self.unet.head.bias)
        self.grid = grid
        self.max_offset = max_offset

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        out = self.unet(torch.cat([a, b], dim=1))
        out = F.adaptive_avg_pool2d(out.float(), self.grid)
        return self.max_offset * torch.tanh(out)


class Depixelator(nn.Module):
    """Multi-frame face de-pixelizer: `forward(stack)` with stack (B, F, 3, S, S) float [0,1] RGB mosaiced
    crops (F = 2*window + 1, centre frame at F // 2) -> (B, 3, S, S) float [0,1] RGB."""

    def __init__(self, config: ModelConfig = ModelConfig()):
        super().__init__()
        config.validate()
        self.config = config
        self.stn = AlignNet(config.stn_widths, config.stn_grid, config.stn_max_offset) if config.use_stn else None
        self.aligner = None
        if config.align and config.frames > 1:
            self.aligner = FlowAligner(config.align_width, 2.0 * config.max_flow / config.crop_size)
        if config.arch == "compact":
            self.recon = CompactNet(config.frames, config.compact_width, config.compact_blocks,
                                    GRID_CHANNELS if config.grid_input else 0)
        else:
            self.recon = UNet(3 * config.frames, 3, config.widths)
        if config.residual and config.arch == "unet":  # start as the identity on the centre frame
            nn.init.zeros_(self.recon.head.weight)
            nn.init.zeros_(self.recon.head.bias)

    def align(self, stack: torch.Tensor) -> torch.Tensor:
        """(B, F, 3, S, S) -> same shape, every frame warped onto the centre frame (identity without STN)."""
        B, Fr, C, S, _ = stack.shape
        if self.stn is None or Fr == 1:
            return stack
        c = Fr // 2
        others = [i for i in range(Fr) if i != c]
        L = self.config.stn_size
        lr = to_lr(stack.reshape(B * Fr, C, S, S), L).reshape(B, Fr, C, L, L)
        a = lr[:, c : c + 1].expand(B, Fr - 1, C, L, L).reshape(-1, C, L, L)
        b = lr[:, others].reshape(-1, C, L, L)
        offsets = self.stn(a, b)
        warped = warp(stack[:, others].reshape(-1, C, S, S), offsets).reshape(B, Fr - 1, C, S, S)
        return torch.cat([warped[:, :c], stack[:, c : c + 1], warped[:, c:]], dim=1)

    def align_flow(self, stack: torch.Tensor, maps: torch.Tensor | None):
        """Compact aligner: (B, F, 3, S, S) stack and its grid maps (B, F, GRID_CHANNELS, S, S) or None ->
        (stack, maps) with every neighbour warped onto the centre frame, and the offsets (B, F - 1, 2, L, L)."""
        B, Fr, C, S, _ = stack.shape
        c = Fr // 2
        others = [i for i in range(Fr) if i != c]
        L = self.config.align_size
        lr = to_lr(stack.reshape(B * Fr, C, S, S), L).reshape(B, Fr, C, L, L)
        a = lr[:, c : c + 1].expand(B, Fr - 1, C, L, L).reshape(-1, C, L, L)
        offsets = self.aligner(a, lr[:, others].reshape(-1, C, L, L))
        moving = stack[:, others]
        if maps is not None:
            moving = torch.cat([moving, maps[:, others].to(moving.dtype)], 2)
        warped = warp_dense(moving.reshape(B * (Fr - 1), -1, S, S), offsets).reshape(B, Fr - 1, -1, S, S)
        stack = torch.cat([warped[:, :c, :C], stack[:, c : c + 1], warped[:, c:, :C]], 1)
        if maps is not None:
            maps = torch.cat([warped[:, :c, C:], maps[:, c : c + 1].to(warped.dtype), warped[:, c:, C:]], 1)
        return stack, maps, offsets.reshape(B, Fr - 1, 2, L, L)

    def reconstruct(self, aligned: torch.Tensor, maps: torch.Tensor | None = None) -> torch.Tensor:
        """(B, F, 3, S, S) aligned stack (+ its grid maps) -> (B, 3, S, S) in [0, 1]."""
        B, Fr, C, S, _ = aligned.shape
        if self.config.arch == "compact":
            if self.config.grid_input and maps is None:  # grid unknown: all maps zero
                maps = aligned.new_zeros(B, Fr, GRID_CHANNELS, S, S)
            out = self.recon(aligned, maps if self.config.grid_input else None).float()
            return (aligned[:, Fr // 2] + out if self.config.residual else out + 0.5).clamp(0.0, 1.0)
        x = aligned.reshape(B, Fr * C, S, S)
        if x.is_cuda:
            x = x.contiguous(memory_format=torch.channels_last)
        if self.config.residual:
            return (aligned[:, Fr // 2] + torch.tanh(self.recon(x).float())).clamp(0.0, 1.0)
        return (torch.tanh(self.recon(x)) + 1.0) * 0.5

    def forward(self, stack: torch.Tensor, maps: torch.Tensor | None = None, with_flow: bool = False):
        """stack (B, F, 3, S, S) float [0, 1] RGB; maps (B, F, GRID_CHANNELS, S, S) grid maps or None (grid
        unknown; ignored without `config.grid_input`) -> (B, 3, S, S) float [0, 1]; with `with_flow` also the
        compact aligner's offsets (B, F - 1, 2, L, L) (None without it)."""
        if stack.ndim != 5 or stack.shape[1] != self.config.frames or stack.shape[2] != 3:
            raise ValueError(f"expected (B, {self.config.frames}, 3, S, S), got {tuple(stack.shape)}")
        maps = maps if self.config.grid_input else None
        flow = None
        if self.aligner is not None:
            stack, maps, flow = self.align_flow(stack, maps)
        else:
            stack = self.align(stack)
        out = self.reconstruct(stack, maps)
        return (out, flow) if with_flow else out


class PatchDiscriminator(nn.Module):
    """pix2pix 70x70 PatchGAN on (pixelated input, HR) pairs: (B, 6, S, S) -> (B, 1, S/8 - 2, S/8 - 2) logits."""

    def __init__(self, width: int = DISC_WIDTH, cin: int = 6):
        super().__init__()
        w = width
        self.net = nn.Sequential(
            nn.Conv2d(cin, w, 4, 2, 1),
            nn.LeakyReLU(0.2, inplace=True),
            nn.Conv2d(w, 2 * w, 4, 2, 1, bias=False),
            nn.BatchNorm2d(2 * w),
            nn.LeakyReLU(0.2, inplace=True),
            nn.Conv2d(2 * w, 4 * w, 4, 2, 1, bias=False),
            nn.BatchNorm2d(4 * w),
            nn.LeakyReLU(0.2, inplace=True),
            nn.Conv2d(4 * w, 8 * w, 4, 1, 1, bias=False),
            nn.BatchNorm2d(8 * w),
            nn.LeakyReLU(0.2, inplace=True),
            nn.Conv2d(8 * w, 1, 4, 1, 1),
        )

    def forward(self, pixelated: torch.Tensor, hr: torch.Tensor) -> torch.Tensor:
        """pixelated, hr: (B, 3, S, S) float [0,1]."""
        return self.net(torch.cat([pixelated, hr], dim=1) * 2.0 - 1.0)


def count_parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())
