"""Tests of depixcli.locate: finding mosaics (periods, cells, regions, stream)."""
