"""Exit codes as the README states them: usage errors are Click's (exit 2), bad input is exit 1."""

import re
from pathlib import Path

import pytest
from click.testing import CliRunner

from depixcli.cli import main

README = Path(__file__).resolve().parents[2] / "README.md"


@pytest.mark.parametrize("args", [
    ["run", "in.mp4", "-o", "out.mp4", "--bogus"],  # unknown option
    ["pixelate", "in.mp4", "-o", "out.mp4", "--crf", "99"],  # value out of range
    ["prepare", "clips.csv"],  # missing -o
    ["train"],  # missing argument
    ["eval", "crops", "-w", "m.safetensors", "--protocol", "nope"],  # bad choice
])
def test_usage_errors_exit_2_with_usage_hint_and_error(args):
    r = CliRunner().invoke(main, args, prog_name="depix")
    assert r.exit_code == 2, r.output
    lines = [ln for ln in r.output.splitlines() if ln.strip()]
    assert len(lines) == 3 and lines[0].startswith("Usage: depix ") and lines[1].startswith("Try 'depix ")
    assert lines[2].startswith("Error: ")


def test_bad_input_exits_1_in_one_line(tmp_path):
    r = CliRunner().invoke(main, ["pixelate", str(tmp_path / "missing.mp4"), "-o", str(tmp_path / "o.mp4")])
    assert r.exit_code == 1 and r.output.strip().splitlines() == [r.output.strip()]
    assert r.output.startswith("Error: ")


def test_readme_states_both_exit_codes():
    text = " ".join(README.read_text().split())
    assert re.search(r"Bad input \(.*?\) gives a one-line `Error: \.\.\.` and exit 1", text)
    usage = re.search(r"A bad command line \(.*?\) is a usage error, reported the Click way: exit 2", text)
    assert usage and "Try 'depix CMD --help' for help." in text
