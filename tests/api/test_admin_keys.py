"""Keys made through the admin API may be allowed only models the gateway serves: a name nothing
serves is refused when the key is made (as `entrepot keys create` and the console refuse it), in
the admin API's JSON error format, and no key is made."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from entrepot.config import Config
from entrepot.exceptions import InvalidRequestError
from entrepot.policy.key_models import check_allowed_models
from tests.conftest import ADMIN_KEY, UPSTREAM_KEY, Server, admin, fake_model, start_gateway


@pytest.fixture(scope="module")
def keys_gateway(tmp_path: Path, fake_openai: Server) -> Iterator[Server]:
    config = {
        "server": {"require_client_keys": True},
        "models": [
            fake_model(fake_openai, "fake/echo", "echo-model"),
            fake_model(fake_openai, "fake/other", "echo-model"),
        ],
    }
    env = {"ENTREPOT_ADMIN_KEY": ADMIN_KEY, "FAKE_UPSTREAM_KEY": UPSTREAM_KEY}
    server = start_gateway(tmp_path, "admin-keys", config, env)
    yield server
    server.stop()


@pytest.fixture(scope="module")
def tmp_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("admin-keys")


def test_an_unknown_alias_is_refused_with_a_json_error_and_no_key_is_made(
    keys_gateway: Server,
) -> None:
    with admin(keys_gateway) as http:
        refused = http.post(
            "/admin/keys", json={"name": "typo", "allowed_models": ["fake/echo", "fake/ehco"]}
        )
        assert refused.status_code == 400
        assert refused.headers["content-type"].startswith("application/json")
        assert refused.json() == {
            "error": {
                "message": "allowed_models: 'fake/ehco' not configured;"
                " known: fake/echo, fake/other",
                "type": "invalid_request_error",
                "param": "allowed_models",
                "code": "model_not_found",
            }
        }
        names = [key["name"] for key in http.get("/admin/keys?all=true").json()["data"]]
        assert "typo" not in names
        made = http.post("/admin/keys", json={"name": "typo", "allowed_models": ["fake/other"]})
        assert made.status_code == 201, made.text
        assert made.json()["allowed_models"] == ["fake/other"]


def test_a_long_configuration_is_listed_bounded() -> None:
    models = [
        {"alias": f"m{i:02d}", "provider": "openai_compatible", "target": "t", "base_url": "x"}
        for i in range(25)
    ]
    config = Config.model_validate({"models": models})
    with pytest.raises(InvalidRequestError) as refused:
        check_allowed_models(config, ["m00", "nope", "n" * 500], "--models", "allowed_models")
    message = refused.value.message
    assert message.startswith(f"--models: {'n' * 200!r}, 'nope' not configured; known: m00, m01")
    assert message.endswith("m19 (and 5 more)")
    check_allowed_models(config, None, "--models", "allowed_models")
    check_allowed_models(config, ["m24"], "--models", "allowed_models")
