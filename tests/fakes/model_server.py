"""A scripted fake model server on 127.0.0.1 for driving real agent CLIs in tests.

One server speaks both APIs the CLIs use, with streaming (SSE) and without:

- Anthropic Messages: `POST /v1/messages` (Claude Code; OpenCode with `@ai-sdk/anthropic`),
  `POST /v1/messages/count_tokens`
- OpenAI chat completions: `POST /v1/chat/completions` (OpenCode with
  `@ai-sdk/openai-compatible`, Aider)

What it answers comes from a small script: conversations, each a queue of turns, picked by
a string its prompt contains (e.g. `"Ticket: TKT-A"`):

    script = Script([
        Conversation("Ticket: TKT-A", [WriteFile("a.txt", "A\\n"), FinalText("wrote a.txt", summary="added a")]),
        Conversation("Ticket: TKT-C", [RateLimited(retry_after_s=0)]),
    ])
    with FakeModelServer(script) as server:
        ... ANTHROPIC_BASE_URL=server.url ...
        server.requests  # every request, for assertions

How a request finds its turn, without server-side state (so a CLI's retry of a request gets
the same answer, and a resumed session continues where it was):

- A request that offers no tools (title generation, quota probes, summaries) is a side
  request: it gets `Script.default_text`. So does `count_tokens`, and a request that matches
  no conversation, or one past the end of its queue.
- Otherwise the user text messages are searched from the newest back for one containing a
  conversation's `match`; the turn is the number of assistant messages after that message.
  A continued session (another ticket's prompt appended, a fix turn's prompt appended)
  thus starts at the right place: a new ticket's prompt matches its own conversation at
  turn 0; a fix prompt that names no ticket counts on from the original prompt.

Turns: `WriteFile(path, content)` calls the CLI's own file-writing tool (found among the
tools the request offers: the tool named like "write", its path and content parameters by
name); a relative path is made absolute against the last working directory the request
names (a Claude session resumed elsewhere is told its new one). `ToolCall(name, arguments)`
calls any tool. `FinalText(text, summary=...)` ends with a SAGE-RESULT block. `delay_s`
makes an answer wait, and `FinalText(after=MATCH)` waits for another conversation's final
text first: they order tickets that run at once. `RateLimited` answers HTTP 429
with `retry-after`; `persistent=True` (the default) keeps answering 429 for that
conversation, so the CLI's own retries end quickly in a failure. `ApiError(status, kind)`
answers any other error status.

The server stops by itself after `lifetime_s` or `max_requests`, whichever first, so a
hung test cannot leave it running; `stop()` (and leaving the `with` block) stops it now.
Run `python -m tests.fakes.model_server SCRIPT.json` to serve a JSON script by hand.
"""

from __future__ import annotations

import json
import re
import sys
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

DEFAULT_TEXT = "OK"
INPUT_TOKENS = 1000
OUTPUT_TOKENS = 100
WORKDIR_PATTERNS = (
    re.compile(r"(?:Primary working directory|Working directory|Current working directory)\s*:\s*(\S+)"),
    re.compile(r"<cwd>\s*(\S+?)\s*</cwd>"),
)
MAX_BODY_BYTES = 20_000_000
WAIT_LIMIT_S = 60.0  # FinalText(after=...) waits at most this long


# ---------------------------------------------------------------- the script


@dataclass(frozen=True)
class WriteFile:
    """A tool call to the CLI's write tool: create `path` with `content`."""

    path: str
    content: str
    text: str = ""  # assistant text before the tool call
    delay_s: float = 0.0  # the answer waits this long (to order tickets running at once)


@dataclass(frozen=True)
class ToolCall:
    """A call to the tool named `name` (case-insensitive), e.g. ToolCall("bash", {"command": "ls"})."""

    name: str
    arguments: Mapping[str, Any]
    text: str = ""


@dataclass(frozen=True)
class FinalText:
    """The final assistant message; `summary` adds a SAGE-RESULT block (status `status`)."""

    text: str
    summary: str | None = None
    status: str = "done"
    delay_s: float = 0.0
    after: str | None = None  # first wait until this conversation got its final text (bounded)

    def full_text(self) -> str:
        if self.summary is None:
            return self.text
        block = f"```SAGE-RESULT\nstatus: {self.status}\nsummary: {self.summary}\n```"
        return f"{self.text}\n\n{block}" if self.text else block


@dataclass(frozen=True)
class RateLimited:
    """HTTP 429 with a `retry-after` header; persistent: every request of the conversation."""

    retry_after_s: float = 0
    persistent: bool = True
    message: str = "Rate limit exceeded: too many requests"
    should_retry: bool | None = None  # the `x-should-retry` header Anthropic's SDKs obey; None: not sent


@dataclass(frozen=True)
class ApiError:
    """Any HTTP error, e.g. ApiError(401, "authentication_error", "invalid x-api-key")."""

    status: int
    kind: str = "api_error"
    message: str = "internal server error"
    persistent: bool = True


Turn = WriteFile | ToolCall | FinalText | RateLimited | ApiError


@dataclass(frozen=True)
class Conversation:
    match: str  # a string the conversation's prompt contains, e.g. "Ticket: TKT-A"
    turns: Sequence[Turn]


@dataclass(frozen=True)
class Script:
    conversations: Sequence[Conversation] = ()
    default_text: str = DEFAULT_TEXT

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Script:
        """`{"default_text": "...", "conversations": [{"match": "...", "turns": [...]}]}`, each turn one of
        `{"write_file": [path, content]}`, `{"tool_call": [name, {args}]}`, `{"final_text": text, "summary": s}`,
        `{"rate_limited": seconds}`, `{"api_error": status, "kind": k}`."""
        conversations = [
            Conversation(item["match"], [_turn_from_json(turn) for turn in item["turns"]])
            for item in data.get("conversations", [])
        ]
        return cls(conversations, data.get("default_text", DEFAULT_TEXT))


def _turn_from_json(turn: Mapping[str, Any]) -> Turn:
    if "write_file" in turn:
        path, content = turn["write_file"]
        return WriteFile(path, content, turn.get("text", ""))
    if "tool_call" in turn:
        name, arguments = turn["tool_call"]
        return ToolCall(name, arguments, turn.get("text", ""))
    if "final_text" in turn:
        return FinalText(turn["final_text"], turn.get("summary"), turn.get("status", "done"))
    if "rate_limited" in turn:
        return RateLimited(float(turn["rate_limited"]), turn.get("persistent", True))
    if "api_error" in turn:
        return ApiError(int(turn["api_error"]), turn.get("kind", "api_error"), turn.get("message", "error"))
    raise ValueError(f"unknown turn {turn!r}")


# ---------------------------------------------------------------- requests, as the server saw them


@dataclass
class RecordedRequest:
    api: str  # "anthropic" | "openai" | "count_tokens" | "unknown"
    path: str
    body: dict[str, Any]
    conversation: str | None  # the matched conversation's `match`, None for side requests
    turn: int | None  # index into that conversation's turns
    answer: str  # "write_file" | "tool_call" | "final_text" | "rate_limited" | "api_error" | "default" | "not_found"
    user_texts: list[str] = field(default_factory=list)
    assistant_messages: int = 0

    @property
    def last_user_text(self) -> str:
        return self.user_texts[-1] if self.user_texts else ""


@dataclass
class RequestView:
    """What a request looks like once the API's format is set aside."""

    has_tools: bool
    system: str
    messages: list[tuple[str, str]]  # (role, text) in order; tool results count as role "tool"
    tools: list[tuple[str, dict[str, Any]]]  # (name, JSON schema of its input)


def anthropic_view(body: Mapping[str, Any]) -> RequestView:
    system = body.get("system") or ""
    if isinstance(system, list):
        system = "\n".join(block.get("text", "") for block in system if isinstance(block, dict))
    messages = []
    for message in body.get("messages") or []:
        role = message.get("role")
        content = message.get("content")
        if isinstance(content, str):
            messages.append((role, content))
            continue
        blocks = [block for block in content or [] if isinstance(block, dict)]
        texts = [block.get("text", "") for block in blocks if block.get("type") == "text"]
        if role == "user" and blocks and all(block.get("type") == "tool_result" for block in blocks):
            messages.append(("tool", ""))
        else:
            messages.append((role, "\n".join(texts)))
    tools = [(tool.get("name", ""), tool.get("input_schema") or {}) for tool in body.get("tools") or []
             if isinstance(tool, dict)]
    return RequestView(bool(tools), str(system), messages, tools)


def openai_view(body: Mapping[str, Any]) -> RequestView:
    system_parts = []
    messages = []
    for message in body.get("messages") or []:
        role = message.get("role")
        content = message.get("content")
        if isinstance(content, list):
            content = "\n".join(part.get("text", "") for part in content if isinstance(part, dict))
        text = content or ""
        if role in ("system", "developer"):
            system_parts.append(text)
        else:
            messages.append((role, text))
    tools = []
    for tool in body.get("tools") or []:
        function = tool.get("function") if isinstance(tool, dict) else None
        if isinstance(function, dict):
            tools.append((function.get("name", ""), function.get("parameters") or {}))
    return RequestView(bool(tools), "\n".join(system_parts), messages, tools)


# ---------------------------------------------------------------- choosing the answer


@dataclass(frozen=True)
class Choice:
    conversation: Conversation | None
    turn_index: int | None
    turn: Turn | None  # None: answer with the default text


def choose_turn(script: Script, view: RequestView) -> Choice:
    if not view.has_tools:
        return Choice(None, None, None)
    for position in range(len(view.messages) - 1, -1, -1):
        role, text = view.messages[position]
        if role != "user":
            continue
        for conversation in script.conversations:
            if conversation.match in text:
                return _turn_after(conversation, view.messages[position + 1:])
    return Choice(None, None, None)


def _turn_after(conversation: Conversation, later: list[tuple[str, str]]) -> Choice:
    index = sum(1 for role, _ in later if role == "assistant")
    turns = conversation.turns
    sticky = [turn for turn in turns[:index] if isinstance(turn, (RateLimited, ApiError)) and turn.persistent]
    if sticky:
        return Choice(conversation, turns.index(sticky[0]), sticky[0])
    if index < len(turns):
        return Choice(conversation, index, turns[index])
    return Choice(conversation, index, None)


def tool_call_for(turn: WriteFile | ToolCall, view: RequestView) -> tuple[str, dict[str, Any]]:
    """(tool name, arguments) of the call `turn` makes, in the names the CLI's tools use."""
    if isinstance(turn, ToolCall):
        for name, _ in view.tools:
            if name.lower() == turn.name.lower():
                return name, dict(turn.arguments)
        raise LookupError(f"no tool {turn.name!r} among {[name for name, _ in view.tools]}")
    name, schema = _write_tool(view.tools)
    properties = schema.get("properties") or {}
    path_key = next((key for key in properties if "path" in key.lower()), "file_path")
    content_key = next((key for key in properties if key.lower() == "content"), "content")
    path = turn.path
    if not path.startswith("/"):
        workdir = working_directory(view.system + "\n" + "\n".join(text for _, text in view.messages))
        if workdir:
            path = workdir.rstrip("/") + "/" + path
    return name, {path_key: path, content_key: turn.content}


def _write_tool(tools: list[tuple[str, dict[str, Any]]]) -> tuple[str, dict[str, Any]]:
    for name, schema in tools:
        if name.lower() == "write":
            return name, schema
    for name, schema in tools:
        if "write" in name.lower():
            return name, schema
    raise LookupError(f"no write tool among {[name for name, _ in tools]}")


def working_directory(text: str) -> str | None:
    """The last working directory the text names: a resumed session is told where it is now."""
    found = [match for pattern in WORKDIR_PATTERNS for match in pattern.finditer(text)]
    if not found:
        return None
    return max(found, key=lambda match: match.start()).group(1)


# ---------------------------------------------------------------- the wire formats


def anthropic_events(turn: Turn | None, view: RequestView, default_text: str, model: str) -> list[dict]:
    content: list[dict[str, Any]] = []
    if isinstance(turn, (WriteFile, ToolCall)):
        if turn.text:
            content.append({"type": "text", "text": turn.text})
        name, arguments = tool_call_for(turn, view)
        content.append({"type": "tool_use", "id": f"toolu_{abs(hash((name, json.dumps(arguments)))):x}",
                        "name": name, "input": arguments})
        stop = "tool_use"
    else:
        text = turn.full_text() if isinstance(turn, FinalText) else default_text
        content.append({"type": "text", "text": text})
        stop = "end_turn"
    events: list[dict[str, Any]] = [{"type": "message_start", "message": {
        "id": f"msg_fake_{time.monotonic_ns()}", "type": "message", "role": "assistant", "model": model,
        "content": [], "stop_reason": None, "stop_sequence": None,
        "usage": {"input_tokens": INPUT_TOKENS, "output_tokens": 1, "cache_creation_input_tokens": 0,
                  "cache_read_input_tokens": 0}}}]
    for index, block in enumerate(content):
        if block["type"] == "text":
            events.append({"type": "content_block_start", "index": index,
                           "content_block": {"type": "text", "text": ""}})
            events.append({"type": "content_block_delta", "index": index,
                           "delta": {"type": "text_delta", "text": block["text"]}})
        else:
            events.append({"type": "content_block_start", "index": index, "content_block": {
                "type": "tool_use", "id": block["id"], "name": block["name"], "input": {}}})
            events.append({"type": "content_block_delta", "index": index,
                           "delta": {"type": "input_json_delta", "partial_json": json.dumps(block["input"])}})
        events.append({"type": "content_block_stop", "index": index})
    events.append({"type": "message_delta", "delta": {"stop_reason": stop, "stop_sequence": None},
                   "usage": {"output_tokens": OUTPUT_TOKENS}})
    events.append({"type": "message_stop"})
    return events


def anthropic_message(events: list[dict]) -> dict[str, Any]:
    """The non-streaming form of the same answer."""
    message = dict(events[0]["message"])
    blocks: list[dict[str, Any]] = []
    for event in events:
        if event["type"] == "content_block_start":
            blocks.append(dict(event["content_block"]))
        elif event["type"] == "content_block_delta":
            delta = event["delta"]
            if delta["type"] == "text_delta":
                blocks[-1]["text"] += delta["text"]
            else:
                blocks[-1]["input"] = json.loads(delta["partial_json"])
        elif event["type"] == "message_delta":
            message["stop_reason"] = event["delta"]["stop_reason"]
            message["usage"] = {**message["usage"], **event["usage"]}
    message["content"] = blocks
    return message


def openai_chunks(turn: Turn | None, view: RequestView, default_text: str, model: str) -> list[dict]:
    base = {"id": f"chatcmpl-fake-{time.monotonic_ns()}", "object": "chat.completion.chunk",
            "created": int(time.time()), "model": model}
    chunks = [{**base, "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": None}]}]
    if isinstance(turn, (WriteFile, ToolCall)):
        if turn.text:
            chunks.append({**base, "choices": [{"index": 0, "delta": {"content": turn.text}, "finish_reason": None}]})
        name, arguments = tool_call_for(turn, view)
        call = {"index": 0, "id": f"call_fake_{time.monotonic_ns()}", "type": "function",
                "function": {"name": name, "arguments": json.dumps(arguments)}}
        chunks.append({**base, "choices": [{"index": 0, "delta": {"tool_calls": [call]}, "finish_reason": None}]})
        finish = "tool_calls"
    else:
        text = turn.full_text() if isinstance(turn, FinalText) else default_text
        chunks.append({**base, "choices": [{"index": 0, "delta": {"content": text}, "finish_reason": None}]})
        finish = "stop"
    chunks.append({**base, "choices": [{"index": 0, "delta": {}, "finish_reason": finish}]})
    chunks.append({**base, "choices": [], "usage": {"prompt_tokens": INPUT_TOKENS, "completion_tokens": OUTPUT_TOKENS,
                                                    "total_tokens": INPUT_TOKENS + OUTPUT_TOKENS}})
    return chunks


def openai_completion(chunks: list[dict]) -> dict[str, Any]:
    message: dict[str, Any] = {"role": "assistant", "content": ""}
    finish = "stop"
    for chunk in chunks:
        for choice in chunk["choices"]:
            delta = choice["delta"]
            message["content"] += delta.get("content") or ""
            if "tool_calls" in delta:
                message["tool_calls"] = [{key: value for key, value in call.items() if key != "index"}
                                         for call in delta["tool_calls"]]
            finish = choice.get("finish_reason") or finish
    return {"id": chunks[0]["id"], "object": "chat.completion", "created": chunks[0]["created"],
            "model": chunks[0]["model"], "choices": [{"index": 0, "message": message, "finish_reason": finish}],
            "usage": chunks[-1]["usage"]}


def error_body(api: str, status: int, kind: str, message: str) -> dict[str, Any]:
    if api == "anthropic":
        return {"type": "error", "error": {"type": kind, "message": message}}
    return {"error": {"message": message, "type": kind, "code": kind}}


# ---------------------------------------------------------------- the server


class FakeModelServer:
    def __init__(self, script: Script, *, lifetime_s: float = 300.0, max_requests: int = 500,
                 model: str = "fake-model") -> None:
        self.script = script
        self.lifetime_s = lifetime_s
        self.max_requests = max_requests
        self.model = model
        self._requests: list[RecordedRequest] = []
        self._lock = threading.Lock()
        self._recorded = threading.Condition(self._lock)
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), _handler_for(self))
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.1},
                                        name="fake-model-server", daemon=True)
        self._timer = threading.Timer(lifetime_s, self.stop)
        self._timer.daemon = True
        self._stopped = threading.Event()

    @property
    def port(self) -> int:
        return self._httpd.server_address[1]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def requests(self) -> list[RecordedRequest]:
        with self._lock:
            return list(self._requests)

    def requests_for(self, match: str) -> list[RecordedRequest]:
        return [request for request in self.requests if request.conversation == match]

    def start(self) -> FakeModelServer:
        self._thread.start()
        self._timer.start()
        return self

    def stop(self) -> None:
        if self._stopped.is_set():
            return
        self._stopped.set()
        with self._recorded:
            self._recorded.notify_all()  # nobody waits for a conversation any longer
        self._timer.cancel()
        self._httpd.shutdown()
        self._httpd.server_close()

    def __enter__(self) -> FakeModelServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def record(self, request: RecordedRequest) -> bool:
        """Keep the request; False once the server has answered max_requests (then it stops)."""
        with self._recorded:
            self._requests.append(request)
            over = len(self._requests) > self.max_requests
            self._recorded.notify_all()
        if over:
            threading.Thread(target=self.stop, daemon=True).start()
        return not over

    def wait_for_final_text(self, match: str, timeout_s: float = WAIT_LIMIT_S) -> bool:
        """Block until the conversation `match` was answered with its final text (False: timed out)."""
        with self._recorded:
            return self._recorded.wait_for(
                lambda: any(r.conversation == match and r.answer == "final_text" for r in self._requests)
                or self._stopped.is_set(), timeout=timeout_s)


def _handler_for(server: FakeModelServer) -> type[BaseHTTPRequestHandler]:
    class Handler(_Handler):
        fake = server

    return Handler


class _Handler(BaseHTTPRequestHandler):
    fake: FakeModelServer
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:  # quiet: tests read server.requests
        pass

    def do_GET(self) -> None:
        # model lists and health probes: an empty, valid answer
        self.fake.record(RecordedRequest("unknown", self.path, {}, None, None, "default"))
        self._send_json(200, {"data": [], "object": "list"})

    def do_HEAD(self) -> None:
        self.send_response(200)
        self.send_header("content-length", "0")
        self.end_headers()

    def do_POST(self) -> None:
        body = self._read_body()
        path = self.path.split("?", 1)[0]
        if path.endswith("/messages/count_tokens"):
            self.fake.record(RecordedRequest("count_tokens", self.path, body, None, None, "default"))
            self._send_json(200, {"input_tokens": INPUT_TOKENS})
        elif path.endswith("/messages"):
            self._answer("anthropic", body, anthropic_view(body))
        elif path.endswith("/chat/completions"):
            self._answer("openai", body, openai_view(body))
        else:
            self.fake.record(RecordedRequest("unknown", self.path, body, None, None, "not_found"))
            self._send_json(404, {"error": {"message": f"the fake model server has no {path}"}})

    def _read_body(self) -> dict[str, Any]:
        length = int(self.headers.get("content-length") or 0)
        raw = self.rfile.read(min(length, MAX_BODY_BYTES)) if length else b""
        try:
            value = json.loads(raw or b"{}")
        except ValueError:
            return {}
        return value if isinstance(value, dict) else {}

    def _answer(self, api: str, body: dict[str, Any], view: RequestView) -> None:
        choice = choose_turn(self.fake.script, view)
        turn = choice.turn
        answer = ("default" if turn is None else "write_file" if isinstance(turn, WriteFile)
                  else "tool_call" if isinstance(turn, ToolCall) else "final_text" if isinstance(turn, FinalText)
                  else "rate_limited" if isinstance(turn, RateLimited) else "api_error")
        recorded = RecordedRequest(
            api, self.path, body, choice.conversation.match if choice.conversation else None, choice.turn_index,
            answer, user_texts=[text for role, text in view.messages if role == "user"],
            assistant_messages=sum(1 for role, _ in view.messages if role == "assistant"))
        if not self.fake.record(recorded):
            self._send_json(503, error_body(api, 503, "overloaded_error", "the fake model server's budget is spent"))
            return
        if isinstance(turn, RateLimited):
            headers = {"retry-after": f"{turn.retry_after_s:g}", "retry-after-ms": str(int(turn.retry_after_s * 1000))}
            if turn.should_retry is not None:
                headers["x-should-retry"] = "true" if turn.should_retry else "false"
            self._send_json(429, error_body(api, 429, "rate_limit_error", turn.message), headers)
            return
        if isinstance(turn, ApiError):
            self._send_json(turn.status, error_body(api, turn.status, turn.kind, turn.message))
            return
        if isinstance(turn, FinalText) and turn.after:
            self.fake.wait_for_final_text(turn.after)
        if isinstance(turn, (WriteFile, FinalText)) and turn.delay_s > 0:
            time.sleep(turn.delay_s)
        model = str(body.get("model") or self.fake.model)
        stream = bool(body.get("stream"))
        try:
            if api == "anthropic":
                events = anthropic_events(turn, view, self.fake.script.default_text, model)
                if stream:
                    self._send_sse([(event["type"], event) for event in events])
                else:
                    self._send_json(200, anthropic_message(events))
            else:
                chunks = openai_chunks(turn, view, self.fake.script.default_text, model)
                if stream:
                    self._send_sse([(None, chunk) for chunk in chunks], done=True)
                else:
                    self._send_json(200, openai_completion(chunks))
        except LookupError as error:  # a WriteFile turn but the CLI offered no write tool
            self._send_json(400, error_body(api, 400, "invalid_request_error", str(error)))

    def _send_json(self, status: int, value: Any, headers: Mapping[str, str] | None = None) -> None:
        data = json.dumps(value).encode()
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        for name, header in (headers or {}).items():
            self.send_header(name, header)
        self.end_headers()
        self.wfile.write(data)

    def _send_sse(self, events: list[tuple[str | None, dict]], *, done: bool = False) -> None:
        parts = []
        for name, event in events:
            prefix = f"event: {name}\n" if name else ""
            parts.append(f"{prefix}data: {json.dumps(event)}\n\n")
        if done:
            parts.append("data: [DONE]\n\n")
        data = "".join(parts).encode()
        # a content-length: the CLIs' HTTP clients then know where the stream ends
        self.send_response(200)
        self.send_header("content-type", "text/event-stream")
        self.send_header("cache-control", "no-cache")
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


def iter_sse(data: str) -> Iterator[tuple[str | None, Any]]:
    """(event name, decoded data) of an SSE body; for the server's own tests."""
    for block in data.strip().split("\n\n"):
        name = None
        payload = None
        for line in block.splitlines():
            if line.startswith("event: "):
                name = line[len("event: "):]
            elif line.startswith("data: "):
                raw = line[len("data: "):]
                payload = raw if raw == "[DONE]" else json.loads(raw)
        yield name, payload


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: python -m tests.fakes.model_server SCRIPT.json", file=sys.stderr)
        return 2
    with open(argv[0], encoding="utf-8") as handle:
        script = Script.from_json(json.load(handle))
    server = FakeModelServer(script, lifetime_s=3600).start()
    print(server.url, flush=True)
    try:
        server._stopped.wait()
    except KeyboardInterrupt:
        server.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
