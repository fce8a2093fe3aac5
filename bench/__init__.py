"""Benchmarks of sessionlog, as ratios measured side by side in one run.

Run ``python -m bench`` (or ``python bench/run.py``, or ``python cli.py
bench``); ``--help`` lists the options and docs/performance.md explains
every figure. Benchmarks are not tests: nothing here asserts a time.
"""
