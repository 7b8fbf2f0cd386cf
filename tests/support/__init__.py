"""Helpers shared by the tests: the private broker, waiting on conditions, processes."""
