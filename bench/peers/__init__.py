"""Peers: the hourly-mean + AQI job written the straightforward way with other frameworks.

Each peer runs as its own process (`python -m bench.peers.faust_naive`, `... .quix`),
consumes the benchmark's raw topic and writes a result file when it has processed the
expected number of records (bench/peers/job.py holds what they share).
"""
