"""Tests of depixcli.commands and cli: error lines, exit codes, signals, the CLI's small fixes."""
