"""A local OpenAI-compatible HTTP server for driving real third-party GenAI emitters offline.

    with FakeOpenAI() as llm:
        client = AsyncOpenAI(base_url=llm.base_url, api_key="test")
        ...
        llm.calls  # what it answered: model, tokens, tool call or text, per request

`POST /v1/chat/completions` (plain JSON, or server-sent events with `"stream": true`) and
`POST /v1/responses` (JSON). The script is the same on both: when the request offers tools and
no tool result is in it yet, the answer calls the first tool once (arguments `{"query": ...}`
with the request's last user text); otherwise it answers with text. A model whose name starts
with `fail-` is answered HTTP 400 (a non-retried client error). Usage tokens are deterministic
(input = 11 + 3 per message, output = 7 for a tool call, 13 for text), and every answer is
recorded in `calls`, the ground truth a test compares Prometheus with.
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclass(frozen=True)
class Call:
    api: str  # "chat" or "responses"
    model: str
    input_tokens: int
    output_tokens: int
    tool_call: str | None  # the tool the answer called, None for a text answer
    error: bool = False
    stream: bool = False  # answered as server-sent events


def _last_user_text(items: list) -> str:
    for item in reversed(items):
        if isinstance(item, dict) and item.get("role") == "user":
            content = item.get("content")
            if isinstance(content, str):
                return content
            if isinstance(content, list):
                return " ".join(str(p.get("text", "")) for p in content if isinstance(p, dict))
    return ""


def _tool_name(tool: dict) -> str:
    return tool.get("function", {}).get("name") or tool.get("name", "")


class FakeOpenAI:
    def __init__(self) -> None:
        self.calls: list[Call] = []
        self._lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args) -> None:  # quiet
                pass

            def do_POST(self) -> None:  # noqa: N802 (http.server's name)
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
                path = self.path.split("?")[0].rstrip("/")
                if path.endswith("/chat/completions"):
                    server._chat(self, body)
                elif path.endswith("/responses"):
                    server._responses(self, body)
                else:
                    self._send(404, {"error": {"message": f"no route {path}", "type": "not_found"}})

            def _send(self, status: int, payload: dict) -> None:
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self._handler = Handler
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self._httpd.server_address[1]}/v1"

    def __enter__(self) -> "FakeOpenAI":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()

    def _record(self, call: Call) -> None:
        with self._lock:
            self.calls.append(call)

    def _fail(self, handler, api: str, model: str) -> bool:
        if not model.startswith("fail-"):
            return False
        self._record(Call(api, model, 0, 0, None, error=True))
        handler._send(400, {"error": {"message": "the fake model refuses", "type": "invalid_request_error",
                                      "code": "model_refused"}})
        return True

    # -- /v1/chat/completions ---------------------------------------------------------------
    def _chat(self, handler, body: dict) -> None:
        model = body.get("model", "")
        if self._fail(handler, "chat", model):
            return
        messages = body.get("messages", [])
        tools = body.get("tools") or []
        done = any(m.get("role") == "tool" for m in messages)
        input_tokens = 11 + 3 * len(messages)
        now = int(time.time())
        if tools and not done:
            name = _tool_name(tools[0])
            output_tokens = 7
            args = json.dumps({"query": _last_user_text(messages)})
            message = {"role": "assistant", "content": None, "tool_calls": [
                {"id": f"call_{len(self.calls)}", "type": "function",
                 "function": {"name": name, "arguments": args}}]}
            finish = "tool_calls"
        else:
            name, output_tokens = None, 13
            message = {"role": "assistant", "content": "Done: the fake model answered."}
            finish = "stop"
        self._record(Call("chat", model, input_tokens, output_tokens, name, stream=bool(body.get("stream"))))
        usage = {"prompt_tokens": input_tokens, "completion_tokens": output_tokens,
                 "total_tokens": input_tokens + output_tokens}
        ident = f"chatcmpl-fake{len(self.calls)}"
        if not body.get("stream"):
            handler._send(200, {"id": ident, "object": "chat.completion", "created": now,
                                "model": model, "usage": usage,
                                "choices": [{"index": 0, "message": message, "finish_reason": finish}]})
            return
        delta = dict(message)
        if delta.get("tool_calls"):
            delta["tool_calls"] = [{"index": 0, **delta["tool_calls"][0]}]
        chunks = [
            {"choices": [{"index": 0, "delta": delta, "finish_reason": None}]},
            {"choices": [{"index": 0, "delta": {}, "finish_reason": finish}]},
            {"choices": [], "usage": usage},
        ]
        handler.send_response(200)
        handler.send_header("Content-Type", "text/event-stream")
        handler.send_header("Connection", "close")
        handler.end_headers()
        for chunk in chunks:
            chunk = {"id": ident, "object": "chat.completion.chunk", "created": now, "model": model, **chunk}
            handler.wfile.write(f"data: {json.dumps(chunk)}\n\n".encode())
        handler.wfile.write(b"data: [DONE]\n\n")
        handler.wfile.flush()
        handler.close_connection = True

    # -- /v1/responses ------------------------------------------------------------------------
    def _responses(self, handler, body: dict) -> None:
        model = body.get("model", "")
        if self._fail(handler, "responses", model):
            return
        items = body.get("input") or []
        if isinstance(items, str):
            items = [{"role": "user", "content": items}]
        tools = [t for t in body.get("tools") or [] if t.get("type") == "function"]
        done = any(isinstance(i, dict) and i.get("type") == "function_call_output" for i in items)
        input_tokens = 11 + 3 * len(items)
        n = len(self.calls)
        if tools and not done:
            name, output_tokens = _tool_name(tools[0]), 7
            output = [{"type": "function_call", "id": f"fc_{n}", "call_id": f"call_{n}", "name": name,
                       "arguments": json.dumps({"query": _last_user_text(items)}), "status": "completed"}]
        else:
            name, output_tokens = None, 13
            output = [{"type": "message", "id": f"msg_{n}", "role": "assistant", "status": "completed",
                       "content": [{"type": "output_text", "text": "Done: the fake model answered.",
                                    "annotations": []}]}]
        self._record(Call("responses", model, input_tokens, output_tokens, name))
        handler._send(200, {
            "id": f"resp_fake{n}", "object": "response", "created_at": time.time(), "model": model,
            "status": "completed", "output": output, "parallel_tool_calls": False, "tool_choice": "auto",
            "tools": [], "usage": {"input_tokens": input_tokens, "output_tokens": output_tokens,
                                   "total_tokens": input_tokens + output_tokens,
                                   "input_tokens_details": {"cached_tokens": 0},
                                   "output_tokens_details": {"reasoning_tokens": 0}}})
