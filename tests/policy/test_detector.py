"""PiiDetector: each kind finds real values and ignores look-alikes; only counts come back."""

from __future__ import annotations

import time
from typing import Any

import pytest

from entrepot.config import DETECTOR_KINDS, DetectorConfig
from entrepot.exceptions import ConfigError
from entrepot.policy.detector import PiiDetector

DETECTOR = PiiDetector(DetectorConfig())


def chat(*texts: str) -> dict[str, Any]:
    return {"messages": [{"role": "user", "content": text} for text in texts]}


def found(text: str) -> dict[str, int]:
    return DETECTOR.scan(chat(f"please look at {text} thanks"))


POSITIVE = [
    ("email", "jane.doe+work@example.co.uk"),
    ("email", "a_b@mail-server.example.org"),
    ("phone", "+44 20 7946 0958"),
    ("phone", "(555) 123-4567"),
    ("phone", "555.123.4567"),
    ("phone", "+1 (555) 123-4567"),
    ("phone", "1-800-555-1234"),
    ("phone", "1 (800) 555-1234"),
    ("phone", "+4915112345678"),
    ("phone", "020 7946 0958"),
    ("phone", "01 23 45 67 89"),
    ("iban", "GB82 WEST 1234 5698 7654 32"),
    ("iban", "DE89370400440532013000"),
    ("iban", "FR14 2004 1010 0505 0001 3M02 606"),
    ("card", "4111 1111 1111 1111"),
    ("card", "4111-1111-1111-1111"),
    ("card", "5555555555554444"),
    ("card", "3782 822463 10005"),
    ("national_id", "123-45-6789"),
    ("national_id", "AB 12 34 56 C"),
    ("national_id", "AB123456C"),
    ("national_id", "11010519491231002X"),
    ("national_id", "身份证号11010519491231002X"),
    ("national_id", "1 84 12 76 451 089 46"),
    ("api_key", "sk-" + "aB3" * 16),
    ("api_key", "sk-proj-Ab3_cD4-" + "x9" * 20),
    ("api_key", "sk-ant-api03-" + "Zz1" * 20),
    ("api_key", "AKIAIOSFODNN7EXAMPLE"),
    ("api_key", "ghp_" + "a1B2" * 9),
    ("api_key", "gho_" + "a1B2" * 9),
    ("api_key", "ghs_" + "a1B2" * 9),
    ("api_key", "github_pat_11ABCDEFG0123456789_abcdefghijklmnop"),
    ("api_key", "xoxb-1234567890-0987654321-AbCdEf"),
    ("api_key", "AIza" + "Sy-_0123456789abcdefghijklmnopqrstu"[:35]),
    ("api_key", "ek-" + "Q" * 43),
    ("private_key", "-----BEGIN PRIVATE KEY-----"),
    ("private_key", "-----BEGIN RSA PRIVATE KEY-----"),
    ("private_key", "-----BEGIN OPENSSH PRIVATE KEY-----"),
    ("private_key", "-----BEGIN PGP PRIVATE KEY BLOCK-----"),
]


@pytest.mark.parametrize(("kind", "value"), POSITIVE)
def test_finds(kind: str, value: str) -> None:
    assert found(value) == {kind: 1}


NEGATIVE = [
    ("email", "not an @ address"),
    ("email", "user@localhost"),
    ("phone", "order 1234567890123"),
    ("phone", "5551234567"),
    ("phone", "2024-01-15 10:30"),
    ("phone", "192.168.100.200"),
    ("phone", "1 050 000 000"),
    ("phone", "01-02-2024 12"),
    ("iban", "GB82 WEST 1234 5698 7654 33"),
    ("iban", "DE89370400440532013001"),
    ("card", "4111 1111 1111 1112"),
    ("card", "7992 7398 713"),  # Luhn-valid, but too short and no known issuer
    ("card", "1111 1111 1111 1117"),  # Luhn-valid, unknown issuer
    ("national_id", "000-12-3456"),
    ("national_id", "666-12-3456"),
    ("national_id", "923-45-6789"),
    ("national_id", "123-00-6789"),
    ("national_id", "123-45-0000"),
    ("national_id", "QQ 12 34 56 C"),
    ("national_id", "GB 12 34 56 A"),
    ("national_id", "110105194912310021"),
    ("national_id", "1 84 12 76 451 089 47"),
    ("api_key", "sk-learn-compatible-estimators"),
    ("api_key", "sk-short1"),
    ("api_key", "AKIAIOSFODNN7EXAMPL"),
    ("api_key", "ek-" + "Q" * 20),
    ("api_key", "task-0123456789abcdefghijklmnop"),
    ("private_key", "-----BEGIN PUBLIC KEY-----"),
    ("private_key", "-----BEGIN CERTIFICATE-----"),
]


@pytest.mark.parametrize(("kind", "value"), NEGATIVE)
def test_ignores_look_alikes(kind: str, value: str) -> None:
    assert kind not in found(value)


def test_counts_aggregate_across_messages_parts_and_fields() -> None:
    body = {
        "messages": [
            {"role": "system", "content": "write to ops@example.com"},
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "cc a@example.com and b@example.com"},
                    {"type": "image_url", "image_url": {"url": "https://x.test/c@example.com"}},
                ],
            },
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {
                        "id": "1",
                        "type": "function",
                        "function": {
                            "name": "send",
                            "arguments": ('{"to": "d@example.com", "card": "4111 1111 1111 1111"}'),
                        },
                    }
                ],
            },
        ]
    }
    assert DETECTOR.scan(body) == {"email": 4, "card": 1}


def test_scans_reasoning_sent_back_and_tool_descriptions() -> None:
    """The Responses and Messages surfaces send earlier reasoning back on a tool turn, and a
    client may describe a tool with its own data: both leave the gateway, so both are read."""
    body = {
        "messages": [
            {"role": "assistant", "content": None, "reasoning_content": "mail x@example.com"},
            {"role": "user", "content": "go on"},
        ],
        "tools": [
            {"type": "function", "function": {"name": "f", "description": "for y@example.com"}},
            {"type": "function", "function": {"name": "g"}},
            "not a tool",
        ],
    }
    assert DETECTOR.scan(body) == {"email": 2}


@pytest.mark.parametrize(
    "body",
    [
        {"prompt": "mail x@example.com"},
        {"prompt": ["nothing", "mail x@example.com"]},
        {"input": "mail x@example.com"},
        {"input": ["nothing", "mail x@example.com"]},
    ],
)
def test_scans_completion_prompts_and_embedding_inputs(body: dict[str, Any]) -> None:
    assert DETECTOR.scan(body) == {"email": 1}


def test_ignores_non_text_and_malformed_shapes() -> None:
    body = {
        "input": [[1, 2, 3], 42],
        "messages": [
            "x@example.com",
            {"content": [{"type": "text", "text": 7}]},
            {"tool_calls": 3},
        ],
    }
    assert DETECTOR.scan(body) == {}


def test_texts_are_not_joined_into_one_match() -> None:
    assert DETECTOR.scan(chat("4111 1111", "1111 1111")) == {}


def test_result_holds_counts_never_values() -> None:
    secret = "sk-" + "aB3" * 16
    result = DETECTOR.scan(chat(f"my key is {secret}, mail me at jane@example.com"))
    assert result == {"api_key": 1, "email": 1}
    assert secret not in repr(result) and "jane" not in repr(result)


def test_kinds_select_which_patterns_run() -> None:
    detector = PiiDetector(DetectorConfig(kinds=["email"]))
    assert detector.scan(chat("jane@example.com 123-45-6789")) == {"email": 1}


def test_custom_patterns_count_under_their_name() -> None:
    detector = PiiDetector(DetectorConfig(kinds=[], custom={"project": r"\bPRJ-\d{4}\b"}))
    assert detector.scan(chat("PRJ-1234 and PRJ-5678", "PRJ-12")) == {"custom:project": 2}


def test_invalid_custom_pattern_is_a_config_error_naming_the_field() -> None:
    with pytest.raises(ConfigError, match=r"policy\.detector\.custom\.broken"):
        PiiDetector(DetectorConfig(custom={"broken": "(unclosed"}))


def test_disabled_detector_finds_nothing() -> None:
    detector = PiiDetector(DetectorConfig(enabled=False, custom={"any": "."}))
    assert detector.scan(chat("jane@example.com 4111 1111 1111 1111")) == {}


def test_every_kind_is_covered() -> None:
    assert {kind for kind, _ in POSITIVE} == set(DETECTOR_KINDS)


def test_adversarial_input_scans_in_linear_time() -> None:
    hostile = "+1 " + "1 " * 20_000 + "a" * 20_000 + "-" * 20_000 + "0 12 " * 5_000
    started = time.perf_counter()
    DETECTOR.scan(chat(hostile))
    assert time.perf_counter() - started < 1.0
