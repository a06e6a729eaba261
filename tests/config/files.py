"""A configuration file for the tests to load: one written to disk, so errors name its lines."""

from __future__ import annotations

from pathlib import Path

VALID = """\
server:
  host: 0.0.0.0
  port: 9001
  require_client_keys: true
store:
  ledger_batch_size: 50
models:
  - alias: fake/echo
    provider: openai_compatible
    target: echo-model
    base_url: http://127.0.0.1:9999/v1
    api_key_env: ECHO_KEY
    jurisdiction: US
    price:
      input_per_1m: "2.00"
      output_per_1m: "8.00"
      cached_input_per_1m: "0.50"
      as_of: 2026-01-15
  - alias: claude
    provider: anthropic
    target: claude-sonnet-4-5
"""


def write(tmp_path: Path, text: str, name: str = "entrepot.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path
