"""The reference tutorial's tiered MemoryManager as a memeval plugin:
a hot buffer of raw recent messages, a summary of older ones, and
semantic retrieval over the whole history, with the tutorial's own
settings and choices (its summary prompt, "summarize the older half",
retrieval only past `buffer_message_limit` messages, scores above 0.75,
the top 3, and a buffer cut to the last `buffer_message_limit` messages
when a session is loaded).

Its model calls (summaries, embeddings) go to memeval's metering
endpoint, so memeval counts them, caches them and answers them with the
run's backend (offline or openai). It needs nothing but the standard
library and memeval_plugin.

    [plugins.tutorial]
    command = ["python3", "examples/plugins/tutorial.py"]
    params = { summary_trigger_tokens = 4000, buffer_message_limit = 20 }
"""

import json
import math
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "python"))

from memeval_plugin import Memory, buffer, chat, embed, retrieved, summary, serve  # noqa: E402

SUMMARY_PROMPT = """{prior}Please summarize the following conversation segment.
Capture: the user's identity/role (if mentioned), their primary goals,
key facts they've shared, decisions made, and any open questions.
Be dense and specific — this summary replaces the raw messages.
Conversation:
{conversation}
Summary:"""


def unit(v):
    n = math.sqrt(sum(x * x for x in v)) or 1.0
    return [x / n for x in v]


class Session:
    """One user's MemoryManager state: every message (for the vector
    index and storage), the hot buffer, and the latest summary."""

    def __init__(self, saved=None):
        saved = saved or {}
        self.messages = saved.get("messages", [])  # dicts: number, role, content, tokens, embedding
        self.summary = saved.get("summary")  # {"content", "covers"}
        self.buffer = saved.get("buffer", [])  # message numbers

    def by_number(self, n):
        return self.messages[n - 1]


class Tutorial(Memory):
    def setup(self, hello):
        p = hello.params
        self.trigger = int(p.get("summary_trigger_tokens", 4000))
        self.limit = int(p.get("buffer_message_limit", 20))
        self.top_k = int(p.get("retrieval_top_k", 5))
        self.min_score = float(p.get("min_score", 0.75))
        self.summary_max_tokens = int(p.get("summary_max_tokens", 500))
        self.sessions = {}

    def version(self):
        return "tutorial-1"

    def path(self, user):
        return os.path.join(self.hello.state_dir, f"{user}.json")

    def open(self, user, scenario, system_prompt):
        try:
            with open(self.path(user)) as f:
                saved = json.load(f)
        except FileNotFoundError:
            self.sessions[user] = Session()
            return
        s = Session(saved)
        # The tutorial's _load_session: the unsummarized messages, cut to
        # the last buffer_message_limit.
        covered = set(s.summary["covers"]) if s.summary else set()
        unsummarized = [m["number"] for m in s.messages if m["number"] not in covered]
        s.buffer = unsummarized[-self.limit:]
        self.sessions[user] = s

    def _add(self, s, number, role, content, tokens):
        if s.messages and s.messages[-1]["number"] >= number:
            return  # added already, when its context was asked
        vec = unit(embed(self.hello, [f"{role}: {content}"])[0])
        s.messages.append(
            {"number": number, "role": role, "content": content, "tokens": tokens, "embedding": vec}
        )
        s.buffer.append(number)
        if sum(s.by_number(n)["tokens"] for n in s.buffer) > self.trigger:
            self._summarize_old_buffer(s)

    def _summarize_old_buffer(self, s):
        split = len(s.buffer) // 2
        folded, s.buffer = s.buffer[:split], s.buffer[split:]
        if not folded:
            return
        prior = f"Prior summary:\n{s.summary['content']}\n\n" if s.summary else ""
        conversation = "\n".join(
            f"{s.by_number(n)['role'].upper()}: {s.by_number(n)['content']}" for n in folded
        )
        text = chat(
            self.hello,
            [{"role": "user", "content": SUMMARY_PROMPT.format(prior=prior, conversation=conversation)}],
            max_tokens=self.summary_max_tokens,
            temperature=0.1,
        )
        # The tutorial records only the newly folded ids; what the prior
        # summary covered carries on in its text.
        covers = (s.summary["covers"] if s.summary else []) + folded
        s.summary = {"content": text, "covers": covers}

    def add(self, user, message):
        self._add(self.sessions[user], message.number, message.role, message.content, message.tokens)

    def context(self, user, query):
        s = self.sessions[user]
        if query is not None and query.number is not None:
            # The tutorial adds the user's message before building the
            # context for it (memeval puts the message itself last).
            self._add(s, query.number, "user", query.content, query.tokens)
        sections = []
        if s.summary:
            sections.append(summary(s.summary["content"], s.summary["covers"]))
        if query is not None and len(s.messages) > self.limit:
            q = unit(embed(self.hello, [query.content])[0])
            scored = sorted(
                ((sum(a * b for a, b in zip(q, m["embedding"])), m["number"]) for m in s.messages),
                key=lambda x: (-x[0], x[1]),
            )[: self.top_k]
            in_buffer = set(s.buffer)
            hits = [(n, sc) for sc, n in scored if n not in in_buffer and sc > self.min_score][:3]
            if hits:
                sections.append(retrieved((n, s.by_number(n)["content"], sc) for n, sc in hits))
        shown = [n for n in s.buffer if query is None or n != query.number]
        sections.append(buffer(shown))
        return sections

    def flush(self, user):
        s = self.sessions[user]
        tmp = self.path(user) + ".tmp"
        with open(tmp, "w") as f:
            json.dump({"messages": s.messages, "summary": s.summary, "buffer": s.buffer}, f)
        os.replace(tmp, self.path(user))

    def close(self, user):
        del self.sessions[user]


if __name__ == "__main__":
    serve(Tutorial())
