"""Tests of depixcli.restore: `depix run` (find, tracks, stacks, fusion, blend, edges, --boxes)."""
