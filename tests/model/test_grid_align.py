"""Grid maps as a model input, the compact flow aligner, warm starts that grow a shipped net, CPU bf16 training."""

import dataclasses

import numpy as np
import torch

from depixcli.model.config import GRID_CHANNELS
from depixcli.model.grid import flip_maps, grid_maps, warp_dense
from depixcli.model.nets import Depixelator
from depixcli.model.reconstructor import Reconstructor
from depixcli.model.weights import save_model
from depixcli.train.checkpoint import grow_state
from depixcli.train.degrade import (
    VALUE_CORNER,
    VALUE_MEAN,
    MosaicConfig,
    face_mosaic,
    mosaic_maps,
    paper_maps,
    paper_mosaic,
    random_mosaic,
)
from depixcli.train.loop import train
from depixcli.train.losses import align_loss
from tests.train.test_compact import COMPACT, FAST, S, tracks

torch.set_num_threads(1)
GRID = dataclasses.replace(COMPACT, grid_input=True)
ALIGNED = dataclasses.replace(GRID, align=True, align_size=16, align_width=4)
TRAIN, VAL = tracks(4, 12, 0, "t"), tracks(2, 12, 1, "v")


def _edges(row: torch.Tensor) -> list[int]:
    """Columns where a 1-D map jumps down (u wraps from ~1 to ~0): block edges."""
    return [i for i in range(1, len(row)) if row[i] < row[i - 1] - 0.5]


def test_paper_maps_jump_exactly_on_the_block_edges_and_centre_on_the_value():
    maps = paper_maps((1,), 4, S)[0]  # 4 x 4 blocks of 8 px over a 32 px crop
    assert maps.shape == (GRID_CHANNELS, S, S)
    u, v, inside, sampled = maps
    assert _edges(u[5]) == [8, 16, 24] and _edges(v[:, 5]) == [8, 16, 24]
    assert torch.allclose(u[0, :8], (torch.arange(8) + 0.5) / 8)  # the block mean is the cell's middle: u = 0.5 there
    assert bool((inside == 1).all()) and bool((sampled == 0).all())
    # the mosaic changes value exactly where the maps say a block ends
    mos = paper_mosaic(torch.rand(1, 3, S, S), 4)[0, 0]
    steps = [i for i in range(1, S) if not torch.equal(mos[5, i], mos[5, i - 1])]
    assert steps == _edges(u[5])


def test_grid_maps_are_zero_outside_the_mosaic_and_mark_point_samples():
    origin = torch.tensor([[3.0, 5.0]])
    cell = torch.tensor([[6.0, 6.0]])
    rect = torch.tensor([[3.0, 5.0, 27.0, 29.0]])
    m = grid_maps(origin, cell, rect, torch.tensor([[0.5 / 6, 0.5 / 6]]), torch.tensor([1.0]), S)[0]
    assert bool((m[:, :, :3] == 0).all()) and bool((m[:, :5] == 0).all()) and bool((m[:, :, 27:] == 0).all())
    assert bool((m[2, 5:29, 3:27] == 1).all()) and bool((m[3, 5:29, 3:27] == 1).all())
    # top-left samples: the source pixel (column 3, the first of the cell) has u = 0.5
    assert abs(float(m[0, 10, 3]) - 0.5) < 1e-6 and abs(float(m[0, 10, 9]) - 0.5) < 1e-6


def test_flip_maps_equal_the_maps_of_the_mirrored_grid():
    origin, cell = torch.tensor([[2.3, 1.0]]), torch.tensor([[5.0, 5.0]])
    rect = torch.tensor([[2.0, 1.0, 27.0, 31.0]])
    for vp in (0.5, 0.1):
        value_pos = torch.tensor([[vp, vp]])
        maps = grid_maps(origin, cell, rect, value_pos, torch.tensor([1.0]), S)
        mirrored = grid_maps(torch.tensor([[S - 2.3, 1.0]]), cell, torch.tensor([[S - 27.0, 1.0, S - 2.0, 31.0]]),
                             torch.tensor([[1 - vp, vp]]), torch.tensor([1.0]), S)
        assert float((flip_maps(maps) - mirrored).abs().amax()) < 1e-4


def test_training_mosaics_come_with_maps_of_their_own_grid():
    gen = torch.Generator().manual_seed(3)
    clean = torch.rand(6, 3, 3, S, S, generator=gen)
    clear = MosaicConfig(p_compress=0.0, noise_max=0.0)  # compression and noise touch the whole frame
    mos, maps = random_mosaic(clean, gen, clear, return_maps=True)
    assert maps.shape == (6, 3, GRID_CHANNELS, S, S)
    changed = (mos - clean).abs().amax(2) > 0.02
    inside = maps[:, :, 2] > 0
    assert float((changed & ~inside).float().mean()) < 0.002  # nothing pixelated outside the mapped region
    gen2 = torch.Generator().manual_seed(3)
    plain = random_mosaic(torch.rand(6, 3, 3, S, S, generator=gen2), gen2, clear)
    assert torch.equal(plain, mos)  # the maps cost no draws: same mosaic with or without them
    # face protocol: the corner kind puts the value on the top-left pixel, the mean kind in the middle
    _, _, mask, m_corner = face_mosaic(clean[:1], 4, kind=VALUE_CORNER, with_maps=True)
    _, _, _, m_mean = face_mosaic(clean[:1], 4, kind=VALUE_MEAN, with_maps=True)
    assert bool((m_corner[0, :, 3][mask[0, :, 0]] == 1).all()) and float(m_mean[0, :, 3].abs().max()) == 0
    assert torch.allclose(mosaic_maps(torch.zeros(1, 2), torch.tensor([8.0]), torch.ones(1, 1, S, S, dtype=torch.bool),
                                      torch.tensor([VALUE_MEAN])), paper_maps((1,), 4, S))


def test_warp_dense_is_the_identity_at_zero_and_shifts_by_the_offset():
    img = torch.rand(2, 3, S, S)
    assert torch.allclose(warp_dense(img, torch.zeros(2, 2, 8, 8)), img, atol=1e-6)
    off = torch.zeros(2, 2, 8, 8)
    off[:, 0] = 2 * 2.0 / S  # 2 px to the right: output p takes the input at p + 2
    out = warp_dense(img, off)
    assert torch.allclose(out[..., : S - 2], img[..., 2:], atol=1e-5)


def test_grown_net_starts_as_the_net_it_grew_from():
    torch.manual_seed(0)
    old = Depixelator(COMPACT)
    with torch.no_grad():
        old.recon.tail.weight.normal_(0, 0.05)  # a trained-looking net, not the identity
    new = Depixelator(ALIGNED)
    new.load_state_dict(grow_state(old.state_dict(), new.state_dict()))
    stack, maps = torch.rand(2, 3, 3, S, S), torch.rand(2, 3, GRID_CHANNELS, S, S)
    with torch.no_grad():
        want = old(stack)
        got, flow = new(stack, maps, with_flow=True)
    assert flow.shape == (2, 2, 2, 16, 16) and float(flow.abs().max()) == 0
    assert torch.allclose(got, want, atol=1e-6)
    assert float((want - stack[:, 1]).abs().mean()) > 1e-3


def test_align_loss_is_zero_for_a_still_stack_and_drops_with_the_true_flow():
    clean = torch.rand(1, 3, 3, S, S)
    still = clean[:, 1:2].expand(1, 3, 3, S, S)
    assert float(align_loss(torch.zeros(1, 2, 2, 16, 16), still)) < 1e-6
    moved = torch.roll(clean[:, 1:2], 2, -1).expand(1, 3, 3, S, S).clone()
    moved[:, 1] = clean[:, 1]
    flow = torch.zeros(1, 2, 2, 16, 16)
    flow[:, :, 0] = 2 * 2.0 / S
    assert float(align_loss(flow, moved)) < 0.6 * float(align_loss(torch.zeros_like(flow), moved))


def test_training_with_grid_maps_aligner_and_cpu_bf16_learns_and_exports(tmp_path):
    cfg = dataclasses.replace(FAST, model=ALIGNED, steps=4, cpu_bf16=True)
    r = train(cfg, tmp_path / "run", TRAIN, VAL, quiet=True)
    assert r.step == 4 and r.finished and "align" in r.last
    from depixcli.model.weights import load_model

    model = load_model(r.model_path)
    assert model.config.grid_input and model.config.align and model.aligner is not None
    assert float(model.aligner.out.weight.detach().abs().max()) > 0  # the aligner trains (it starts at zero)
    rec = Reconstructor(model, "cpu")
    assert rec.uses_grid
    stacks = np.random.default_rng(0).integers(0, 255, (2, 3, S, S, 3), dtype=np.uint8)
    maps = paper_maps((2, 3), 4, S).numpy()
    with_maps, without = rec(stacks, maps), rec(stacks)
    assert with_maps.shape == (2, S, S, 3) and with_maps.dtype == np.uint8
    assert not np.array_equal(with_maps, without)  # the maps reach the network


def test_init_grows_shipped_weights_into_a_grid_model(tmp_path):
    torch.manual_seed(1)
    old = Depixelator(COMPACT)
    with torch.no_grad():
        old.recon.tail.weight.normal_(0, 0.05)
    save_model(tmp_path / "old.safetensors", old, {})
    cfg = dataclasses.replace(FAST, model=GRID, steps=0, init=str(tmp_path / "old.safetensors"))
    train(cfg, tmp_path / "run", TRAIN, VAL, quiet=True)
    from depixcli.train.checkpoint import load_checkpoint
    from depixcli.train.config import CHECKPOINT

    state = load_checkpoint(tmp_path / "run" / CHECKPOINT)["model"]
    head = state["recon.head.weight"]
    assert head.shape[1] == old.recon.head.weight.shape[1] + 4 * GRID_CHANNELS * COMPACT.frames
    assert torch.equal(head[:, : old.recon.head.weight.shape[1]], old.recon.head.weight.float())
    assert float(head[:, old.recon.head.weight.shape[1]:].abs().max()) == 0


def test_identity_term_is_zero_for_the_truth_and_its_gradient_reaches_the_output():
    from depixcli.faces.sface_torch import load_sface_net
    from depixcli.train.losses import identity_term
    from tests.train.test_compact import smooth_images

    net = load_sface_net("cpu")
    hr = torch.from_numpy(smooth_images(4, 64, 5)).permute(0, 3, 1, 2).float() / 255
    fake = hr.flip(-2).clone().requires_grad_(True)  # upside down: another "identity"
    assert float(identity_term(net, hr, hr, 2)) < 1e-5
    loss = identity_term(net, fake, hr, 2)
    loss.backward()
    assert float(loss.detach()) > 0.01
    touched = fake.grad.abs().flatten(1).sum(1) > 0
    assert touched.tolist() == [True, False, False, True]  # two samples spread over the batch: first and last
