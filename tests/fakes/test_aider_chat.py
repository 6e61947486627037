"""The fake chat completions for Aider: edits as text, counted the way Aider's chat grows."""

from __future__ import annotations

import json
import urllib.request

import pytest

from tests.fakes.aider_chat import FakeAiderServer, answer_starts, without_framing
from tests.fakes.model_server import Conversation, FinalText, RateLimited, Script, WriteFile

SEARCH_REPLACE = "Every *SEARCH/REPLACE block* must use this format"
TURNS = [WriteFile("f.txt", "bad\n"), FinalText("wrote", summary="wrote f"),
         WriteFile("f.txt", "good\n"), FinalText("fixed", summary="fixed f")]


def ask(server: FakeAiderServer, messages: list[dict]) -> str:
    body = json.dumps({"model": "fake", "stream": False, "messages": messages}).encode()
    request = urllib.request.Request(f"{server.url}/v1/chat/completions", data=body,
                                     headers={"content-type": "application/json"})
    with urllib.request.urlopen(request, timeout=10) as answer:
        return json.loads(answer.read())["choices"][0]["message"]["content"]


@pytest.fixture
def server():
    with FakeAiderServer(Script([Conversation("Ticket: F-1", TURNS), Conversation("Ticket: R-1", [RateLimited(0)])]),
                         lifetime_s=30) as running:
        yield running


def test_one_answer_holds_the_edit_and_the_final_text(server):
    text = ask(server, [{"role": "system", "content": SEARCH_REPLACE}, {"role": "user", "content": "- Ticket: F-1"}])
    assert text.startswith("f.txt\n```\n<<<<<<< SEARCH\n=======\nbad\n>>>>>>> REPLACE\n```\n")
    assert text.endswith("summary: wrote f\n```")


def test_the_next_answer_edits_what_the_first_wrote_and_ignores_aider_s_framing(server):
    messages = [{"role": "system", "content": SEARCH_REPLACE},
                {"role": "user", "content": "- Ticket: F-1"}, {"role": "assistant", "content": "(first answer)"},
                {"role": "user", "content": "I have *added these files to the chat* so you can go ahead"},
                {"role": "assistant", "content": "Ok, any changes I propose will be to those files."},
                {"role": "user", "content": "# F-1: fix the failing checks"}]
    text = ask(server, messages)
    assert text.startswith("f.txt\n```\n<<<<<<< SEARCH\nbad\n=======\ngood\n>>>>>>> REPLACE\n```\n")
    assert "summary: fixed f" in text


def test_without_search_replace_the_whole_file_is_listed(server):
    text = ask(server, [{"role": "system", "content": "file listing"}, {"role": "user", "content": "- Ticket: F-1"}])
    assert text.startswith("f.txt\n```\nbad\n```\n")


def test_a_rate_limit_is_a_429(server):
    with pytest.raises(urllib.error.HTTPError) as raised:
        ask(server, [{"role": "user", "content": "- Ticket: R-1"}])
    assert raised.value.code == 429


def test_answers_group_edits_with_the_final_text_after_them():
    assert answer_starts(TURNS) == [0, 2]
    assert answer_starts([FinalText("a"), WriteFile("x", "1"), WriteFile("y", "2"), RateLimited()]) == [0, 1, 3]
    assert without_framing([("user", "p"), ("user", "Here are summaries of some files"), ("assistant", "Ok."),
                            ("assistant", "real")]) == [("user", "p"), ("assistant", "real")]
