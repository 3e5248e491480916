"""Topic replay for backtests (issue 17): a time range of ``signals`` through the pipeline.

``superintel replay --from ISO8601 --to ISO8601`` reads the records of a topic whose Kafka
timestamp lies in ``[from, to)`` (``source``), and pushes them through the same pipeline code as
a worker (router, ExecutionService, FillTracker, fill and position arithmetic), composed for
replay by the composition root (``engine``): recorded time as the clock, a paper venue for every
broker priced from a recorded price file (``prices``) or the signals' reference prices, results
in the in-memory store or in a PostgreSQL schema of the run's own, nothing on live topics, live
tables or live Redis channels. ``report`` writes what came out (summary.json, fills.csv, the
equity curve, report.html); ``cli`` is the command.

A layer on top of ``streams``: it composes the pipeline like a worker does, and nothing in
production imports it except the command line.
"""
