"""Throughput and memory benchmarks, each beside a baseline measured in the same run."""
