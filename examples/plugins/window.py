"""memeval's built-in `window` strategy, rewritten as a plugin: the most
recent messages that fit `max_tokens`; older ones are forgotten, a tool
call with its results (a window never starts at a tool's result).

On every shipped scenario its turns.csv, probes.csv and results.json equal
the built-in window's (tests/plugins.rs): the protocol carries everything
a strategy decides.

    [plugins.pywindow]
    command = ["python3", "examples/plugins/window.py"]
    params = { max_tokens = 4000 }
"""

import json
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "python"))

from memeval_plugin import Memory, buffer, serve  # noqa: E402


class User:
    """One user's window: (number, tokens, is a tool result) of every
    message, and where the window starts. Tokens are memeval's counts, chat
    overhead included."""

    def __init__(self, messages=None, start=0):
        self.messages = messages or []
        self.start = start
        self.tokens = sum(m[1] for m in self.messages[start:])

    def fits(self, budget, extra=0):
        """Where the window would start with `extra` tokens more at its end:
        the oldest exchange dropped while over budget (a call with its
        results), at least the newest kept."""
        start, total, n = self.start, self.tokens + extra, len(self.messages) + (1 if extra else 0)
        while total > budget:
            nxt = start + 1
            while nxt < len(self.messages) and self.messages[nxt][2]:
                nxt += 1
            if nxt >= n:
                break
            total -= sum(m[1] for m in self.messages[start:nxt])
            start = nxt
        return start, total

    def add(self, number, tokens, is_result, budget):
        self.messages.append((number, tokens, is_result))
        self.tokens += tokens
        self.start, self.tokens = self.fits(budget)


class Window(Memory):
    def setup(self, hello):
        self.budget = int(hello.params.get("max_tokens", 4000))
        self.users = {}

    def path(self, user):
        return os.path.join(self.hello.state_dir, f"{user}.json")

    def open(self, user, scenario, system_prompt):
        try:
            with open(self.path(user)) as f:
                saved = json.load(f)
            self.users[user] = User([tuple(m) for m in saved["messages"]], saved["start"])
        except FileNotFoundError:
            self.users[user] = User()

    def add(self, user, message):
        self.users[user].add(message.number, message.tokens, message.role == "tool", self.budget)

    def context(self, user, query):
        u = self.users[user]
        start = u.start
        if query is not None and query.number is not None:
            # The message being answered is not added yet, but it is in
            # the call: the window makes room for it.
            start, _ = u.fits(self.budget, query.tokens)
        return [buffer(m[0] for m in u.messages[start:])]

    def flush(self, user):
        u = self.users[user]
        tmp = self.path(user) + ".tmp"
        with open(tmp, "w") as f:
            json.dump({"messages": u.messages, "start": u.start}, f)
        os.replace(tmp, self.path(user))

    def close(self, user):
        del self.users[user]


if __name__ == "__main__":
    serve(Window())
