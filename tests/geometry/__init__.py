"""Tests of depixcli.geometry: mosaic grids and boxes."""
