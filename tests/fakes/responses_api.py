"""A scripted fake of the OpenAI Responses API on 127.0.0.1, for driving the real Codex CLI.

Codex ignores `OPENAI_BASE_URL`; it is pointed here with a provider of its own:

    codex exec -c model_provider=fake \\
      -c 'model_providers.fake={name="Fake",base_url="<server.url>/v1",env_key="FAKE_KEY",wire_api="responses",
          request_max_retries=0,stream_max_retries=0}' ...

and calls `POST /v1/responses` with `stream: true`, reading SSE: `response.created`,
`response.output_item.added/done`, `response.output_text.delta`, `response.completed`.

The script is the one of `model_server.py` (`Script`, `Conversation`, `WriteFile`, `FinalText`,
`RateLimited`, `ApiError`) and so is the way a request finds its turn (its newest user
message naming a conversation, then the number of assistant answers after it). Codex has no
file-writing tool: a `WriteFile` becomes a call of its shell tool (`exec_command`, or
`shell` in older versions) with a command that writes the file. Two more turns exist here:
`Malformed(body)` answers 200 with a body that is not an event stream, and
`FailedResponse(code, message)` streams a `response.failed` event (an error reported inside
a successful HTTP answer), and `ErrorBody(status, body)` answers an error with that body.
"""

from __future__ import annotations

import base64
import json
import shlex
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from tests.fakes.model_server import (
    INPUT_TOKENS,
    OUTPUT_TOKENS,
    ApiError,
    FakeModelServer,
    FinalText,
    RateLimited,
    RecordedRequest,
    RequestView,
    Script,
    WriteFile,
    _Handler,
    choose_turn,
    error_body,
    working_directory,
)


@dataclass(frozen=True)
class Malformed:
    """HTTP 200 whose body is not what the API promises (a truncated or garbled stream)."""

    body: str = "this is not an event stream\n"
    content_type: str = "text/event-stream"


@dataclass(frozen=True)
class FailedResponse:
    """HTTP 200, then `response.failed` with this error (how the API reports e.g. a quota)."""

    code: str = "server_error"
    message: str = "The server had an error while processing your request."


@dataclass(frozen=True)
class ErrorBody:
    """Any HTTP error with exactly this JSON body (e.g. a usage limit with its reset time)."""

    status: int
    body: Mapping[str, Any]


SHELL_TOOLS = ("exec_command", "shell", "local_shell")


def responses_view(body: Mapping[str, Any]) -> RequestView:
    """The request as `choose_turn` wants it: user texts, assistant answers, tool results, tools.

    An answer of the model is several items in a row (reasoning, message, function calls);
    they count as one assistant message, as one Anthropic message with text and tool_use would.
    """
    system = [str(body.get("instructions") or "")]
    messages: list[tuple[str, str]] = []
    for item in body.get("input") or []:
        if not isinstance(item, dict):
            continue
        kind = item.get("type", "message")
        role = item.get("role")
        if kind == "message" and role in ("system", "developer"):
            system.append(_item_text(item))
        elif kind == "message" and role == "user":
            messages.append(("user", _item_text(item)))
        elif kind in ("function_call_output", "custom_tool_call_output", "local_shell_call_output"):
            messages.append(("tool", ""))
        elif kind in ("message", "function_call", "custom_tool_call", "local_shell_call", "reasoning") and (
                not messages or messages[-1][0] != "assistant"):
            messages.append(("assistant", ""))
    tools = []
    for tool in body.get("tools") or []:
        if isinstance(tool, dict) and tool.get("name"):
            tools.append((str(tool["name"]), tool.get("parameters") or {}))
    return RequestView(bool(tools), "\n".join(system), messages, tools)


def _item_text(item: Mapping[str, Any]) -> str:
    content = item.get("content")
    if isinstance(content, str):
        return content
    return "\n".join(str(part.get("text", "")) for part in content or [] if isinstance(part, dict))


def write_command(turn: WriteFile, view: RequestView) -> tuple[str, dict[str, Any]]:
    """A call of the shell tool that writes `turn.content` to `turn.path` (any bytes, no quoting traps)."""
    names = [name for name, _ in view.tools]
    name = next((tool for tool in SHELL_TOOLS if tool in names), None)
    if name is None:
        raise LookupError(f"no shell tool among {names}")
    path = turn.path
    if not path.startswith("/"):
        workdir = working_directory(view.system + "\n" + "\n".join(text for _, text in view.messages))
        path = f"{workdir.rstrip('/')}/{path}" if workdir else path
    encoded = base64.b64encode(turn.content.encode()).decode()
    script = (f"mkdir -p \"$(dirname {shlex.quote(path)})\" && "
              f"printf %s {encoded} | base64 -d > {shlex.quote(path)}")
    if name == "exec_command":
        return name, {"cmd": script}
    return name, {"command": ["bash", "-lc", script]}


def response_events(turn: Any, view: RequestView, default_text: str, model: str) -> list[dict[str, Any]]:
    """The SSE events of one answer: a function call, or a message."""
    response_id = f"resp_fake_{time.monotonic_ns()}"
    if isinstance(turn, WriteFile):
        name, arguments = write_command(turn, view)
        call_id = f"call_fake_{time.monotonic_ns()}"
        items: list[dict[str, Any]] = []
        if turn.text:
            items.append(_message_item(turn.text))
        items.append({"type": "function_call", "id": f"fc_{call_id}", "call_id": call_id, "name": name,
                      "arguments": json.dumps(arguments), "status": "completed"})
    else:
        text = turn.full_text() if isinstance(turn, FinalText) else default_text
        items = [_message_item(text)]
    events: list[dict[str, Any]] = [{"type": "response.created", "response": {"id": response_id, "model": model}}]
    for index, item in enumerate(items):
        events.append({"type": "response.output_item.added", "output_index": index, "item": item})
        if item["type"] == "message":
            events.append({"type": "response.output_text.delta", "output_index": index, "content_index": 0,
                           "item_id": item["id"], "delta": item["content"][0]["text"]})
        events.append({"type": "response.output_item.done", "output_index": index, "item": item})
    usage = {"input_tokens": INPUT_TOKENS, "input_tokens_details": {"cached_tokens": 0},
             "output_tokens": OUTPUT_TOKENS, "output_tokens_details": {"reasoning_tokens": 0},
             "total_tokens": INPUT_TOKENS + OUTPUT_TOKENS}
    events.append({"type": "response.completed",
                   "response": {"id": response_id, "model": model, "status": "completed", "output": items,
                                "usage": usage}})
    return events


def _message_item(text: str) -> dict[str, Any]:
    return {"type": "message", "id": f"msg_fake_{time.monotonic_ns()}", "role": "assistant", "status": "completed",
            "content": [{"type": "output_text", "text": text, "annotations": []}]}


class FakeResponsesServer(FakeModelServer):
    """`FakeModelServer`'s script, lifetime and request log, answering `POST /v1/responses`."""

    def __init__(self, script: Script, **options: Any) -> None:
        super().__init__(script, **options)
        self._httpd.RequestHandlerClass = _handler_for(self)


def _handler_for(server: FakeResponsesServer) -> type[_ResponsesHandler]:
    class Handler(_ResponsesHandler):
        fake = server

    return Handler


class _ResponsesHandler(_Handler):
    def do_POST(self) -> None:
        body = self._read_body()
        path = self.path.split("?", 1)[0]
        if not path.endswith("/responses"):
            self.fake.record(RecordedRequest("unknown", self.path, body, None, None, "not_found"))
            self._send_json(404, {"error": {"message": f"the fake Responses API has no {path}"}})
            return
        view = responses_view(body)
        choice = choose_turn(self.fake.script, view)
        turn = choice.turn
        recorded = RecordedRequest(
            "responses", self.path, body, choice.conversation.match if choice.conversation else None,
            choice.turn_index, _answer_name(turn), user_texts=[text for role, text in view.messages if role == "user"],
            assistant_messages=sum(1 for role, _ in view.messages if role == "assistant"))
        if not self.fake.record(recorded):
            self._send_json(503, error_body("openai", 503, "server_error", "the fake server's budget is spent"))
        elif isinstance(turn, RateLimited):
            self._send_json(429, error_body("openai", 429, "rate_limit_exceeded", turn.message),
                            {"retry-after": f"{turn.retry_after_s:g}"})
        elif isinstance(turn, ApiError):
            self._send_json(turn.status, error_body("openai", turn.status, turn.kind, turn.message))
        elif isinstance(turn, ErrorBody):
            self._send_json(turn.status, dict(turn.body))
        elif isinstance(turn, Malformed):
            self._send_raw(turn.body.encode(), turn.content_type)
        elif isinstance(turn, FailedResponse):
            failed = {"type": "response.failed", "response": {
                "id": f"resp_fake_{time.monotonic_ns()}", "status": "failed",
                "error": {"code": turn.code, "message": turn.message}}}
            self._send_sse([("response.created", {"type": "response.created", "response": {"id": "resp_fake"}}),
                            ("response.failed", failed)])
        else:
            try:
                events = response_events(turn, view, self.fake.script.default_text,
                                         str(body.get("model") or self.fake.model))
            except LookupError as error:
                self._send_json(400, error_body("openai", 400, "invalid_request_error", str(error)))
                return
            self._send_sse([(event["type"], event) for event in events])

    def _send_raw(self, data: bytes, content_type: str) -> None:
        self.send_response(200)
        self.send_header("content-type", content_type)
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


def _answer_name(turn: Any) -> str:
    names = {WriteFile: "write_file", FinalText: "final_text", RateLimited: "rate_limited", ApiError: "api_error",
             Malformed: "malformed", FailedResponse: "failed_response", ErrorBody: "api_error"}
    return "default" if turn is None else names[type(turn)]
