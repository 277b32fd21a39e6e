"""Tests of depixcli.model: networks, weights files, the shipped default model."""
