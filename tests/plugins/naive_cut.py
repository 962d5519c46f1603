"""A plugin for memeval's tests: the last `n` messages, cut by count alone,
the way a naive memory cuts: between a tool call and its results as
often as not. memeval's `malformed` check must catch what it builds, and
the gate must fail on it."""

import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "python"))

from memeval_plugin import Memory, buffer, serve  # noqa: E402


class NaiveCut(Memory):
    def setup(self, hello):
        self.n = int(hello.params.get("n", 3))
        self.users = {}

    def open(self, user, scenario, system_prompt):
        # Nothing persisted: the test's scenario has one session and the
        # registry holds every user.
        self.users.setdefault(user, [])

    def add(self, user, message):
        self.users[user].append(message.number)

    def context(self, user, query):
        return [buffer(self.users[user][-self.n:])]

    def flush(self, user):
        pass

    def close(self, user):
        pass


if __name__ == "__main__":
    serve(NaiveCut())
