"""LangChain's memory, measured by memeval: a plugin around real
`langchain-core` (and `langchain-openai`) from PyPI, nothing vendored.

Two memories, chosen with params.mode:

- "trim": the chat history (a list of LangChain messages) cut to its last
  `max_tokens` with LangChain's `trim_messages` (strategy "last", starting
  on a human message, counted by `count_tokens_approximately`): what most
  LangChain and LangGraph chatbots do today.
- "summary": a summary buffer: the same trimmed window, and what falls out
  of it folded into a running summary by a `ChatOpenAI` model with
  LangChain's own progressive-summary prompt. The model is memeval's
  metering endpoint (`OPENAI_BASE_URL`), so its calls are counted, cached
  and answered by the run's backend.

Each user's history (and summary) is kept in `state_dir`, written at
`flush` with LangChain's `messages_to_dict`, read back at `open`.

    [plugins.langchain]
    command = [".venv/bin/python", "examples/plugins/langchain_memory.py"]
    params = { mode = "summary", max_tokens = 2000 }
"""

import json
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "python"))

from langchain_core.messages import (  # noqa: E402
    AIMessage,
    HumanMessage,
    get_buffer_string,
    messages_from_dict,
    messages_to_dict,
    trim_messages,
)
from langchain_core.messages.utils import count_tokens_approximately  # noqa: E402
from langchain_core.prompts import PromptTemplate  # noqa: E402

from memeval_plugin import Memory, buffer, serve, summary  # noqa: E402

# LangChain's progressive summary prompt (its ConversationSummaryMemory's).
SUMMARY_PROMPT = PromptTemplate.from_template(
    """Progressively summarize the lines of conversation provided, adding onto the previous summary returning a new summary.

EXAMPLE
Current summary:
The human asks what the AI thinks of artificial intelligence. The AI thinks artificial intelligence is a force for good.

New lines of conversation:
Human: Why do you think artificial intelligence is a force for good?
AI: Because artificial intelligence will help humans reach their full potential.

New summary:
The human asks what the AI thinks of artificial intelligence. The AI thinks artificial intelligence is a force for good because it will help humans reach their full potential.
END OF EXAMPLE

Current summary:
{summary}

New lines of conversation:
{new_lines}

New summary:"""
)


class User:
    def __init__(self):
        self.history = []  # HumanMessage and AIMessage, ids = message numbers
        self.summary = ""
        self.folded = 0  # messages of the history folded into the summary
        self.sources = []


class LangChainMemory(Memory):
    def setup(self, hello):
        p = hello.params
        self.mode = p.get("mode", "trim")
        if self.mode not in ("trim", "summary"):
            raise ValueError(f"params.mode is 'trim' or 'summary', not {self.mode!r}")
        self.max_tokens = int(p.get("max_tokens", 2000))
        self.users = {}
        self.model = None
        if self.mode == "summary":
            from langchain_openai import ChatOpenAI

            self.model = ChatOpenAI(
                model=hello.model.get("name", "gpt-4o-mini"),
                base_url=hello.openai_base_url,
                api_key=hello.openai_api_key,
                temperature=0,
                max_tokens=int(p.get("summary_max_tokens", 256)),
                max_retries=0,
            )

    def name(self):
        return f"langchain-{self.mode}"

    def version(self):
        import langchain_core

        return langchain_core.__version__

    def path(self, user):
        return os.path.join(self.hello.state_dir, f"{user}.json")

    def open(self, user, scenario, system_prompt):
        u = User()
        try:
            with open(self.path(user)) as f:
                saved = json.load(f)
            u.history = messages_from_dict(saved["history"])
            u.summary, u.folded, u.sources = saved["summary"], saved["folded"], saved["sources"]
        except FileNotFoundError:
            pass
        self.users[user] = u

    @staticmethod
    def message(number, role, content):
        cls = HumanMessage if role == "user" else AIMessage
        return cls(content=content, id=str(number))

    def window(self, messages):
        return trim_messages(
            messages,
            max_tokens=self.max_tokens,
            strategy="last",
            token_counter=count_tokens_approximately,
            start_on="human",
            include_system=False,
            allow_partial=False,
        )

    def add(self, user, message):
        u = self.users[user]
        u.history.append(self.message(message.number, message.role, message.content))
        if self.mode == "summary":
            self.fold(u)

    def fold(self, u):
        """What the window no longer holds goes into the summary."""
        messages = u.history
        kept = self.window(messages)
        first_kept = len(messages) - len(kept)
        if first_kept <= u.folded:
            return
        new = messages[u.folded:first_kept]
        u.summary = self.model.invoke(
            SUMMARY_PROMPT.format(summary=u.summary, new_lines=get_buffer_string(new))
        ).content
        u.sources += [int(m.id) for m in new]
        u.folded = first_kept

    def context(self, user, query):
        u = self.users[user]
        messages = list(u.history)
        if query is not None and query.number is not None:
            # The message being answered is part of the call.
            messages.append(self.message(query.number, "user", query.content))
        kept = self.window(messages)
        sections = []
        if u.summary:
            sections.append(summary(u.summary, u.sources))
        shown = [int(m.id) for m in kept if query is None or m.id != str(query.number)]
        sections.append(buffer(shown))
        return sections

    def flush(self, user):
        u = self.users[user]
        tmp = self.path(user) + ".tmp"
        with open(tmp, "w") as f:
            json.dump(
                {
                    "history": messages_to_dict(u.history),
                    "summary": u.summary,
                    "folded": u.folded,
                    "sources": u.sources,
                },
                f,
            )
        os.replace(tmp, self.path(user))

    def close(self, user):
        del self.users[user]


if __name__ == "__main__":
    serve(LangChainMemory())
