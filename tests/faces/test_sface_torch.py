"""SFace in torch (sface_torch.py) against the ONNX run by onnxruntime and by OpenCV (identity.SFaceIdentity)."""

import numpy as np
import pytest
import torch
from skimage import data as skimage_data

from depixcli.errors import BackendError
from depixcli.faces.identity import SFaceIdentity, canonical_alignment, cosine, find_model_files
from depixcli.faces.sface_torch import (
    FACE_SIZE,
    build_sface_net,
    dequantize,
    identity_embedding,
    identity_loss,
    onnx_weights,
)
from tests.synthetic import area_mosaic, head_crop

CROP = 128  # px

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def sface():
    return SFaceIdentity()


@pytest.fixture(scope="module")
def net():
    return build_sface_net()


@pytest.fixture(scope="module")
def crops():
    """Four different (S, S, 3) uint8 RGB head crops: the astronaut, colours swapped, mirrored, a 16x16 mosaic."""
    img = skimage_data.astronaut()
    gt = head_crop(img)
    mirrored = np.ascontiguousarray(img[:, ::-1])
    swapped = np.ascontiguousarray(img[..., ::-1])
    return [gt, head_crop(swapped), head_crop(mirrored, 512 - 268.4 - 178.0), area_mosaic(gt)]


def as_tensor(images):
    return torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).float() / 255.0


def onnxruntime_features(faces_rgb):
    """(N, 128) raw SFace features of (N, 112, 112, 3) uint8 RGB aligned faces by onnxruntime (fp32 graph)."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.log_severity_level = 3  # the quantised graph lists its weights as inputs too: warnings only
    sess = ort.InferenceSession(str(find_model_files()[1]), opts, providers=["CPUExecutionProvider"])
    out = []
    for face in faces_rgb:
        feeds = {i.name: np.zeros(i.shape, np.float32) for i in sess.get_inputs()}  # unused dangling inputs
        feeds["data"] = face.transpose(2, 0, 1)[None].astype(np.float32)  # RGB, 0..255, as OpenCV's blob
        out.append(sess.run(None, feeds)[0][0])
    return np.stack(out)


def test_network_matches_onnxruntime_and_opencv(sface, net, crops):
    align = [sface.align(crops[0])] * len(crops)
    faces = np.ascontiguousarray(np.stack([sface.aligned_face(c, a)[..., ::-1] for c, a in zip(crops, align)]))
    # (N, 112, 112, 3) RGB from cv2 alignCrop
    assert faces.shape == (len(crops), FACE_SIZE, FACE_SIZE, 3)
    with torch.no_grad():
        ours = net(as_tensor(faces)).numpy()
    cv = np.stack([sface._recognizer.feature(np.ascontiguousarray(f[..., ::-1])).reshape(-1) for f in faces])
    ort = onnxruntime_features(faces)
    assert cosine(ours, cv).min() > 0.999
    assert cosine(ours, ort).min() > 0.999
    np.testing.assert_allclose(ours, ort, rtol=0, atol=2e-3 * np.abs(ort).max())
    # the embeddings differ between inputs (a network giving a constant could not pass)
    off_diag = cosine(ours[:, None], ours[None])[~np.eye(len(crops), dtype=bool)]
    assert off_diag.min() < 0.2


def test_identity_embedding_matches_sface_identity(sface, net, crops):
    aligns = [sface.align(c) for c in crops[:3]]
    assert all(a.detected for a in aligns)
    x = as_tensor(crops[:3])
    with torch.no_grad():
        ours = identity_embedding(x, np.stack([a.landmarks for a in aligns]), net).numpy()
        canon = identity_embedding(x, None, net).numpy()  # fixed head-crop alignment
    np.testing.assert_allclose(np.linalg.norm(ours, axis=1), 1.0, atol=1e-5)
    assert cosine(ours, sface.embed(crops[:3], aligns)).min() > 0.99
    ref_canon = sface.embed(crops[:3], [canonical_alignment(CROP)] * 3)
    assert cosine(canon, ref_canon).min() > 0.99
    # one (5, 2) set of landmarks serves the whole batch
    with torch.no_grad():
        shared = identity_embedding(x, aligns[0].landmarks, net).numpy()
    assert cosine(shared[0], ours[0]) > 0.9999


def test_identity_loss_gradients_are_finite_and_reach_the_pixels(net, crops):
    gt = as_tensor(crops[:2])
    pred = as_tensor([crops[3], crops[3]]).requires_grad_(True)  # a mosaic, scored against the real face
    with torch.no_grad():
        target = identity_embedding(gt, None, net)
    loss = identity_loss(identity_embedding(pred, None, net), target)
    loss.backward()
    assert 0.3 < float(loss.detach()) < 1.5
    assert torch.isfinite(pred.grad).all() and pred.grad.abs().sum() > 0
    assert all(p.grad is None for p in net.parameters())  # frozen
    # a step down the gradient brings the mosaic closer to the person
    with torch.no_grad():
        stepped = (pred - 0.5 * pred.grad / pred.grad.abs().max()).clamp(0, 1)
        assert identity_loss(identity_embedding(stepped, None, net), target) < loss
        assert float(identity_loss(target, target)) == pytest.approx(0.0, abs=1e-6)
        assert identity_loss(target, -target, reduction="none").tolist() == pytest.approx([2.0, 2.0])
    net.train()
    assert not net.training and not net.bn1.training  # BatchNorm statistics stay SFace's


def test_dequantize_blocks():
    q = np.array([[1, 2, 3, 4, 5]], np.int8)
    scale = np.array([[0.5, 2.0, 10.0]], np.float32)  # blocks of 2 along axis 1: (0, 1), (2, 3), (4,)
    zp = np.array([[1, 0, 5]], np.int8)
    np.testing.assert_allclose(dequantize(q, scale, zp, axis=1, block=2), [[0.0, 0.5, 6.0, 8.0, 0.0]])
    np.testing.assert_allclose(dequantize(q, np.float32(0.1), None, axis=0, block=0), q * np.float32(0.1))


def test_onnx_weights_are_dequantised_float():
    w = onnx_weights(find_model_files()[1])
    assert w["conv_1_conv2d_weight"].shape == (32, 3, 3, 3) and w["conv_1_conv2d_weight"].dtype == np.float32
    assert w["pre_fc1_weight"].shape == (128, 50176)
    assert 0 < np.abs(w["conv_2_conv2d_weight"]).max() < 10


def test_corrupt_onnx_is_a_backend_error(tmp_path):
    bad = tmp_path / "sface.onnx"
    bad.write_bytes(b"\x00not an onnx model" * 10)
    with pytest.raises(BackendError, match="cannot read the SFace ONNX"):
        build_sface_net(bad)


def test_missing_onnx_package_is_a_backend_error(monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "onnx", None)
    with pytest.raises(BackendError, match="pip install onnx"):
        onnx_weights(find_model_files()[1])
