"""An OpenAI-compatible upstream whose models answer each prompt in their own deterministic words,
for fingerprints: the target names the behaviour, and each target counts its own requests.

`persona-NAME` answers every prompt with words drawn from a generator seeded by NAME and the
prompt (the same answer every time; another NAME, another answer). `swap-after-N-TAG` answers as
`persona-alpha` for its first N requests, then as `persona-beta`: a host that silently replaced
its model. `noisy-TAG` answers as `persona-gamma` with each word replaced, with probability
`NOISE`, by a random one: a host with inherent sampling noise (its generator is seeded by the
target, so a test's run is reproducible). `retokenized-after-N-TAG` answers as `persona-alpha`
throughout but, after N requests, counts prompt tokens as another tokenizer would (twice the
words). Token counts are otherwise word counts. `GET /received/TARGET` says how many requests a
target got.
"""

from __future__ import annotations

import hashlib
import random
import re
import sys
import time
from typing import Any

from aiohttp import web

NOISE = 0.08
WORDS = [
    "harbour",
    "lantern",
    "tide",
    "river",
    "stone",
    "window",
    "garden",
    "silver",
    "morning",
    "quiet",
    "paper",
    "bridge",
    "orange",
    "forest",
    "signal",
    "copper",
    "winter",
    "meadow",
    "thunder",
    "candle",
    "velvet",
    "marble",
    "engine",
    "feather",
    "island",
    "compass",
    "whisper",
    "canyon",
    "ember",
    "glacier",
    "orchard",
    "pepper",
    "saddle",
    "timber",
    "violet",
    "walnut",
    "yonder",
]
SWAP = re.compile(r"swap-after-(\d+)-")
RETOKENIZED = re.compile(r"retokenized-after-(\d+)-")


def _persona_answer(persona: str, prompt: str) -> str:
    seed = int.from_bytes(hashlib.sha256(f"{persona}\n{prompt}".encode()).digest()[:8], "big")
    rng = random.Random(seed)
    return " ".join(rng.choice(WORDS) for _ in range(24))


def _noisy(answer: str, rng: random.Random) -> str:
    return " ".join(rng.choice(WORDS) if rng.random() < NOISE else w for w in answer.split())


def _answer(app: web.Application, target: str, prompt: str, seen: int) -> tuple[str, int]:
    """The answer, and the factor prompt tokens are counted with."""
    if target.startswith("persona-"):
        return _persona_answer(target.removeprefix("persona-"), prompt), 1
    swap = SWAP.match(target)
    if swap is not None:
        persona = "alpha" if seen <= int(swap.group(1)) else "beta"
        return _persona_answer(persona, prompt), 1
    retokenized = RETOKENIZED.match(target)
    if retokenized is not None:
        factor = 1 if seen <= int(retokenized.group(1)) else 2
        return _persona_answer("alpha", prompt), factor
    if target.startswith("noisy-"):
        rngs = app["noise"]
        rng = rngs.setdefault(target, random.Random(target))
        return _noisy(_persona_answer("gamma", prompt), rng), 1
    raise web.HTTPNotFound(text=f"no behaviour {target!r}")


async def chat(request: web.Request) -> web.Response:
    body: dict[str, Any] = await request.json()
    target = body["model"]
    counts = request.app["received"]
    counts[target] = counts.get(target, 0) + 1
    prompt = str(body["messages"][-1]["content"])
    answer, factor = _answer(request.app, target, prompt, counts[target])
    prompt_tokens = factor * sum(len(str(m["content"]).split()) for m in body["messages"])
    usage = {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": len(answer.split()),
        "total_tokens": prompt_tokens + len(answer.split()),
    }
    choice = {"index": 0, "message": {"role": "assistant", "content": answer}}
    return web.json_response(
        {
            "id": "chatcmpl-swapping",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": target,
            "choices": [{**choice, "finish_reason": "stop"}],
            "usage": usage,
        }
    )


async def received(request: web.Request) -> web.Response:
    return web.json_response(request.app["received"].get(request.match_info["target"], 0))


def build_app() -> web.Application:
    app = web.Application()
    app["received"] = {}
    app["noise"] = {}
    app.router.add_post("/v1/chat/completions", chat)
    app.router.add_get("/received/{target}", received)
    return app


if __name__ == "__main__":
    web.run_app(build_app(), host="127.0.0.1", port=int(sys.argv[1]), print=None)
