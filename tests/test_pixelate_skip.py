"""`depix pixelate DIR`: a bad file mid-batch never stops it; --skip-unreadable lists it at the end, exit 0."""

import pytest
from click.testing import CliRunner

from depixcli.cli import main
from depixcli.io.synthetic import make_synthetic_clip


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


def videos(out):
    return sorted(p.name for p in out.iterdir() if p.suffix == ".mp4")


def test_goes_past_unreadable_files_and_fails_at_the_end_without_the_flag(batch, tmp_path):
    r = CliRunner().invoke(main, ["pixelate", str(batch), "-o", str(tmp_path / "out"), "-q"])
    lines = r.output.strip().splitlines()
    assert r.exit_code == 1 and lines[-1] == (f"Error: 2 of 4 videos failed (listed in "
                                              f"{tmp_path / 'out' / 'depix-batch.jsonl'})")
    assert "b_cut.mp4" in lines[0] and "c_notes.mp4" in lines[1] and lines[0].startswith("Failed: ")
    assert videos(tmp_path / "out") == ["a.mp4", "d.mp4"]


def test_skip_unreadable_goes_on_and_lists_what_it_skipped(batch, tmp_path):
    out = tmp_path / "out"
    r = CliRunner().invoke(main, ["pixelate", str(batch), "-o", str(out), "--skip-unreadable"])
    assert r.exit_code == 0, r.output
    assert sorted(p.name for p in out.iterdir()) == ["a.mp4", "d.mp4", "depix-batch.jsonl"]  # none half-written
    lines = r.output.strip().splitlines()
    assert [ln.split(":")[0] for ln in lines[-2:]] == ["Skipped", "Skipped"]  # listed at the end
    assert "b_cut.mp4" in lines[-2] and "c_notes.mp4" in lines[-1]
    assert not any(ln.startswith("Skipped") for ln in lines[:-2])
    assert "d.mp4" in r.output  # d was done after the bad files
