"""An OpenAI-compatible upstream whose models' quality is known, for shadow verification.

`right` answers "The answer is 42." and `wrong` answers "I do not know." to anything; `judge`
reads a pairwise comparison (`shadow/judge.py`'s prompt) and names the answer containing "42"
the winner ("tie" when both or neither do); `slow` answers as `right` does after
`SLOW_SECONDS`. Streams send the answer word by word. Token counts
are word counts. Every request is remembered with the time it arrived (`GET /received/<model>`:
a list of {"at": unix seconds, "text": the last user message}), so a test can tell when, and
whether, a copy reached a model.
"""

from __future__ import annotations

import asyncio
import re
import sys
import time
from typing import Any

import orjson
from aiohttp import web

ANSWERS = {"right": "The answer is 42.", "wrong": "I do not know.", "slow": "The answer is 42."}
SLOW_SECONDS = 3.0
ANSWER = re.compile(r"Answer A:\n(.*?)\n\nAnswer B:\n(.*)", re.DOTALL)


def _last_user_text(body: dict[str, Any]) -> str:
    for message in reversed(body.get("messages") or []):
        if message.get("role") == "user":
            return str(message.get("content"))
    return ""


def _judged(prompt: str) -> str:
    found = ANSWER.search(prompt)
    if found is None:
        return "No answers found.\nWinner: tie"
    first, second = ("42" in part for part in found.groups())
    winner = "A" if first and not second else "B" if second and not first else "tie"
    return f"Compared the two.\nWinner: {winner}"


async def chat(request: web.Request) -> web.StreamResponse:
    body = await request.json()
    model, text = body["model"], _last_user_text(body)
    request.app["received"].setdefault(model, []).append({"at": time.time(), "text": text})
    if model == "slow":
        await asyncio.sleep(SLOW_SECONDS)
    answer = _judged(text) if model == "judge" else ANSWERS[model]
    usage = {
        "prompt_tokens": sum(len(str(m.get("content")).split()) for m in body["messages"]),
        "completion_tokens": len(answer.split()),
    }
    usage["total_tokens"] = usage["prompt_tokens"] + usage["completion_tokens"]
    head = {"id": "chatcmpl-graded", "created": int(time.time()), "model": model}
    if not body.get("stream"):
        message = {"role": "assistant", "content": answer}
        choice = {"index": 0, "message": message, "finish_reason": "stop"}
        return web.json_response(
            {**head, "object": "chat.completion", "choices": [choice], "usage": usage}
        )
    response = web.StreamResponse(headers={"content-type": "text/event-stream"})
    await response.prepare(request)
    for i, word in enumerate(answer.split()):
        delta = {"content": word if i == 0 else " " + word}
        chunk = {
            **head,
            "object": "chat.completion.chunk",
            "choices": [{"index": 0, "delta": delta}],
        }
        await response.write(b"data: " + orjson.dumps(chunk) + b"\n\n")
    end = {"index": 0, "delta": {}, "finish_reason": "stop"}
    last = {**head, "object": "chat.completion.chunk", "choices": [end], "usage": usage}
    await response.write(b"data: " + orjson.dumps(last) + b"\n\ndata: [DONE]\n\n")
    return response


async def received(request: web.Request) -> web.Response:
    return web.json_response(request.app["received"].get(request.match_info["model"], []))


def build_app() -> web.Application:
    app = web.Application()
    app["received"] = {}
    app.router.add_post("/v1/chat/completions", chat)
    app.router.add_get("/received/{model}", received)
    return app


if __name__ == "__main__":
    web.run_app(build_app(), host="127.0.0.1", port=int(sys.argv[1]), print=None)
