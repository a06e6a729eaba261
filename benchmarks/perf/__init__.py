"""The performance suite: Entrepôt side by side with the limit, the Python floor and a peer.

Run with `make bench-perf`; see `benchmarks/perf/__main__.py` for what it measures.
"""
