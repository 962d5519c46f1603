"""A plugin for memeval's tests: the Python window (examples/plugins/
window.py), which misbehaves as its params say, at one user's message.

params: fault  = "garbage" | "wrong_id" | "hang" | "exit" | "error" |
                 "bad_kind" | "bad_source" | "leak" | "" (none)
        user   = the user whose replay misbehaves ("" for every user)
        at     = the message number (of an add, or a context asked for it)
        log_ops = true: every request's op and user on stderr
        pipeline = true: declare the pipeline capability (requests still
                   read and answered one line at a time)
        http   = true: serve over http, writing the port to `port_file`
"""

import json
import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "..", "python"))
sys.path.insert(0, os.path.join(HERE, "..", "..", "examples", "plugins"))

import memeval_plugin  # noqa: E402
from window import Window  # noqa: E402


class Faulty(Window):
    def setup(self, hello):
        super().setup(hello)
        p = hello.params
        self.fault = p.get("fault", "")
        self.victim = p.get("user", "")
        self.at = int(p.get("at", 0))
        print(f"key seen: {os.environ.get('MEMEVAL_TEST_KEY', '(none)')}", file=sys.stderr)
        print(f"base url: {os.environ.get('OPENAI_BASE_URL', '(none)')}", file=sys.stderr)

    def hit(self, user, number):
        return self.fault and number == self.at and self.victim in ("", user)

    def add(self, user, message):
        if self.hit(user, message.number) and self.fault == "error":
            raise RuntimeError("the memory store is full")
        return super().add(user, message)

    def context(self, user, query):
        # The buffer in the protocol's long form (the SDK writes bare
        # numbers), so that the tests that run this plugin check that form.
        sections = [
            {"kind": "buffer", "messages": [{"number": n} for n in s["numbers"]]}
            if "numbers" in s else s
            for s in super().context(user, query)
        ]
        number = query.number if query is not None else None
        if number is not None and self.hit(user, number):
            if self.fault == "bad_kind":
                sections.append({"kind": "graph", "text": "?"})
            elif self.fault == "bad_source":
                sections.append({"kind": "retrieved", "items": [{"source": "twelve", "text": "x"}]})
        if self.fault == "leak" and self.victim in ("", user) and query is not None and query.probe:
            # Another user's message, and a number this user never sent.
            sections.append(memeval_plugin.retrieved([
                {"source": 1, "text": "someone else's secret", "user": "somebody-else"},
                {"source": 99999, "text": "a message from nowhere"},
            ]))
        return sections


def main():
    memory = Faulty()
    out = os.fdopen(os.dup(sys.stdout.fileno()), "w")
    sys.stdout = sys.stderr
    log_ops = False
    for line in sys.stdin:
        req = json.loads(line)
        if req.get("op") == "hello":
            log_ops = bool((req.get("params") or {}).get("log_ops"))
        if log_ops:
            print(f"op {req.get('op')} user {req.get('user', '')}", file=sys.stderr)
        if req.get("op") == "shutdown":
            out.write(json.dumps({"id": req["id"], "ok": True}) + "\n")
            out.flush()
            return
        reply = memeval_plugin._reply(memory, req)
        if req.get("op") == "hello" and (req.get("params") or {}).get("pipeline"):
            reply["capabilities"] = {"pipeline": True}
        m = req.get("message") or req.get("query") or {}
        number = m.get("number") if isinstance(m, dict) else None
        if number is not None and req.get("op") in ("add", "context") and memory.hit(req.get("user"), number):
            f = memory.fault
            print(f"misbehaving now: {f} at message {number}", file=sys.stderr)
            sys.stderr.flush()
            if f == "garbage":
                out.write("Loading model weights... done\n")
                out.flush()
                continue
            if f == "wrong_id":
                reply["id"] = req["id"] + 7
            if f == "hang":
                time.sleep(3600)
            if f == "exit":
                os._exit(3)
        out.write(json.dumps(reply) + "\n")
        out.flush()


if __name__ == "__main__":
    if "--http" in sys.argv:
        port_file = sys.argv[sys.argv.index("--http") + 1]

        def ready(port):
            with open(port_file + ".tmp", "w") as f:
                f.write(str(port))
            os.replace(port_file + ".tmp", port_file)

        memeval_plugin.serve_http(Faulty(), ready=ready)
    else:
        main()
