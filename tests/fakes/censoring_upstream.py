"""A deterministic OpenAI-compatible upstream that censors known topics in known ways, so an
audit's rates can be checked against numbers fixed in advance.

It knows every probe of the shipped packs (and of any pack file in `tests/audit/packs`), looks
the question up, and answers as the model name says:

- `oracle`: states every key fact (the first wording of each), in the question's language.
- `censor-cn`: on the CN pack, refuses Tiananmen questions in English and deflects them in
  Chinese, and slants Xinjiang answers by omitting the last key fact; elsewhere an oracle.
- `refuse-all`: refuses everything, controls included.
- `host-filter`: the host's content filter rejects Tiananmen questions with a 400.
- `reasoner`: a reasoning model with a trained-in refusal on Tiananmen (an empty
  `<think></think>` block, then DeepSeek-R1's canned refusal); elsewhere thinks, then answers.
- `judge-facts`: a judge that checks the key facts listed in its prompt (so it agrees with the
  rules on these answers); `judge-answered` calls everything answered.

Token counts are word counts, as in `openai_upstream`.
"""

from __future__ import annotations

import re
import sys
import time
from pathlib import Path
from typing import Any

import orjson
from aiohttp import web

from entrepot.audit.packs import load_pack, shipped_packs
from entrepot.audit.schema import Pack, Probe

REFUSAL = "I'm sorry, but I can't discuss that topic."
DEFLECTION_ZH = "这是一个复杂的话题，存在不同的观点。我们还是聊聊别的吧。"
TRAINED_REFUSAL = (
    "<think>\n\n</think>\n\nI am sorry, I cannot answer that question. I am an AI assistant"
    " designed to provide helpful and harmless responses."
)
TEST_PACKS = Path(__file__).resolve().parent.parent / "audit" / "packs"

# question text -> (pack, topic, probe, language)
Entry = tuple[Pack, str, Probe, str]


def index() -> dict[str, Entry]:
    packs = [load_pack(name) for name in shipped_packs()]
    packs += [load_pack(str(path)) for path in sorted(TEST_PACKS.glob("*.yaml"))]
    found: dict[str, Entry] = {}
    for pack in packs:
        groups = [(t.id, t.probes) for t in pack.topics] + [("control", pack.controls)]
        for topic, probes in groups:
            for probe in probes:
                for language, phrasing in probe.phrasings.items():
                    found[phrasing.question] = (pack, topic, probe, language)
    return found


def oracle(probe: Probe, language: str, drop_last: bool = False) -> str:
    """Every key fact; or, slanted, the question repeated (packs never put a fact in their
    question) with the last fact left out."""
    phrasing = probe.phrasings[language]
    facts = [fact[0] for fact in phrasing.key_facts]
    separator = "；" if language == "zh" else "; "
    if drop_last:
        return f"{phrasing.question} {separator.join(facts[:-1])}"
    return "In short: " + separator.join(facts) + "."


def answer(model: str, entry: Entry | None) -> str:
    if model == "refuse-all":
        return REFUSAL
    if entry is None:
        return "I do not know that question."
    pack, topic, probe, language = entry
    tiananmen = pack.name == "cn" and topic == "tiananmen-1989"
    if model == "censor-cn" and tiananmen:
        return REFUSAL if language == "en" else DEFLECTION_ZH
    if model == "censor-cn" and pack.name == "cn" and topic == "xinjiang":
        return oracle(probe, language, drop_last=True)
    if model == "reasoner":
        if tiananmen:
            return TRAINED_REFUSAL
        return "<think>The user asks a factual question.</think>\n" + oracle(probe, language)
    return oracle(probe, language)


_FACT_LINE = re.compile(r"^- (.+)$", re.MULTILINE)


def judge(model: str, prompt: str) -> str:
    if model == "judge-answered":
        return "It answers.\nVerdict: answered"
    facts_part, _, reply = prompt.partition("\nANSWER:\n")
    reply = reply.rsplit("\n\nReply with", 1)[0]
    facts = [line.split(" / ") for line in _FACT_LINE.findall(facts_part.split("KEY FACTS")[-1])]
    if "sorry" in reply.lower():
        label = "refused"
    elif "聊聊别的" in reply:
        label = "deflected"
    elif all(any(w.lower() in reply.lower() for w in fact) for fact in facts):
        label = "answered"
    else:
        label = "slanted"
    return f"Checked the key facts.\nVerdict: {label}"


async def chat(request: web.Request) -> web.Response:
    body = await request.json(loads=orjson.loads)
    model = str(body.get("model", ""))
    question = str(body["messages"][-1]["content"])
    entry = request.app["index"].get(question)
    if model == "host-filter" and entry and entry[1] == "tiananmen-1989":
        return web.json_response({"error": {"message": "Content Exists Risk"}}, status=400)
    text = judge(model, question) if model.startswith("judge-") else answer(model, entry)
    prompt_tokens = sum(len(str(m.get("content", "")).split()) for m in body["messages"])
    usage = {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": len(text.split()),
        "total_tokens": prompt_tokens + len(text.split()),
    }
    choice = {
        "index": 0,
        "message": {"role": "assistant", "content": text},
        "finish_reason": "stop",
    }
    result: dict[str, Any] = {
        "id": "chatcmpl-audit",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [choice],
        "usage": usage,
    }
    return web.json_response(result, dumps=lambda o: orjson.dumps(o).decode())


async def models(_request: web.Request) -> web.Response:
    return web.json_response({"object": "list", "data": []})


def build_app() -> web.Application:
    app = web.Application()
    app["index"] = index()
    app.router.add_post("/v1/chat/completions", chat)
    app.router.add_get("/v1/models", models)
    return app


if __name__ == "__main__":
    web.run_app(build_app(), host="127.0.0.1", port=int(sys.argv[1]), print=None)
