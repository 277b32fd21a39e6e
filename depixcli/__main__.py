"""`python -m depixcli`: the `depix` command."""

from depixcli.cli import main

main()
