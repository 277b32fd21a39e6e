"""Tests of depixcli.audit: the verdicts, the report, the leak timeline, `depix audit` end to end."""
