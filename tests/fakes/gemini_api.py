"""A scripted fake of the Gemini API on 127.0.0.1, for driving the real Gemini CLI.

Gemini CLI is pointed here with `GOOGLE_GEMINI_BASE_URL=<server.url> GEMINI_API_KEY=x` (and
api-key auth selected in its settings.json); it calls
`POST /v1beta/models/MODEL:streamGenerateContent?alt=sse` (SSE, one
`GenerateContentResponse` per `data:` line) and, for side questions, `:generateContent`.

The script is the one of `model_server.py` (`Script`, `Conversation`, `WriteFile`, `FinalText`,
`RateLimited`, `ApiError`), found the same way: the newest user text naming a conversation,
then the number of model answers after it. `WriteFile` calls the CLI's `write_file` tool
(the tool named like "write", its path and content parameters by name). Errors come in
Google's shape, `{"error": {"code", "message", "status"}}`; `ErrorBody` and `Malformed`
(from responses_api.py) answer a body of your own or a broken stream.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
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
    tool_call_for,
)
from tests.fakes.responses_api import ErrorBody, Malformed

GOOGLE_STATUS = {400: "INVALID_ARGUMENT", 401: "UNAUTHENTICATED", 403: "PERMISSION_DENIED", 404: "NOT_FOUND",
                 429: "RESOURCE_EXHAUSTED", 500: "INTERNAL", 503: "UNAVAILABLE", 504: "DEADLINE_EXCEEDED"}


def gemini_view(body: Mapping[str, Any]) -> RequestView:
    """The request as `choose_turn` wants it: user texts, model answers, tool results, tools."""
    instruction = body.get("systemInstruction") or {}
    system = _parts_text(instruction.get("parts") if isinstance(instruction, dict) else None)
    messages: list[tuple[str, str]] = []
    for content in body.get("contents") or []:
        if not isinstance(content, dict):
            continue
        parts = [part for part in content.get("parts") or [] if isinstance(part, dict)]
        if content.get("role") == "model":
            messages.append(("assistant", _parts_text(parts)))
        elif parts and all("functionResponse" in part for part in parts):
            messages.append(("tool", ""))
        else:
            messages.append(("user", _parts_text(parts)))
    tools = []
    for tool in body.get("tools") or []:
        for declaration in (tool.get("functionDeclarations") or []) if isinstance(tool, dict) else []:
            schema = declaration.get("parametersJsonSchema") or declaration.get("parameters") or {}
            tools.append((str(declaration.get("name", "")), schema))
    return RequestView(bool(tools), system, messages, tools)


def _parts_text(parts: Any) -> str:
    return "\n".join(str(part.get("text", "")) for part in parts or [] if isinstance(part, dict) and "text" in part)


def google_error(status: int, message: str) -> dict[str, Any]:
    return {"error": {"code": status, "message": message, "status": GOOGLE_STATUS.get(status, "UNKNOWN")}}


def answer_chunks(turn: Any, view: RequestView, default_text: str, model: str) -> list[dict[str, Any]]:
    """The streamed answer: one chunk with the text or the function call, usage in the last."""
    if isinstance(turn, WriteFile):
        name, arguments = tool_call_for(turn, view)
        parts: list[dict[str, Any]] = [{"text": turn.text}] if turn.text else []
        parts.append({"functionCall": {"name": name, "args": arguments}})
    else:
        parts = [{"text": turn.full_text() if isinstance(turn, FinalText) else default_text}]
    usage = {"promptTokenCount": INPUT_TOKENS, "candidatesTokenCount": OUTPUT_TOKENS,
             "totalTokenCount": INPUT_TOKENS + OUTPUT_TOKENS}
    return [{"candidates": [{"content": {"role": "model", "parts": parts}, "finishReason": "STOP", "index": 0}],
             "usageMetadata": usage, "modelVersion": model, "responseId": f"fake-{time.monotonic_ns()}"}]


class FakeGeminiServer(FakeModelServer):
    """`FakeModelServer`'s script, lifetime and request log, answering the Gemini API."""

    def __init__(self, script: Script, **options: Any) -> None:
        super().__init__(script, **options)
        self._httpd.RequestHandlerClass = _handler_for(self)


def _handler_for(server: FakeGeminiServer) -> type[_GeminiHandler]:
    class Handler(_GeminiHandler):
        fake = server

    return Handler


class _GeminiHandler(_Handler):
    def do_POST(self) -> None:
        body = self._read_body()
        path = self.path.split("?", 1)[0]
        model, _, method = path.rpartition("/")[2].partition(":")
        if method == "countTokens":
            self.fake.record(RecordedRequest("count_tokens", self.path, body, None, None, "default"))
            self._send_json(200, {"totalTokens": INPUT_TOKENS})
            return
        if method not in ("streamGenerateContent", "generateContent"):
            self.fake.record(RecordedRequest("unknown", self.path, body, None, None, "not_found"))
            self._send_json(404, google_error(404, f"the fake Gemini API has no {path}"))
            return
        view = gemini_view(body)
        choice = choose_turn(self.fake.script, view)
        turn = choice.turn
        recorded = RecordedRequest(
            "gemini", self.path, body, choice.conversation.match if choice.conversation else None,
            choice.turn_index, _answer_name(turn), user_texts=[text for role, text in view.messages if role == "user"],
            assistant_messages=sum(1 for role, _ in view.messages if role == "assistant"))
        if not self.fake.record(recorded):
            self._send_json(503, google_error(503, "the fake server's budget is spent"))
        elif isinstance(turn, RateLimited):
            self._send_json(429, google_error(429, turn.message), {"retry-after": f"{turn.retry_after_s:g}"})
        elif isinstance(turn, ApiError):
            self._send_json(turn.status, google_error(turn.status, turn.message))
        elif isinstance(turn, ErrorBody):
            self._send_json(turn.status, dict(turn.body))
        elif isinstance(turn, Malformed):
            data = turn.body.encode()
            self.send_response(200)
            self.send_header("content-type", turn.content_type)
            self.send_header("content-length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
        else:
            self._answer(turn, view, model, stream=method == "streamGenerateContent")

    def _answer(self, turn: Any, view: RequestView, model: str, *, stream: bool) -> None:
        try:
            chunks = answer_chunks(turn, view, self.fake.script.default_text, model or self.fake.model)
        except LookupError as error:  # a WriteFile turn but the CLI offered no write tool
            self._send_json(400, google_error(400, str(error)))
            return
        if not stream:
            self._send_json(200, chunks[-1])
            return
        data = "".join(f"data: {json.dumps(chunk)}\r\n\r\n" for chunk in chunks).encode()
        self.send_response(200)
        self.send_header("content-type", "text/event-stream")
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


def _answer_name(turn: Any) -> str:
    names = {WriteFile: "write_file", FinalText: "final_text", RateLimited: "rate_limited", ApiError: "api_error",
             ErrorBody: "api_error", Malformed: "malformed"}
    return "default" if turn is None else names[type(turn)]
