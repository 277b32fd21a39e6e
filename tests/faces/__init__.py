"""Tests of depixcli.faces: detection, tracking, identity (SFace in torch)."""
