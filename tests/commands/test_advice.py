"""The library states facts about values; the CLI adds what to do, worded with its flags (`commands.common.ADVICE`).
Each message below names no flag from the library and names the same flag as before at the terminal."""

import importlib.util
import warnings
from dataclasses import replace

import click
import pytest

from depixcli.commands.common import ADVICE, user_errors
from depixcli.dataset.config import PrepareConfig
from depixcli.dataset.state import existing_dataset, split_problems
from depixcli.errors import ConfigError, DepixError, DepixWarning, OutputError
from depixcli.faces import identity
from depixcli.model import weights
from depixcli.train.loop import DEAD_AFTER, warn_if_dead


def worded(call) -> tuple[DepixError, str]:
    """The library's error from `call()` and the line the CLI prints for it."""
    with pytest.raises(DepixError) as raw:
        call()
    with pytest.raises(click.ClickException) as cli, user_errors():
        call()
    return raw.value, cli.value.message


def test_advice_keys_name_the_libraries_names():
    assert weights.WEIGHTS_ENV in ADVICE["weights"]


def test_missing_default_weights_names_weights_at_the_cli(tmp_path, monkeypatch):
    monkeypatch.delenv(weights.WEIGHTS_ENV, raising=False)
    monkeypatch.setattr(weights, "shipped_weights_path", lambda: tmp_path / "none.safetensors")
    raw, line = worded(weights.default_weights_path)
    assert str(raw) == f"no default weights at {tmp_path / 'none.safetensors'}"
    assert line == f"{raw}; pass --weights PATH or set {weights.WEIGHTS_ENV} (train one with `depix train`)"


def test_a_non_empty_output_directory_names_add_at_the_cli(tmp_path):
    (tmp_path / "other.txt").write_text("x")
    raw, line = worded(lambda: existing_dataset(tmp_path, PrepareConfig(), add=False))
    assert isinstance(raw, OutputError) and "--" not in str(raw)
    assert line == f"{tmp_path}: directory is not empty; choose a new one, or add --add to write into it"


def test_add_with_other_settings_names_add_at_the_cli(tmp_path, monkeypatch):
    from depixcli.dataset import state

    index = {"tracks": [], "clips": [], "config": {"size": 64}}
    monkeypatch.setattr(state, "read_index", lambda out, unfinished_ok=False: index)
    (tmp_path / "index.json").write_text("{}")
    raw, line = worded(lambda: existing_dataset(tmp_path, replace(PrepareConfig(), size=96), add=True))
    assert isinstance(raw, ConfigError) and "--" not in str(raw)
    assert line.endswith("this run has size=96; --add needs the same settings")
    raw, line = worded(lambda: existing_dataset(tmp_path, PrepareConfig(), add=False))
    assert "--" not in str(raw)
    assert line.endswith("add --add to add these clips to it (clips already in it are kept), or choose another "
                         "directory")


def run_warnings(call, capsys) -> str:
    """What the CLI's one warning channel prints while `call()` warns."""
    with user_errors():
        call()
    return capsys.readouterr().err


def test_no_held_out_identity_names_val_fraction_at_the_cli(capsys):
    problems = split_problems({"tracks": [{"split": "train", "identity": "a"}], "clips": []})
    assert [type(p) for p in problems] == [DepixWarning] and "--" not in str(problems[0])
    err = run_warnings(lambda: [warnings.warn(p) for p in problems], capsys)
    assert err == (f"Warning: {problems[0]}; one identity, or --val-fraction 0, holds none out: give a CSV with a "
                   "split column\n")


def test_a_dead_network_names_seed_at_the_cli(capsys):
    with pytest.warns(DepixWarning) as caught:
        warn_if_dead({"val_change": 0.0}, DEAD_AFTER)
    assert "--" not in str(caught[0].message)
    err = run_warnings(lambda: warn_if_dead({"val_change": 0.0}, DEAD_AFTER), capsys)
    assert err.startswith(f"Warning: step {DEAD_AFTER}: the network returns its input unchanged")
    assert err.endswith("its ReLUs may have died early; restart in a new directory with another --seed\n")


def test_missing_face_models_name_models_dir_at_the_cli(monkeypatch):
    monkeypatch.delenv(identity.MODELS_DIR_ENV, raising=False)
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    raw, line = worded(identity.find_model_files)
    assert "--models-dir" not in str(raw)
    assert line == f"{raw}; or give that directory as --models-dir"


def test_an_unfinished_dataset_names_add_at_the_cli(tmp_path):
    import json

    from depixcli.dataset.crops import FORMAT_NAME, FORMAT_VERSION, read_index

    (tmp_path / "index.json").write_text(json.dumps({"format": FORMAT_NAME, "version": FORMAT_VERSION, "crop_size": 8,
                                                     "tracks": [], "clips": [], "complete": False}))
    raw, line = worded(lambda: read_index(tmp_path))
    assert "--" not in str(raw)
    assert line == f"{raw}; rerun it with --add to finish it"
