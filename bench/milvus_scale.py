"""Bench: the knowledge base on Milvus at ~100k real chunk vectors, side by side with the folder backend.

Question: at 100k chunks, how fast does a search answer on Milvus (hybrid, dense, bm25; query embedding
included) against the folder (SQLite + exact FAISS + BM25), and how much of the exact top 10 does Milvus's
HNSW index return (recall@10)? Targets: hybrid p50 <= 100 ms at 100k chunks, recall@10 >= 0.98.

The vectors are real multilingual-e5-small embeddings of real text, since HNSW recall on random vectors
says nothing: the three dev corpora (SciFact abstracts, zh_rgb news, cmrc2018 Wikipedia paragraphs) cut
into ``--max-tokens`` chunks (32 by default, no overlap: ~100k chunks from ~3 M tokens; our own 500-token
chunks would give ~14k). Queries are the sets' own questions (seeded sample, both languages).

Steps, each timed:
1. the folder knowledge base is built through the product pipeline (``KnowledgeBase.add_documents``);
   passages go through the benchmarks' disk cache (bench/embcache.py), so a rerun embeds nothing, and
   ``--work DIR`` keeps the knowledge base itself;
2. ``index migrate`` (``index.milvus_migrate.migrate``) copies it to ``--kb`` without embedding again:
   chunks per second into Milvus;
3. every mode on both backends, queries interleaved pass by pass, p50 / p95 wall ms and the ratio
   Milvus / folder; recall@10 of each Milvus mode against the folder's result for the same query (by chunk id,
   and with hits tied with the exact 10th score counted, as ann-benchmarks counts them).

    nice -n 5 .venv/bin/python bench/milvus_scale.py --work /tmp/mscale --kb milvus-lite:/tmp/mscale/m.db/scale

(``milvus://HOST:PORT/NAME`` measures a Milvus server the same way.) Adding documents through the
pipeline into both backends at a small size is ``bench/search.py --kb URI --real-docs N``.
"""
from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from embcache import CachedEmbedder  # noqa: E402  (bench/, the script's folder)

DATA = ROOT.parent / "shared" / "data" / "retrieval"
SETS = ("scifact", "zh_rgb", "zh_cmrc2018_dev")
MODES = ("hybrid", "dense", "bm25")
TARGET_P50_MS, TARGET_RECALL = 100.0, 0.98


def cpu_s() -> float:
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


def build_folder(folder: Path, max_tokens: int, docs: int | None = None) -> tuple[object, list[str]]:
    """The folder knowledge base of the three corpora (``docs``: a seeded subset of each, for a smoke run;
    built once, reused from ``folder``) and the sets' questions (seeded order, the sets interleaved)."""
    from index.beir import limit, load_beir, to_documents
    from index.embedder import load_embedder
    from index.kb import KnowledgeBase

    emb = CachedEmbedder(load_embedder("multilingual-e5-small"))
    kb = KnowledgeBase.open(folder, embedder=emb, max_tokens=max_tokens, overlap=0)
    per_set = []
    for name in SETS:
        data = load_beir(DATA / name)
        data = limit(data, max_queries=20, max_docs=docs) if docs else data
        todo = [d for d in to_documents(data) if not kb.store.has_document(d.sha256)]
        if todo:
            wall, cpu = time.perf_counter(), cpu_s()
            kb.add_documents(todo, progress=sys.stderr.isatty())
            print(f"  folder: {name}: {len(todo)} documents in {time.perf_counter() - wall:.0f} s "
                  f"({cpu_s() - cpu:.0f} CPU s, embedding included); {kb.store.count_chunks()} chunks now", flush=True)
        qs = sorted(data.queries.values())
        random.Random(0).shuffle(qs)
        per_set.append(qs)
    questions = [q for group in zip(*per_set) for q in group]
    return kb, questions


def copy_to_milvus(folder: Path, uri: str) -> None:
    from index.milvus_migrate import migrate

    wall, cpu = time.perf_counter(), cpu_s()
    done = migrate(folder, uri)
    secs = time.perf_counter() - wall
    if done.chunks:
        print(f"  migrate -> {uri}: {done.documents} documents / {done.chunks} chunks in {secs:.0f} s "
              f"({done.chunks / secs:.0f} chunks/s; this process {cpu_s() - cpu:.0f} CPU s); load "
              f"{os.getloadavg()[0]:.1f}", flush=True)
    else:
        print(f"  {uri}: holds the {done.skipped} documents already", flush=True)


def measure(kbs: dict[str, object], queries: list[str], repeat: int) -> dict:
    """(backend, mode) -> (wall ms per search, top-10 (chunk id, score) per query); backends interleaved per
    query."""
    out: dict = {(b, m): ([], {}) for b in kbs for m in MODES}
    for kb in kbs.values():
        kb.search("warm-up", k=10)  # model load, index load: not a search cost
    for _ in range(repeat):
        for q in queries:
            for mode in MODES:
                for name, kb in kbs.items():
                    start = time.perf_counter()
                    hits = kb.search(q, k=10, mode=mode)
                    times, got = out[(name, mode)]
                    times.append((time.perf_counter() - start) * 1000)
                    got[q] = [(h.chunk_id, h.score) for h in hits]
    return out


def recall_at_10(exact: list[tuple[str, float]], got: list[tuple[str, float]]) -> tuple[float, float]:
    """Share of the exact top 10 returned: by chunk id, and counting a hit whose score ties the exact 10th
    within 1e-3 (ann-benchmarks' k-NN recall, Aumüller et al. 2020: equal-score chunks, e.g. the same sentence
    in two news stories, are interchangeable).

    >>> recall_at_10([("a", 0.9), ("b", 0.8)], [("a", 0.9), ("c", 0.8)])
    (0.5, 1.0)
    """
    if not exact:
        return 1.0, 1.0
    ids = {c for c, _ in exact}
    floor = exact[-1][1] - 1e-3
    return (sum(c in ids for c, _ in got) / len(exact),
            min(sum(c in ids or s >= floor for c, s in got), len(exact)) / len(exact))


def report(out: dict, queries: list[str], n_chunks: int, load: tuple[float, float]) -> None:
    print(f"\n{n_chunks} chunks, {len(queries)} queries; load average {load[0]:.1f} -> {load[1]:.1f} on "
          f"{os.cpu_count()} CPUs (wall figures include waiting for a CPU)")
    print(f"  {'mode':6} {'folder p50':>10} {'p95':>7} {'milvus p50':>10} {'p95':>7} {'ratio':>6} {'recall@10':>9}"
          f" {'(ties)':>7}")
    for mode in MODES:
        (ft, fgot), (mt, mgot) = out[("folder", mode)], out[("milvus", mode)]
        f50, f95 = np.percentile(ft, [50, 95])
        m50, m95 = np.percentile(mt, [50, 95])
        recall, ties = (statistics.mean(r) for r in zip(*(recall_at_10(fgot[q], mgot[q]) for q in queries)))
        print(f"  {mode:6} {f50:10.1f} {f95:7.1f} {m50:10.1f} {m95:7.1f} {m50 / f50:6.2f} {recall:9.4f} {ties:7.4f}")
    m50 = float(np.percentile(out[("milvus", "hybrid")][0], 50))
    print(f"\nMilvus hybrid p50 {m50:.1f} ms: target <= {TARGET_P50_MS:.0f} ms "
          f"{'met' if m50 <= TARGET_P50_MS else 'MISSED'}")
    fgot, mgot = out[("folder", "dense")][1], out[("milvus", "dense")][1]
    recall = statistics.mean(recall_at_10(fgot[q], mgot[q])[0] for q in queries)
    print(f"Milvus dense recall@10 (HNSW vs exact, by chunk id) {recall:.4f}: target >= {TARGET_RECALL} "
          f"{'met' if recall >= TARGET_RECALL else 'MISSED'}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--kb", required=True, help="milvus://HOST:PORT/NAME or milvus-lite:PATH.db/NAME")
    ap.add_argument("--work", type=Path, default=Path("/tmp/milvus-scale"), help="keeps the folder KB")
    ap.add_argument("--max-tokens", type=int, default=32, help="chunk size (tokens) of the folder KB")
    ap.add_argument("--docs", type=int, default=None, help="documents per corpus (default all; a smoke run: 30)")
    ap.add_argument("--queries", type=int, default=60)
    ap.add_argument("--repeat", type=int, default=2, help="passes over the queries")
    ap.add_argument("--build-only", action="store_true",
                    help="steps 1-2 only (while the machine is busy); a later run reuses both and measures")
    args = ap.parse_args(argv)
    if not all((DATA / s / "corpus.jsonl").exists() for s in SETS):
        print(f"skipped: the dev sets are not under {DATA}")
        return 0
    from index.kb import KnowledgeBase

    folder = args.work / f"folder-{args.max_tokens}-{args.docs or 'all'}"
    kb, questions = build_folder(folder, args.max_tokens, args.docs)
    n_chunks = kb.store.count_chunks()
    kb.close()
    copy_to_milvus(folder, args.kb)
    if args.build_only:
        return 0
    queries = questions[: args.queries]
    load0 = os.getloadavg()[0]
    with KnowledgeBase.open(folder) as f, KnowledgeBase.open(args.kb) as m:
        out = measure({"folder": f, "milvus": m}, queries, args.repeat)
    report(out, queries, n_chunks, (load0, os.getloadavg()[0]))
    sys.stdout.flush()  # a run redirected to a file once ended with exit 0 and the table unwritten
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
