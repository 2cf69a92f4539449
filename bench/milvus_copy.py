"""Bench: how fast does ``index migrate`` copy a knowledge base into Milvus, several documents in flight
against one at a time?

Each document's commit into a Milvus server waits for the server's time tick (~200 ms for a Strong read),
so one document at a time leaves the client idle; :data:`index.milvus_migrate.COPY_THREADS` documents go
at once. Batches alternate (1, N, 1, N) over consecutive documents of the same source not yet in the target,
so both settings meet the same server state; the ratio is measured in the same run.

    nice -n 5 .venv/bin/python bench/milvus_copy.py --source /work/mscale/folder-32-all \\
        --kb milvus://127.0.0.1:19531/speed

(The source: any knowledge base, e.g. the one bench/milvus_scale.py keeps under ``--work``.)
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--source", required=True, help="the knowledge base to copy from (folder or Milvus)")
    ap.add_argument("--kb", required=True, help="milvus://HOST:PORT/NAME (or milvus-lite:PATH.db/NAME)")
    ap.add_argument("--docs", type=int, default=120, help="documents per one-at-a-time batch (x4 concurrent)")
    args = ap.parse_args(argv)
    import index.milvus_migrate as mm

    threads = mm.COPY_THREADS
    src = mm.open_source(args.source)
    dst = mm.open_target(args.kb, src.meta())
    try:
        todo, leaving = mm.plan(src.documents(), dst.documents())
        rates: dict[int, list[float]] = {1: [], threads: []}
        lo = 0
        for n_threads in (1, threads, 1, threads):
            n = args.docs if n_threads == 1 else 4 * args.docs
            if lo + n > len(todo):
                print(f"only {len(todo) - lo} documents left to copy: give a fresh --kb")
                return 1
            start = time.perf_counter()
            chunks = mm.copy_documents(src, dst, todo[lo:lo + n], leaving, threads=n_threads)
            secs = time.perf_counter() - start
            rates[n_threads].append(chunks / secs)
            print(f"{n_threads} in flight: {n} documents, {chunks} chunks in {secs:.1f} s = {chunks / secs:.1f} "
                  "chunks/s", flush=True)
            lo += n
        dst.seal()
    finally:
        src.close()
        dst.close()
    one, many = (sum(r) / len(r) for r in (rates[1], rates[threads]))
    print(f"\n{threads} documents in flight: {many:.0f} chunks/s vs {one:.0f} one at a time: {many / one:.1f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
