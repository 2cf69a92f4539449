"""Bench: where should the assistant abstain? Dense cosine of the best chunk, answerable vs not.

Question: which threshold on the top-1 dense cosine (multilingual-e5-small, what
``assistant`` compares ``abstain_threshold`` to in every retrieval mode) separates questions
the knowledge base can answer from questions it cannot?

Data (../shared/data): three corpora, each a stand-in for one user's knowledge base
- zh_rgb (Chinese news; dev queries + their relevant passages + seeded distractors),
- scifact (English science abstracts; train queries + relevant abstracts + distractors),
- medical_corpus_zh.txt (87 Chinese medical Q&A lines: the answers are the corpus, the
  questions the queries).
Answerable: a corpus's own queries against it (their relevant passage is in it).
Unanswerable: the other corpora's queries against it, plus OFF_TOPIC everyday questions
(en + zh) against every corpus.

Prints, per threshold, the false-abstention rate (answerable questions refused) and the
false-answer rate (unanswerable ones answered), per corpus and overall, and the threshold
it recommends: the highest one that refuses at most 2 % of the answerable questions of EVERY
corpus (a user's knowledge base is one corpus; refusing a question the documents answer is
worse than answering "from" weak sources, which the model is told to decline anyway). The
baseline is no abstention (threshold -1: 0 % refused, 100 % of unanswerable questions answered).

Run niced (embeds ~3k passages with e5 on CPU, a few minutes):
    nice -n 10 .venv/bin/python bench/abstain_calibration.py [--queries 150 --distractors 1200]
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

DATA = ROOT.parent / "shared" / "data"
MAX_FALSE_ABSTAIN = 0.02
OFF_TOPIC = [
    "How do I bake sourdough bread at home?", "What time does the football final start tonight?",
    "Recommend a good science fiction novel.", "How do I change a flat bicycle tyre?",
    "What is the best way to learn to play the guitar?", "Write a poem about autumn leaves.",
    "How many cups are in a litre?", "What should I pack for a beach holiday?",
    "How do I reset my router password?", "Who painted the Mona Lisa?",
    "What is a good name for a golden retriever puppy?", "How do I remove a red wine stain from a carpet?",
    "Translate 'good morning' into French.", "What is the capital of Australia?",
    "How long should I boil an egg for a soft yolk?", "Which programming language should I learn first?",
    "怎么在家做红烧肉？", "今晚的足球比赛几点开始？", "推荐一本好看的科幻小说。", "自行车爆胎了怎么补？",
    "学吉他最好的方法是什么？", "写一首关于秋天落叶的诗。", "一升等于多少杯？", "去海边度假要带什么？",
    "路由器密码忘了怎么重置？", "蒙娜丽莎是谁画的？", "给金毛小狗起个什么名字好？", "地毯上的红酒渍怎么去掉？",
    "“早上好”用法语怎么说？", "澳大利亚的首都是哪里？", "煮溏心蛋要多长时间？", "初学编程应该先学哪种语言？",
]


def corpora(n_queries: int, n_distractors: int) -> dict[str, tuple[list[str], list[str]]]:
    """name -> (passages, questions answerable from them)."""
    from index.beir import doc_text, load_beir, subset

    out = {}
    for name in ("zh_rgb", "scifact"):
        beir = subset(load_beir(DATA / "retrieval" / name), n_queries, n_distractors, seed=0)
        out[name] = ([doc_text(t, x) for t, x in beir.corpus.values()], list(beir.queries.values()))
    rows = [json.loads(line) for line in (DATA / "docs_text" / "medical_corpus_zh.txt").read_text(
        encoding="utf-8").splitlines() if line.strip()]
    out["medical_zh"] = ([r["答"] for r in rows], [r["问"] for r in rows])
    return out


def top1(query_vecs: np.ndarray, passage_vecs: np.ndarray) -> np.ndarray:
    return (query_vecs @ passage_vecs.T).max(axis=1)  # vectors are L2-normalised: inner product = cosine


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--queries", type=int, default=150, help="queries per BEIR set")
    ap.add_argument("--distractors", type=int, default=1200, help="extra passages per BEIR set")
    args = ap.parse_args()
    if not DATA.is_dir():
        print(f"skipped: {DATA} not found")
        return 0
    from index.embedder import load_embedder

    emb = load_embedder("multilingual-e5-small")
    sets = corpora(args.queries, args.distractors)
    start = time.perf_counter()
    pvecs = {n: emb.encode_passages(p, batch_size=32, show_progress=True) for n, (p, _) in sets.items()}
    qvecs = {n: emb.encode_queries(q) for n, (_, q) in sets.items()}
    off = emb.encode_queries(OFF_TOPIC)
    print(f"embedded {sum(len(p) for p, _ in sets.values())} passages and "
          f"{sum(len(q) for _, q in sets.values()) + len(OFF_TOPIC)} queries in {time.perf_counter() - start:.0f} s")
    answerable = {n: top1(qvecs[n], pvecs[n]) for n in sets}
    unanswerable = {n: np.concatenate([top1(qvecs[o], pvecs[n]) for o in sets if o != n] + [top1(off, pvecs[n])])
                    for n in sets}
    report(answerable, unanswerable)
    return 0


def report(answerable: dict[str, np.ndarray], unanswerable: dict[str, np.ndarray]) -> None:
    print("\ntop-1 cosine percentiles        p1     p5    p50    p95    p99")
    for n in answerable:
        for label, v in (("answerable", answerable[n]), ("unanswerable", unanswerable[n])):
            pct = np.percentile(v, [1, 5, 50, 95, 99])
            print(f"  {n:<11} {label:<13} n={len(v):<4}" + "".join(f" {x:6.3f}" for x in pct))
    ans, una = np.concatenate(list(answerable.values())), np.concatenate(list(unanswerable.values()))
    print("\nthreshold  false-abstain  false-answer   (per corpus: false-abstain/false-answer)")
    best = -1.0
    for t in np.arange(0.70, 0.905, 0.01):
        fa, fn = float((ans < t).mean()), float((una >= t).mean())
        per = "  ".join(f"{n}: {(answerable[n] < t).mean():.0%}/{(unanswerable[n] >= t).mean():.0%}"
                        for n in answerable)
        print(f"  {t:.2f}      {fa:6.1%}        {fn:6.1%}      {per}")
        if max(float((answerable[n] < t).mean()) for n in answerable) <= MAX_FALSE_ABSTAIN:
            best = round(float(t), 2)
    fa, fn = float((ans < best).mean()), float((una >= best).mean())
    print(f"\nrecommended threshold: {best:.2f} (refuses {fa:.1%} of answerable questions, answers {fn:.1%} "
          f"of unanswerable ones; baseline without abstention: 0.0% / 100.0%)")


if __name__ == "__main__":
    sys.exit(main())
