"""`FakeModelServer` for Aider: chat completions whose edits are in the text, not tool calls.

Aider offers the model no tools: it asks for edits written in its edit format and applies
them itself. So here a `WriteFile` turn is rendered as an edit block in the answer text -
a SEARCH/REPLACE block when the system prompt asks for them (searching for what the
conversation's earlier WriteFile of that path wrote, or nothing, which creates the file), else the whole file after its path (Aider's "whole"
format) - and the `FinalText` that follows it in the script joins the same answer, since
Aider makes one model call per message when its edits apply cleanly.

Everything else is `model_server.py`: the script, the turn chosen by the newest user text
naming a conversation and the assistant answers after it, 429/`ApiError` answers, the
request log, the lifetime. Aider is pointed here with
`--model openai/NAME --openai-api-base <server.url>/v1` and `OPENAI_API_KEY=x`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import Any

from tests.fakes.model_server import (
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
    openai_chunks,
    openai_completion,
    openai_view,
)

# Aider frames the chat with messages of its own, each answered by a canned "Ok..." from the
# "assistant": they are not answers of the model, so they do not count as turns
FRAMING = ("I have *added these files to the chat*", "Here are summaries of some files", "I am not sharing",
           "I switched to a new code base", "Here are some READ ONLY files")


def without_framing(messages: Sequence[tuple[str, str]]) -> list[tuple[str, str]]:
    kept: list[tuple[str, str]] = []
    skip_answer = False
    for role, text in messages:
        if role == "user" and text.lstrip().startswith(FRAMING):
            skip_answer = True
            continue
        if role == "assistant" and skip_answer:
            skip_answer = False
            continue
        skip_answer = False
        kept.append((role, text))
    return kept


def edit_block(turn: WriteFile, system: str, before: str = "") -> str:
    """The edit that makes `turn.path` hold `turn.content`, in the format the system prompt asks
    for; `before` is what the file holds now ("" creates it)."""
    content = _line_ended(turn.content)
    if "SEARCH/REPLACE" in system:
        search = _line_ended(before) if before else ""
        return f"{turn.path}\n```\n<<<<<<< SEARCH\n{search}=======\n{content}>>>>>>> REPLACE\n```\n"
    return f"{turn.path}\n```\n{content}```\n"


def _line_ended(text: str) -> str:
    return text if text.endswith("\n") else text + "\n"


def written_before(turns: Sequence[Any], position: int, path: str) -> str:
    """What the conversation's earlier WriteFile turns left in `path` ("" if none wrote it)."""
    earlier = [turn for turn in turns[:position] if isinstance(turn, WriteFile) and turn.path == path]
    return earlier[-1].content if earlier else ""


def answer_starts(turns: Sequence[Any]) -> list[int]:
    """Where each of Aider's answers starts in a conversation's turns: edits and the final text
    after them make one answer, so the n-th answer (n assistant messages so far) starts here."""
    starts = []
    position = 0
    while position < len(turns):
        starts.append(position)
        if isinstance(turns[position], WriteFile):
            while position < len(turns) and isinstance(turns[position], WriteFile):
                position += 1
            if position < len(turns) and isinstance(turns[position], FinalText):
                position += 1
        else:
            position += 1
    return starts


def answer_text(turns: Sequence[Any], index: int, system: str) -> str:
    """The text of the answer that starts at turn `index`: its edits, then the final text after them."""
    parts = []
    position = index
    while position < len(turns) and isinstance(turns[position], WriteFile):
        if turns[position].text:
            parts.append(turns[position].text)
        parts.append(edit_block(turns[position], system, written_before(turns, position, turns[position].path)))
        position += 1
    if position < len(turns) and isinstance(turns[position], FinalText):
        parts.append(turns[position].full_text())
    return "\n".join(parts)


class FakeAiderServer(FakeModelServer):
    """Chat completions for Aider; the script's WriteFile turns become edit blocks in the text."""

    def __init__(self, script: Script, **options: Any) -> None:
        super().__init__(script, **options)
        self._httpd.RequestHandlerClass = _handler_for(self)


def _handler_for(server: FakeAiderServer) -> type[_AiderHandler]:
    class Handler(_AiderHandler):
        fake = server

    return Handler


class _AiderHandler(_Handler):
    def _answer(self, api: str, body: dict[str, Any], view: RequestView) -> None:
        if api != "openai":
            super()._answer(api, body, view)
            return
        view = openai_view(body)  # every request of Aider's is a "main" request, though it offers no tools
        view = replace(view, has_tools=True, messages=without_framing(view.messages))
        choice = choose_turn(self.fake.script, view)
        if choice.conversation is not None and not isinstance(choice.turn, (RateLimited, ApiError)):
            starts = answer_starts(choice.conversation.turns)  # turn_index counted answers so far
            index = starts[choice.turn_index] if choice.turn_index < len(starts) else len(choice.conversation.turns)
            turns = choice.conversation.turns
            choice = replace(choice, turn_index=index, turn=turns[index] if index < len(turns) else None)
        turn = choice.turn
        answer = ("default" if turn is None else "write_file" if isinstance(turn, WriteFile)
                  else "final_text" if isinstance(turn, FinalText)
                  else "rate_limited" if isinstance(turn, RateLimited) else "api_error")
        recorded = RecordedRequest(
            api, self.path, body, choice.conversation.match if choice.conversation else None, choice.turn_index,
            answer, user_texts=[text for role, text in view.messages if role == "user"],
            assistant_messages=sum(1 for role, _ in view.messages if role == "assistant"))
        if not self.fake.record(recorded):
            self._send_json(503, error_body(api, 503, "server_error", "the fake model server's budget is spent"))
        elif isinstance(turn, RateLimited):
            self._send_json(429, error_body(api, 429, "rate_limit_exceeded", turn.message),
                            {"retry-after": f"{turn.retry_after_s:g}"})
        elif isinstance(turn, ApiError):
            self._send_json(turn.status, error_body(api, turn.status, turn.kind, turn.message))
        else:
            text = (answer_text(choice.conversation.turns, choice.turn_index, view.system)
                    if choice.conversation is not None and turn is not None else self.fake.script.default_text)
            chunks = openai_chunks(FinalText(text), view, text, str(body.get("model") or self.fake.model))
            if body.get("stream"):
                self._send_sse([(None, chunk) for chunk in chunks], done=True)
            else:
                self._send_json(200, openai_completion(chunks))
