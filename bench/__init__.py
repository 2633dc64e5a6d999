"""Benchmark runner: python -m bench NAME [--quick]."""
