"""Lineage and adapters in the configuration: mistakes refused with their line and field."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from entrepot.config import BUNDLED_ALIAS, BUNDLED_TARGET, load_config
from entrepot.exceptions import ConfigError

BASE = {"alias": BUNDLED_ALIAS, "provider": "llama_cpp", "target": BUNDLED_TARGET}
DIGEST = "ab" * 32


def adapter(**fields: Any) -> dict[str, Any]:
    return {
        "alias": "local/tone",
        "provider": "llama_cpp",
        "target": BUNDLED_TARGET,
        "adapter": "/models/tone.gguf",
        "adapter_sha256": DIGEST,
        "lineage": {"base": BUNDLED_ALIAS, "derivation": "lora"},
        **fields,
    }


def load(tmp_path: Path, *models: dict[str, Any]) -> Any:
    path = tmp_path / "entrepot.yaml"
    path.write_text(yaml.safe_dump({"models": list(models)}, sort_keys=False))
    return load_config(path)


def test_a_lora_alias_on_its_base(tmp_path: Path) -> None:
    config = load(tmp_path, BASE, adapter(weights_sha256=DIGEST))
    tone = config.model("local/tone")
    assert tone.adapter == "/models/tone.gguf" and tone.lineage.base == BUNDLED_ALIAS


@pytest.mark.parametrize(
    ("models", "says"),
    [
        ([BASE, adapter(lineage={"base": BUNDLED_ALIAS})], "derivation: lora"),
        ([BASE, adapter(lineage=None)], "lineage: {base: BASE_ALIAS"),
        ([BASE, adapter(target="/other.gguf")], "is served on its base's weights"),
        ([BASE, adapter(lineage={"base": "local/nope", "derivation": "lora"})], "'local/nope'"),
        ([BASE, {**BASE, "alias": "x", "adapter_sha256": DIGEST}], "none is given"),
        ([{**BASE, "weights_sha256": "ABC"}], "models.0.weights_sha256"),
        (
            [
                {**BASE, "alias": "a", "lineage": {"base": "b", "derivation": "merged"}},
                {**BASE, "alias": "b", "lineage": {"base": "a", "derivation": "merged"}},
            ],
            "descends from itself",
        ),
    ],
)
def test_mistakes_are_refused(tmp_path: Path, models: list[dict[str, Any]], says: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load(tmp_path, *models)
    assert says in str(caught.value) and "entrepot.yaml" in str(caught.value)


def test_only_llama_cpp_applies_an_adapter(tmp_path: Path) -> None:
    remote = adapter(provider="openai_compatible", base_url="http://127.0.0.1:9/v1")
    with pytest.raises(ConfigError, match="llama_cpp provider only"):
        load(tmp_path, BASE, remote)
