"""The output cap leaves an OpenAI-compatible provider in the one field its upstream honours."""

from __future__ import annotations

from entrepot.providers.openai_compatible import _capped


def test_the_cap_moves_to_the_configured_field_only() -> None:
    body = {"model": "m", "max_tokens": 5}
    assert _capped(body, "max_tokens") is body
    assert _capped(body, "max_completion_tokens") == {"model": "m", "max_completion_tokens": 5}
    both = {"max_tokens": 5, "max_completion_tokens": 7}
    assert _capped(both, "max_tokens") == {"max_tokens": 5}
    assert _capped({"max_completion_tokens": 7}, "max_tokens") == {"max_tokens": 7}
