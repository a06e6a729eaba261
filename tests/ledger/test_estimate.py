"""The gateway's own token count: a quarter of the UTF-8 bytes rounded up, 4 tokens per chat
message, at least a token per streamed chunk with text, reasoning and tool calls included."""

from __future__ import annotations

from entrepot.ledger.estimate import StreamTally, answer_usage, prompt_tokens, tokens_in
from entrepot.types import TokenUsage


def test_text_is_a_quarter_of_its_utf8_bytes_rounded_up() -> None:
    assert [tokens_in(n) for n in (0, 1, 4, 5, 8)] == [0, 1, 1, 2, 2]
    # Three CJK characters are nine bytes: three tokens, not one.
    assert prompt_tokens({"prompt": "日本語"}) == 3


def test_chat_prompts_count_text_parts_tools_and_each_message() -> None:
    body = {
        "messages": [
            {"role": "system", "content": "abcd"},
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "efgh"},
                    {
                        "type": "image_url",
                        "image_url": {"url": "data:image/png;base64," + "A" * 999},
                    },
                ],
            },
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [{"function": {"name": "f", "arguments": "{}"}}],
            },
        ],
        "tools": [{"type": "function"}],
    }
    # roles 6+4+9, texts 4+4, call 1+2, tools JSON 21 = 51 bytes -> 13, plus 3 messages * 4.
    assert prompt_tokens(body) == 13 + 12


def test_completion_and_embedding_inputs() -> None:
    assert prompt_tokens({"prompt": ["abcd", "abcde"]}) == 3
    assert prompt_tokens({"input": [[1, 2, 3], [4]]}) == 4
    assert prompt_tokens({"input": "abcdefgh"}) == 2


def test_an_answer_counts_content_refusals_reasoning_and_tool_calls() -> None:
    answer = {
        "choices": [
            {"message": {"content": "abcd", "reasoning_content": "efgh"}},
            {"message": {"content": None, "tool_calls": [{"function": {"arguments": "ijkl"}}]}},
            {"text": "mnop"},
        ]
    }
    assert answer_usage({"prompt": "x"}, answer) == TokenUsage(1, 4, 1)


def test_a_stream_is_at_least_a_token_per_chunk_with_text() -> None:
    tally = StreamTally()
    tally.add({"choices": [{"delta": {"role": "assistant", "content": ""}}]})
    for piece in ("a", "b", "c"):
        tally.add({"choices": [{"delta": {"content": piece}}]})
    assert tally.output_tokens() == 3
    tally.add({"choices": [{"delta": {"content": "x" * 40}}]})
    assert tally.output_tokens() == 11  # 43 bytes
    assert tally.usage is None


def test_a_streams_reasoning_is_output_and_its_usage_report_is_kept() -> None:
    tally = StreamTally()
    tally.add({"choices": [{"delta": {"reasoning_content": "thinking"}}]})
    tally.add({"choices": [{"delta": {"content": "ok"}}]})
    tally.add({"choices": [{"text": "!", "index": 0}]})
    assert tally.estimate({"prompt": "abcd"}) == TokenUsage(1, 3, 2)
    tally.add({"choices": [], "usage": {"prompt_tokens": 9}})
    assert tally.usage == {"prompt_tokens": 9}


def test_a_count_by_bytes_stops_at_the_cap_unless_chunks_prove_more() -> None:
    tally = StreamTally()
    tally.add({"choices": [{"delta": {"content": "x" * 400}}]})  # 100 tokens by bytes, 1 chunk
    assert tally.estimate({"prompt": "abcd"}, 5) == TokenUsage(1, 5, 0)
    for _ in range(7):
        tally.add({"choices": [{"delta": {"content": "y"}}]})
    assert tally.output_tokens(5) == 8  # eight chunks with text: past the cap it was sent


def test_the_last_usage_report_of_a_stream_wins() -> None:
    """Servers that report usage on every chunk report it cumulatively (vLLM's continuous usage
    stats); one sent twice is the same report twice."""
    tally = StreamTally()
    tally.add({"choices": [], "usage": {"prompt_tokens": 1, "completion_tokens": 1}})
    tally.add({"choices": [], "usage": None})
    tally.add({"choices": [], "usage": {"prompt_tokens": 1, "completion_tokens": 7}})
    assert tally.usage == {"prompt_tokens": 1, "completion_tokens": 7}
