"""`fraudstream loadtest`: the pipeline under a traffic pattern, measured and recorded.

Modules: `patterns` (the pattern shapes scaled to a run), `stats` (what a run measured, per
decision and per second), `record` (a finished run, as stored), `runner` (traffic + workers
+ the follower of ``tx.decisions``), `display` (live figures), `plot` (a run's PNG). Runs are
stored by `fraudstream.store.runs`.
"""
