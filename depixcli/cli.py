"""Command line: parse options, build a config, call one library function, report.

Heavy modules (torch, cv2, av) are imported inside the command bodies so that `--help` is instant.
"""

import click

from depixcli import __version__
from depixcli.commands.audit import audit_command
from depixcli.commands.eval import eval_command
from depixcli.commands.pixelate import pixelate_command
from depixcli.commands.prepare import prepare_command
from depixcli.commands.run import run_command
from depixcli.commands.train import train_command

CONTEXT_SETTINGS = {"help_option_names": ["-h", "--help"], "show_default": True}


@click.group(context_settings=CONTEXT_SETTINGS)
@click.version_option(__version__, "-V", "--version", prog_name="depix")
def main() -> None:
    """Reverse mosaic pixelation of faces in video, and pixelate, train and evaluate.

    \b
      depix run in.mp4 -o out.mp4          reconstruct pixelated faces
      depix pixelate in.mp4 -o out.mp4     pixelate every face
      depix prepare clips/ -o crops/       export head-crop training data
      depix train crops/ -o runs/a         train aligner + reconstructor
      depix eval crops/ -w model.safetensors   score on unseen people
      depix audit anon.mp4 --original in.mp4   does the anonymisation hold?
    """


main.add_command(run_command, "run")
main.add_command(pixelate_command, "pixelate")
main.add_command(prepare_command, "prepare")
main.add_command(train_command, "train")
main.add_command(eval_command, "eval")
main.add_command(audit_command, "audit")
