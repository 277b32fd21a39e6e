"""depix tests, one folder per package of depixcli (tests/<package>/test_*.py); tests of the modules at the
package root (pixelate, secure) and of the installed package stay here. Shared fixtures: conftest.py; test media:
synthetic.py."""
