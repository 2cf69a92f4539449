"""Question: how well does the knowledge base retrieve on the dev sets, and what does hybrid
retrieval gain over each single retriever (the baselines, measured in the same run)?

For each BEIR dev set: build (or reuse) a knowledge base of its corpus through
``KnowledgeBase.add_documents`` (the product's chunking, embedding, FAISS and BM25), run
every query in dense, bm25 and hybrid mode, and score document rankings (a document's rank
is its best chunk's) with nDCG@10, Recall@10, Recall@100 and MRR@10.

    make eval                                        # all three sets, default embedder
    python bench/retrieval_eval.py --sets zh_rgb --json
    python bench/retrieval_eval.py --sets zh_rgb --subset 25,40,6   # the test's subset

The first run embeds every corpus (SciFact ~2M tokens: an hour or more on 2 CPU cores);
knowledge bases and query embeddings are cached under $QDA_CACHE, so later runs are quick.
"""
from __future__ import annotations

import argparse
import functools
import json
import sys
import time
from pathlib import Path

# bench/ (on sys.path as the script's folder) holds scripts named like packages (ingest.py):
# the repository root goes first, bench/ last.
sys.path[:] = [str(Path(__file__).resolve().parents[1])] + [
    p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent
] + [str(Path(__file__).resolve().parent)]

from embcache import CachedEmbedder  # noqa: E402

from index.beir import BeirSet, evaluate, load_beir, subset, to_documents  # noqa: E402

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "retrieval"
SETS = ("scifact", "zh_rgb", "zh_cmrc2018_dev")
MODES = ("dense", "bm25", "hybrid")


def kb_folder(root: Path, data: BeirSet, embedder: str, tag: str) -> Path:
    import re

    safe = re.sub(r"[^A-Za-z0-9._-]+", "_", embedder)[-60:]
    return root / f"{data.name}-{data.split}{tag}-{safe}"


def eval_set(data: BeirSet, emb, folder: Path, modes: tuple[str, ...], log) -> dict[str, dict]:
    from index.kb import KnowledgeBase

    with KnowledgeBase.open(folder, embedder=emb) as kb:
        t0 = time.time()
        report = kb.add_documents(to_documents(data), progress=sys.stderr.isatty())
        added = [f for f in report.files if f.status == "added"]
        log(f"{data.name}: knowledge base ready in {time.time() - t0:.0f} s ({folder}; "
            f"{len(added)} docs / {sum(f.chunks for f in added)} chunks added now)")
        out = {}
        for mode in modes:
            t0 = time.time()
            figures = evaluate(lambda q, n, mode=mode: kb.search(q, k=n, mode=mode), data,
                               lambda hit: Path(hit.path).name, k=10, depth=100)
            ms = 1000 * (time.time() - t0) / max(len(data.queries), 1)
            out[mode] = figures | {"ms_per_query": ms}
            log(f"  {mode:7s} ndcg@10={figures['ndcg@10']:.4f} ({ms:.0f} ms/query)")
    return out


def print_table(results: dict[str, dict[str, dict]]) -> None:
    print("| set | mode | nDCG@10 | Recall@10 | Recall@100 | MRR@10 | hybrid / mode (nDCG@10) | ms/query |")
    print("|---|---|---|---|---|---|---|---|")
    for name, res in results.items():
        hybrid = res.get("hybrid", {}).get("ndcg@10")
        for mode, m in res.items():
            ratio = f"{hybrid / m['ndcg@10']:.3f}" if hybrid and m["ndcg@10"] else "-"
            print(f"| {name} | {mode} | {m['ndcg@10']:.4f} | {m['recall@10']:.4f} | {m['recall@100']:.4f} "
                  f"| {m['mrr@10']:.4f} | {ratio} | {m['ms_per_query']:.0f} |")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sets", nargs="+", default=list(SETS), help=f"BEIR folders under {DATA} (or paths)")
    ap.add_argument("--split", default=None, help="qrels split (default: the one present)")
    ap.add_argument("--modes", nargs="+", default=list(MODES), choices=MODES)
    ap.add_argument("--embedder", default="multilingual-e5-small")
    ap.add_argument("--subset", default=None,
                    help="N_QUERIES,N_RANDOM[,N_HARD]: a seeded subset (index.beir.subset), as in the tests")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--kb-root", type=Path, default=None, help="where the evaluation KBs are kept")
    ap.add_argument("--emb-cache", type=Path, default=None, help="embedding cache folder")
    ap.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = ap.parse_args()

    from index.e5_offline import cache_root
    from index.embedder import load_embedder

    if not DATA.is_dir() and not all(Path(s).is_dir() for s in args.sets):
        sys.exit(f"evaluation data not found at {DATA} (a checkout without ../shared)")
    log = functools.partial(print, file=sys.stderr, flush=True)
    emb = CachedEmbedder(load_embedder(args.embedder), args.emb_cache)
    root = args.kb_root or cache_root() / "beir"
    results = {}
    for name in args.sets:
        data = load_beir(Path(name) if Path(name).is_dir() else DATA / name, args.split)
        tag = ""
        if args.subset:
            nq, nd, *hard = (int(x) for x in args.subset.split(","))
            h = hard[0] if hard else 0
            data = subset(data, nq, nd, seed=args.seed, hard_negatives=h)
            tag = f"-sub{nq}x{nd}h{h}s{args.seed}"
        results[data.name] = eval_set(data, emb, kb_folder(root, data, args.embedder, tag),
                                      tuple(args.modes), log)
    if args.json:
        print(json.dumps(results, indent=1))
    else:
        print_table(results)


if __name__ == "__main__":
    main()
