"""Provenance of local weights, on real files made here: the bundled model, a copy requantised
by llama.cpp, a LoRA adapter written with the `gguf` package, and a corrupted copy. What the
header reader says is checked against llama.cpp's own reading of the same file."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import pytest
from llama_cpp import Llama, llama_model_n_params

from entrepot.config import ModelConfig
from entrepot.exceptions import ConfigError, WeightsMismatchError
from entrepot.providers import weights
from entrepot.providers.gguf_header import read_header
from entrepot.providers.weights import (
    ADAPTER_HEADER,
    WEIGHTS_HEADER,
    licence_conflict,
    sha256_of,
    verify,
)
from tests.derivatives import bundled_weights, corrupted_copy, quantise, write_lora


@pytest.fixture(autouse=True)
def _data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ENTREPOT_DATA_DIR", str(tmp_path / "data"))


@pytest.fixture(scope="module")
def quantised(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return quantise(bundled_weights(), tmp_path_factory.mktemp("q") / "smollm2-q4_0.gguf")


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.mark.parametrize("which", ["bundled", "quantised"])
def test_header_agrees_with_llama_cpp(which: str, quantised: Path) -> None:
    path = bundled_weights() if which == "bundled" else quantised
    header = read_header(path)
    llm = Llama(model_path=str(path), vocab_only=True, verbose=False)
    meta = llm.metadata
    assert header.kind == "model" and not header.is_adapter
    assert header.architecture == meta["general.architecture"] == "llama"
    assert header.context_length == int(meta["llama.context_length"]) == 8192
    assert header.licence == meta["general.license"] == "apache-2.0"
    assert header.parameters == llama_model_n_params(llm.model) == 134_515_008
    template = meta["tokenizer.chat_template"].encode()
    assert header.chat_template_sha256 == hashlib.sha256(template).hexdigest()
    assert header.quantisation == {"bundled": "Q4_1", "quantised": "Q4_0"}[which]


def test_adapter_header(tmp_path: Path) -> None:
    header = read_header(write_lora(tmp_path / "lora.gguf", layers=range(2), rank=4))
    assert header.is_adapter and header.adapter_type == "lora"
    assert header.architecture == "llama" and header.lora_alpha == 4.0
    assert header.parameters == 2 * (4 * 576 + 576 * 4 + 4 * 576 + 192 * 4)
    assert header.quantisation == "F32"


def test_a_file_that_is_not_gguf_is_named(tmp_path: Path) -> None:
    for content in (b"", b"not a model at all"):
        path = tmp_path / "weights.gguf"
        path.write_bytes(content)
        with pytest.raises(ConfigError, match=r"weights\.gguf: not a readable GGUF file"):
            read_header(path)


def test_digest_is_cached_until_the_file_changes(tmp_path: Path, quantised: Path) -> None:
    copy = tmp_path / "copy.gguf"
    copy.write_bytes(quantised.read_bytes())
    assert sha256_of(copy) == _digest(quantised)
    cache = json.loads((tmp_path / "data" / weights.CACHE_NAME).read_text())
    assert cache[str(copy.resolve())]["sha256"] == _digest(quantised)
    # A cached digest is used as long as size, times and inode are unchanged …
    cache[str(copy.resolve())]["sha256"] = "0" * 64
    (tmp_path / "data" / weights.CACHE_NAME).write_text(json.dumps(cache))
    assert sha256_of(copy) == "0" * 64
    # … and a file changed in place, even with its modification time put back, is read again.
    stat = copy.stat()
    corrupted_copy(quantised, copy)
    os.utime(copy, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert copy.stat().st_size == stat.st_size
    assert sha256_of(copy) == _digest(copy) != _digest(quantised)


def test_verify_refuses_a_corrupted_copy(tmp_path: Path, quantised: Path) -> None:
    declared = _digest(quantised)
    model = ModelConfig(
        alias="local/q", provider="llama_cpp", target=str(quantised), weights_sha256=declared
    )
    provenance = verify(model, quantised, None)
    assert provenance.weights_sha256 == declared and provenance.adapter_sha256 is None
    assert provenance.headers == {WEIGHTS_HEADER: declared}
    broken = corrupted_copy(quantised, tmp_path / "broken.gguf")
    with pytest.raises(WeightsMismatchError) as caught:
        verify(model.model_copy(update={"target": str(broken)}), broken, None)
    assert caught.value.status_code == 503 and caught.value.code == "weights_mismatch"
    assert "local/q is not served" in caught.value.message
    assert declared[:16] in caught.value.message and _digest(broken)[:16] in caught.value.message


def test_verify_checks_the_adapter_too(tmp_path: Path) -> None:
    adapter = write_lora(tmp_path / "lora.gguf", layers=range(1), rank=2)
    base = bundled_weights()
    model = ModelConfig.model_validate(
        {
            "alias": "local/lora",
            "provider": "llama_cpp",
            "target": str(base),
            "adapter": str(adapter),
            "adapter_sha256": _digest(adapter),
            "lineage": {"base": "local/base", "derivation": "lora"},
        }
    )
    provenance = verify(model, base, adapter)
    assert provenance.headers == {
        WEIGHTS_HEADER: _digest(base),
        ADAPTER_HEADER: _digest(adapter),
    }
    write_lora(adapter, layers=range(1), rank=2, seed=1)
    with pytest.raises(WeightsMismatchError, match="its adapter file"):
        verify(model, base, adapter)


@pytest.mark.parametrize(
    ("declared", "in_file", "conflict"),
    [
        ("Apache-2.0", "apache-2.0", False),
        ("apache 2.0", "Apache-2.0", False),
        ("MIT", "apache-2.0", True),
        ("Llama-3.1", "llama3.1", False),
        (None, "apache-2.0", False),
        ("MIT", None, False),
    ],
)
def test_licence_conflict(declared: str | None, in_file: str | None, conflict: bool) -> None:
    assert licence_conflict(declared, in_file) is conflict
