"""Question: which BM25 tokenizer and which dense+BM25 fusion (method, normalisation, weight)
retrieve best on the dev sets, with one setting for English and Chinese?

Runs the retrieval pipeline directly (the KB's chunking, tokenizer, exact inner-product
search and BM25, without SQLite), so many settings are scored from one set of candidate
lists. Baseline in the same run: each single retriever (dense, BM25). Embeddings are cached
(``bench/embcache.py``), so a second run only re-scores.

    python bench/fusion_sweep.py                          # all three dev sets
    python bench/fusion_sweep.py --sets zh_rgb --json
"""
from __future__ import annotations

import argparse
import functools
import json
import sys
import time
from pathlib import Path

import numpy as np

# bench/ (on sys.path as the script's folder) holds scripts named like packages (ingest.py):
# the repository root goes first, bench/ last.
sys.path[:] = [str(Path(__file__).resolve().parents[1])] + [
    p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent
] + [str(Path(__file__).resolve().parent)]

from embcache import CachedEmbedder  # noqa: E402

from index.beir import BeirSet, load_beir, score_rankings, subset, to_documents  # noqa: E402
from index.bm25 import BM25Index, make_tokenizer  # noqa: E402
from index.fusion import fuse  # noqa: E402
from index.tokenize import LUCENE_STOPWORDS  # noqa: E402

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "retrieval"
SETS = ("scifact", "zh_rgb", "zh_cmrc2018_dev")
TARGETS = {"scifact": 0.72, "zh_rgb": 0.80, "zh_cmrc2018_dev": 0.95}
TOKENIZERS = {
    "jieba-search+stem": dict(),
    "jieba-precise+stem": dict(zh_mode="precise"),
    "bigram+stem": dict(zh_mode="bigram"),
    "jieba-search,nostem": dict(stem=False),
    "jieba-search+stem,lucene-stop": dict(en_stopwords=LUCENE_STOPWORDS),
    "jieba-search+stem,no-zh-stop": dict(zh_stopwords=frozenset()),
}
WEIGHTS = [round(w, 2) for w in np.arange(0.3, 0.91, 0.05)]


def chunk_corpus(data: BeirSet, emb) -> tuple[list[str], list[str]]:
    """(chunk texts, doc id of each chunk), chunked exactly as the knowledge base does.

    Cached beside the embeddings, keyed by the chunker's source, the embedder and the corpus.
    """
    import hashlib

    import ingest.chunk
    from ingest.chunk import chunk_pages

    h = hashlib.sha256(Path(ingest.chunk.__file__).read_bytes())
    h.update(emb.fingerprint.encode())
    for did, (title, text) in data.corpus.items():
        h.update(f"{did}\0{title}\0{text}\0".encode())
    cached = emb.folder / f"chunks-{data.name}-{h.hexdigest()[:16]}.json"
    if cached.is_file():
        got = json.loads(cached.read_text())
        return got["texts"], got["doc_of"]
    count_tokens = emb.count_tokens
    texts, doc_of = [], []
    for doc in to_documents(data):
        for c in chunk_pages(doc.pages, doc_sha256=doc.sha256, max_tokens=500, overlap=50,
                             count_tokens=count_tokens):
            texts.append(c.text)
            doc_of.append(doc.path.name)
    cached.write_text(json.dumps({"texts": texts, "doc_of": doc_of}, ensure_ascii=False))
    return texts, doc_of


def dense_lists(emb, chunks: list[str], queries: list[str], depth: int) -> list[list[tuple[str, float]]]:
    p = emb.encode_passages(chunks, batch_size=8, show_progress=True)
    q = emb.encode_queries(queries)
    out = []
    for row in q @ p.T:  # exact inner product, as FAISS IndexFlatIP
        top = np.argpartition(-row, min(depth, len(row) - 1))[:depth]
        top = top[np.argsort(-row[top], kind="stable")]
        out.append([(str(i), float(row[i])) for i in top])
    return out


def sparse_lists(tokens: list[list[str]], qtokens: list[list[str]], depth: int,
                 **bm25) -> list[list[tuple[str, float]]]:
    index = BM25Index.build([str(i) for i in range(len(tokens))], tokens, **bm25)
    return [index.search(q, depth) for q in qtokens]


def score(lists: list[list[tuple[str, float]]], qids: list[str], doc_of: list[str], data: BeirSet) -> dict:
    rankings = {}
    for qid, ranked in zip(qids, lists):
        seen: dict[str, None] = {}
        for cid, _ in ranked:
            seen.setdefault(doc_of[int(cid)], None)
        rankings[qid] = list(seen)
    return score_rankings(rankings, data)


def only_cached(emb, data: BeirSet, chunks: list[str], doc_of: list[str]) -> tuple[BeirSet, list[str], list[str]]:
    """Keep the documents whose chunks all have cached vectors, and the queries whose relevant
    documents are all kept (a partial measurement while a corpus is still being embedded)."""
    from embcache import key

    missing = {d for c, d in zip(chunks, doc_of) if key("p", c) not in emb.vectors}
    qids = [q for q, rels in data.qrels.items() if not any(d in missing for d, r in rels.items() if r > 0)]
    kept = BeirSet(data.name, data.split, {d: v for d, v in data.corpus.items() if d not in missing},
                   {q: data.queries[q] for q in qids}, {q: data.qrels[q] for q in qids})
    pairs = [(c, d) for c, d in zip(chunks, doc_of) if d not in missing]
    return kept, [c for c, _ in pairs], [d for _, d in pairs]


def sweep_set(name: str, emb, depth: int, log, sub: str | None = None, bm25_only: bool = False,
              quick: bool = False, cached_only: bool = False) -> dict[str, dict]:
    data = load_beir(DATA / name)
    if sub:
        nq, nd, *hard = (int(x) for x in sub.split(","))
        data = subset(data, nq, nd, seed=0, hard_negatives=hard[0] if hard else 0)
    t0 = time.time()
    chunks, doc_of = chunk_corpus(data, emb)
    if cached_only:
        data, chunks, doc_of = only_cached(emb, data, chunks, doc_of)
        log(f"{name}: cached only: {len(data.corpus)} docs, {len(data.queries)} queries")
    log(f"{name}: {len(data.corpus)} docs -> {len(chunks)} chunks, {len(data.queries)} queries "
        f"({time.time() - t0:.0f} s)")
    qids, qtexts = list(data.queries), list(data.queries.values())
    results: dict[str, dict] = {}
    sparse_by_tok = {}
    for label, opts in (list(TOKENIZERS.items())[:1] if quick else TOKENIZERS.items()):
        t0 = time.time()
        tok = make_tokenizer(**opts)
        tokens, qtokens = [tok(c) for c in chunks], [tok(q) for q in qtexts]
        if label == "jieba-search+stem":
            default_tokens = (tokens, qtokens)
        sparse_by_tok[label] = sparse_lists(tokens, qtokens, depth)
        results[f"bm25[{label}]"] = score(sparse_by_tok[label], qids, doc_of, data)
        log(f"  bm25[{label}] ndcg@10={results[f'bm25[{label}]']['ndcg@10']:.4f} ({time.time() - t0:.0f} s)")
    for k1 in () if quick else (0.9, 1.2, 1.5):
        for b in (0.4, 0.75, 0.9):
            lists = sparse_lists(*default_tokens, depth, k1=k1, b=b)
            results[f"bm25[k1={k1},b={b}]"] = score(lists, qids, doc_of, data)
    if bm25_only:
        return results
    dense = dense_lists(emb, chunks, qtexts, depth)
    results["dense"] = score(dense, qids, doc_of, data)
    sparse = sparse_by_tok["jieba-search+stem"]
    fused = lambda **kw: [fuse(d, s, **kw) for d, s in zip(dense, sparse)]  # noqa: E731
    results["rrf[k=60]"] = score(fused(method="rrf"), qids, doc_of, data)
    for norm in ("minmax", "zscore", "max"):
        for w in WEIGHTS:
            results[f"weighted[{norm},w={w}]"] = score(fused(method="weighted", norm=norm, weight=w),
                                                       qids, doc_of, data)
    return results


def best_shared(all_results: dict[str, dict[str, dict]]) -> list[tuple[str, float, dict]]:
    """Fusion settings ranked by their worst margin over the nDCG@10 targets across sets."""
    common = set.intersection(*(set(r) for r in all_results.values()))
    rows = []
    for cfg in common:
        if not cfg.startswith(("weighted", "rrf")):
            continue
        per = {s: r[cfg]["ndcg@10"] for s, r in all_results.items()}
        rows.append((cfg, min(per[s] - TARGETS.get(s, 0) for s in per), per))
    return sorted(rows, key=lambda r: -r[1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sets", nargs="+", default=list(SETS))
    ap.add_argument("--embedder", default="multilingual-e5-small")
    ap.add_argument("--emb-cache", type=Path, default=None, help="embedding cache folder")
    ap.add_argument("--candidates", type=int, default=100, help="chunks per retriever before fusion")
    ap.add_argument("--subset", action="append", default=[], metavar="SET=NQ,ND",
                    help="score a seeded subset of SET instead: N_QUERIES,N_RANDOM[,N_HARD] (e.g. zh_rgb=25,40,6)")
    ap.add_argument("--bm25-only", action="store_true", help="only the BM25 variants (no embedding)")
    ap.add_argument("--quick", action="store_true", help="default tokenizer and k1/b only")
    ap.add_argument("--cached-only", action="store_true",
                    help="only documents already embedded (and queries whose relevant docs are)")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    from index.embedder import load_embedder

    emb = CachedEmbedder(load_embedder(args.embedder), args.emb_cache)
    log = functools.partial(print, file=sys.stderr, flush=True)
    subsets = dict(item.split("=", 1) for item in args.subset)
    all_results = {s: sweep_set(s, emb, args.candidates, log, subsets.get(s), args.bm25_only, args.quick,
                                args.cached_only) for s in args.sets}
    ranked = [] if args.bm25_only else best_shared(all_results)
    if args.json:
        print(json.dumps({"results": all_results, "shared": ranked[:20]}, indent=1))
        return
    for s, res in all_results.items():
        base = max(res.get("dense", {}).get("ndcg@10", 0), res["bm25[jieba-search+stem]"]["ndcg@10"])
        print(f"\n## {s} (nDCG@10; ratio to the best single retriever {base:.4f})")
        for cfg, m in sorted(res.items(), key=lambda kv: -kv[1]["ndcg@10"])[:25]:
            print(f"{cfg:40s} {m['ndcg@10']:.4f}  x{m['ndcg@10'] / base:.3f}  R@100 {m['recall@100']:.4f}")
    print("\n## one setting for all sets: worst margin over the targets", TARGETS)
    for cfg, margin, per in ranked[:15]:
        print(f"{cfg:40s} {margin:+.4f}  " + "  ".join(f"{s}={v:.4f}" for s, v in per.items()))


if __name__ == "__main__":
    main()
