"""The mock upstream: nginx answering every call with a static OpenAI-format body.

nginx rather than a Python server so that the upstream is never the bottleneck: whatever a
target loses against "direct" is its own cost. `/v1/...` answers JSON, `/stream/v1/...` answers the
same completion as a server-sent-event stream, so a model alias chooses its answer by base URL.
"""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import orjson
from tests.conftest import free_port, wait_until_up

COMPLETION = {
    "id": "chatcmpl-perf",
    "object": "chat.completion",
    "created": 1763856000,
    "model": "perf-model",
    "choices": [
        {
            "index": 0,
            "message": {"role": "assistant", "content": "Hello! How can I help?", "refusal": None},
            "logprobs": None,
            "finish_reason": "stop",
        }
    ],
    "usage": {"prompt_tokens": 9, "completion_tokens": 7, "total_tokens": 16},
}


def _chunk(delta: dict[str, str], finish: str | None, usage: dict[str, int] | None) -> bytes:
    chunk = {
        "id": "chatcmpl-perf",
        "object": "chat.completion.chunk",
        "created": 1763856000,
        "model": "perf-model",
        "choices": [] if usage else [{"index": 0, "delta": delta, "finish_reason": finish}],
        "usage": usage,
    }
    return b"data: " + orjson.dumps(chunk) + b"\n\n"


def stream_body() -> bytes:
    parts = [_chunk({"role": "assistant", "content": ""}, None, None)]
    parts += [_chunk({"content": word}, None, None) for word in ("Hello!", " How", " can I help?")]
    parts.append(_chunk({}, "stop", None))
    parts.append(_chunk({}, None, {"prompt_tokens": 9, "completion_tokens": 7, "total_tokens": 16}))
    return b"".join(parts) + b"data: [DONE]\n\n"


def _nginx_string(body: bytes) -> str:
    """A body as an nginx quoted string (nginx knows \\n, \\" and \\\\ escapes)."""
    text = body.decode().replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return f'"{text}"'


def config_text(prefix: Path, port: int) -> str:
    temp = "\n".join(
        f"  {kind}_temp_path {prefix / kind};" for kind in ("client_body", "proxy", "fastcgi")
    )
    temp += f"\n  uwsgi_temp_path {prefix / 'uwsgi'};\n  scgi_temp_path {prefix / 'scgi'};"
    return f"""
worker_processes 1;
daemon off;
pid {prefix / "nginx.pid"};
error_log {prefix / "error.log"} error;
events {{ worker_connections 4096; }}
http {{
  access_log off;
{temp}
  keepalive_requests 10000000;
  keepalive_timeout 300s;
  server {{
    listen 127.0.0.1:{port} reuseport;
    location = /v1/models {{
      default_type application/json;
      return 200 '{{"object":"list","data":[]}}';
    }}
    location /v1/ {{
      default_type application/json;
      return 200 {_nginx_string(orjson.dumps(COMPLETION))};
    }}
    location /stream/v1/ {{
      default_type text/event-stream;
      return 200 {_nginx_string(stream_body())};
    }}
  }}
}}
"""


@dataclass
class Mock:
    url: str
    process: subprocess.Popen[bytes]

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=10)


def start_mock(tmp: Path) -> Mock:
    nginx = shutil.which("nginx") or "/usr/sbin/nginx"
    prefix = tmp / "nginx"
    prefix.mkdir()
    port = free_port()
    conf = prefix / "nginx.conf"
    conf.write_text(config_text(prefix, port))
    log = prefix / "stderr.log"
    process = subprocess.Popen(
        [nginx, "-p", str(prefix), "-c", str(conf)],
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    wait_until_up(url + "/v1/models", process, log)
    return Mock(url, process)
