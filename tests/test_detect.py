import numpy as np
import pytest

from depixcli.errors import BackendError
from depixcli.faces.detect import DETECTORS, Detection, load_detector
from depixcli.geometry.boxes import iou

skimage_data = pytest.importorskip("skimage.data")

ASTRONAUT_FACE = np.array([180.0, 60.0, 268.0, 177.0])  # px, tight face box in skimage's astronaut (512x512)


@pytest.fixture(scope="module")
def astronaut():
    return skimage_data.astronaut()  # (512, 512, 3) uint8 RGB, one face


@pytest.fixture(scope="module", params=["yunet", "centerface"])
def detector(request):
    return load_detector(request.param)


def test_finds_the_face_in_a_photo(detector, astronaut):
    dets = detector.detect(astronaut)
    assert len(dets) == 1
    d = dets[0]
    assert isinstance(d, Detection) and d.score > 0.5
    assert iou(d.box, ASTRONAUT_FACE) > 0.75
    lm = d.landmarks
    assert lm.shape == (5, 2)
    assert np.all((lm[:, 0] > d.box[0]) & (lm[:, 0] < d.box[2]) & (lm[:, 1] > d.box[1]) & (lm[:, 1] < d.box[3]))
    assert lm[0, 0] < lm[1, 0]  # right eye (image left) before left eye


def test_is_colour_order_aware(astronaut):
    """YuNet wants BGR: feeding RGB through the RGB API must give the same box as the reference."""
    d = load_detector("yunet").detect(astronaut)[0]
    assert iou(d.box, ASTRONAUT_FACE) > 0.75


def test_no_face_in_plain_frames(detector):
    rng = np.random.default_rng(0)
    assert detector.detect(np.full((240, 320, 3), 127, np.uint8)) == []
    noise = rng.integers(0, 256, (240, 320, 3), dtype=np.uint8)
    assert detector.detect(noise) == []


def test_moving_face_in_large_frames_is_found_at_frame_scale(detector, astronaut):
    """A face pasted into 1280x720 frames (detected on a downscaled copy) at moving positions."""
    face = astronaut[20:260, 120:330]  # (240, 210, 3) head region
    tight = ASTRONAUT_FACE - [120, 20, 120, 20]
    for k, (x, y) in enumerate([(40, 30), (400, 200), (900, 420), (1000, 60)]):
        frame = np.full((720, 1280, 3), 90, np.uint8)
        frame[y:y + 240, x:x + 210] = face
        dets = detector.detect(frame)
        assert len(dets) == 1, k
        assert iou(dets[0].box, tight + [x, y, x, y]) > 0.7, k


def test_small_frame_and_odd_sizes(detector, astronaut):
    import cv2

    small = cv2.resize(astronaut, (203, 171), interpolation=cv2.INTER_AREA)
    dets = detector.detect(small)
    assert len(dets) == 1
    ref = ASTRONAUT_FACE * [203 / 512, 171 / 512, 203 / 512, 171 / 512]
    assert iou(dets[0].box, ref) > 0.7


def test_sfd_without_weights_names_the_missing_file(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    with pytest.raises(BackendError, match=r"s3fd-619a316812\.pth") as e:
        load_detector("sfd")
    assert str(tmp_path / "hub" / "checkpoints") in str(e.value)


def test_unknown_detector():
    assert set(DETECTORS) == {"yunet", "centerface", "sfd"}
    with pytest.raises(BackendError, match="unknown detector"):
        load_detector("haar")
