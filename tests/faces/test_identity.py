"""Where the SFace and YuNet model files come from (`faces.identity.find_model_files`): a directory given as an
option's value is that option's error, worded by the CLI with its flag; one from the environment says so."""

import click
import pytest

from depixcli.commands.common import user_errors
from depixcli.errors import BackendError, OptionError
from depixcli.faces.identity import MODELS_DIR_ENV, SFACE_FILE, YUNET_FILE, find_model_files


def test_a_models_dir_without_the_files_is_an_error_of_its_option(tmp_path, monkeypatch):
    monkeypatch.delenv(MODELS_DIR_ENV, raising=False)
    (tmp_path / YUNET_FILE).write_bytes(b"")
    with pytest.raises(OptionError) as caught:
        find_model_files(tmp_path)
    assert caught.value.option == "models_dir"
    assert str(caught.value) == f"{tmp_path}: face model file(s) {SFACE_FILE} not found there"  # the value only
    with pytest.raises(click.ClickException) as worded, user_errors():
        find_model_files(tmp_path)
    assert worded.value.message == f"--models-dir {tmp_path}: face model file(s) {SFACE_FILE} not found there"


def test_a_models_dir_from_the_environment_names_the_variable(tmp_path, monkeypatch):
    monkeypatch.setenv(MODELS_DIR_ENV, str(tmp_path))
    with pytest.raises(BackendError) as caught:
        find_model_files()
    assert not isinstance(caught.value, OptionError)
    assert str(caught.value) == (f"face model file(s) {YUNET_FILE}, {SFACE_FILE} not found in {tmp_path} "
                                 f"(from ${MODELS_DIR_ENV})")
