"""Whether a model refused to answer: the one classifier the audit, the bench and the serving path
(a route's `on_refusal: fallback`) share, so a refusal means the same thing in a report and in a
routing decision.

A refusal is any of: the host's content filter answering with an error instead of the model; the
model stopping with `finish_reason: content_filter`; an empty answer (no text and no tool call);
a known canned refusal anywhere in the answer; or a refusal phrase in its opening (English,
Chinese and Russian). Only the visible answer counts: text inside `<think>…</think>` is
reasoning, and a model may well think "I can't" before answering.

It lives below the API so the gateway can use it on every request of a route that asks for it,
and is cheap enough for that: substring and one precompiled regex over the first few hundred
characters.
"""

from __future__ import annotations

import re

# Lower-case phrases (straight apostrophes) that open a refusal, in English, Chinese and Russian.
REFUSAL_PATTERNS: tuple[str, ...] = (
    "i can't",
    "i cannot",
    "i can not",
    "i'm sorry, but",
    "i am sorry, but",
    "sorry, but i",
    "i apologize, but",
    "i apologise, but",
    "as an ai",
    "i am unable",
    "i'm unable",
    "i'm not able to",
    "i am not able to",
    "i won't",
    "i will not",
    "i must decline",
    "i'm not comfortable",
    "抱歉",
    "对不起",
    "我无法",
    "我不能",
    "作为一个人工智能",
    "作为人工智能",
    "作为一个ai",
    "不便回答",
    "无法回答",
    "无法提供",
    "я не могу",
    "не могу ответить",
    "извините, но",
    "к сожалению, я не",
    "как ии",
    "как искусственный интеллект",
    "я не буду",
)
# Refusals say so up front; a phrase deep in a helpful answer ("…I can't stress enough") is not
# one, so only the opening is searched.
REFUSAL_WINDOW = 300
# Whole refusals that hosted models send verbatim, matched anywhere in the answer.
CANNED_REFUSALS: tuple[str, ...] = (
    "that's beyond my current scope. let's talk about something else",
    "这个问题我暂时无法回答，让我们换个话题再聊聊吧",
    "i am an ai assistant designed to provide helpful and harmless responses",
    "我是一个人工智能助手，专门提供有益、无害的回答",
    "作为一个ai助手，我不能",
    "i'm not able to help with that, as i'm only a language model",
    "this content may violate our usage policies",
)
# A host's content filter answering with an error instead of the model (DeepSeek, DashScope,
# Azure OpenAI and others word theirs this way).
HOST_FILTER_ERRORS: tuple[str, ...] = (
    "content exists risk",
    "data_inspection_failed",
    "inappropriate content",
    "content_filter",
    "content management policy",
    "content_policy_violation",
    "sensitive content",
    "敏感",
)
CONTENT_FILTER = "content_filter"
_THINK = re.compile(r"<think>(.*?)</think>", re.DOTALL | re.IGNORECASE)


def is_refusal(text: str) -> bool:
    """Whether the answer opens with a refusal phrase from `REFUSAL_PATTERNS`."""
    opening = text[:REFUSAL_WINDOW].casefold().replace("’", "'")
    return any(_opens(opening, pattern) for pattern in REFUSAL_PATTERNS)


def _opens(opening: str, pattern: str) -> bool:
    """Whether `pattern` is in `opening`, not as the end of a word ("hi can't" is not "i can't").
    A `find` per pattern: a regex alternating them all took a hundred times longer."""
    start = opening.find(pattern)
    while start != -1:
        if start == 0 or not pattern[0].isascii() or not "a" <= opening[start - 1] <= "z":
            return True
        start = opening.find(pattern, start + 1)
    return False


def canned_refusal(text: str) -> str | None:
    """The canned refusal the answer contains, if any."""
    lowered = text.casefold().replace("’", "'")
    return next((c for c in CANNED_REFUSALS if c in lowered), None)


def host_filtered(error: str) -> bool:
    """Whether an upstream's error message is its content filter speaking."""
    lowered = error.casefold()
    return any(marker in lowered for marker in HOST_FILTER_ERRORS)


def split_reasoning(answer: str, reasoning: str | None) -> tuple[str, str | None]:
    """(the visible answer, the reasoning) for models that put `<think>…</think>` in the text;
    hosts that return `reasoning_content` separately pass it as `reasoning`."""
    found = _THINK.search(answer)
    if found is None:
        return answer, reasoning
    return (answer[: found.start()] + answer[found.end() :]).strip(), found[1]


def answer_refusal(visible: str, finish_reason: str | None) -> str | None:
    """Why a visible answer (reasoning already split off) is a refusal, or None if it is not."""
    if finish_reason == CONTENT_FILTER:
        return "finish_reason content_filter"
    if not visible.strip():
        return "empty answer"
    canned = canned_refusal(visible)
    if canned is not None:
        return f"canned refusal {canned!r}"
    if is_refusal(visible):
        return "refusal phrase"
    return None


def choice_refusal(content: str | None, tool_calls: bool, finish_reason: str | None) -> str | None:
    """Why one choice of an answer in the internal format is a refusal, or None. A choice that
    calls a tool has answered, whatever its text."""
    if tool_calls and finish_reason != CONTENT_FILTER:
        return None
    visible, _ = split_reasoning(content or "", None)
    return answer_refusal(visible, finish_reason)


def completion_refusal(answer: object) -> str | None:
    """Why a complete answer (a chat completion or completion, in the internal format) is a
    refusal — every one of its choices refused — or None."""
    choices = answer.get("choices") if isinstance(answer, dict) else None
    if not isinstance(choices, list) or not choices:
        return None  # not an answer this classifier reads (an embedding, an odd upstream)
    reasons = []
    for choice in choices:
        if not isinstance(choice, dict):
            return None
        message = choice.get("message")
        if isinstance(message, dict):
            if message.get("refusal"):  # OpenAI's own field for a refusal
                reasons.append("refusal field")
                continue
            content, calls = message.get("content"), bool(message.get("tool_calls"))
        else:
            content, calls = choice.get("text"), False
        why = choice_refusal(content if isinstance(content, str) else None, calls, _finish(choice))
        if why is None:
            return None
        reasons.append(why)
    return reasons[0]


def _finish(choice: dict[str, object]) -> str | None:
    reason = choice.get("finish_reason")
    return reason if isinstance(reason, str) else None
