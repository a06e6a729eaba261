"""A shadow whose candidate is the bundled local model, run in process by llama.cpp: a
confidential request may be copied to it (the data stays on the machine) but not shown to a
remote judge, which grades only what it may see."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import openai
import pytest

from tests.conftest import LOCAL, Server, start_fake, start_gateway
from tests.shadow.test_live import ask, copies_in_ledger, model, pairs_of, received, shadow


@pytest.fixture(scope="module")
def fake(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    server = start_fake(tmp_path_factory.mktemp("graded"), "graded_upstream", "/received/x")
    yield server
    server.stop()


def test_a_local_candidate_gets_confidential_copies_and_a_remote_judge_does_not(
    tmp_path: Path, fake: Server
) -> None:
    config = {
        "store": {"ledger_flush_seconds": 0.05},
        "models": [
            model(fake, "vault", "wrong", jurisdiction="local"),
            model(fake, "judge", "judge"),
            {
                "alias": LOCAL,
                "provider": "llama_cpp",
                "target": "bundled:smollm2-135m-instruct",
                "local": {"n_threads": 2, "max_queue": 8},
            },
        ],
        "routes": {"vault": shadow(LOCAL)},
    }
    server = start_gateway(tmp_path, "local-candidate", config, env={"FAKE_UPSTREAM_KEY": "k"})
    try:
        client = openai.OpenAI(base_url=server.url + "/v1", api_key="none", max_retries=0)
        secret = "Confidential: what is six times seven?"
        confidential, _ = ask(
            client,
            "vault",
            secret,
            max_tokens=16,
            extra_headers={"x-entrepot-data-class": "confidential"},
        )
        public, _ = ask(client, "vault", "What is six times seven?", max_tokens=16)
        found = {p["request_id"]: p for p in pairs_of(server, "vault", 2, timeout=120)}
        kept = found[confidential]
        assert kept["status"] == "ungraded" and kept["candidate_answer"]
        assert secret not in " ".join(r["text"] for r in received(fake, "judge"))
        (copy,) = copies_in_ledger(server, confidential, 1)
        assert (copy["model_alias"], copy["key_name"]) == (LOCAL, "shadow:vault")
        assert found[public]["status"] == "graded"
        assert found[public]["difference"] in (0.0, 1.0)  # "I do not know." never wins
    finally:
        server.stop()
