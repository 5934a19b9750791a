"""Helpers shared by tests and benchmarks, imported as ``tests.helpers.<module>``."""
