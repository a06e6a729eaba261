"""`model_names`: another vendor's model names served by configured aliases — the first matching
rule wins, an alias is never remapped, a rule naming no alias is a config error naming the
field, and serving, `route --explain` and the ledger agree on the mapping."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import pytest
import yaml

from entrepot.config import Config, load_config
from entrepot.exceptions import ConfigError
from entrepot.policy.detector import PiiDetector
from entrepot.policy.egress import EgressPolicy
from entrepot.policy.explain import explain_route
from entrepot.routing.router import Router
from entrepot.routing.table import RoutingTable
from tests.conftest import UPSTREAM_KEY, Server, fake_model, start_gateway, usage_record


def _config(fake: Server) -> dict[str, object]:
    return {
        "store": {"ledger_flush_seconds": 0.05},
        "models": [
            fake_model(fake, "fake/small", "echo-model"),
            fake_model(fake, "fake/large", "echo-model"),
            fake_model(fake, "claude-exact", "echo-model"),
        ],
        "model_names": [
            {"match": "claude-*haiku*", "alias": "fake/small"},
            {"match": "claude-*", "alias": "fake/large"},
        ],
    }


def test_the_first_matching_rule_wins_and_aliases_stay_themselves(fake_openai: Server) -> None:
    table = RoutingTable(Config.model_validate(_config(fake_openai)))
    assert table.alias_for("claude-haiku-4-5") == "fake/small"
    assert table.alias_for("claude-3-5-haiku-latest") == "fake/small"
    assert table.alias_for("claude-sonnet-4-5") == "fake/large"
    assert table.alias_for("claude-exact") == "claude-exact"  # an alias is never remapped
    assert table.alias_for("gpt-4o") == "gpt-4o"  # no rule: refused later as unknown


def test_a_rule_for_an_unknown_alias_names_the_field(tmp_path: Path, fake_openai: Server) -> None:
    config = _config(fake_openai)
    config["model_names"] = [{"match": "*", "alias": "fake/typo"}]
    path = tmp_path / "entrepot.yaml"
    path.write_text(yaml.safe_dump(config))
    with pytest.raises(ConfigError, match=r"model_names\[0\]\.alias 'fake/typo'"):
        load_config(path)


def test_explain_shows_the_mapping(fake_openai: Server) -> None:
    config = Config.model_validate(_config(fake_openai))
    result = explain_route(
        config=config,
        table=RoutingTable(config),
        router=Router(config),
        detector=PiiDetector(config.policy.detector),
        egress=EgressPolicy(config.policy, config.teams),
        key=None,
        alias="claude-haiku-4-5",
        body={"model": "claude-haiku-4-5", "messages": [{"role": "user", "content": "hi"}]},
    )
    assert (result.requested, result.alias) == ("claude-haiku-4-5", "fake/small")
    assert [c.alias for c in result.candidates] == ["fake/small"]
    assert "model_names" in result.notes[0]


@pytest.fixture(scope="module")
def mapped(tmp_path_factory: pytest.TempPathFactory, fake_openai: Server) -> Iterator[Server]:
    tmp = tmp_path_factory.mktemp("model-names")
    server = start_gateway(tmp, "mapped", _config(fake_openai), {"FAKE_UPSTREAM_KEY": UPSTREAM_KEY})
    yield server
    server.stop()


def test_served_answered_and_recorded_under_both_names(mapped: Server) -> None:
    client = openai.OpenAI(base_url=mapped.url + "/v1", api_key="unused", max_retries=0)
    raw = client.chat.completions.with_raw_response.create(
        model="claude-haiku-4-5", messages=[{"role": "user", "content": "hello"}]
    )
    answer = raw.parse()
    assert answer.model == "claude-haiku-4-5"  # the client is answered under its own name
    assert raw.headers["x-entrepot-deployment"] == "openai_compatible:fake/small"
    row = usage_record(mapped, raw.headers["x-request-id"])
    assert (row["model_alias"], row["requested_model"]) == ("fake/small", "claude-haiku-4-5")
    direct = httpx.post(
        mapped.url + "/v1/chat/completions",
        json={"model": "fake/large", "messages": [{"role": "user", "content": "hi"}]},
    )
    row = usage_record(mapped, direct.headers["x-request-id"])
    assert (row["model_alias"], row["requested_model"]) == ("fake/large", None)


def test_an_unmatched_name_is_still_unknown(mapped: Server) -> None:
    response = httpx.post(
        mapped.url + "/v1/chat/completions",
        json={"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}]},
    )
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "model_not_found"
