"""Pairwise judging of two answers to one live request, with positions swapped.

A judge model tends to prefer whichever answer it reads first (or second): so each pair is
judged twice, the candidate's answer as A and then as B, and only a preference both orders agree
on counts; a disagreement is a tie. The difference is +1 when the candidate's answer won, -1
when the incumbent's did, 0 for a tie. Pure: the calls are made by `shadow/traffic.py`.
"""

from __future__ import annotations

import re
from typing import Literal

from entrepot.types import JSON

Preference = Literal["A", "B", "tie"]

PAIRWISE_PROMPT = """You compare two answers to the same request. Judge which one serves the
request better: correct, complete, and helpful. Reply with a one-line reason, then a last line
of the form "Winner: A", "Winner: B" or "Winner: tie".

Request:
{request}

Answer A:
{first}

Answer B:
{second}
"""
WINNER = re.compile(r"winner\s*[:=]\s*\**\s*(a|b|tie)\b", re.IGNORECASE)
JUDGE_MAX_TOKENS = 200


def request_text(body: JSON) -> str:
    """The conversation a request carried, one "role: text" line per message."""
    lines = []
    for message in body.get("messages") or ():
        if not isinstance(message, dict):
            continue
        content = message.get("content")
        if isinstance(content, list):
            content = " ".join(
                str(part.get("text", "")) for part in content if isinstance(part, dict)
            )
        lines.append(f"{message.get('role', 'user')}: {content or ''}")
    return "\n".join(lines)


def judge_body(judge: str, request: str, first: str, second: str) -> JSON:
    """The chat request that asks `judge` to compare answer `first` (A) with `second` (B)."""
    prompt = PAIRWISE_PROMPT.format(request=request, first=first, second=second)
    return {
        "model": judge,
        "messages": [{"role": "user", "content": prompt}],
        "temperature": 0,
        "max_tokens": JUDGE_MAX_TOKENS,
    }


def preference(text: str) -> Preference | None:
    """The judge's last "Winner:" line; None when it gave none."""
    found = WINNER.findall(text)
    if not found:
        return None
    last = found[-1].lower()
    return "tie" if last == "tie" else ("A" if last == "a" else "B")


def difference(candidate_first: Preference, candidate_second: Preference) -> float:
    """The candidate's result from both orders (it was A, then B): +1 win, -1 loss, 0 tie or
    disagreement."""
    as_a = {"A": 1.0, "B": -1.0, "tie": 0.0}[candidate_first]
    as_b = {"B": 1.0, "A": -1.0, "tie": 0.0}[candidate_second]
    return as_a if as_a == as_b else 0.0
