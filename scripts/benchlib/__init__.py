"""Helpers of ``scripts/bench`` (one command, one run, one table; see scripts/bench.py).

- :mod:`benchlib.stack`: a throwaway etcd + TLS ``vaultkey serve``, a group token, keys.
- :mod:`benchlib.wrk`: wrk runs (Lua request scripts) and the parsing of ``wrk --latency``.
- :mod:`benchlib.timing`: medians, percentiles, per-call timing loops.
- :mod:`benchlib.clirun`: whole-process CLI timings, crypt (xordataexchange) included.
- :mod:`benchlib.report`: the machine description, the table, the targets, the Markdown.
"""
