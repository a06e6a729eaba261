"""Every bench test may call models on the fake upstream (see `through.upstream_key`)."""

from tests.bench.through import upstream_key

__all__ = ["upstream_key"]
