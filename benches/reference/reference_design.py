#!/usr/bin/env python3
"""The reference tutorial's tiered MemoryManager, reproduced faithfully with
a zero-cost fake model, to measure what the design itself costs per
exchange (user message + reply) beside memeval's hybrid strategy.

Faithful: SQLAlchemy with one commit per message, tiktoken counting (the
whole buffer recounted after every message), a FAISS IndexFlatIP of 1536
dimensions searched for every call, the tutorial's buffer, summary and
retrieval rules. Fake: the model. The embedding is a deterministic
pseudo-random unit vector and the summary a fixed sentence, both nearly
free, so the time measured is the design's, not a model's.

Not part of the test suite. Run it with benches/reference/run.sh, which
sets up a virtualenv from PyPI and points tiktoken at the BPE file that
tiktoken-rs ships (no other network).

usage: reference_design.py SCENARIO.json EXCHANGES... --bpe o200k_base.tiktoken
"""

import argparse
import hashlib
import json
import os
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import faiss
import numpy as np
from sqlalchemy import JSON, Column, DateTime, Integer, String, Text, create_engine
from sqlalchemy.orm import declarative_base, sessionmaker

BUFFER_MESSAGE_LIMIT = 20
SUMMARY_TRIGGER_TOKENS = 4000
RETRIEVAL_TOP_K = 5
EMBEDDING_DIM = 1536


def load_encoding(bpe_path):
    import tiktoken
    import tiktoken.load
    import tiktoken_ext.openai_public as public

    ranks = tiktoken.load.load_tiktoken_bpe(bpe_path)
    public.load_tiktoken_bpe = lambda *args, **kwargs: ranks
    return tiktoken.get_encoding("o200k_base")


@dataclass
class Message:
    role: str
    content: str
    timestamp: datetime = field(default_factory=datetime.utcnow)
    token_count: int = 0
    message_id: str = None
    session_id: str = None
    embedding: list = None


@dataclass
class ConversationSummary:
    content: str
    covers_message_ids: list
    created_at: datetime = field(default_factory=datetime.utcnow)
    token_count: int = 0
    session_id: str = None


class TokenCounter:
    def __init__(self, encoding):
        self.encoding = encoding
        self.message_overhead = 3

    def count_text(self, text):
        return len(self.encoding.encode(text))

    def count_message(self, message):
        return self.count_text(message.content) + self.message_overhead

    def count_messages(self, messages):
        return sum(self.count_message(m) for m in messages) + 3


Base = declarative_base()


class MessageRecord(Base):
    __tablename__ = "messages"
    id = Column(String, primary_key=True)
    session_id = Column(String, nullable=False, index=True)
    role = Column(String, nullable=False)
    content = Column(Text, nullable=False)
    timestamp = Column(DateTime)
    token_count = Column(Integer, default=0)
    embedding_json = Column(Text, nullable=True)


class SummaryRecord(Base):
    __tablename__ = "summaries"
    id = Column(String, primary_key=True, default=lambda: str(uuid.uuid4()))
    session_id = Column(String, nullable=False, index=True)
    content = Column(Text, nullable=False)
    covers_message_ids = Column(JSON, nullable=False)
    created_at = Column(DateTime)
    token_count = Column(Integer, default=0)


class ConversationStore:
    def __init__(self, url):
        self.engine = create_engine(url)
        Base.metadata.create_all(self.engine)
        self.SessionLocal = sessionmaker(bind=self.engine)

    def save_message(self, m):
        with self.SessionLocal() as s:
            s.add(MessageRecord(id=m.message_id, session_id=m.session_id, role=m.role,
                                content=m.content, timestamp=m.timestamp,
                                token_count=m.token_count,
                                embedding_json=json.dumps(m.embedding) if m.embedding else None))
            s.commit()

    def save_summary(self, summary):
        with self.SessionLocal() as s:
            s.add(SummaryRecord(session_id=summary.session_id, content=summary.content,
                                covers_message_ids=summary.covers_message_ids,
                                created_at=summary.created_at, token_count=summary.token_count))
            s.commit()


def fake_embedding(text):
    seed = int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "little")
    v = np.random.default_rng(seed).standard_normal(EMBEDDING_DIM).astype(np.float32)
    return v / np.linalg.norm(v)


class VectorMemory:
    def __init__(self):
        self.index = faiss.IndexFlatIP(EMBEDDING_DIM)
        self.messages = []

    def add_message(self, message):
        embedding = fake_embedding(f"{message.role}: {message.content}")
        message.embedding = embedding.tolist()
        self.index.add(embedding.reshape(1, -1))
        self.messages.append(message)

    def search(self, query, top_k=5):
        if not self.messages:
            return []
        q = fake_embedding(query)
        k = min(top_k, len(self.messages))
        scores, indices = self.index.search(q.reshape(1, -1), k)
        out = [(self.messages[i], float(s)) for s, i in zip(scores[0], indices[0]) if i >= 0]
        return sorted(out, key=lambda x: x[1], reverse=True)


class MemoryManager:
    def __init__(self, session_id, store, counter):
        self.session_id = session_id
        self.store = store
        self.token_counter = counter
        self.vector_memory = VectorMemory()
        self.buffer = []
        self.current_summary = None
        self.clock = datetime(2025, 1, 1)

    def add_message(self, role, content):
        self.clock += timedelta(seconds=1)
        message = Message(role=role, content=content, session_id=self.session_id,
                          message_id=str(uuid.uuid4()), timestamp=self.clock)
        message.token_count = self.token_counter.count_message(message)
        self.store.save_message(message)
        self.buffer.append(message)
        self.vector_memory.add_message(message)
        if self.token_counter.count_messages(self.buffer) > SUMMARY_TRIGGER_TOKENS:
            self._summarize_old_buffer()
        return message

    def _summarize_old_buffer(self):
        split_point = len(self.buffer) // 2
        to_summarize = self.buffer[:split_point]
        self.buffer = self.buffer[split_point:]
        if not to_summarize:
            return
        prior = f"Prior summary:\n{self.current_summary.content}\n\n" if self.current_summary else ""
        conversation = "\n".join(f"{m.role.upper()}: {m.content}" for m in to_summarize)
        prompt = f"{prior}Please summarize the following conversation segment.\n\nConversation:\n{conversation}\n\nSummary:"
        content = f"The user discussed {len(to_summarize)} messages ({len(prompt)} characters)."  # the fake model
        self.current_summary = ConversationSummary(
            content=content, covers_message_ids=[m.message_id for m in to_summarize],
            session_id=self.session_id, token_count=self.token_counter.count_text(content))
        self.store.save_summary(self.current_summary)

    def build_context(self, query, system_prompt):
        out = []
        system = system_prompt
        if self.current_summary:
            system += f"\n\n## Conversation History Summary\n{self.current_summary.content}"
        out.append({"role": "system", "content": system})
        if len(self.vector_memory.messages) > BUFFER_MESSAGE_LIMIT:
            retrieved = self.vector_memory.search(query, top_k=RETRIEVAL_TOP_K)
            buffer_ids = {m.message_id for m in self.buffer}
            relevant = [(m, s) for m, s in retrieved if m.message_id not in buffer_ids and s > 0.75]
            if relevant:
                block = "## Relevant Earlier Context\n"
                for m, _ in relevant[:3]:
                    block += f"[{m.role}]: {m.content}\n"
                out.append({"role": "system", "content": block})
        for m in self.buffer:
            out.append({"role": m.role, "content": m.content})
        return out


def messages_of(scenario_path):
    with open(scenario_path) as f:
        s = json.load(f)
    turns = s.get("turns") or [t for sess in s["sessions"] for t in sess["turns"]]
    return [(t["role"], t.get("content", "")) for t in turns if "role" in t]


def run(messages, exchanges, encoding, db_dir):
    url = f"sqlite:///{os.path.join(db_dir, f'reference-{exchanges}.db')}"
    manager = MemoryManager("bench", ConversationStore(url), TokenCounter(encoding))
    users = [c for r, c in messages if r == "user" and c]
    replies = [c for r, c in messages if r == "assistant" and c]
    start = time.perf_counter()
    for i in range(exchanges):
        user = users[i % len(users)]
        manager.add_message("user", user)
        manager.build_context(user, "You are a helpful assistant.")
        manager.add_message("assistant", replies[i % len(replies)])  # the fake model's reply
    return (time.perf_counter() - start) / exchanges


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("scenario")
    ap.add_argument("exchanges", type=int, nargs="+")
    ap.add_argument("--bpe", required=True)
    args = ap.parse_args()
    encoding = load_encoding(args.bpe)
    messages = messages_of(args.scenario)
    with tempfile.TemporaryDirectory() as d:
        for n in args.exchanges:
            per = run(messages, n, encoding, d)
            print(f"reference design: {n} exchanges: {per * 1000:.3f} ms per exchange", flush=True)


if __name__ == "__main__":
    sys.exit(main())
