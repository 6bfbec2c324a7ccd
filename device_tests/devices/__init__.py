"""Benchmark devices: one spec grammar, one interface (devices/base.py)."""
