"""Tests of depixcli.evaluate: metrics, protocols, temporal measures, `depix eval`."""
