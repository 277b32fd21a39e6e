"""Tests of depixcli.dataset: `depix prepare` (inputs, crops, export)."""
