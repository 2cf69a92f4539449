"""Question: how much does adapting the embedder to a knowledge base's own questions (``finetune
embedder``) improve retrieval on questions it never saw, and what does it cost on this machine?

For a BEIR dev set: a seeded split of its queries by query (``--heldout`` share held out; no query in
both parts). The training part becomes a Q&A file (one record per (query, relevant document):
``doc`` = the corpus id; ``answer`` = the set's reference answers where it has them, else the
document's title — only used to pick among a document's chunks). ``finetune embedder`` trains on
the first N training queries for each ``--train-questions`` N (nested subsets) over a knowledge base
of the full corpus built with the base embedder; the adapted model re-embeds the whole corpus (ONNX
int8 backend, as the base) and the held-out queries are scored dense and hybrid, base vs adapted,
in the same run (nDCG@10, Recall@10, MRR@10 by ``index.beir``).

    python bench/embedder_adapt.py --set scifact --train-questions 100,300,all
    python bench/embedder_adapt.py --set zh_rgb --heldout 0.34 --train-questions all
    python bench/embedder_adapt.py --set scifact --base-kb /work/kbs/scifact-base --json
    python bench/embedder_adapt.py --set scifact --train-questions none --generated 300

``--generated N`` also adapts on N questions generated from sampled chunks only (``finetune embedder
--generate-questions N``; no gold Q&A), scored on the same held-out queries. The generator is a
documented stand-in, :class:`SentenceQuestions`, since no instruction-following model runs here (the
offline gemma-3-270m base model gives no usable pair; README): each chunk's "question" is one of its
own sentences, picked by a hash of the chunk, and the answer is that sentence — the pseudo-queries of
the Inverse Cloze Task (Lee et al. 2019, "Latent Retrieval for Weakly Supervised Open Domain
Question Answering", section 5), the cheapest generator a user without Q&A could run. ``--endpoint``
or ``--generator-model`` with a real instruction model replaces it.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import random
import re
import resource
import sys
import time
from pathlib import Path

sys.path[:] = [str(Path(__file__).resolve().parents[1])] + [
    p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]

from index.beir import BeirSet, evaluate, load_beir, to_documents  # noqa: E402

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "retrieval"


def cpu_seconds() -> float:
    """CPU seconds of this process and its finished children (user + system)."""
    own, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def split(data: BeirSet, heldout: float, seed: int) -> tuple[list[str], list[str]]:
    """(training query ids in seeded order, held-out query ids)."""
    qids = sorted(q for q in data.queries if data.qrels.get(q))
    random.Random(seed).shuffle(qids)
    n_held = round(heldout * len(qids))
    return qids[n_held:], sorted(qids[:n_held])


def answers_of(folder: Path) -> dict[str, list[str]]:
    """Reference answers per query id where queries.jsonl has them (zh_rgb, cmrc2018)."""
    out = {}
    for line in (folder / "queries.jsonl").read_text(encoding="utf-8").splitlines():
        row = json.loads(line)
        refs = row.get("answers") or []
        out[str(row["_id"])] = [r if isinstance(r, str) else " ".join(map(str, r)) for r in refs if r]
    return out


def write_qa(path: Path, data: BeirSet, qids: list[str], answers: dict[str, list[str]]) -> int:
    rows = []
    for q in qids:
        for doc, rel in data.qrels[q].items():
            if rel > 0 and doc in data.corpus:
                refs = answers.get(q) or [data.corpus[doc][0] or doc]
                rows.append({"question": data.queries[q], "answer": refs[0], "answers": refs[1:], "doc": doc})
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return len(rows)


def held_set(data: BeirSet, qids: list[str]) -> BeirSet:
    return BeirSet(data.name, data.split, data.corpus, {q: data.queries[q] for q in qids},
                   {q: data.qrels[q] for q in qids})


def build_kb(folder: Path, data: BeirSet, embedder: object | None) -> dict:
    """Add the corpus to the knowledge base at ``folder`` (reused when built); seconds spent."""
    from index.kb import KnowledgeBase

    wall, cpu = time.monotonic(), cpu_seconds()
    with KnowledgeBase.open(folder, embedder=embedder) as kb:
        kb.add_documents(to_documents(data), progress=True)
    return {"embed_wall_s": round(time.monotonic() - wall, 1), "embed_cpu_s": round(cpu_seconds() - cpu, 1)}


def score(folder: Path, held: BeirSet) -> dict:
    from index.kb import KnowledgeBase

    out = {}
    with KnowledgeBase.open(folder) as kb:
        for mode in ("dense", "hybrid"):
            figs = evaluate(lambda q, n, m=mode: kb.search(q, k=n, mode=m), held, lambda h: Path(h.path).name, k=10)
            out[mode] = {k: round(v, 4) for k, v in figs.items() if k in ("ndcg@10", "recall@10", "mrr@10")}
    return out


class SentenceQuestions:
    """Stand-in question generator (Inverse Cloze Task pseudo-queries): one sentence of the chunk, picked
    by a hash of its text, is the question and the answer. Speaks the backend protocol's ``generate``."""

    SENTENCE = re.compile(r"[^.!?。！？]+[.!?。！？]?")

    def generate(self, messages: list[dict], params: object = None) -> list[str]:
        passage = messages[-1]["content"].split("\n", 1)[-1]
        sentences = [m.group().strip() for m in self.SENTENCE.finditer(passage)
                     if len(m.group().strip().encode()) >= 24]  # bytes: ~24 Latin letters, ~8 Han characters
        if not sentences:
            return [""]
        pick = sentences[int(hashlib.sha256(passage.encode()).hexdigest(), 16) % len(sentences)]
        return [f"Q: {pick}\nA: {pick}"]


def adapt(args: argparse.Namespace, base_kb: Path, out: Path, qa: Path | None, generated: int = 0) -> dict:
    """``finetune embedder`` on the Q&A file ``qa`` and/or ``generated`` questions from :class:`SentenceQuestions`;
    its seconds, pairs and inner held-out figures."""
    from assistant.from_kb.adapt_embedder import adapt_embedder
    from assistant.from_kb.embedder_config import EmbedderConfig

    kept = out / "bench_run.json"  # a rerun with the same --work reuses the model trained before
    if kept.exists():
        print(f"{out}: trained before, reused", flush=True)
        return json.loads(kept.read_text())
    questions = ({"qa": (qa,)} if qa else {}) | ({"generate_questions": generated} if generated else {})
    wall, cpu = time.monotonic(), cpu_seconds()
    report = adapt_embedder(EmbedderConfig(**questions, kb=base_kb, out=out, epochs=args.epochs, seed=args.seed,
                                           batch_size=args.batch_size, learning_rate=args.learning_rate,
                                           hard_negatives=args.hard_negatives, val_corpus=args.val_corpus,
                                           device="cpu"), progress=True,
                            generator=SentenceQuestions() if generated else None)
    print(report.render(), flush=True)
    run = {"train_wall_s": round(time.monotonic() - wall, 1), "train_cpu_s": round(cpu_seconds() - cpu, 1),
           "epochs_run": report.run.epochs_run, "pairs": len(report.pairs.train),
           "inner_heldout_before": report.run.before, "inner_heldout_after": report.run.after}
    run |= {"generated": report.pairs.generated} if generated else {}
    kept.write_text(json.dumps(run))
    return run


def finish(run: dict, args: argparse.Namespace, data: BeirSet, held_data: BeirSet, base: dict, name: str) -> dict:
    """Re-embed the corpus with the adapted model at ``args.work / name`` and score the held-out queries."""
    from index.embedder import load_embedder

    kb = args.work / name.replace("-adapted-", "-kb-adapted-")
    run |= build_kb(kb, data, load_embedder(str(args.work / name), "onnx"))
    run["adapted"] = score(kb, held_data)
    run["delta_ndcg@10"] = {m: round(run["adapted"][m]["ndcg@10"] - base[m]["ndcg@10"], 4) for m in ("dense", "hybrid")}
    return run


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--set", default="scifact")
    ap.add_argument("--heldout", type=float, default=0.3, help="share of queries held out (by query)")
    ap.add_argument("--train-questions", default="all", help="comma-separated N of training queries, all, or none")
    ap.add_argument("--generated", type=int, default=0, help="also adapt on N questions generated from chunks only")
    ap.add_argument("--generated-with-qa", action="store_true",
                    help="the --generated run also trains on the last --train-questions Q&A (a user with a few "
                         "Q&A and their documents)")
    ap.add_argument("--work", type=Path, default=Path("/tmp/embedder-adapt"))
    ap.add_argument("--base-kb", type=Path, default=None, help="a knowledge base of the corpus built already")
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--learning-rate", type=float, default=2e-5)
    ap.add_argument("--hard-negatives", type=int, default=1)
    ap.add_argument("--val-corpus", type=int, default=500, help="chunks the inner held-out questions rank among")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    folder = DATA / args.set
    if not (folder / "corpus.jsonl").exists():
        sys.exit(f"skip: {folder} not found (../shared/data beside the repository)")
    data = load_beir(folder)
    train, held = split(data, args.heldout, args.seed)
    args.work.mkdir(parents=True, exist_ok=True)
    base_kb = args.base_kb or args.work / f"{args.set}-base"
    result = {"set": args.set, "train_queries": len(train), "heldout_queries": len(held), "seed": args.seed,
              "base_build": build_kb(base_kb, data, None), "runs": {}}
    held_data = held_set(data, held)
    result["base"] = score(base_kb, held_data)
    print(json.dumps({"base": result["base"]}), flush=True)
    answers = answers_of(folder)
    qa = None
    for size in [] if args.train_questions == "none" else args.train_questions.split(","):
        n = len(train) if size == "all" else min(int(size), len(train))
        qa = args.work / f"{args.set}-qa-{n}.jsonl"
        write_qa(qa, data, train[:n], answers)
        name = f"{args.set}-adapted-{n}-s{args.seed}"
        run = finish(adapt(args, base_kb, args.work / name, qa), args, data, held_data, result["base"], name)
        result["runs"][str(n)] = run
        print(json.dumps({str(n): run}), flush=True)
    if args.generated:
        with_qa = qa if args.generated_with_qa else None
        label = f"gen {args.generated}" + (f" + {qa.stem.rsplit('-', 1)[-1]} Q&A" if with_qa else "")
        name = f"{args.set}-adapted-gen{args.generated}{'-qa' if with_qa else ''}-s{args.seed}"
        run = finish(adapt(args, base_kb, args.work / name, with_qa, args.generated), args, data, held_data,
                     result["base"], name)
        result["runs"][label] = run
        print(json.dumps({label: run}), flush=True)
    print(json.dumps(result, indent=2) if args.json else render(result))


def render(result: dict) -> str:
    lines = [f"{result['set']}: {result['heldout_queries']} held-out queries, base vs adapted (nDCG@10, same run)",
             "train queries | dense base -> adapted | hybrid base -> adapted | train wall / CPU s | re-embed CPU s"]
    b = result["base"]
    for n, run in result["runs"].items():
        a = run["adapted"]
        lines.append(f"{n:>13} | {b['dense']['ndcg@10']:.4f} -> {a['dense']['ndcg@10']:.4f} "
                     f"({run['delta_ndcg@10']['dense']:+.4f}) | {b['hybrid']['ndcg@10']:.4f} -> "
                     f"{a['hybrid']['ndcg@10']:.4f} ({run['delta_ndcg@10']['hybrid']:+.4f}) | "
                     f"{run['train_wall_s']:.0f} / {run['train_cpu_s']:.0f} | {run['embed_cpu_s']:.0f}")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
