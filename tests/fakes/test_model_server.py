"""The scripted fake model server: which turn a request gets, and the two wire formats."""

from __future__ import annotations

import json
import threading
import time
import urllib.error
import urllib.request
from typing import Any

import pytest

from tests.fakes.model_server import (
    ApiError,
    Conversation,
    FakeModelServer,
    FinalText,
    RateLimited,
    Script,
    ToolCall,
    WriteFile,
    iter_sse,
)

SCRIPT = Script([
    Conversation("Ticket: TKT-A", [WriteFile("a.txt", "A\n"), FinalText("done", summary="added a.txt"),
                                   ToolCall("bash", {"command": "ls"})]),
    Conversation("Ticket: TKT-R", [RateLimited(7)]),
    Conversation("Ticket: TKT-X", [ApiError(401, "authentication_error", "invalid x-api-key")]),
], default_text="a title")
ANTHROPIC_TOOLS = [{"name": "Read", "input_schema": {"properties": {"file_path": {}}}},
                   {"name": "Write", "input_schema": {"properties": {"file_path": {}, "content": {}}}}]
OPENAI_TOOLS = [{"type": "function", "function": {"name": "write", "parameters": {"properties": {
    "filePath": {}, "content": {}}}}}, {"type": "function", "function": {"name": "bash", "parameters": {}}}]


@pytest.fixture
def server():
    with FakeModelServer(SCRIPT, lifetime_s=60) as running:
        yield running


def post(server: FakeModelServer, path: str, body: dict[str, Any]) -> tuple[int, dict[str, str], str]:
    request = urllib.request.Request(server.url + path, data=json.dumps(body).encode(),
                                     headers={"content-type": "application/json"}, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, dict(response.headers), response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers), error.read().decode()


def anthropic(messages: list[dict[str, Any]], *, tools: bool = True, stream: bool = True) -> dict[str, Any]:
    system = [{"type": "text", "text": "Primary working directory: /w/slot-0"}]
    return {"model": "claude-x", "stream": stream, "system": system, "messages": messages,
            **({"tools": ANTHROPIC_TOOLS} if tools else {})}


def test_a_conversation_goes_write_then_final_text_in_anthropic_sse(server):
    prompt = {"role": "user", "content": [{"type": "text", "text": "<reminder/>"},
                                          {"type": "text", "text": "# TKT-A\n- Ticket: TKT-A"}]}
    status, headers, body = post(server, "/v1/messages?beta=true", anthropic([prompt]))
    assert status == 200 and headers["content-type"] == "text/event-stream"
    events = list(iter_sse(body))
    assert [name for name, _ in events][:2] == ["message_start", "content_block_start"]
    tool = next(data for name, data in events if name == "content_block_start")["content_block"]
    delta = next(data for name, data in events if name == "content_block_delta")["delta"]
    arguments = json.loads(delta["partial_json"])
    assert tool["name"] == "Write" and arguments == {"file_path": "/w/slot-0/a.txt", "content": "A\n"}
    assert events[-2][1]["delta"]["stop_reason"] == "tool_use"

    call = {"type": "tool_use", "id": "t", "name": "Write", "input": {}}
    history = [prompt, {"role": "assistant", "content": [call]},
               {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t", "content": "ok"}]}]
    status, _, body = post(server, "/v1/messages", anthropic(history, stream=False))
    message = json.loads(body)
    assert status == 200 and message["stop_reason"] == "end_turn"
    assert message["content"][0]["text"] == "done\n\n```SAGE-RESULT\nstatus: done\nsummary: added a.txt\n```"
    assert [(r.conversation, r.turn, r.answer) for r in server.requests] == [
        ("Ticket: TKT-A", 0, "write_file"), ("Ticket: TKT-A", 1, "final_text")]


def test_a_continued_session_counts_from_the_newest_matching_prompt(server):
    done = [{"role": "user", "content": "- Ticket: TKT-A"}, {"role": "assistant", "content": "x"},
            {"role": "user", "content": "ok"}, {"role": "assistant", "content": "y"}]
    fix = [*done, {"role": "user", "content": "# TKT-A: fix the failing checks\nFAIL"},
           {"role": "system", "content": "# Environment update\n - Primary working directory: /w/slot-1 "
                                         "(was /w/slot-0)"}]
    post(server, "/v1/messages", anthropic(fix, stream=False))
    other = [*done, {"role": "user", "content": "- Ticket: TKT-R"}]
    status, headers, _ = post(server, "/v1/messages", anthropic(other, stream=False))
    recorded = server.requests
    assert (recorded[0].turn, recorded[0].answer) == (2, "tool_call")  # the fix prompt names no "Ticket: "
    assert recorded[0].last_user_text.startswith("# TKT-A: fix") and recorded[0].assistant_messages == 2
    assert (recorded[1].conversation, status, headers["retry-after"]) == ("Ticket: TKT-R", 429, "7")


def test_side_requests_and_unknown_prompts_get_the_default_answer(server):
    _, _, body = post(server, "/v1/messages", anthropic([{"role": "user", "content": "- Ticket: TKT-A"}],
                                                        tools=False, stream=False))
    assert json.loads(body)["content"][0]["text"] == "a title"
    _, _, body = post(server, "/v1/messages/count_tokens", {"messages": []})
    assert json.loads(body) == {"input_tokens": 1000}
    _, _, body = post(server, "/v1/messages", anthropic([{"role": "user", "content": "hello"}], stream=False))
    assert json.loads(body)["content"][0]["text"] == "a title"
    assert [r.answer for r in server.requests] == ["default", "default", "default"]


def test_a_rate_limit_or_error_persists_for_its_conversation(server):
    messages = [{"role": "user", "content": "- Ticket: TKT-R"}, {"role": "assistant", "content": "retry"},
                {"role": "user", "content": "again"}]
    status, _, body = post(server, "/v1/messages", anthropic(messages))
    assert status == 429 and json.loads(body)["error"]["type"] == "rate_limit_error"
    status, _, body = post(server, "/v1/chat/completions", {"messages": [{"role": "user", "content": "Ticket: TKT-X"}],
                                                            "tools": OPENAI_TOOLS})
    assert status == 401 and json.loads(body)["error"]["message"] == "invalid x-api-key"


def test_openai_chat_completions_stream_tool_calls_with_the_clis_parameter_names(server):
    body = {"model": "m", "stream": True, "tools": OPENAI_TOOLS, "messages": [
        {"role": "system", "content": "<env>\n  Working directory: /w/slot-1\n</env>"},
        {"role": "user", "content": [{"type": "text", "text": "- Ticket: TKT-A"}]}]}
    status, _, text = post(server, "/v1/chat/completions", body)
    chunks = [data for _, data in iter_sse(text)]
    assert status == 200 and chunks[-1] == "[DONE]"
    call = next(c for c in chunks[:-1] if c["choices"] and "tool_calls" in c["choices"][0]["delta"])
    function = call["choices"][0]["delta"]["tool_calls"][0]["function"]
    assert function["name"] == "write"
    assert json.loads(function["arguments"]) == {"filePath": "/w/slot-1/a.txt", "content": "A\n"}
    assert chunks[-2]["usage"]["prompt_tokens"] == 1000


def test_a_final_text_can_wait_for_another_conversations():
    ordered = Script([Conversation("Ticket: A", [FinalText("a", after="Ticket: F")]),
                      Conversation("Ticket: F", [FinalText("f")])])
    with FakeModelServer(ordered, lifetime_s=60) as fake:
        answers: list[str] = []
        waiting = threading.Thread(target=lambda: answers.append(post(fake, "/v1/messages", anthropic(
            [{"role": "user", "content": "Ticket: A"}], stream=False))[2]))
        waiting.start()
        waiting.join(0.5)
        assert waiting.is_alive() and not answers  # A's answer waits for F's
        post(fake, "/v1/messages", anthropic([{"role": "user", "content": "Ticket: F"}], stream=False))
        waiting.join(10)
        assert json.loads(answers[0])["content"][0]["text"] == "a"
        assert [r.conversation for r in fake.requests] == ["Ticket: A", "Ticket: F"]


def test_the_server_stops_by_itself():
    server = FakeModelServer(SCRIPT, lifetime_s=0.3).start()
    time.sleep(0.8)
    with pytest.raises(OSError):
        urllib.request.urlopen(server.url + "/v1/models", timeout=2)
    server.stop()  # stopping again is harmless


def test_a_script_reads_from_json():
    script = Script.from_json({"default_text": "t", "conversations": [{"match": "Ticket: Q", "turns": [
        {"write_file": ["q.txt", "Q"]}, {"tool_call": ["bash", {"command": "ls"}]},
        {"final_text": "ok", "summary": "s"}, {"rate_limited": 3}, {"api_error": 500}]}]})
    turns = script.conversations[0].turns
    assert turns[0] == WriteFile("q.txt", "Q") and turns[1] == ToolCall("bash", {"command": "ls"})
    assert turns[2] == FinalText("ok", "s") and turns[3] == RateLimited(3.0)
    assert isinstance(turns[4], ApiError) and turns[4].status == 500
