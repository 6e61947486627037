"""The fake Gemini API answers like the one Gemini CLI talks to (checked here without the CLI)."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import Any

import pytest

from tests.fakes.gemini_api import FakeGeminiServer
from tests.fakes.model_server import ApiError, Conversation, FinalText, RateLimited, Script, WriteFile, iter_sse

SCRIPT = Script([
    Conversation("Ticket: G-1", [WriteFile("a.txt", "A\n"), FinalText("done", summary="wrote a")]),
    Conversation("Ticket: G-2", [RateLimited(0)]),
    Conversation("Ticket: G-3", [ApiError(401, message="API key not valid")]),
])
TOOLS = [{"functionDeclarations": [{"name": "write_file", "parametersJsonSchema": {
    "type": "object", "properties": {"file_path": {"type": "string"}, "content": {"type": "string"}}}}]}]


def post(server: FakeGeminiServer, contents: list[dict[str, Any]], method: str = "streamGenerateContent",
         tools: list | None = TOOLS) -> tuple[int, str]:
    body = json.dumps({"contents": contents, "tools": tools or [],
                       "systemInstruction": {"parts": [{"text": "Working directory: /w"}]}}).encode()
    url = f"{server.url}/v1beta/models/fake:{method}?alt=sse"
    request = urllib.request.Request(url, data=body, headers={"content-type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=10) as answer:
            return answer.status, answer.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


def user(text: str) -> dict[str, Any]:
    return {"role": "user", "parts": [{"text": text}]}


@pytest.fixture
def server():
    with FakeGeminiServer(SCRIPT, lifetime_s=30) as running:
        yield running


def test_a_write_calls_write_file_then_the_final_text_follows_the_function_response(server):
    status, body = post(server, [user("- Ticket: G-1")])
    (_, chunk), = iter_sse(body.replace("\r\n", "\n"))
    call = chunk["candidates"][0]["content"]["parts"][0]["functionCall"]
    assert status == 200 and call == {"name": "write_file", "args": {"file_path": "/w/a.txt", "content": "A\n"}}
    assert chunk["usageMetadata"]["totalTokenCount"] == 1100
    answered = [user("- Ticket: G-1"), {"role": "model", "parts": [{"functionCall": call}]},
                {"role": "user", "parts": [{"functionResponse": {"name": "write_file", "response": {}}}]}]
    (_, chunk), = iter_sse(post(server, answered)[1].replace("\r\n", "\n"))
    assert "summary: wrote a" in chunk["candidates"][0]["content"]["parts"][0]["text"]


def test_errors_come_in_google_s_shape(server):
    status, body = post(server, [user("- Ticket: G-2")])
    assert status == 429 and json.loads(body)["error"]["status"] == "RESOURCE_EXHAUSTED"
    status, body = post(server, [user("- Ticket: G-3")])
    assert status == 401 and json.loads(body)["error"] == {"code": 401, "message": "API key not valid",
                                                           "status": "UNAUTHENTICATED"}


def test_side_questions_without_tools_get_the_default_text(server):
    status, body = post(server, [user("- Ticket: G-1 is it done?")], method="generateContent", tools=None)
    assert status == 200 and json.loads(body)["candidates"][0]["content"]["parts"][0]["text"] == "OK"
    assert server.requests[-1].answer == "default"
