"""`python -m depixcli.commands.export_features SRC DST`: the CLI of `train.perceptual.export_features` (the
library module holds no Click)."""

from click.testing import CliRunner

from depixcli.commands.export_features import export_features_command
from depixcli.train.perceptual import load_feature_net


def test_export_writes_a_compact_network_and_a_bad_source_is_one_line(tmp_path):
    dst = tmp_path / "mb.safetensors"
    r = CliRunner().invoke(export_features_command, ["mobilenetv2", str(dst)])
    assert r.exit_code == 0 and r.output.startswith(f"{dst}: ") and r.output.endswith(" MiB\n")
    assert load_feature_net(str(dst)).kind == "mobilenetv2"
    r = CliRunner().invoke(export_features_command, [str(tmp_path / "nosuch.pth"), str(tmp_path / "x.safetensors")])
    assert r.exit_code == 1 and r.output == f"Error: feature network weights not found: {tmp_path / 'nosuch.pth'}\n"
    assert not (tmp_path / "x.safetensors").exists()
