"""Write a memeval plugin in Python: a memory that memeval replays and
measures exactly like its built-in strategies.

Subclass :class:`Memory`, implement ``open``, ``add``, ``context``,
``flush`` and ``close``, and call :func:`serve`. The standard library is
all this needs. The protocol is docs/PLUGIN_PROTOCOL.md in memeval's
repository; this module speaks it over stdio.

    from memeval_plugin import Memory, buffer, serve

    class LastTen(Memory):
        def open(self, user, scenario, system_prompt):
            self.messages = []
        def add(self, user, message):
            self.messages.append(message.number)
        def context(self, user, query):
            return [buffer(self.messages[-10:])]

    serve(LastTen())
"""

from __future__ import annotations

import json
import os
import sys
import traceback
import urllib.request
from dataclasses import dataclass, field
from typing import Any, Iterable, Optional, Sequence, Union

__all__ = [
    "Call",
    "Hello",
    "Memory",
    "Message",
    "PROTOCOL",
    "Query",
    "buffer",
    "chat",
    "embed",
    "other",
    "retrieved",
    "serve",
    "serve_http",
    "summary",
]

PROTOCOL = 1
__version__ = "0.1.0"


@dataclass
class Hello:
    """What memeval tells a plugin process when it starts it."""

    plugin: str
    params: dict
    seed: int
    state_dir: str
    model: dict
    openai_base_url: str
    openai_api_key: str
    memeval: str = ""
    protocol: int = PROTOCOL
    raw: dict = field(default_factory=dict, repr=False)


@dataclass
class Message:
    """A message of the user's conversation, as it is added."""

    number: int
    role: str
    content: str
    at: Optional[str]
    session: str
    #: memeval's count: the content's tokens plus the chat overhead.
    tokens: int
    #: An assistant message's tool calls, ``[{"id", "name", "arguments"}]``
    #: (scenario format 1.1), or None.
    tool_calls: Optional[list] = None
    #: A ``"tool"`` message's answered call, or None.
    tool_call_id: Optional[str] = None


@dataclass
class Query:
    """What a context is built for: the user message about to be answered
    (``number`` set; it is not in the memory yet) or a probe's question
    (``probe`` set; it is never added)."""

    content: str
    tokens: int
    number: Optional[int] = None
    probe: Optional[str] = None


@dataclass
class Call:
    """A model call the plugin made itself (not through the metering
    endpoint), added to the turn's cost."""

    kind: str  # "summarize", "embed", ...
    model: str
    input_tokens: int
    output_tokens: int = 0

    def to_json(self) -> dict:
        return {
            "kind": self.kind,
            "model": self.model,
            "input_tokens": self.input_tokens,
            "output_tokens": self.output_tokens,
        }


def summary(text: str, sources: Iterable[int] = ()) -> dict:
    """A summary section; ``sources`` are the message numbers it draws on."""
    return {"kind": "summary", "text": text, "sources": list(sources)}


def other(text: str, sources: Iterable[int] = ()) -> dict:
    """Any other text the memory puts in the prompt (counted like a summary)."""
    return {"kind": "other", "text": text, "sources": list(sources)}


def retrieved(items: Iterable[Union[tuple, dict]]) -> dict:
    """Retrieved messages: ``(source, text)`` or ``(source, text, score)``
    tuples, or dicts with those keys."""
    out = []
    for it in items:
        if isinstance(it, dict):
            out.append(it)
            continue
        d = {"source": it[0], "text": it[1]}
        if len(it) > 2 and it[2] is not None:
            d["score"] = it[2]
        out.append(d)
    return {"kind": "retrieved", "items": out}


def buffer(messages: Iterable[Union[int, tuple, dict, Message]]) -> dict:
    """Recent messages, oldest first: a message number (the message
    verbatim), a ``(number, content)`` pair (the message as the memory
    changed it), a :class:`Message`, or a dict. Where every one is verbatim,
    the section lists bare ``numbers`` (the short form, cheaper to send and
    read)."""
    out = []
    for m in messages:
        if isinstance(m, Message):
            out.append(m.number)
        elif isinstance(m, dict):
            out.append(m)
        elif isinstance(m, tuple):
            out.append({"number": m[0], "content": m[1]})
        else:
            out.append(int(m))
    if all(isinstance(m, int) for m in out):
        return {"kind": "buffer", "numbers": out}
    return {"kind": "buffer", "messages": [m if isinstance(m, dict) else {"number": m} for m in out]}


class Memory:
    """A memory, one per plugin process, holding any number of users.

    memeval calls, for each user: ``open``; then per message ``context``
    (for a user message, before it is added), ``add``; ``context`` with a
    probe's question at probe points; ``flush`` at session boundaries;
    ``close`` when its registry drops the user. A user opened again must
    be as it was at its last ``flush``: keep it under ``hello.state_dir``.
    """

    hello: Hello

    def setup(self, hello: Hello) -> None:
        """Called once, when the process starts."""

    def open(self, user: str, scenario: str, system_prompt: str) -> None:
        raise NotImplementedError

    def add(self, user: str, message: Message) -> Optional[Sequence[Call]]:
        raise NotImplementedError

    def context(self, user: str, query: Optional[Query]):
        """The sections to put in front of the model, in prompt order: a
        list of section dicts (see :func:`summary`, :func:`retrieved`,
        :func:`buffer`, :func:`other`), or a ``(sections, calls)`` pair.
        ``query`` is None for the memory's state between calls."""
        raise NotImplementedError

    def flush(self, user: str) -> None:
        """Persist everything of this user."""

    def close(self, user: str) -> None:
        """Free what is held of this user (it was flushed)."""

    def name(self) -> str:
        return type(self).__name__

    def version(self) -> str:
        return "0"


def _calls(calls) -> list:
    return [c.to_json() if isinstance(c, Call) else c for c in (calls or [])]


def _handle(memory: Memory, req: dict) -> dict:
    op = req.get("op")
    if op == "hello":
        memory.hello = Hello(
            plugin=req.get("plugin", ""),
            params=req.get("params") or {},
            seed=req.get("seed", 0),
            state_dir=req.get("state_dir", ""),
            model=req.get("model") or {},
            openai_base_url=req.get("openai_base_url", ""),
            openai_api_key=req.get("openai_api_key", ""),
            memeval=req.get("memeval", ""),
            protocol=req.get("protocol", PROTOCOL),
            raw=req,
        )
        memory.setup(memory.hello)
        return {"name": memory.name(), "version": memory.version()}
    user = req.get("user")
    if op == "open":
        memory.open(user, req.get("scenario", ""), req.get("system_prompt", ""))
        return {}
    if op == "add":
        m = req["message"]
        msg = Message(
            number=m["number"],
            role=m["role"],
            content=m["content"],
            at=m.get("at"),
            session=m.get("session", ""),
            tokens=m["tokens"],
            tool_calls=m.get("tool_calls"),
            tool_call_id=m.get("tool_call_id"),
        )
        return {"calls": _calls(memory.add(user, msg))}
    if op == "context":
        q = req.get("query")
        query = None
        if q is not None:
            query = Query(
                content=q["content"],
                tokens=q["tokens"],
                number=q.get("number"),
                probe=q.get("probe"),
            )
        out = memory.context(user, query)
        calls = []
        if isinstance(out, tuple):
            out, calls = out
        return {"sections": list(out or []), "calls": _calls(calls)}
    if op == "flush":
        memory.flush(user)
        return {}
    if op == "close":
        memory.close(user)
        return {}
    raise ValueError(f"unknown op {op!r}")


def serve(memory: Memory, stdin=None, stdout=None) -> None:
    """Answers memeval's requests on stdin until ``shutdown``. Anything the
    memory prints goes to stderr (memeval keeps it in the run's
    plugins/NAME.log), never into the protocol.

    Requests are answered in order, each before the next is read, so this
    declares the ``pipeline`` capability: memeval may send several requests
    in one write, and the replies to all that arrived together go back in
    one write (one wake-up of memeval for all)."""
    out = stdout or os.fdopen(os.dup(sys.stdout.fileno()), "w", encoding="utf-8")
    if stdout is None:
        # print() inside the memory must not reach the protocol's stream.
        sys.stdout = sys.stderr
    for batch in _batches(stdin):
        replies = []
        for line in batch:
            line = line.strip()
            if not line:
                continue
            req = json.loads(line)
            if req.get("op") == "shutdown":
                replies.append(json.dumps({"id": req.get("id"), "ok": True}) + "\n")
                out.write("".join(replies))
                out.flush()
                return
            reply = _reply(memory, req)
            if req.get("op") == "hello" and reply.get("ok"):
                reply["capabilities"] = dict(reply.get("capabilities") or {}, pipeline=True)
            replies.append(json.dumps(reply, ensure_ascii=False) + "\n")
        out.write("".join(replies))
        out.flush()


def _batches(stdin):
    """The request lines that arrive together, as lists: from the process's
    stdin, every complete line of each read; from a given stream, one line
    at a time."""
    if stdin is not None:
        for line in stdin:
            yield [line]
        return
    fd, buf = sys.stdin.fileno(), bytearray()
    while True:
        data = os.read(fd, 1 << 16)
        if not data:
            if buf.strip():
                yield [buf.decode("utf-8")]
            return
        buf += data
        if b"\n" not in data:
            continue
        *lines, rest = buf.split(b"\n")
        buf = bytearray(rest)
        yield [line.decode("utf-8") for line in lines]


def _reply(memory: Memory, req: dict) -> dict:
    rid = req.get("id")
    try:
        reply = {"id": rid, "ok": True}
        reply.update(_handle(memory, req))
    except Exception as e:  # reported to memeval, which fails the replay
        traceback.print_exc(file=sys.stderr)
        reply = {"id": rid, "ok": False, "error": f"{type(e).__name__}: {e}"}
    return reply


def serve_http(memory: Memory, host: str = "127.0.0.1", port: int = 0, ready=None) -> None:
    """Answers memeval's requests POSTed to ``http://host:port/`` (the
    protocol's http transport) until ``shutdown``. ``ready``, if given, is
    called with the port once the server listens (port 0: any free port)."""
    from http.server import BaseHTTPRequestHandler, HTTPServer

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self):
            n = int(self.headers.get("Content-Length", "0"))
            req = json.loads(self.rfile.read(n))
            if req.get("op") == "shutdown":
                reply = {"id": req.get("id"), "ok": True}
                self.server.done = True
            else:
                reply = _reply(memory, req)
            body = json.dumps(reply, ensure_ascii=False).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = HTTPServer((host, port), Handler)
    server.done = False
    if ready:
        ready(server.server_address[1])
    while not server.done:
        server.handle_request()


def _post(hello: Hello, path: str, body: dict) -> dict:
    req = urllib.request.Request(
        hello.openai_base_url.rstrip("/") + path,
        data=json.dumps(body).encode(),
        headers={
            "Content-Type": "application/json",
            "Authorization": f"Bearer {hello.openai_api_key}",
        },
    )
    with urllib.request.urlopen(req, timeout=600) as r:
        return json.loads(r.read())


def chat(hello: Hello, messages: list, max_tokens: int = 256, temperature: float = 0.1) -> str:
    """A chat completion through memeval's metering endpoint (counted,
    cached and rate-limited by the run); the reply's text."""
    r = _post(
        hello,
        "/chat/completions",
        {
            "model": hello.model.get("name", ""),
            "messages": messages,
            "max_tokens": max_tokens,
            "temperature": temperature,
        },
    )
    return r["choices"][0]["message"]["content"]


def embed(hello: Hello, texts: Sequence[str]) -> list:
    """Embeddings through memeval's metering endpoint: one vector a text."""
    r = _post(hello, "/embeddings", {"model": "", "input": list(texts)})
    return [d["embedding"] for d in sorted(r["data"], key=lambda d: d["index"])]
