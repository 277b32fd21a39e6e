"""Many videos: `depix run`, `pixelate` and `audit` over a folder, a glob or a CSV, resumable.

  plan.py     inputs -> jobs, every output named
  records.py  the result manifest: one JSON record per video; which jobs an earlier run finished
  run.py      `run_batch`: resume, work through an engine, record (the data flow, in its docstring)
  engines.py  where the videos run: this process, local worker processes, a Dask cluster
  worker.py   a local worker process's set-up (thread limits before the heavy libraries load)
  work.py     one video: the task's library entry point, then its record
"""
