"""The gateway's load benchmark: ``make bench`` (``python -m bench.run``); docs/benchmark.md says more."""
