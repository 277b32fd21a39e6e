import click
import numpy as np
import pytest

from depixcli.commands.common import user_errors
from depixcli.errors import BackendError, OptionError
from depixcli.faces.detect import (
    DETECTORS,
    YUNET_FILE,
    YUNET_NMS,
    YUNET_THRESHOLD,
    YUNET_TOP_K,
    Detection,
    load_detector,
    package_file,
)
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


def _yunet_reference(image: np.ndarray):
    """(box xyxy, score) of OpenCV's YuNet run directly on `image` as given (it reads BGR)."""
    import cv2

    net = cv2.FaceDetectorYN.create(str(package_file(*YUNET_FILE)), "", (image.shape[1], image.shape[0]),
                                    YUNET_THRESHOLD, YUNET_NMS, YUNET_TOP_K)
    _, faces = net.detect(image)
    x, y, w, h = faces[0][:4]
    return np.array([x, y, x + w, y + h]), float(faces[0][14])


def test_is_colour_order_aware(astronaut):
    """The API takes RGB and gives YuNet BGR: its box and score are OpenCV's on the BGR image, not on the RGB one
    (YuNet still finds the astronaut with her channels swapped, but with another score)."""
    d = load_detector("yunet").detect(astronaut)[0]
    box_bgr, score_bgr = _yunet_reference(np.ascontiguousarray(astronaut[..., ::-1]))
    box_rgb, score_rgb = _yunet_reference(astronaut)
    assert abs(score_bgr - score_rgb) > 1e-3  # the channel order shows in the score
    assert d.score == pytest.approx(score_bgr, abs=1e-6) and np.allclose(d.box, box_bgr, atol=1e-3)


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
    """An error of the detector option: the library says what is missing where; the CLI words it with the flag."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))  # torch.hub.get_dir(): no checkpoint there
    with pytest.raises(OptionError) as caught:
        load_detector("sfd")
    assert caught.value.option == "detector" and "--" not in str(caught.value)
    assert str(caught.value).startswith(f"sfd: needs s3fd-619a316812.pth in {tmp_path / 'hub' / 'checkpoints'}")
    with pytest.raises(click.ClickException) as worded, user_errors():
        load_detector("sfd")
    assert worded.value.message.startswith("--detector sfd: needs ")
    assert worded.value.message.endswith("or choose yunet")


def test_unknown_detector():
    assert set(DETECTORS) == {"yunet", "centerface", "sfd"}
    with pytest.raises(BackendError, match="unknown detector"):
        load_detector("haar")
