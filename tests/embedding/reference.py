#!/usr/bin/env python3
"""Reference embeddings for memeval's local embedder, computed independently.

A sentence-transformers BERT model (all-MiniLM-L6-v2) run from its folder
with nothing but numpy and Python's standard library: the WordPiece
tokenizer (BERT's basic tokenizer: clean, CJK spacing, accents stripped,
lowercase, split on whitespace and punctuation; then greedy longest-match
word pieces), the encoder's forward pass read straight from
model.safetensors, mean pooling and L2 normalization, truncation at the
folder's max_seq_length counting [CLS] and [SEP]. No code of memeval's, of
the `tokenizers` crate or of candle is used, so agreement is evidence.

    python3 tests/embedding/reference.py MODEL_DIR            # writes reference.json
    python3 tests/embedding/reference.py MODEL_DIR --check    # the published examples
    python3 tests/embedding/reference.py MODEL_DIR --rate N LOCOMO_JSON
        # the rate on the first N messages of a LoCoMo conversation

Needs numpy. Each text runs alone (no padding), one at a time.
"""

import hashlib
import json
import math
import os
import struct
import sys
import time
import unicodedata

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))

# The texts: short and long (past 256 tokens), unicode, empty, whitespace,
# punctuation, numbers, chat messages like LoCoMo's and the scenarios'.
LONG = (
    "The migration plan has three phases. First we copy the warehouse tables "
    "to the new cluster, checking row counts and checksums for every "
    "partition; then we run both pipelines side by side for two weeks and "
    "compare the dashboards every morning; finally we switch the readers "
    "over, keep the old cluster for thirty days, and delete it once the "
    "finance team has signed off on the quarter's numbers. "
)
TEXTS = [
    "The weather is lovely today.",
    "It's so sunny outside!",
    "He drove to the stadium.",
    "",
    " ",
    "\t\n",
    "a",
    "Hi!",
    "I'm allergic to peanuts, so please never suggest satay.",
    "My daughter Maya starts kindergarten in September.",
    "What did I say my daughter's name was?",
    "Caroline went to the LGBTQ support group on 7 May 2023.",
    "When did Caroline go to the support group?",
    "I just got back from a charity race for mental health last Saturday!",
    "We're flying Lisbon -> Porto on the 14th, then the night train to Madrid.",
    "The dbt model fct_orders fans out after the join on customer_id.",
    "SELECT count(*) FROM orders WHERE status = 'shipped';",
    "Version 2.4.1 fixed CVE-2024-3094 (xz backdoor).",
    "3.14159 26535 89793 23846 26433 83279",
    "!!!???...,,,;;;:::",
    "e-mail: jane.doe@example.com, phone +1 (555) 010-9999",
    "https://example.com/path?query=1&other=two#frag",
    "Café, naïve, résumé, jalapeño, Zoë, Ångström.",
    "ÀÉÎÕÜ àéîõü ÇçÑñ",
    "Straße und Fußgänger in München.",
    "İstanbul'da ılık bir gün.",
    "Привет, как дела? Я живу в Москве.",
    "Καλημέρα κόσμε",
    "東京で寿司を食べました。",
    "我喜欢在周末去公园散步。",
    "서울에서 친구를 만났어요.",
    "مرحبا بالعالم",
    "שלום עולם",
    "नमस्ते दुनिया",
    "สวัสดีครับ",
    "I love pizza 🍕 and tacos 🌮!! 😀😀",
    "zero\u200bwidth\u200djoiner and soft\u00adhyphen",
    "control\x00chars\x07and\x1fmore\ufffdhere",
    "non\u00a0breaking\u2003spaces\u3000here",
    "Ｆｕｌｌｗｉｄｔｈ ＡＢＣ １２３",
    "ﬁ ligature and ① circled and ½ fraction",
    "supercalifragilisticexpialidocious antidisestablishmentarianism",
    "x" * 120,
    "pneumonoultramicroscopicsilicovolcanoconiosis " * 3,
    "[MASK] is a special token, and so are [CLS] and [SEP].",
    "UPPER CASE SHOUTING ABOUT THE DEADLINE",
    "lower case whisper about the deadline",
    "The meeting moved from Tuesday 3pm to Thursday 10am.",
    "Remember: my wife's birthday is March 3rd, and she loves tulips.",
    "Can you recommend a vegetarian restaurant near the hotel?",
    "I switched jobs last month; I'm now a data engineer at a fintech startup.",
    "Our on-call rotation is two engineers per week, handoff Monday 9:00 UTC.",
    LONG * 3,
    (LONG * 6)[:-1],
    " ".join(str(i) for i in range(400)),
    "word " * 300,
]


def load_safetensors(path):
    with open(path, "rb") as f:
        (n,) = struct.unpack("<Q", f.read(8))
        header = json.loads(f.read(n))
        data = f.read()
    out = {}
    for name, meta in header.items():
        if name == "__metadata__":
            continue
        start, end = meta["data_offsets"]
        dtype = {"F32": np.float32, "I64": np.int64}[meta["dtype"]]
        out[name] = np.frombuffer(data[start:end], dtype=dtype).reshape(meta["shape"])
    return out


def is_control(c):
    if c in "\t\n\r":
        return False
    return unicodedata.category(c).startswith("C")


def is_whitespace(c):
    return c in " \t\n\r" or unicodedata.category(c) == "Zs"


def is_cjk(cp):
    return (
        0x4E00 <= cp <= 0x9FFF
        or 0x3400 <= cp <= 0x4DBF
        or 0x20000 <= cp <= 0x2A6DF
        or 0x2A700 <= cp <= 0x2B73F
        or 0x2B740 <= cp <= 0x2B81F
        or 0x2B920 <= cp <= 0x2CEAF
        or 0xF900 <= cp <= 0xFAFF
        or 0x2F800 <= cp <= 0x2FA1F
    )


def is_punctuation(c):
    cp = ord(c)
    if 33 <= cp <= 47 or 58 <= cp <= 64 or 91 <= cp <= 96 or 123 <= cp <= 126:
        return True
    return unicodedata.category(c).startswith("P")


class WordPiece:
    def __init__(self, tokenizer_json):
        t = json.load(open(tokenizer_json, encoding="utf-8"))
        self.vocab = t["model"]["vocab"]
        self.unk = self.vocab[t["model"]["unk_token"]]
        self.max_chars = t["model"]["max_input_chars_per_word"]
        self.prefix = t["model"]["continuing_subword_prefix"]
        self.special = sorted(
            (a["content"], a["id"]) for a in t["added_tokens"] if a["special"]
        )

    def normalize(self, text):
        out = []
        for c in text:
            cp = ord(c)
            if cp == 0 or cp == 0xFFFD or is_control(c):
                continue
            if is_whitespace(c):
                out.append(" ")
            elif is_cjk(cp):
                out.append(" " + c + " ")
            else:
                out.append(c)
        text = unicodedata.normalize("NFD", "".join(out))
        text = "".join(c for c in text if unicodedata.category(c) != "Mn")
        return text.lower()

    def words(self, text):
        for chunk in text.split():
            word = ""
            for c in chunk:
                if is_punctuation(c):
                    if word:
                        yield word
                        word = ""
                    yield c
                else:
                    word += c
            if word:
                yield word

    def pieces(self, word):
        if len(word) > self.max_chars:
            return [self.unk]
        ids, start = [], 0
        while start < len(word):
            end, found = len(word), None
            while start < end:
                sub = word[start:end]
                if start > 0:
                    sub = self.prefix + sub
                if sub in self.vocab:
                    found = self.vocab[sub]
                    break
                end -= 1
            if found is None:
                return [self.unk]
            ids.append(found)
            start = end
        return ids

    def encode(self, text, max_len):
        # Special tokens written in the text are matched first, as written.
        parts, rest = [], text
        while rest:
            hits = [(rest.find(s), s, i) for s, i in self.special if s in rest]
            if not hits:
                parts.append(rest)
                break
            at, s, i = min(hits)
            parts.append(rest[:at])
            parts.append(i)
            rest = rest[at + len(s):]
        ids = []
        for p in parts:
            if isinstance(p, int):
                ids.append(p)
            else:
                for w in self.words(self.normalize(p)):
                    ids.extend(self.pieces(w))
        return [self.vocab["[CLS]"]] + ids[: max_len - 2] + [self.vocab["[SEP]"]]


ERF = np.frompyfunc(math.erf, 1, 1)


def layer_norm(x, w, b, eps):
    mu = x.mean(-1, keepdims=True)
    var = ((x - mu) ** 2).mean(-1, keepdims=True)
    return (x - mu) / np.sqrt(var + eps) * w + b


class Bert:
    def __init__(self, folder, dtype=np.float64):
        self.w = {k: v.astype(dtype) if v.dtype == np.float32 else v
                  for k, v in load_safetensors(os.path.join(folder, "model.safetensors")).items()}
        if "bert.embeddings.word_embeddings.weight" in self.w:
            self.w = {k[5:]: v for k, v in self.w.items() if k.startswith("bert.")}
        c = json.load(open(os.path.join(folder, "config.json")))
        self.layers = c["num_hidden_layers"]
        self.heads = c["num_attention_heads"]
        self.eps = c["layer_norm_eps"]

    def linear(self, x, name):
        return x @ self.w[name + ".weight"].T + self.w[name + ".bias"]

    def forward(self, ids):
        w = self.w
        n = len(ids)
        x = (w["embeddings.word_embeddings.weight"][ids]
             + w["embeddings.position_embeddings.weight"][:n]
             + w["embeddings.token_type_embeddings.weight"][0])
        x = layer_norm(x, w["embeddings.LayerNorm.weight"], w["embeddings.LayerNorm.bias"], self.eps)
        h = x.shape[1]
        d = h // self.heads
        for i in range(self.layers):
            p = f"encoder.layer.{i}."
            q = self.linear(x, p + "attention.self.query").reshape(n, self.heads, d).transpose(1, 0, 2)
            k = self.linear(x, p + "attention.self.key").reshape(n, self.heads, d).transpose(1, 0, 2)
            v = self.linear(x, p + "attention.self.value").reshape(n, self.heads, d).transpose(1, 0, 2)
            s = q @ k.transpose(0, 2, 1) / math.sqrt(d)
            s = np.exp(s - s.max(-1, keepdims=True))
            s /= s.sum(-1, keepdims=True)
            ctx = (s @ v).transpose(1, 0, 2).reshape(n, h)
            a = self.linear(ctx, p + "attention.output.dense")
            x = layer_norm(a + x, w[p + "attention.output.LayerNorm.weight"],
                           w[p + "attention.output.LayerNorm.bias"], self.eps)
            m = self.linear(x, p + "intermediate.dense")
            m = 0.5 * m * (1.0 + ERF(m / math.sqrt(2.0)).astype(m.dtype))
            o = self.linear(m, p + "output.dense")
            x = layer_norm(o + x, w[p + "output.LayerNorm.weight"],
                           w[p + "output.LayerNorm.bias"], self.eps)
        return x


def embed(model, tok, text, max_len):
    ids = tok.encode(text, max_len)
    v = model.forward(ids).mean(0)
    return ids, v / np.linalg.norm(v)


def main():
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    folder = sys.argv[1]
    max_len = json.load(open(os.path.join(folder, "sentence_bert_config.json")))["max_seq_length"]
    tok = WordPiece(os.path.join(folder, "tokenizer.json"))
    # Reference vectors in float64; the rate in float32, as a numpy
    # embedder would run.
    model = Bert(folder, np.float32 if "--rate" in sys.argv else np.float64)
    if "--check" in sys.argv:
        vs = [embed(model, tok, t, max_len)[1] for t in TEXTS[:3]]
        print("published: 0.6660 0.1046 0.1411")
        print("computed:  %.4f %.4f %.4f" % (vs[0] @ vs[1], vs[0] @ vs[2], vs[1] @ vs[2]))
        return
    if "--rate" in sys.argv:
        at = sys.argv.index("--rate")
        n, sample = int(sys.argv[at + 1]), json.load(open(sys.argv[at + 2], encoding="utf-8"))
        sample = sample.get("conversation", sample)
        sessions = sorted((int(k[8:]), v) for k, v in sample.items()
                          if k.startswith("session_") and k[8:].isdigit() and isinstance(v, list))
        texts = [t["text"] for _, turns in sessions for t in turns][:n]
        start = time.perf_counter()
        for t in texts:
            embed(model, tok, t, max_len)
        s = time.perf_counter() - start
        print(f"numpy (float32), one text at a time: {len(texts)} texts in {s:.2f} s, "
              f"{len(texts) / s:.1f} a second")
        return
    sha = hashlib.sha256(open(os.path.join(folder, "model.safetensors"), "rb").read()).hexdigest()
    rows = []
    for t in TEXTS:
        ids, v = embed(model, tok, t, max_len)
        rows.append({"text": t, "ids": ids, "vector": [round(float(x), 6) for x in v]})
    out = {"model_sha256": sha, "max_seq_length": max_len, "texts": rows}
    with open(os.path.join(HERE, "reference.json"), "w", encoding="utf-8") as f:
        json.dump(out, f, ensure_ascii=False, separators=(",", ":"))
        f.write("\n")
    print(f"wrote {len(rows)} reference vectors to tests/embedding/reference.json")


if __name__ == "__main__":
    main()
