"""`entrepot models add` and `entrepot models lineage`, on real files made here: a derivative
requantised from the bundled model by llama.cpp, a LoRA adapter, a corrupted copy."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
import yaml

from entrepot.config import BUNDLED_ALIAS, load_config
from tests.cli.invoke import ok, run
from tests.derivatives import bundled_weights, corrupted_copy, quantise, write_lora

QUANTISED = "local/smollm2-q4_0"


@pytest.fixture(autouse=True)
def _isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ENTREPOT_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("COLUMNS", "200")
    monkeypatch.delenv("ENTREPOT_CONFIG", raising=False)


@pytest.fixture(scope="module")
def quantised(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return quantise(bundled_weights(), tmp_path_factory.mktemp("q") / "smollm2-q4_0.gguf")


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def add_quantised(config: Path, quantised: Path) -> str:
    return ok(
        "models", "add", str(quantised), "--alias", QUANTISED, "--base", BUNDLED_ALIAS,
        "--derivation", "quantised", "--dataset", "none (requantised)",
        "--notes", "Q4_1 to Q4_0", "--config", str(config),
    )  # fmt: skip


def test_a_quantised_derivative_is_registered_with_its_lineage(
    tmp_path: Path, quantised: Path
) -> None:
    config = tmp_path / "entrepot.yaml"
    out = add_quantised(config, quantised)
    assert f"registered model {QUANTISED}" in out and digest(quantised) in out
    assert "llama · 134.5M params · Q4_0 · ctx 8,192" in out
    models = {m.alias: m for m in load_config(config).models}
    assert set(models) == {BUNDLED_ALIAS, QUANTISED}  # the bundled model is kept
    entry = models[QUANTISED]
    assert entry.target == str(quantised.resolve())
    assert entry.weights_sha256 == digest(quantised)
    assert entry.licence == "apache-2.0"  # the file's own, none being declared
    assert entry.lineage is not None
    assert (entry.lineage.base, entry.lineage.derivation) == (BUNDLED_ALIAS, "quantised")
    assert (entry.lineage.dataset, entry.lineage.notes) == ("none (requantised)", "Q4_1 to Q4_0")

    listed = ok("models", "--config", str(config))
    assert digest(bundled_weights())[:12] in listed and digest(quantised)[:12] in listed
    assert "Q4_1" in listed and "Q4_0" in listed

    tree = ok("models", "lineage", "--config", str(config))
    assert tree.index(BUNDLED_ALIAS) < tree.index(f"{QUANTISED}  quantised from {BUNDLED_ALIAS}")
    for file in (bundled_weights(), quantised):
        assert f"weights  {digest(file)}" in tree
    assert "Q4_1 · ctx 8,192" in tree and "Q4_0 · ctx 8,192" in tree
    assert "dataset  none (requantised)" in tree and "⚠" not in tree


def test_the_entry_is_added_to_an_existing_file_as_text(tmp_path: Path, quantised: Path) -> None:
    config = tmp_path / "entrepot.yaml"
    original = (
        "# our gateway\n"
        "server:\n  port: 8123  # the team's port\n"
        f"models:\n  - alias: {BUNDLED_ALIAS}\n    provider: llama_cpp\n"
        "    target: bundled:smollm2-135m-instruct\n    licence: Apache-2.0  # checked\n"
        "# routes come later\n"
    )
    config.write_text(original)
    add_quantised(config, quantised)
    text = config.read_text()
    assert text.startswith(original.removesuffix("# routes come later\n"))
    assert text.endswith("# routes come later\n")
    assert load_config(config).server.port == 8123
    assert [m["alias"] for m in yaml.safe_load(text)["models"]] == [BUNDLED_ALIAS, QUANTISED]


def test_a_lora_adapter_is_registered_on_its_base(tmp_path: Path, quantised: Path) -> None:
    config = tmp_path / "entrepot.yaml"
    add_quantised(config, quantised)
    adapter = write_lora(tmp_path / "tone.gguf", layers=range(2), rank=4)
    out = ok(
        "models", "add", str(adapter), "--alias", "local/tone", "--base", QUANTISED,
        "--licence", "MIT", "--config", str(config),
    )  # fmt: skip
    assert "registered LoRA adapter local/tone" in out
    assert "LoRA adapter for llama · 15,360 params · F32 · alpha 4" in out
    assert "⚠ the declared licence 'MIT' contradicts the file's own" in out
    entry = load_config(config).model("local/tone")
    assert entry is not None and entry.lineage is not None
    assert entry.target == str(quantised.resolve())  # served on its base's weights
    assert (entry.weights_sha256, entry.adapter_sha256) == (digest(quantised), digest(adapter))
    assert (entry.lineage.base, entry.lineage.derivation) == (QUANTISED, "lora")

    tree = ok("models", "lineage", "local/tone", "--config", str(config))
    order = [BUNDLED_ALIAS, f"{QUANTISED}  quantised from", f"local/tone  lora from {QUANTISED}"]
    assert sorted(order, key=tree.index) == order
    assert f"adapter  {digest(adapter)}" in tree and "⚠ the declared licence 'MIT'" in tree
    listed = ok("models", "--config", str(config))
    assert digest(adapter)[:12] in listed and "Q4_0+LoRA" in listed

    rows = json.loads(ok("models", "lineage", "local/tone", "--format", "json", "-c", str(config)))
    assert [r["alias"] for r in rows] == [BUNDLED_ALIAS, QUANTISED, "local/tone"]
    tone = rows[2]
    assert (tone["base"], tone["derivation"], tone["quantisation"]) == (
        QUANTISED,
        "lora",
        "Q4_0+LoRA",
    )
    assert (tone["weights_sha256"], tone["adapter_sha256"]) == (digest(quantised), digest(adapter))
    assert tone["weights_verified"] and tone["adapter_verified"]
    assert (tone["licence"], tone["file_licence"], tone["licence_contradicted"]) == (
        "MIT",
        "apache-2.0",
        True,
    )
    assert rows[1]["parameters"] == 134_515_008 and rows[1]["context_length"] == 8192


def test_a_corrupted_copy_is_flagged(tmp_path: Path, quantised: Path) -> None:
    config = tmp_path / "entrepot.yaml"
    copy = tmp_path / "copy.gguf"
    copy.write_bytes(quantised.read_bytes())
    add_quantised(config, copy)
    corrupted_copy(quantised, copy)
    tree = ok("models", "lineage", QUANTISED, "--config", str(config))
    assert f"weights  {digest(copy)}" in tree
    assert f"≠ declared {digest(quantised)}: refused when served" in tree
    assert f"{digest(copy)[:12]} ≠ declared" in ok("models", "--config", str(config))


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["--base", "local/nope", "--derivation", "quantised"], "--base 'local/nope' is not"),
        (["--base", BUNDLED_ALIAS], "say how local/x was derived from"),
        (["--derivation", "lora"], "is a whole model, not a LoRA adapter"),
        (["--alias", BUNDLED_ALIAS], "is already configured"),
    ],
)
def test_mistakes_are_said_plainly(
    tmp_path: Path, quantised: Path, args: list[str], says: str
) -> None:
    config = tmp_path / "entrepot.yaml"
    alias = [] if "--alias" in args else ["--alias", "local/x"]
    result = run("models", "add", str(quantised), *alias, *args, "--config", str(config))
    assert result.exit_code == 2 and says in " ".join(result.output.split())
    assert not config.exists()


def test_an_adapter_needs_its_base(tmp_path: Path) -> None:
    adapter = write_lora(tmp_path / "tone.gguf", layers=range(1), rank=2)
    config = tmp_path / "entrepot.yaml"
    result = run("models", "add", str(adapter), "--alias", "local/t", "--config", str(config))
    assert result.exit_code == 2 and "give --base" in result.output
    result = run("models", "add", str(adapter), "--alias", "local/t")
    assert result.exit_code == 2 and "--config" in result.output
