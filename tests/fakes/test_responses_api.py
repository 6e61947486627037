"""The fake Responses API answers like the one Codex talks to (checked here without Codex)."""

from __future__ import annotations

import base64
import json
import re
import urllib.error
import urllib.request
from typing import Any

import pytest

from tests.fakes.model_server import Conversation, FinalText, RateLimited, Script, WriteFile, iter_sse
from tests.fakes.responses_api import FailedResponse, FakeResponsesServer, Malformed

SCRIPT = Script([
    Conversation("Ticket: T-1", [WriteFile("out/a.txt", "it's \"A\"\n"), FinalText("done", summary="wrote a")]),
    Conversation("Ticket: T-2", [RateLimited(0)]),
    Conversation("Ticket: T-3", [Malformed()]),
    Conversation("Ticket: T-4", [FailedResponse("insufficient_quota", "quota gone")]),
])
TOOLS = [{"type": "function", "name": "exec_command", "parameters": {"type": "object", "properties": {}}}]


def user(text: str) -> dict[str, Any]:
    return {"type": "message", "role": "user", "content": [{"type": "input_text", "text": text}]}


def post(server: FakeResponsesServer, items: list[dict[str, Any]]) -> tuple[int, str]:
    body = json.dumps({"model": "m", "stream": True, "input": items, "tools": TOOLS}).encode()
    request = urllib.request.Request(f"{server.url}/v1/responses", data=body,
                                     headers={"content-type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=10) as answer:
            return answer.status, answer.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


@pytest.fixture
def server():
    with FakeResponsesServer(SCRIPT, lifetime_s=30) as running:
        yield running


def test_a_write_is_a_shell_call_that_writes_the_exact_content_in_the_working_directory(server):
    status, body = post(server, [user("<environment_context>\n  <cwd>/work/tree</cwd>\n</environment_context>"),
                                 user("# T-1\n- Ticket: T-1")])
    events = dict(iter_sse(body))
    call = events["response.output_item.done"]["item"]
    assert status == 200 and call["type"] == "function_call" and call["name"] == "exec_command"
    command = json.loads(call["arguments"])["cmd"]
    assert "/work/tree/out/a.txt" in command
    encoded = re.search(r"printf %s (\S+) \| base64 -d", command).group(1)
    assert base64.b64decode(encoded).decode() == "it's \"A\"\n"
    assert events["response.completed"]["response"]["usage"]["total_tokens"] == 1100


def test_after_the_tool_result_comes_the_final_message(server):
    items = [user("- Ticket: T-1"), {"type": "reasoning", "summary": []},
             {"type": "function_call", "name": "exec_command", "arguments": "{}", "call_id": "c1"},
             {"type": "function_call_output", "call_id": "c1", "output": "ok"}]
    _, body = post(server, items)
    message = dict(iter_sse(body))["response.output_item.done"]["item"]
    assert message["type"] == "message"
    assert message["content"][0]["text"].endswith("```SAGE-RESULT\nstatus: done\nsummary: wrote a\n```")
    assert [(r.conversation, r.turn) for r in server.requests] == [("Ticket: T-1", 1)]


def test_errors_rate_limits_broken_streams_and_failed_responses(server):
    assert post(server, [user("- Ticket: T-2")])[0] == 429
    status, body = post(server, [user("- Ticket: T-3")])
    assert status == 200 and "response.completed" not in body
    status, body = post(server, [user("- Ticket: T-4")])
    assert dict(iter_sse(body))["response.failed"]["response"]["error"]["code"] == "insufficient_quota"
    assert post(server, [user("no ticket here")])[0] == 200  # default text


def test_it_listens_on_loopback_only_and_stops(server):
    assert server.url.startswith("http://127.0.0.1:")
    server.stop()
    with pytest.raises(OSError):
        post(server, [user("- Ticket: T-1")])
