"""Bench: chunks per CPU-second of the embedder backends, and what int8 costs in retrieval (issue #14).

Question: how much cheaper is ONNX Runtime (graph-optimised, dynamic int8) than torch fp32 for the
built-in multilingual-e5-small on CPU, step by step, and does retrieval lose anything?
Target: >= 1.5x chunks per CPU-second at <= 0.01 nDCG@10 loss.

Data: 100-query subsets of SciFact (train) and zh_rgb (dev) from ../shared/data/retrieval: the
queries' relevant documents, BM25 hard negatives and seeded random distractors (index.beir.subset),
chunked as ``ingest`` does (500 tokens of the e5 tokenizer, overlap 50).
Speed: the same chunks (``--per-set`` seeded from each subset) embedded by each variant in a process
of its own (batch 32, texts as the embedder gets them), after loading and a warm-up that are not
counted: chunks per CPU-second (``time.process_time``: every thread of the process, ONNX Runtime's
and torch's pools included; the stable figure on a shared machine) and per wall-second (which other
processes' load swings), the peak RSS of that process (whole run), and the cosine of each
vector with torch fp32's (mean, minimum). Variants: torch fp32 (sentence-transformers), onnx fp32
(plain export), onnx o2-fp32 (fused attention / layer norms / GELU), onnx int8 (dynamic, per-channel
weights, no fusion), onnx o2-int8 (both: the default on CPU). Exports are made once beforehand
(cached under $QDA_CACHE/embedders; their one-time cost is printed when this run made them).
Quality: dense nDCG@10 of torch fp32 and the default over each whole subset, each query embedded
alone as ``index search`` does, a document scored by its best chunk.
Run it niced, on a machine as idle as you can get:  nice -n 5 .venv/bin/python bench/embed.py
"""
from __future__ import annotations

import argparse
import json
import os
import random
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
DATA = ROOT.parent / "shared" / "data" / "retrieval"
SETS = (("scifact", "train"), ("zh_rgb", "dev"))
VARIANTS = ("torch", "fp32", "o2-fp32", "int8", "o2-int8")  # torch fp32, then index.onnx_backend.RECIPES
QUALITY = ("torch", "o2-int8")  # torch fp32 and the default on CPU
TARGET_RATIO, TARGET_LOSS = 1.5, 0.01
BATCH_SIZE = 32  # Embedder.encode_passages default, what the pipeline uses


def load_embedder_variant(variant: str) -> object:
    from index.e5_offline import ensure_e5_folder
    from index.embedder import DEFAULT_EMBEDDER, SentenceTransformerEmbedder

    backend = "torch" if variant == "torch" else "onnx"
    return SentenceTransformerEmbedder(str(ensure_e5_folder()), name=DEFAULT_EMBEDDER, backend=backend,
                                       onnx_recipe=None if variant == "torch" else variant)


def child(variant: str, texts_file: Path, out: Path) -> None:
    """Embed the timed chunks (and, for a quality variant, the rest and the queries) -> ``out`` (.npz)."""
    job = json.loads(texts_file.read_text(encoding="utf-8"))
    emb = load_embedder_variant(variant)
    emb.encode_passages(job["timed"][:BATCH_SIZE])  # load + first-call costs, not counted
    emb.encode_queries([job["queries"][0]])
    cpu, wall = time.process_time(), time.perf_counter()
    timed = emb.encode_passages(job["timed"], batch_size=BATCH_SIZE)
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    rest = emb.encode_passages(job["rest"], batch_size=BATCH_SIZE) if variant in QUALITY else np.zeros((0, emb.dim))
    queries = (np.vstack([emb.encode_queries([q]) for q in job["queries"]]) if variant in QUALITY
               else np.zeros((0, emb.dim)))
    np.savez(out, timed=timed, rest=rest, queries=queries,
             stats=np.array([cpu, wall, peak_rss_mib(), _threads(emb)], dtype=np.float64))


def peak_rss_mib() -> float:
    """This process's peak resident memory: VmHWM (ru_maxrss would include the parent's, kept over exec)."""
    status = Path("/proc/self/status")
    if status.is_file():
        for line in status.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024  # kB
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _threads(emb: object) -> int:
    if emb.backend == "onnx":
        from index.onnx_backend import default_threads

        return default_threads()
    import torch

    return torch.get_num_threads()


def chunk_sets(args: argparse.Namespace, count_tokens: object) -> list[dict]:
    """Per set: its subset, the chunk texts with their document ids, and the chosen timed chunks."""
    from index.beir import load_beir, subset, to_documents
    from ingest.chunk import MAX_TOKENS, OVERLAP, chunk_pages

    out = []
    for name, split in SETS:
        data = subset(load_beir(DATA / name, split), args.queries, args.distractors, seed=args.seed,
                      hard_negatives=args.hard_negatives)
        texts, owners = [], []
        for doc in to_documents(data):
            for c in chunk_pages(doc.pages, doc_sha256=doc.sha256, max_tokens=MAX_TOKENS, overlap=OVERLAP,
                                 count_tokens=count_tokens):
                texts.append(c.text)
                owners.append(doc.path.name)
        timed = sorted(random.Random(args.seed).sample(range(len(texts)), min(args.per_set, len(texts))))
        out.append({"name": name, "data": data, "texts": texts, "owners": owners, "timed": timed})
    return out


def job_of(sets: list[dict]) -> dict:
    """The texts every variant embeds: timed chunks first (both sets), then the rest, then queries."""
    timed = [s["texts"][i] for s in sets for i in s["timed"]]
    rest = [t for s in sets for chosen in [set(s["timed"])] for i, t in enumerate(s["texts"]) if i not in chosen]
    queries = [q for s in sets for q in s["data"].queries.values()]
    return {"timed": timed, "rest": rest, "queries": queries}


def run_variant(variant: str, job_file: Path, work: Path) -> dict:
    out = work / f"{variant}.npz"
    subprocess.run([sys.executable, str(Path(__file__).resolve()), "--child", variant, "--job", str(job_file),
                    "--out", str(out)], check=True, cwd=ROOT)
    with np.load(out) as z:
        cpu, wall, rss, threads = z["stats"].tolist()
        return {"timed": z["timed"], "rest": z["rest"], "queries": z["queries"], "cpu": cpu, "wall": wall,
                "rss": rss, "threads": int(threads)}


def ndcg_by_set(sets: list[dict], res: dict) -> dict[str, float]:
    """Dense nDCG@10 per set: every chunk of the subset, a document scored by its best chunk."""
    from index.beir import ndcg_at_k

    vecs = _chunk_vectors(sets, res)
    scores, q0 = {}, 0
    for s, v in zip(sets, vecs):
        owners = np.array(s["owners"])
        docs = sorted(set(s["owners"]))
        index = {d: i for i, d in enumerate(docs)}
        rows = np.array([index[o] for o in owners])
        values = []
        for qi, (qid, _) in enumerate(s["data"].queries.items()):
            sims = v @ res["queries"][q0 + qi]
            best = np.full(len(docs), -np.inf)
            np.maximum.at(best, rows, sims)
            ranked = [docs[i] for i in np.argsort(-best, kind="stable")[:10]]
            values.append(ndcg_at_k(ranked, s["data"].qrels[qid], 10))
        q0 += len(s["data"].queries)
        scores[s["name"]] = float(np.mean(values))
    return scores


def _chunk_vectors(sets: list[dict], res: dict) -> list[np.ndarray]:
    """Each set's chunk vectors in its own order, from the timed-then-rest order of ``job_of``."""
    out, t0, r0 = [], 0, 0
    for s in sets:
        timed = set(s["timed"])
        v = np.zeros((len(s["texts"]), res["timed"].shape[1]), dtype=np.float32)
        v[s["timed"]] = res["timed"][t0: t0 + len(timed)]
        others = [i for i in range(len(s["texts"])) if i not in timed]
        v[others] = res["rest"][r0: r0 + len(others)]
        t0, r0 = t0 + len(timed), r0 + len(others)
        out.append(v)
    return out


def ensure_exports(variants: list[str]) -> dict[str, float]:
    """Export every onnx recipe not cached yet; CPU seconds of each export made now."""
    from index.embedder import _hash_weights
    from index.onnx_backend import FINGERPRINT_FILE, cache_folder

    made = {}
    for variant in (v for v in variants if v != "torch"):
        emb = load_embedder_variant(variant)
        if not (cache_folder(emb.folder, _hash_weights(emb.folder), variant) / FINGERPRINT_FILE).is_file():
            cpu = time.process_time()
            _ = emb.fingerprint  # exports
            made[variant] = time.process_time() - cpu
    return made


def report(results: dict, n_timed: int, tokens: float, quality: dict | None) -> None:
    base = results["torch"]
    print(f"\n{n_timed} chunks (mean {tokens:.0f} e5 tokens), batch {BATCH_SIZE}\n")
    print("| variant | threads | chunks / CPU-s | ratio | chunks / wall-s | ratio | cosine vs torch mean / min "
          "| peak RSS |")
    print("|---|---|---|---|---|---|---|---|")
    for name, r in results.items():
        cos = np.sum(r["timed"] * base["timed"], axis=1)
        print(f"| {'torch fp32' if name == 'torch' else 'onnx ' + name} | {r['threads']} | {n_timed / r['cpu']:.2f} | "
              f"{base['cpu'] / r['cpu']:.2f}x | {n_timed / r['wall']:.2f} | {base['wall'] / r['wall']:.2f}x | "
              f"{cos.mean():.5f} / {cos.min():.4f} | {r['rss']:.0f} MiB |")
    if quality:
        print("\n| set (100 queries) | dense nDCG@10 torch fp32 | onnx o2-int8 | difference |\n|---|---|---|---|")
        for name, (t, o) in quality.items():
            print(f"| {name} | {t:.4f} | {o:.4f} | {o - t:+.4f} |")


def verdict(results: dict, quality: dict | None) -> None:
    if "o2-int8" not in results:
        return
    ratio = results["torch"]["cpu"] / results["o2-int8"]["cpu"]
    print(f"\ndefault (onnx o2-int8) vs torch fp32: {ratio:.2f}x chunks per CPU-second (target >= {TARGET_RATIO}: "
          f"{'meets' if ratio >= TARGET_RATIO else 'misses'} it)")
    if quality:
        loss = max(t - o for t, o in quality.values())
        met = "meets" if loss <= TARGET_LOSS else "misses"
        print(f"largest nDCG@10 loss {loss:+.4f} (target <= {TARGET_LOSS}: {met} it)")


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="embedder backends: chunks per CPU-second and nDCG@10")
    parser.add_argument("--variants", default=",".join(VARIANTS), help=f"comma-separated, of {', '.join(VARIANTS)}")
    parser.add_argument("--per-set", type=int, default=150, help="timed chunks drawn from each set")
    parser.add_argument("--queries", type=int, default=100)
    parser.add_argument("--distractors", type=int, default=100, help="random extra documents per set")
    parser.add_argument("--hard-negatives", type=int, default=1, help="BM25 hard negatives per query")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--job", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    if args.child:
        child(args.child, args.job, args.out)
        return 0
    variants = ["torch"] + [v for v in args.variants.split(",") if v in VARIANTS and v != "torch"]
    if missing := [n for n, _ in SETS if not (DATA / n / "corpus.jsonl").is_file()]:
        print(f"skipped: shared data not found ({', '.join(missing)} under {DATA})")
        return 0
    made = ensure_exports(variants)
    for variant, cpu in made.items():
        print(f"exported onnx {variant} once: {cpu:.0f} CPU-s (cached, not counted below)")
    emb = load_embedder_variant("torch")
    sets = chunk_sets(args, emb.count_tokens)
    job = job_of(sets)
    print(f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs; sets: "
          + ", ".join(f"{s['name']} {len(s['data'].queries)} queries / {len(s['data'].corpus)} docs / "
                      f"{len(s['texts'])} chunks" for s in sets))
    with tempfile.TemporaryDirectory(prefix="bench-embed-") as tmp:
        job_file = Path(tmp) / "job.json"
        job_file.write_text(json.dumps(job, ensure_ascii=False), encoding="utf-8")
        results = {v: run_variant(v, job_file, Path(tmp)) for v in variants}
    quality = None
    if all(v in results for v in QUALITY):
        t, o = ndcg_by_set(sets, results["torch"]), ndcg_by_set(sets, results["o2-int8"])
        quality = {name: (t[name], o[name]) for name in t}
    tokens = float(np.mean([emb.count_tokens(t) for t in job["timed"]]))
    report(results, len(job["timed"]), tokens, quality)
    verdict(results, quality)
    print(f"load average at the end: {os.getloadavg()[0]:.1f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
