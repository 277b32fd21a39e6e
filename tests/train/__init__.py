"""Tests of depixcli.train: training (data, losses, the loop, torchrun, temporal loss, the compact net)."""
