"""What a GGUF file says about itself: architecture, size, quantisation, context, licence.

The header is read directly, with the `gguf` package's names for its value and tensor types.
`gguf.GGUFReader` builds a NumPy view for every string of the vocabulary (about 6 s on the
bundled 135M model); provenance needs none of them, so arrays are skipped by their lengths and
the header reads in milliseconds. Only the header is read, never the tensors' data.
"""

from __future__ import annotations

import hashlib
import math
import mmap
import struct
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gguf import GGUF_MAGIC, GGMLQuantizationType, GGUFValueType, LlamaFileType

from entrepot.exceptions import ConfigError

_SCALARS = {
    GGUFValueType.UINT8: "<B",
    GGUFValueType.INT8: "<b",
    GGUFValueType.UINT16: "<H",
    GGUFValueType.INT16: "<h",
    GGUFValueType.UINT32: "<I",
    GGUFValueType.INT32: "<i",
    GGUFValueType.FLOAT32: "<f",
    GGUFValueType.BOOL: "<?",
    GGUFValueType.UINT64: "<Q",
    GGUFValueType.INT64: "<q",
    GGUFValueType.FLOAT64: "<d",
}
# Headers past this many entries or tensors are not GGUF files a gateway should trust.
_MAX_ENTRIES = 1_000_000


@dataclass(frozen=True, slots=True)
class GGUFHeader:
    """The facts provenance records about one file (None where the file does not say)."""

    kind: str  # "model" or "adapter" (`general.type`)
    architecture: str | None
    name: str | None
    parameters: int
    quantisation: str | None
    context_length: int | None
    licence: str | None
    chat_template_sha256: str | None
    adapter_type: str | None = None
    lora_alpha: float | None = None

    @property
    def is_adapter(self) -> bool:
        return self.kind == "adapter"


def read_header(path: Path) -> GGUFHeader:
    """The header of the GGUF file at `path`; a file that is not one is a `ConfigError`."""
    try:
        with path.open("rb") as file, mmap.mmap(file.fileno(), 0, access=mmap.ACCESS_READ) as data:
            values, tensors = _Cursor(data).read()
    except (OSError, struct.error, ValueError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: not a readable GGUF file ({exc})") from None
    return _header(values, tensors)


class _Cursor:
    """Reads the header from a mapped file, so skipping an array of strings is arithmetic."""

    def __init__(self, data: mmap.mmap) -> None:
        self.data = data
        self.at = 0

    def read(self) -> tuple[dict[str, Any], list[tuple[int, int]]]:
        """The scalar and string values by key, and each tensor's (element count, type)."""
        magic, version = self.unpack("<II")
        if magic != GGUF_MAGIC or version < 2:
            raise ValueError("no GGUF magic number, or a version before 2")
        tensor_count, value_count = self.unpack("<QQ")
        if tensor_count > _MAX_ENTRIES or value_count > _MAX_ENTRIES:
            raise ValueError("implausible header counts")
        values: dict[str, Any] = {}
        for _ in range(value_count):
            key = self.string()
            values[key] = self.value(GGUFValueType(self.unpack("<I")[0]))
        tensors = []
        for _ in range(tensor_count):
            self.string()
            (dimensions,) = self.unpack("<I")
            shape = self.unpack(f"<{dimensions}Q")
            tensor_type, _offset = self.unpack("<IQ")
            tensors.append((math.prod(shape), tensor_type))
        return values, tensors

    def unpack(self, layout: str) -> tuple[Any, ...]:
        found = struct.unpack_from(layout, self.data, self.at)
        self.at += struct.calcsize(layout)
        return found

    def string(self) -> str:
        (length,) = self.unpack("<Q")
        start, self.at = self.at, self.at + length
        if self.at > len(self.data):
            raise ValueError("a string runs past the end of the file")
        return self.data[start : self.at].decode("utf-8")

    def value(self, kind: GGUFValueType) -> Any:
        """A scalar or string; an array is skipped (None): the vocabulary is no provenance."""
        if kind == GGUFValueType.STRING:
            return self.string()
        if kind != GGUFValueType.ARRAY:
            return self.unpack(_SCALARS[kind])[0]
        item_kind = GGUFValueType(self.unpack("<I")[0])
        (count,) = self.unpack("<Q")
        if item_kind in _SCALARS:
            self.at += count * struct.calcsize(_SCALARS[item_kind])
        elif item_kind == GGUFValueType.STRING:
            for _ in range(count):
                self.at += 8 + struct.unpack_from("<Q", self.data, self.at)[0]
        else:
            for _ in range(count):
                self.value(item_kind)
        return None


def _header(values: dict[str, Any], tensors: list[tuple[int, int]]) -> GGUFHeader:
    architecture = values.get("general.architecture")
    template = values.get("tokenizer.chat_template")
    alpha = values.get("adapter.lora.alpha")
    context = values.get(f"{architecture}.context_length")
    return GGUFHeader(
        kind=str(values.get("general.type") or "model"),
        architecture=architecture,
        name=values.get("general.name"),
        parameters=sum(count for count, _ in tensors),
        quantisation=_quantisation(values.get("general.file_type"), tensors),
        context_length=int(context) if context is not None else None,
        licence=values.get("general.license"),
        chat_template_sha256=(
            hashlib.sha256(template.encode()).hexdigest() if isinstance(template, str) else None
        ),
        adapter_type=values.get("adapter.type"),
        lora_alpha=float(alpha) if alpha is not None else None,
    )


def _quantisation(file_type: int | None, tensors: list[tuple[int, int]]) -> str | None:
    """The file's declared type (`general.file_type`: Q4_1 for MOSTLY_Q4_1), else the type
    holding most of its parameters (an adapter declares none)."""
    if file_type is not None:
        try:
            return LlamaFileType(file_type).name.removeprefix("MOSTLY_")
        except ValueError:
            return f"file type {file_type}"
    by_type: Counter[int] = Counter()
    for count, tensor_type in tensors:
        by_type[tensor_type] += count
    if not by_type:
        return None
    most = by_type.most_common(1)[0][0]
    try:
        return GGMLQuantizationType(most).name
    except ValueError:
        return f"type {most}"
