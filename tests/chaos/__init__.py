"""Crash-consistency runs (`make chaos`); the short seed runs in the test suite."""
