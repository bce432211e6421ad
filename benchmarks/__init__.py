"""Reproducible speed and accuracy measurements of nearcast (not part of the test suite).

``python -m benchmarks.run [--quick]`` (``make bench`` / ``make bench-quick``) runs every
benchmark and writes ``BENCHMARKS.md``; each ``python -m benchmarks.<name>`` also runs alone.
"""
