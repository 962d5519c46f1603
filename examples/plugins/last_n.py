"""The README's plugin: the last `n` messages, persistence included.
Needs memeval_plugin installed (`pip install .` or `pip install ./python`)."""

import json, os
from memeval_plugin import Memory, buffer, serve

class LastN(Memory):
    """The last `n` messages: a complete plugin, persistence included."""
    def setup(self, hello):
        self.n = int(hello.params.get("n", 10))
        self.users = {}
    def path(self, user):
        return os.path.join(self.hello.state_dir, user + ".json")
    def open(self, user, scenario, system_prompt):
        try:
            self.users[user] = json.load(open(self.path(user)))
        except FileNotFoundError:
            self.users[user] = []
    def add(self, user, message):
        self.users[user].append(message.number)
    def context(self, user, query):
        return [buffer(self.users[user][-self.n:])]
    def flush(self, user):
        json.dump(self.users[user], open(self.path(user), "w"))
    def close(self, user):
        del self.users[user]

serve(LastN())
