"""Writes a file shaped like LongMemEval's releases (longmemeval_s and _m:
the array of questions, each with its haystack of dated sessions), of
synthetic text, at a size given in MB, for measuring `memeval import
longmemeval` on files of the real ones' size class without their data.

    python3 generate.py OUT.json SIZE_MB [SESSIONS_PER_QUESTION]
    python3 generate.py OUT.json --questions N [SESSIONS_PER_QUESTION]

Each question has SESSIONS_PER_QUESTION sessions (default 500, as in
longmemeval_m) of 10 turns of about 60 words; one turn of one session is
the evidence (`has_answer`). Written as a stream: the generator holds one
question at a time too. Deterministic (no randomness).
"""

import json
import sys

WORDS = (
    "garden river coffee ticket weekend meeting recipe bicycle museum train "
    "concert budget sister project window market holiday letter doctor "
    "kitchen mountain library painting school harbor jacket festival"
).split()


def text(seed, n=60):
    return " ".join(WORDS[(seed * 7 + i * 13) % len(WORDS)] for i in range(n)) + "."


def question(q, sessions):
    ids, dates, haystack = [], [], []
    for s in range(sessions):
        ids.append(f"q{q}-s{s}")
        day, minute = 1 + s // 48, (s % 48) * 30
        dates.append(f"2023/{1 + day // 28:02d}/{1 + day % 28:02d} (Mon) {minute // 60:02d}:{minute % 60:02d}")
        turns = []
        for t in range(10):
            turn = {"role": "user" if t % 2 == 0 else "assistant", "content": text(q * 1000 + s * 10 + t)}
            if s == sessions // 2 and t == 0:
                turn["has_answer"] = True
            turns.append(turn)
        haystack.append(turns)
    return {
        "question_id": f"gen-{q:05d}",
        "question_type": "single-session-user",
        "question": "Which museum did I say I would visit?",
        "answer": "the harbor museum",
        "question_date": "2023/12/30 (Sat) 12:00",
        "haystack_session_ids": ids,
        "haystack_dates": dates,
        "haystack_sessions": haystack,
        "answer_session_ids": [f"q{q}-s{sessions // 2}"],
    }


def main():
    out, args = sys.argv[1], sys.argv[2:]
    questions = None
    if args[0] == "--questions":
        questions, args = int(args[1]), args[2:]
        target = None
    else:
        target, args = int(float(args[0]) * 1e6), args[1:]
    sessions = int(args[0]) if args else 500
    written, q = 0, 0
    with open(out, "w") as f:
        f.write("[")
        while (q < questions) if questions is not None else (written < target):
            chunk = ("," if q else "") + json.dumps(question(q, sessions))
            f.write(chunk)
            written += len(chunk)
            q += 1
        f.write("]\n")
    print(f"{out}: {q} questions, {written / 1e6:.1f} MB")


if __name__ == "__main__":
    main()
