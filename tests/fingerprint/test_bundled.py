"""The bundled model's fingerprint is stable: llama.cpp in process, at temperature 0 with a fixed
seed, answers every canary the same way twice in a take and twice in a check."""

from __future__ import annotations

from pathlib import Path

from entrepot.config import Config, ModelConfig
from entrepot.fingerprint.session import FingerprintRequest, check, take
from tests.conftest import LOCAL


def test_the_bundled_models_fingerprint_is_stable(tmp_path: Path) -> None:
    config = Config.model_validate(
        {
            "store": {"url": f"sqlite:///{tmp_path / 'ledger.db'}"},
            "models": [
                ModelConfig(
                    alias=LOCAL, provider="llama_cpp", target="bundled:smollm2-135m-instruct"
                ).model_dump(mode="json", exclude_none=True)
            ],
        }
    )
    taken = take(config, FingerprintRequest(LOCAL))
    result = check(config, FingerprintRequest(LOCAL))

    assert taken.noise == (1.0, 1.0)
    found = result.agreement
    assert not found.substituted, found.reason
    assert (found.exact_share, found.floor, found.tokens_changed) == (1.0, 1.0, 0)
    assert result.run.deployment == result.take.deployment == f"llama_cpp:{LOCAL}"
