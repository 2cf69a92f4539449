"""Bench: concurrent writers and readers of one knowledge base (issue #13).

Question: with N `ingest add` processes writing to one knowledge base at once, do they all
succeed, does the store stay whole, how long does each hold the write lock per document, and
does a search running meanwhile ever get a short or inconsistent result?
Targets: no writer fails (before: 18 of 40 failed in rounds of 4 with the default embedder);
0 short or inconsistent searches (before: 1 in 3,762).

Setup: a knowledge base seeded with 5 one-chunk filler documents and ``target.txt``. Then, per
round, ``--writers`` processes each ``KnowledgeBase.add`` their own ``--files`` new documents
(~``--words`` words each) with the real default lock timeout (10 s); during the first round a
replacer process replaces ``target.txt`` ``--replaces`` times, and during all of it a reader
process reopens the knowledge base for every search (as `index search` does) and searches
hybrid, k=5, for the target's words. A search is *short* with fewer than 5 hits, *inconsistent*
when the target is not among them exactly once (neither version, or both).
Afterwards: *corrupt* unless ``PRAGMA integrity_check`` is ok, every document is there, and
the saved FAISS and BM25 indexes hold exactly the stored chunks.

Embedder: ``hash`` (default) is the exact fake hash embedder of the tests with ``--delay-s``
seconds of sleep per encode call, standing in for a slow model; ``multilingual-e5-small`` (or
any id) is the real one (each process loads it). Lock holds are the ``AddReport.lock_holds``
of every writer: "commit" holds (documents stored, each in its own transaction) divided by the
documents they stored give the per-document figure; "finish" holds settle the paths and save
the derived indexes, once per run.
Run niced:  nice -n 10 .venv/bin/python bench/concurrency.py [--embedder multilingual-e5-small]
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
WORDS = ("solar panel battery warranty invoice refund shipping voltage safety inspection monthly annual "
         "report revenue margin customer service policy return purchase repair parts manual").split()
TARGET_WORDS = "zebra quantum lighthouse"
K = 5


def embedder(name: str, delay_s: float) -> object:
    """The hash fake made slow by ``delay_s`` per encode call, or the real embedder ``name``."""
    from index.embedder import HashEmbedder, load_embedder

    if name != "hash":
        return load_embedder(name)

    class Slow(HashEmbedder):
        def encode_passages(self, texts, **kw):  # type: ignore[override]
            time.sleep(delay_s)
            return super().encode_passages(texts, **kw)

    return Slow(dim=64)


def writer(kb: str, name: str, delay_s: str, *files: str) -> None:
    """One `ingest add` of ``files``; prints its counts and lock holds (or the error) as JSON."""
    from index.errors import KBLocked
    from index.kb import KnowledgeBase

    with KnowledgeBase.open(kb, embedder=embedder(name, float(delay_s))) as base:
        start = time.perf_counter()
        try:
            report = base.add(list(files))
        except KBLocked as e:
            print(json.dumps({"error": str(e), "files": len(files)}))
            return
    print(json.dumps({"counts": report.to_json()["counts"], "seconds": time.perf_counter() - start,
                      "holds": [[h.kind, h.seconds, h.files] for h in report.lock_holds]}))


def replacer(kb: str, name: str, delay_s: str, target: str, times: str) -> None:
    """Replace ``target`` ``times`` times, one `ingest add` each; prints how many were replaced."""
    from index.errors import KBLocked
    from index.kb import KnowledgeBase

    done = 0
    with KnowledgeBase.open(kb, embedder=embedder(name, float(delay_s))) as base:
        for i in range(1, int(times) + 1):
            Path(target).write_text(f"{TARGET_WORDS} version{i} beacon.")
            try:
                done += base.add([target]).files[0].status == "replaced"
            except KBLocked:
                pass  # counted as not replaced
    print(json.dumps({"replaced": done}))


def reader(kb: str, name: str, target: str, stop: str) -> None:
    """Until ``stop`` exists: open, search, close; a JSON line per search (hits, target's hits)."""
    from index.kb import KnowledgeBase

    emb = embedder(name, 0.0)
    while not Path(stop).exists():
        with KnowledgeBase.open(kb, embedder=emb) as base:
            hits = base.search(TARGET_WORDS, k=K)
        print(json.dumps([len(hits), sum(h.path == target for h in hits)]), flush=True)


def spawn(role: str, *args: object, out: object = subprocess.PIPE) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, __file__, "--worker", role, *map(str, args)],
                            stdout=out, text=True, cwd=ROOT)


def last_json(proc: subprocess.Popen) -> dict:
    """The last line a worker printed, or its failure."""
    lines = proc.communicate()[0].strip().splitlines()
    return json.loads(lines[-1]) if lines else {"error": f"exit status {proc.returncode}, nothing printed"}


def write_docs(folder: Path, tag: str, n: int, words: int, seed: int) -> list[str]:
    rng = np.random.default_rng(seed)
    paths = []
    for i in range(n):
        path = folder / f"{tag}-{i}.txt"
        text = ". ".join(" ".join(rng.choice(WORDS, size=12)) for _ in range(max(1, words // 12)))
        path.write_text(f"{text}. unique {tag} {i}.")
        paths.append(str(path))
    return paths


def seed(kb: Path, docs: Path, args: argparse.Namespace) -> str:
    """The seeded knowledge base; the target's path."""
    from index.kb import KnowledgeBase

    for i in range(K):
        (docs / f"filler{i}.txt").write_text(" ".join(WORDS[i * 4:i * 4 + 4]) + ".")
    target = docs / "target.txt"
    target.write_text(f"{TARGET_WORDS} version0 beacon.")
    with KnowledgeBase.open(kb, embedder=embedder(args.embedder, 0.0)) as base:
        base.add([str(docs)])
    return str(target.resolve())


def run(args: argparse.Namespace, tmp: Path) -> tuple[list[dict], list[list[int]], dict, Path]:
    """Writers (and the replacer) in rounds while the reader searches; their outputs."""
    kb, docs = tmp / "kb", tmp / "docs"
    docs.mkdir()
    target = seed(kb, docs, args)
    stop, lines = tmp / "stop", tmp / "searches.jsonl"
    read = spawn("reader", kb, args.embedder, target, stop, out=lines.open("w"))  # a file: never a full pipe
    while not lines.stat().st_size and read.poll() is None:
        time.sleep(0.1)  # until the reader is searching
    results, replaced = [], {}
    try:
        for r in range(args.rounds):
            procs = [spawn("writer", kb, args.embedder, args.delay_s,
                           *write_docs(docs, f"r{r}w{w}", args.files, args.words, seed=1000 * r + w))
                     for w in range(args.writers)]
            rep = spawn("replacer", kb, args.embedder, args.delay_s, target, args.replaces) if r == 0 else None
            results += [last_json(p) for p in procs]
            replaced = last_json(rep) if rep is not None else replaced
    finally:
        stop.touch()
        read.wait()
    searches = [json.loads(line) for line in lines.read_text().splitlines()]
    return results, searches, replaced, kb


def corrupt(kb: Path, documents: int) -> str:
    """'' when the store is whole and the saved indexes hold exactly its chunks; else what is wrong."""
    import faiss

    from index import derived
    from index.store import Store

    store = Store(kb / "kb.sqlite")
    try:
        check = store.db.execute("PRAGMA integrity_check").fetchone()[0]
        found, ids = len(store.documents()), store.chunk_ids().tolist()
        saved = derived.load(kb)
    finally:
        store.close()
    if check != "ok" or found != documents:
        return f"integrity {check}, {found} documents of {documents}"
    if saved is None:
        return "no saved derived indexes"
    dense, sparse = sorted(faiss.vector_to_array(saved.dense.id_map).tolist()), sorted(map(int, saved.sparse.ids))
    return "" if dense == ids == sparse else f"indexes differ from the store ({len(dense)}/{len(sparse)}/{len(ids)})"


def print_holds(holds: list[list]) -> None:
    """Lock hold figures from every writer's (kind, seconds, files) holds."""
    commits = [(s, n) for kind, s, n in holds if kind == "commit" and n]
    finishes = [s for kind, s, _ in holds if kind == "finish"]
    if commits:
        mean = sum(s for s, _ in commits) / sum(n for _, n in commits)
        print(f"lock held per document (commit holds): mean {1000 * mean:.1f} ms, "
              f"max {1000 * max(s / n for s, n in commits):.1f} ms; per commit hold: "
              f"max {1000 * max(s for s, _ in commits):.1f} ms ({len(commits)} holds, "
              f"{statistics.mean(n for _, n in commits):.1f} documents each)")
    if finishes:
        print(f"lock held to finish a run (settle paths, save the indexes): mean "
              f"{1000 * statistics.mean(finishes):.1f} ms, max {1000 * max(finishes):.1f} ms")


def report(args: argparse.Namespace, results: list[dict], searches: list[list[int]], replaced: dict, kb: Path) -> None:
    ok = [r for r in results if "error" not in r]
    added = sum(r["counts"]["added"] for r in ok)
    print(f"writers: {len(ok)} of {len(results)} succeeded, {len(results) - len(ok)} failed"
          + (f" (e.g. {next(r['error'] for r in results if 'error' in r)})" if len(ok) < len(results) else ""))
    print(f"documents: {added} added of {args.rounds * args.writers * args.files}; target replaced "
          f"{replaced.get('replaced', 0)} of {args.replaces} times")
    problem = corrupt(kb, K + 1 + added)
    print(f"corrupt: {'yes: ' + problem if problem else 'no'} (integrity_check, documents, FAISS and BM25 ids)")
    print_holds([h for r in ok for h in r["holds"]])
    if ok:
        print(f"writer wall time: mean {statistics.mean(r['seconds'] for r in ok):.1f} s, "
              f"max {max(r['seconds'] for r in ok):.1f} s (lock timeout 10 s)")
    short = sum(n < K for n, _ in searches)
    odd = sum(t != 1 for _, t in searches)
    print(f"searches during writes: {len(searches)}; short {short}, inconsistent {odd} (target 0)")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="concurrent writers and readers of one knowledge base")
    parser.add_argument("--writers", type=int, default=4)
    parser.add_argument("--files", type=int, default=10, help="new documents per writer")
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--words", type=int, default=600, help="words per document")
    parser.add_argument("--replaces", type=int, default=40, help="replaces of target.txt in round 1")
    parser.add_argument("--embedder", default="hash", help="'hash' (fake, slowed by --delay-s) or a model id")
    parser.add_argument("--delay-s", type=float, default=3.0, help="sleep per encode call (hash only)")
    args = parser.parse_args(argv)
    print(f"{args.rounds} rounds x {args.writers} writers x {args.files} documents, embedder {args.embedder}"
          + (f" + {args.delay_s} s per encode call" if args.embedder == "hash" else "")
          + f", load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
    with tempfile.TemporaryDirectory(prefix="bench-concurrency-") as tmp:
        start = time.perf_counter()
        report(args, *run(args, Path(tmp)))
    print(f"total {time.perf_counter() - start:.0f} s; load average at the end {os.getloadavg()[0]:.1f}")
    return 0


if __name__ == "__main__":
    if len(sys.argv) > 2 and sys.argv[1] == "--worker":
        {"writer": writer, "replacer": replacer, "reader": reader}[sys.argv[2]](*sys.argv[3:])
        raise SystemExit(0)
    raise SystemExit(main())
