#!/usr/bin/env bash
# Measures the reference design (the tutorial's MemoryManager in Python,
# zero-cost fake model) per exchange at 100, 2,000 and 10,000 exchanges, on
# the same generated conversation the replay benchmark uses. Needs python3
# and PyPI; tiktoken reads the BPE file shipped inside the tiktoken-rs crate.
set -euo pipefail
cd "$(dirname "$0")/../.."
venv="${MEMEVAL_REF_VENV:-target/reference-venv}"
if [ ! -x "$venv/bin/python" ]; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q numpy sqlalchemy tiktoken faiss-cpu
fi
bpe=$(ls ~/.cargo/registry/src/*/tiktoken-rs-*/assets/o200k_base.tiktoken | head -n 1)
scenario=target/reference-conversation.json
cargo run --release --quiet -- generate --messages 20000 --facts 8 --sessions 1 --every 100 --seed 1 -o "$scenario"
[ $# -gt 0 ] || set -- 100 2000 10000
"$venv/bin/python" benches/reference/reference_design.py "$scenario" "$@" --bpe "$bpe"
