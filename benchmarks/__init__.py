"""Benchmarks: every speed figure measured beside its limit in the same run (``make bench``, ``make bench-full``)."""
