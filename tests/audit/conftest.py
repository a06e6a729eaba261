"""The censoring fake upstream, and a config whose models are its behaviours; the fake OpenAI
upstream's key, as in the bench's tests (see `tests.bench.through.upstream_key`)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from entrepot.config import Config, ModelConfig
from tests.bench.through import upstream_key
from tests.conftest import LOCAL, Server, start_fake

__all__ = ["audit_config", "censoring", "upstream_key"]

PRICE = {"input_per_1m": "1", "output_per_1m": "2", "as_of": "2026-11-01"}


@pytest.fixture(scope="session")
def censoring(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    tmp = tmp_path_factory.mktemp("censoring")
    server = start_fake(tmp, "censoring_upstream", "/v1/models")
    yield server
    server.stop()


def audit_config(upstream: Server) -> Config:
    """One alias per behaviour of the fake, said to be hosted in the jurisdiction it mimics."""

    def remote(alias: str, jurisdiction: str) -> ModelConfig:
        return ModelConfig.model_validate(
            {
                "alias": alias,
                "provider": "openai_compatible",
                "target": alias,
                "base_url": upstream.url + "/v1",
                "jurisdiction": jurisdiction,
                "price": PRICE,
            }
        )

    return Config(
        models=[
            remote("oracle", "US"),
            remote("censor-cn", "CN"),
            remote("refuse-all", "US"),
            remote("host-filter", "CN"),
            remote("reasoner", "CN"),
            remote("judge-facts", "US"),
            remote("judge-answered", "US"),
            ModelConfig(alias=LOCAL, provider="llama_cpp", target="bundled:smollm2-135m-instruct"),
        ]
    )
