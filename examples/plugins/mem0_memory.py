"""mem0 (PyPI `mem0ai`), measured by memeval: each message goes to
`Memory.add` (with its number as metadata, for provenance), and a call's
context is the newest `recent` messages plus what `Memory.search` finds
for the query. mem0's LLM and embedder are memeval's metering endpoint
(OpenAI-compatible), its vector store a local on-disk Qdrant in
`state_dir`, so a user comes back from disk after a restart.

params:
  infer       true: mem0 extracts facts with its LLM (needs a model that
              follows its JSON prompts); false: each message is stored as
              it is (embeddings only)
  recent      raw recent messages in every context (default 6)
  top_k       memories searched (default 5); threshold: their least
              score (default 0.1, mem0's)

    [plugins.mem0]
    command = [".venv-mem0/bin/python", "examples/plugins/mem0_memory.py"]
    params = { infer = false, recent = 6, top_k = 5 }
    processes = 1   # one Qdrant store a replay number: one process
"""

import os
import sys

# No telemetry: memeval's runs are offline.
os.environ.setdefault("MEM0_TELEMETRY", "False")
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "python"))

from memeval_plugin import Memory, buffer, retrieved, serve  # noqa: E402


class Mem0Memory(Memory):
    def setup(self, hello):
        from mem0 import Memory as Mem0

        p = hello.params
        self.infer = bool(p.get("infer", False))
        self.recent = int(p.get("recent", 6))
        self.top_k = int(p.get("top_k", 5))
        self.threshold = float(p.get("threshold", 0.1))
        embedder = hello.raw.get("embedder") or {}
        dim = int(embedder.get("dim") or 1536)
        endpoint = {"openai_base_url": hello.openai_base_url, "api_key": hello.openai_api_key}
        self.mem = Mem0.from_config(
            {
                "llm": {
                    "provider": "openai",
                    "config": {"model": hello.model.get("name"), "temperature": 0, **endpoint},
                },
                "embedder": {
                    "provider": "openai",
                    "config": {
                        "model": embedder.get("model") or "text-embedding-3-small",
                        "embedding_dims": dim,
                        **endpoint,
                    },
                },
                "vector_store": {
                    "provider": "qdrant",
                    "config": {
                        "collection_name": "memeval",
                        "path": os.path.join(hello.state_dir, "qdrant"),
                        "on_disk": True,
                        "embedding_model_dims": dim,
                    },
                },
                "history_db_path": os.path.join(hello.state_dir, "history.db"),
            }
        )
        self.numbers = {}

    def name(self):
        return "mem0"

    def version(self):
        from importlib.metadata import version

        return version("mem0ai")

    def open(self, user, scenario, system_prompt):
        # Recent message numbers come back from mem0's own store.
        found = self.mem.get_all(filters={"user_id": user}, top_k=100000).get("results", [])
        numbers = sorted({int(m["metadata"]["number"]) for m in found if "number" in (m.get("metadata") or {})})
        self.numbers[user] = numbers

    def add(self, user, message):
        self.mem.add(
            [{"role": message.role, "content": message.content}],
            user_id=user,
            metadata={"number": message.number, "session": message.session},
            infer=self.infer,
        )
        self.numbers[user].append(message.number)

    def context(self, user, query):
        numbers = self.numbers[user]
        recent = numbers[-self.recent:] if self.recent else []
        sections = []
        if query is not None:
            hits = self.mem.search(
                query.content, top_k=self.top_k, filters={"user_id": user}, threshold=self.threshold
            ).get("results", [])
            shown = set(recent)
            items = [
                (int(h["metadata"]["number"]), h["memory"], h.get("score"))
                for h in hits
                if int(h["metadata"]["number"]) not in shown
            ]
            if items:
                sections.append(retrieved(items))
        sections.append(buffer(recent))
        return sections

    def flush(self, user):
        pass  # Qdrant on disk and mem0's SQLite history write as they go

    def close(self, user):
        self.numbers.pop(user, None)


if __name__ == "__main__":
    serve(Mem0Memory())
