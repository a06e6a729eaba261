"""Which exact bytes answered: a gateway on loopback serving the bundled model, a LoRA adapter
on it (written here with the `gguf` package) as its own alias, and a registered derivative
whose file was corrupted after registration. Registrations are made by `entrepot models add`."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from typer.testing import CliRunner

from entrepot.cli import app
from entrepot.config import BUNDLED_ALIAS
from tests.conftest import Server, start_gateway, usage_record
from tests.derivatives import bundled_weights, corrupted_copy, quantise, write_lora

TUNED, BROKEN = "local/smollm2-tone", "local/smollm2-broken"
WEIGHTS, ADAPTER = "x-entrepot-weights-sha256", "x-entrepot-adapter-sha256"
PROMPTS = ("Name three colours.", "What is the capital of France?", "Describe the sea.")


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def register(config: Path, path: Path, alias: str, *options: str) -> None:
    args = ["models", "add", str(path), "--alias", alias, "--base", BUNDLED_ALIAS, *options]
    result = CliRunner().invoke(app, [*args, "--config", str(config)])
    assert result.exit_code == 0, result.output


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    tmp = tmp_path_factory.mktemp("derivatives")
    return {
        "adapter": write_lora(tmp / "tone.gguf"),
        "quantised": quantise(bundled_weights(), tmp / "smollm2-q4_0.gguf"),
    }


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory, files: dict[str, Path]) -> Iterator[Server]:
    tmp = tmp_path_factory.mktemp("provenance")
    config_file = tmp / "registered.yaml"
    register(config_file, files["adapter"], TUNED, "--licence", "MIT")
    broken = tmp / "broken.gguf"
    broken.write_bytes(files["quantised"].read_bytes())
    register(config_file, broken, BROKEN, "--derivation", "quantised")
    corrupted_copy(files["quantised"], broken)
    config: dict[str, Any] = yaml.safe_load(config_file.read_text())
    for model in config["models"]:
        model["local"] = {"n_threads": 2, "n_ctx": 512}
    config["store"] = {"ledger_flush_seconds": 0.05}
    server = start_gateway(tmp, "provenance", config)
    yield server
    server.stop()


def chat(gateway: Server, model: str, prompt: str) -> httpx.Response:
    body = {
        "model": model,
        "messages": [{"role": "user", "content": prompt}],
        "temperature": 0,
        "seed": 7,
        "max_tokens": 16,
    }
    response = httpx.post(f"{gateway.url}/v1/chat/completions", json=body, timeout=120)
    assert response.status_code == 200, response.text
    return response


def answer(response: httpx.Response) -> str:
    return str(response.json()["choices"][0]["message"]["content"])


def test_the_adapter_changes_answers_and_the_base_is_unaffected(
    gateway: Server, files: dict[str, Path]
) -> None:
    before = [chat(gateway, BUNDLED_ALIAS, p) for p in PROMPTS]
    tuned = [chat(gateway, TUNED, p) for p in PROMPTS]
    after = [chat(gateway, BUNDLED_ALIAS, p) for p in PROMPTS]

    assert [answer(r) for r in after] == [answer(r) for r in before]
    pairs = zip(before, tuned, strict=True)
    differing = sum(answer(base) != answer(adapted) for base, adapted in pairs)
    assert differing >= 2, [answer(r) for r in (*before, *tuned)]

    base_digest, adapter_digest = digest(bundled_weights()), digest(files["adapter"])
    for response in (*before, *after):
        assert response.headers[WEIGHTS] == base_digest and ADAPTER not in response.headers
        record = usage_record(gateway, response.headers["x-request-id"])
        assert (record["weights_sha256"], record["adapter_sha256"]) == (base_digest, None)
    for response in tuned:
        assert (response.headers[WEIGHTS], response.headers[ADAPTER]) == (
            base_digest,
            adapter_digest,
        )
        record = usage_record(gateway, response.headers["x-request-id"])
        assert record["model_alias"] == TUNED
        assert (record["weights_sha256"], record["adapter_sha256"]) == (base_digest, adapter_digest)


DOORS = {
    "chat": ("/v1/chat/completions", {"messages": [{"role": "user", "content": "Hi"}]}),
    "responses": ("/v1/responses", {"input": "Hi", "max_output_tokens": 8}),
    "messages": ("/v1/messages", {"messages": [{"role": "user", "content": "Hi"}]}),
}


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "streamed"])
@pytest.mark.parametrize("door", DOORS)
def test_every_door_says_which_bytes_answered(
    gateway: Server, files: dict[str, Path], door: str, stream: bool
) -> None:
    path, fields = DOORS[door]
    body = {"model": TUNED, "max_tokens": 8, "stream": stream, **fields}
    with httpx.stream("POST", gateway.url + path, json=body, timeout=120) as response:
        response.read()
    assert response.status_code == 200, response.text
    assert response.headers[WEIGHTS] == digest(bundled_weights())
    assert response.headers[ADAPTER] == digest(files["adapter"])
    record = usage_record(gateway, response.headers["x-request-id"])
    assert bool(record["stream"]) is stream
    assert record["adapter_sha256"] == digest(files["adapter"])


def test_a_corrupted_copy_is_refused(gateway: Server, files: dict[str, Path]) -> None:
    body = {"model": BROKEN, "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 4}
    # Every client is told why, also once more have asked than would open a circuit.
    for _ in range(4):
        response = httpx.post(f"{gateway.url}/v1/chat/completions", json=body, timeout=60)
        assert response.status_code == 503, response.text
        error = response.json()["error"]
        assert error["code"] == "weights_mismatch"
        assert f"model {BROKEN} is not served" in error["message"]
        assert digest(files["quantised"])[:16] in error["message"]
        assert WEIGHTS not in response.headers
    assert "is not served" in gateway.log.read_text()
    record = usage_record(gateway, response.headers["x-request-id"])
    assert (record["status"], record["error_type"]) == (503, "weights_mismatch")
    assert record["weights_sha256"] is None


def test_a_contradicted_licence_is_flagged_at_start(gateway: Server) -> None:
    log = gateway.log.read_text()
    assert f"model {TUNED}: the declared licence 'MIT' contradicts its file's own" in log
    assert f"model {BUNDLED_ALIAS}: the declared licence" not in log
