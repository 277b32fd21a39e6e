"""`depix pixelate DIR --skip-unreadable`: a bad file mid-batch is left out and listed at the end."""

import pytest
from click.testing import CliRunner

from depixcli.cli import main
from depixcli.video import make_synthetic_clip


@pytest.fixture(scope="module")
def batch(tmp_path_factory):
    """a.mp4 (good), b_cut.mp4 (truncated), c_notes.mp4 (not a video), d.mp4 (good), in that order."""
    d = tmp_path_factory.mktemp("batch")
    make_synthetic_clip(d / "a.mp4", 4)
    make_synthetic_clip(d / "d.mp4", 4)
    data = (d / "a.mp4").read_bytes()
    (d / "b_cut.mp4").write_bytes(data[: len(data) // 2])
    (d / "c_notes.mp4").write_text("not a video")
    return d


def test_stops_at_the_first_unreadable_file_without_the_flag(batch, tmp_path):
    r = CliRunner().invoke(main, ["pixelate", str(batch), "-o", str(tmp_path / "out"), "-q"])
    assert r.exit_code == 1 and r.output.startswith("Error: ") and "b_cut.mp4" in r.output
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["a.mp4"]


def test_skip_unreadable_goes_on_and_lists_what_it_skipped(batch, tmp_path):
    out = tmp_path / "out"
    r = CliRunner().invoke(main, ["pixelate", str(batch), "-o", str(out), "--skip-unreadable"])
    assert r.exit_code == 0, r.output
    assert sorted(p.name for p in out.iterdir()) == ["a.mp4", "d.mp4"]  # nothing half-written for b, c
    lines = r.output.strip().splitlines()
    assert [ln.split(":")[0] for ln in lines[-2:]] == ["Skipped", "Skipped"]  # listed at the end
    assert "b_cut.mp4" in lines[-2] and "c_notes.mp4" in lines[-1]
    assert not any(ln.startswith("Skipped") for ln in lines[:-2])
    assert "d.mp4" in r.output  # d was done after the bad files
