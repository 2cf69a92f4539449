"""Bench: p50/p95 latency of `kb.search` at 10k and 100k chunks (hybrid, dense, bm25).

Question: is search fast enough on one CPU machine? Target: hybrid p50 <= 100 ms at 100k
chunks, query embedding included.

How the knowledge bases are made (fast, reproducible):
- Text: a seeded generator writes mixed Chinese/English documents (50 % zh, 40 % en, 10 %
  zh pages with English terms) from Zipfian vocabularies (Chinese: jieba's 30k most frequent
  words with their real counts; English: real function words, then 30k pseudo-words), so
  BM25 posting lists have realistic lengths.
  Each page holds about one chunk (~380 embedder tokens); documents have 10 pages.
- Vectors: embedding 100k chunks with e5 would take hours on 2 cores, so passages get
  random unit vectors (seeded) from ``BenchEmbedder.encode_passages``, and chunk sizes are
  counted with a fast approximation (words*1.3 + CJK chars*0.8). Exact inner-product search
  costs the same whatever the vectors are. Queries are embedded by the REAL
  multilingual-e5-small model (``encode_queries``), so query-embedding cost is real.
- Queries: spans cut from random stored chunks, wrapped in zh/en question templates.

The knowledge bases are built through ``KnowledgeBase.add_documents`` (the real pipeline:
chunking, BM25 tokenising, SQLite, FAISS/BM25 build); jieba dominates the build (270 s for
100k chunks on the 2 idle cores here, ~30 min on busy ones), so ``--kb-dir DIR`` keeps them for the next run (~1.3 GB).
Run niced:  nice -n 10 .venv/bin/python bench/search.py [--quick] [--kb-dir /tmp/bench-kbs]

Now against before, interleaved query by query in the same run: ``new`` is the query path
as it is (one torch thread to embed a single query, one FAISS thread per search), ``old``
leaves torch and FAISS their own thread settings (2 on this machine), as before. On a busy
machine (load average above the CPU count) a second OpenMP thread spins while the other is
descheduled: one query took 5-35x longer to embed. Figures: wall and this process's CPU time;
the load average is printed with them.

``--add-one``: seconds to add (and then remove) one 10-page document to the largest
knowledge base, incremental derived-index updates against the full rebuild of before.
"""
from __future__ import annotations

import argparse
import hashlib
import os
import statistics
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path
from typing import Sequence

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from embcache import CachedEmbedder as DiskCachedEmbedder  # noqa: E402  (bench/, the script's folder)

from common.cjk import count_han, has_han, is_han  # noqa: E402
from index.embedder import SentenceTransformerEmbedder  # noqa: E402  (light: no torch at import)

TARGET_P50_MS = 100.0  # hybrid, at 100k chunks
PAGES_PER_DOC = 10
PAGE_TOKENS = 380  # approximate embedder tokens per page (~ one chunk of max 500)
EN_FUNCTION = ("the of and to a in is for that on with as by be this are from or at it an not "
               "which can was has have will all if its may should each must after before when "
               "than more any other per within only also into under".split())
QUESTION_EN = ("what does the manual say about {}?", "how often {}?", "{} - what is the rule?",
               "when must {}?", "requirements for {}")
QUESTION_ZH = ("{}是怎么规定的？", "关于{}有什么要求？", "{}的标准是多少？", "请问{}", "{}需要注意什么？")


class BenchEmbedder(SentenceTransformerEmbedder):
    """Real e5 for queries; random unit vectors and approximate token counts for passages."""

    def __init__(self, model: str = "multilingual-e5-small", backend: str = "torch") -> None:
        super().__init__(model, backend=backend)  # the backend that embeds the queries
        self.name = f"bench-random-passages+{model}"
        self.cached: dict[str, np.ndarray] = {}  # query -> vector, to time search without encoding

    def encode_queries(self, texts: Sequence[str]) -> np.ndarray:
        if texts and all(t in self.cached for t in texts):
            return np.stack([self.cached[t] for t in texts])
        return super().encode_queries(texts)

    @property
    def fingerprint(self) -> str:  # fixed: a kept --kb-dir reopens with this embedder
        return "bench-v1-" + hashlib.sha256(self.name.encode()).hexdigest()[:16]

    def count_tokens(self, text: str) -> int:
        return int(len(text.split()) * 1.3 + count_han(text) * 0.8) + 4

    def encode_passages(self, texts: Sequence[str], *, batch_size: int = 32,
                        show_progress: bool = False) -> np.ndarray:
        seed = int.from_bytes(hashlib.blake2b("".join(texts[:2]).encode(), digest_size=8).digest(), "little")
        vecs = np.random.default_rng(seed).standard_normal((len(texts), self.dim), dtype=np.float32)
        return vecs / np.linalg.norm(vecs, axis=1, keepdims=True)


class TextGen:
    """Seeded mixed zh/en text with Zipfian vocabularies.

    Chinese: the 30k most frequent words of jieba's dictionary with their real frequencies.
    English: real function words, then 30k pseudo-words with Zipf weights (rank^-1.07).
    """

    def __init__(self, seed: int = 0, vocab: int = 30_000) -> None:
        self.rng = np.random.default_rng(seed)
        syl = np.array([c + v for c in "bcdfghjklmnprstvwz" for v in "aeiouy"])
        lens = self.rng.integers(1, 4, size=vocab * 2)
        picks = self.rng.integers(0, len(syl), size=(vocab * 2, 3))
        pseudo = {"".join(syl[row[:k]]) for row, k in zip(picks, lens)} - set(EN_FUNCTION)
        # sorted first (set order is not seeded), then shuffled: rank must not follow the alphabet
        self.en = EN_FUNCTION + [str(w) for w in self.rng.permutation(sorted(pseudo))[:vocab]]
        w = np.cumsum(1.0 / (np.arange(len(self.en)) + 2.7) ** 1.07)
        self.cdf_en = w / w[-1]
        self.zh, freq = _jieba_words(vocab)
        self.cdf_zh = np.cumsum(freq) / freq.sum()

    def _words(self, vocab: list[str], cdf: np.ndarray, n: int) -> list[str]:
        idx = np.minimum(np.searchsorted(cdf, self.rng.random(n)), len(vocab) - 1)
        return [vocab[i] for i in idx]

    def en_page(self) -> str:
        words = self._words(self.en, self.cdf_en, int(PAGE_TOKENS / 1.3))
        cuts = np.cumsum(self.rng.integers(8, 22, size=len(words)))
        sents = [" ".join(words[a:b]) for a, b in zip(np.r_[0, cuts], cuts) if a < len(words)]
        return "\n".join(s[:1].upper() + s[1:] + "." for s in sents)

    def zh_page(self, mixed: bool = False) -> str:
        words = self._words(self.zh, self.cdf_zh, int(PAGE_TOKENS / 0.8 / 1.8))
        if mixed:  # English product names and terms inside Chinese text
            for i in self.rng.choice(len(words), size=len(words) // 12, replace=False):
                words[i] = f" {self._words(self.en, self.cdf_en, 1)[0].upper()}-{self.rng.integers(10, 999)} "
        cuts = np.cumsum(self.rng.integers(6, 16, size=len(words)))
        return "\n".join("".join(words[a:b]) + "。" for a, b in zip(np.r_[0, cuts], cuts) if a < len(words))

    def document(self, n: int) -> object:
        from ingest.records import Document, Page

        lang = self.rng.choice(["zh", "en", "mixed"], p=[0.5, 0.4, 0.1])
        pages = tuple(Page(number=i + 1, text=self.en_page() if lang == "en" else
                           self.zh_page(mixed=lang == "mixed")) for i in range(PAGES_PER_DOC))
        sha = hashlib.sha256(f"bench-doc-{n}".encode()).hexdigest()
        return Document(path=Path(f"/bench/doc-{n:06d}.pdf"), sha256=sha, title=f"bench doc {n}",
                        kind="pdf", pages=pages)

    def query(self, chunk_text: str) -> str:
        """A question about a span of ``chunk_text`` (so BM25 and dense both have a target)."""
        words = chunk_text.replace("。", " ").split()
        if not has_han(chunk_text):
            start = self.rng.integers(0, max(1, len(words) - 5))
            span = " ".join(w.strip(".") for w in words[start:start + int(self.rng.integers(3, 6))])
            return str(self.rng.choice(QUESTION_EN)).format(span.lower())
        flat = chunk_text.replace("\n", "").replace("。", "")
        start = self.rng.integers(0, max(1, len(flat) - 12))
        return str(self.rng.choice(QUESTION_ZH)).format(flat[start:start + int(self.rng.integers(6, 12))])


def _jieba_words(n: int) -> tuple[list[str], np.ndarray]:
    """The ``n`` most frequent all-Chinese words of jieba's dictionary and their counts."""
    import importlib.util

    folder = Path(next(iter(importlib.util.find_spec("jieba").submodule_search_locations)))
    rows = []
    for line in (folder / "dict.txt").read_text(encoding="utf-8").splitlines():
        word, count = line.split()[:2]
        if all(is_han(ch) for ch in word):
            rows.append((-int(count), word))
    rows.sort()
    return [w for _, w in rows[:n]], np.array([-c for c, _ in rows[:n]], dtype=np.float64)


def build_kb(path: Path, emb: BenchEmbedder, n_chunks: int) -> object:
    """Open the KB at ``path``; add generated documents until it holds >= ``n_chunks``.

    Documents go in with as few ``add_documents`` calls as possible (each call rebuilds
    the FAISS and BM25 indexes once, at its end); the number of documents needed is
    estimated from how the real chunker cuts a sample.
    """
    from index.kb import KnowledgeBase
    from ingest.chunk import chunk_pages

    kb = KnowledgeBase.open(path, embedder=emb)
    have, gen, start = kb.store.count_chunks(), TextGen(seed=1234), time.perf_counter()
    n = len(kb.documents())  # documents are numbered; a kept --kb-dir continues the numbering
    sample = [gen.document(-i - 1) for i in range(20)]
    per_doc = sum(len(chunk_pages(d.pages, doc_sha256=d.sha256, max_tokens=kb.config.max_tokens,
                                  overlap=kb.config.overlap, count_tokens=emb.count_tokens))
                  for d in sample) / len(sample)
    if have >= n_chunks:
        print(f"  {path.name}: reusing {have} chunks")
    while have < n_chunks:
        want = int((n_chunks - have) / per_doc) + 1
        print(f"  {path.name}: adding {want} documents (~{per_doc:.1f} chunks each) "
              "through the pipeline")
        docs = [d for d in (gen.document(n + i) for i in range(want)) if not kb.store.has_document(d.sha256)]
        n += want
        kb.add_documents(docs, progress=True)
        have = kb.store.count_chunks()
        print(f"  {path.name}: {have} chunks after {time.perf_counter() - start:.0f} s")
    return kb


def percentiles(ms: list[float]) -> tuple[float, float]:
    q = statistics.quantiles(ms, n=100, method="inclusive")
    return q[49], q[94]


# The query path now (one torch thread for a single query, one FAISS thread per search) and
# before (torch's and FAISS's own thread settings), measured interleaved in the same run.
VARIANTS = {"new": dict(search_threads=1, one_thread_queries=8),
            "old": dict(search_threads=0, one_thread_queries=0)}


def use(variant: str) -> None:
    from index import derived, embedder

    derived.SEARCH_THREADS = VARIANTS[variant]["search_threads"]
    embedder.ONE_THREAD_QUERIES = VARIANTS[variant]["one_thread_queries"]


def measure(kb: object, queries: list[str], repeat: int) -> dict[tuple[str, str], list[tuple[float, float]]]:
    """(wall ms, CPU ms of this process) per call, by (variant, what): each search mode; query
    embedding alone; hybrid with the query vector precomputed (indexes + fusion + store).
    The old variant is timed on hybrid, embed and hybrid-cached only (bm25 did not change)."""
    modes = ("hybrid", "dense", "bm25")
    times: dict[tuple[str, str], list[tuple[float, float]]] = defaultdict(list)
    for variant in VARIANTS:  # warm-up: caches, first FAISS/BM25 touch
        use(variant)
        for q in queries[:3]:
            for mode in modes:
                kb.search(q, k=5, mode=mode)
    for _ in range(repeat):
        for q in queries:
            for variant in VARIANTS:
                use(variant)
                for mode in modes if variant == "new" else ("hybrid",):
                    times[variant, mode].append(_timed(kb.search, q, k=5, mode=mode))
                times[variant, "embed"].append(_timed(kb.embedder.encode_queries, [q]))
    use("new")
    kb.embedder.cached = {q: kb.embedder.encode_queries([q])[0] for q in queries}
    for _ in range(repeat):
        for q in queries:
            for variant in VARIANTS:
                use(variant)
                times[variant, "hybrid-cached"].append(_timed(kb.search, q, k=5, mode="hybrid"))
    use("new")
    kb.embedder.cached = {}
    return times


def _timed(fn: object, *args: object, **kw: object) -> tuple[float, float]:
    wall, cpu = time.perf_counter(), time.process_time()
    fn(*args, **kw)
    return (time.perf_counter() - wall) * 1000, (time.process_time() - cpu) * 1000


def sample_queries(kb: object, n: int) -> list[str]:
    gen = TextGen(seed=99, vocab=10)
    total = kb.store.count_chunks()
    ids = np.random.default_rng(7).choice(np.arange(1, total + 1), size=n, replace=False)
    rows = kb.store.db.execute(f"SELECT text FROM chunks WHERE id IN ({','.join('?' * n)})",
                               [int(i) for i in ids]).fetchall()
    return [gen.query(r[0]) for r in rows]


def report(results: dict[int, tuple[int, dict, str]]) -> None:
    """The table of p50/p95 per size and mode, now and before, and the verdict."""
    print(f"\n{'chunks':>8} {'mode':>13} {'p50 ms':>8} {'p95 ms':>8} {'cpu p50':>8} | {'before':>8} "
          f"{'p95':>8} {'cpu p50':>8} | {'p50 ratio':>9}  note")
    notes = {"hybrid": "", "dense": "", "bm25": "", "embed": "query embedding alone",
             "hybrid-cached": "query vector precomputed: indexes + fusion + store"}
    for n, times, load in results.values():
        for mode, note in notes.items():
            p50, p95 = percentiles([w for w, _ in times["new", mode]])
            cpu = statistics.median(c for _, c in times["new", mode])
            line = f"{n:>8} {mode:>13} {p50:>8.1f} {p95:>8.1f} {cpu:>8.1f} | "
            if ("old", mode) in times:
                o50, o95 = percentiles([w for w, _ in times["old", mode]])
                ocpu = statistics.median(c for _, c in times["old", mode])
                line += f"{o50:>8.1f} {o95:>8.1f} {ocpu:>8.1f} | {p50 / o50:>9.2f}"
            else:
                line += f"{'':>8} {'':>8} {'':>8} | {'':>9}"
            print(f"{line}  {note}")
        print(f"{'':>8} load average during this size: {load}")
    print(f"CPUs: {os.cpu_count()}; wall figures include waiting for a CPU when the load average "
          "is above that; CPU = this process's CPU time (all its threads)")
    size = max(results)
    p50 = percentiles([w for w, _ in results[size][1]["new", "hybrid"]])[0]
    scale = "100k" if size == 100_000 else "10k (--quick; the target is set at 100k)"
    print(f"\nhybrid p50 at {scale}: {p50:.1f} ms; target <= {TARGET_P50_MS:.0f} ms: "
          f"{'meets' if p50 <= TARGET_P50_MS else 'misses'} it (ratio to target {p50 / TARGET_P50_MS:.2f})")


def run_size(kb: object, n_queries: int, repeat: int) -> tuple[int, dict, str]:
    """(chunks, timings, load average at start -> end) for one knowledge base."""
    queries = sample_queries(kb, n_queries)
    print(f"  e.g. {queries[0]!r} / {queries[1]!r}")
    kb.search(queries[0])  # loads (or rebuilds) the saved indexes: not a search cost
    start = os.getloadavg()[0]
    times = measure(kb, queries, repeat)
    return kb.store.count_chunks(), times, f"{start:.1f} -> {os.getloadavg()[0]:.1f}"


def add_one(path: Path, emb: BenchEmbedder, repeat: int) -> None:
    """Seconds to add (then remove) one 10-page document: incremental derived-index updates
    against the full rebuild every write used to do, interleaved; a fresh KnowledgeBase
    each time, as for one `ingest add` (loading the saved indexes is counted). Passages get
    random vectors, so this is the pipeline's cost without the model (~10 chunks to embed)."""
    from index import derived
    from index.kb import KnowledgeBase

    gen, rebuild_all = TextGen(seed=4321), lambda store, base, dim: derived.build(store, dim)

    def cycle(n: int, rebuild: bool) -> tuple[tuple[float, float], tuple[float, float]]:
        doc, original = gen.document(1_000_000 + n), derived.update
        kb = KnowledgeBase.open(path, embedder=emb)
        derived.update = rebuild_all if rebuild else original
        try:
            return _timed(kb.add_documents, [doc]), _timed(kb.remove, doc.sha256)
        finally:
            derived.update = original
            kb.close()

    cycle(0, False)  # warm-up: saves the indexes in the current format, loads jieba
    runs: dict[bool, list] = {False: [], True: []}
    loads = [os.getloadavg()[0]]
    for r in range(repeat):
        for rebuild in (False, True):
            runs[rebuild].append(cycle(1 + 2 * r + rebuild, rebuild))
            loads.append(os.getloadavg()[0])
    with KnowledgeBase.open(path, embedder=emb) as kb:
        n = kb.store.count_chunks()
    print(f"\nadd one 10-page document to {path.name} ({n} chunks), median of {repeat}; "
          f"load average {min(loads):.1f}-{max(loads):.1f} on {os.cpu_count()} CPUs")
    for i, what in enumerate(("add", "remove")):
        inc = [run[i] for run in runs[False]]
        full = [run[i] for run in runs[True]]
        w, c = (statistics.median(x[j] for x in inc) / 1000 for j in (0, 1))
        fw, fc = (statistics.median(x[j] for x in full) / 1000 for j in (0, 1))
        print(f"  {what:>6}: incremental {w:6.2f} s (CPU {c:6.2f} s); full rebuild {fw:6.2f} s "
              f"(CPU {fc:6.2f} s); ratio {w / fw:.3f} wall, {c / fc:.3f} CPU")


class PassageCache(DiskCachedEmbedder):
    """Passages from the benchmarks' disk cache (bench/embcache.py: embedded once, across runs; the time
    spent embedding is counted apart), queries embedded live, so adding the same documents to a second
    backend times the store, not the model."""

    embed_s = 0.0

    def encode_passages(self, texts: Sequence[str], **kw: object) -> np.ndarray:
        start, before = time.perf_counter(), self.computed
        vecs = super().encode_passages(texts, **kw)
        if self.computed > before:
            self.embed_s += time.perf_counter() - start
        return vecs

    def encode_queries(self, texts: Sequence[str]) -> np.ndarray:
        return self.inner.encode_queries(texts)


def milvus_side_by_side(uri: str, n_docs: int, n_queries: int, repeat: int) -> None:
    """Real e5 vectors of ``n_docs`` SciFact abstracts into a folder KB and ``uri`` (Milvus): ingest
    throughput, p50/p95 per mode, and recall@10 of Milvus HNSW against exact search (the folder's FAISS)."""
    from index.beir import doc_text, limit, load_beir
    from index.embedder import load_embedder
    from index.kb import KnowledgeBase
    from ingest.records import Document, Page

    beir = limit(load_beir(ROOT.parent / "shared" / "data" / "retrieval" / "scifact"), max_queries=n_queries,
                 max_docs=n_docs)
    docs = [Document(path=Path(f"scifact/{d}.txt"), sha256=hashlib.sha256(d.encode()).hexdigest(), title=d,
                     kind="text", pages=(Page(1, doc_text(*v)),))
            for d, v in beir.corpus.items()]
    emb = PassageCache(load_embedder("multilingual-e5-small"))
    queries = list(beir.queries.values())
    hits: dict[str, dict] = {}
    for name, where in (("folder", Path(tempfile.mkdtemp(prefix="bench-folder-")) / "kb"), ("milvus", uri)):
        with KnowledgeBase.open(where, embedder=emb) as kb:
            embed_before, start = emb.embed_s, time.perf_counter()
            report = kb.add_documents(docs)
            wall = time.perf_counter() - start - (emb.embed_s - embed_before)
            n = sum(f.chunks or 0 for f in report.files)
            print(f"{name}: add {len(docs)} docs / {n} chunks: {wall:.1f} s besides embedding ({n / wall:.0f} chunks/s;"
                  f" embedding {emb.embed_s - embed_before:.1f} s); load {os.getloadavg()[0]:.1f}")
            kb.search("warm-up", k=5)
            for mode in ("hybrid", "dense", "bm25"):
                times, got = [], {}
                for _ in range(repeat):
                    for q in queries:
                        start = time.perf_counter()
                        got[q] = [h.chunk_id for h in kb.search(q, k=10, mode=mode)]
                        times.append((time.perf_counter() - start) * 1000)
                hits.setdefault(mode, {})[name] = got
                q50, q95 = np.percentile(times, [50, 95])
                print(f"  {name:6} {mode:6} p50 {q50:6.1f} ms  p95 {q95:6.1f} ms  (load {os.getloadavg()[0]:.1f})")
    for mode in ("dense", "hybrid", "bm25"):
        exact, milvus = hits[mode]["folder"], hits[mode]["milvus"]
        recall = statistics.mean(len(set(exact[q]) & set(milvus[q])) / max(len(exact[q]), 1) for q in queries)
        print(f"  recall@10 milvus vs folder (exact FAISS) {mode}: {recall:.4f}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="kb.search latency at 10k / 100k chunks")
    parser.add_argument("--quick", action="store_true", help="10k chunks only")
    parser.add_argument("--embedder-backend", default="onnx", choices=("onnx", "torch"),
                        help="how queries are embedded (onnx: the CPU default since the ONNX backend)")
    parser.add_argument("--kb-dir", type=Path, help="keep/reuse the built knowledge bases here")
    parser.add_argument("--queries", type=int, default=40)
    parser.add_argument("--repeat", type=int, default=2, help="passes over the queries")
    parser.add_argument("--torch-threads", type=int, help="torch.set_num_threads (default: torch's)")
    parser.add_argument("--add-one", action="store_true",
                        help="instead: time adding one 10-page document to the largest KB")
    parser.add_argument("--kb", help="milvus://HOST:PORT/NAME or milvus-lite:PATH.db[/NAME]: instead, real e5 vectors "
                        "of --real-docs SciFact abstracts in a folder KB and this Milvus, side by side")
    parser.add_argument("--real-docs", type=int, default=1000)
    args = parser.parse_args(argv)
    if args.kb:
        milvus_side_by_side(args.kb, args.real_docs, args.queries, args.repeat)
        return 0
    import torch

    if args.torch_threads:
        torch.set_num_threads(args.torch_threads)
    emb = BenchEmbedder(backend=args.embedder_backend)
    emb.encode_queries(["warm-up"])  # model load is not a search cost
    print(f"embedder: random passages + real {emb.name.split('+')[1]} queries; torch threads "
          f"{torch.get_num_threads()}; {args.queries} queries x {args.repeat} passes per size; "
          f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
    root = args.kb_dir or Path(tempfile.mkdtemp(prefix="bench-search-"))
    results = {}
    for size in (10_000,) if args.quick else (10_000, 100_000):
        with build_kb(root / f"kb{size // 1000}k", emb, size) as kb:
            if not args.add_one:
                results[size] = run_size(kb, args.queries, args.repeat)
    if args.add_one:
        add_one(root / f"kb{size // 1000}k", emb, args.repeat)
    else:
        report(results)
    if not args.kb_dir:
        import shutil

        shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
