"""Tests of depixcli.io: video decode/encode, the --boxes sidecar, time windows."""
