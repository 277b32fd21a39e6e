"""Tests of depixcli.batch: many videos (plan, resume, --jobs, a Dask cluster, workers killed or stopped)."""
