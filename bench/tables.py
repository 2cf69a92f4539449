"""Bench: the PDF table pass (ingest.tables) - what it costs at ingest, what it gains at retrieval.

Question: PDF tables come out of pypdf as a stream of numbers; with the table pass they are
Markdown tables whose split parts repeat their header row. Does that make table cells findable
by row and column name, and what does the pass cost?

Four real PDFs from ../shared/data/pdfs (a 22-page quarterly report, a bond prospectus page, the
NICS background-checks page, a page with a two-level header). Baseline: the same code with the
table pass switched off (``ingest.tables.page_text_with_tables`` returning None, as for a page
without ruling lines: pypdf's text alone), measured in the same run.

(a) Ingest time: ``load_document(pdf, ocr=False)`` per file, with and without the pass,
    interleaved, best of ``--repeat`` (wall and this process's CPU time).
(b) Retrieval of table cells: questions are built from the Markdown tables the pass extracted
    (never written by hand): "<row label> <column header>" for cells holding a number that occurs
    exactly once in the corpus under both extractions; a hit is a retrieved chunk containing
    that number. Up to ``--questions`` of them, taken round-robin over the documents in a seeded
    random order. One knowledge base per side over the four PDFs (default chunking: 500 tokens,
    overlap 50), searched with BM25 and hybrid (and dense); hit@1 and hit@5.

Run it niced:  nice -n 10 .venv/bin/python bench/tables.py [--embedder multilingual-e5-small|hash-64]
"""
from __future__ import annotations

import argparse
import contextlib
import os
import random
import re
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
PDF_DIR = ROOT.parent / "shared" / "data" / "pdfs"
PDFS = ("zh_text_tables_quarterly_report_22p.pdf", "zh_tables_bond_prospectus_1p.pdf",
        "en_table_nics_background_checks_1p.pdf", "en_table_multicolumn_header_1p.pdf")
MODES = ("bm25", "hybrid", "dense")
_NUMBER = re.compile(r"-?\d[\d,]*(?:\.\d+)?%?")


@contextlib.contextmanager
def table_pass(on: bool) -> Iterator[None]:
    """Switch the table pass off (pypdf's text alone, as on a page without ruling lines) or leave it on."""
    from ingest import tables

    original = tables.page_text_with_tables
    if not on:
        tables.page_text_with_tables = lambda reader, index: None
    try:
        yield
    finally:
        tables.page_text_with_tables = original


def time_loading(pdfs: list[Path], repeat: int) -> dict[str, dict[bool, tuple[float, float]]]:
    """Best (wall s, CPU s) of load_document per file and side, runs interleaved."""
    from ingest.load import load_document

    best: dict[str, dict[bool, tuple[float, float]]] = {p.name: {} for p in pdfs}
    for _ in range(repeat):
        for pdf in pdfs:
            for on in (False, True):
                with table_pass(on):
                    start, cpu = time.perf_counter(), time.process_time()
                    load_document(pdf, ocr=False)
                    took = (time.perf_counter() - start, time.process_time() - cpu)
                old = best[pdf.name].get(on, (float("inf"), float("inf")))
                best[pdf.name][on] = (min(old[0], took[0]), min(old[1], took[1]))
    return best


def cell_questions(docs: dict[bool, list], limit: int, seed: int) -> list[tuple[str, str, str]]:
    """(document, question, cell value) from the extracted Markdown tables, see the module doc."""
    from ingest.chunk import markdown_tables

    def split(line: str) -> list[str]:
        return [c.strip() for c in re.split(r"(?<!\\)\|", line.strip())[1:-1]]

    corpus = {on: "\n".join(p.text for d in ds for p in d.pages) for on, ds in docs.items()}
    per_doc: list[list[tuple[str, str, str]]] = []
    for doc in docs[True]:
        text, found, head = "\n".join(p.text for p in doc.pages), [], None
        for table in markdown_tables(text):
            head = split(table.head.split("\n")[0]) if table.head else head  # a headless part goes on
            for s, e in table.rows if head else ():
                cells = split(text[s:e])
                # the row's label: its first cell that is not a number (skips serial numbers)
                at = next((j for j, c in enumerate(cells) if c and not _NUMBER.fullmatch(c)), len(cells))
                for label, value in zip(head[at + 1:], cells[at + 1:]) if len(cells) == len(head) else ():
                    unique = all(len(re.findall(rf"(?<![\d,.]){re.escape(value)}(?![\d,.])", corpus[on])) == 1
                                 for on in corpus)
                    if label and _NUMBER.fullmatch(value) and len(value) >= 4 and unique:
                        found.append((doc.path.name, f"{cells[at]} {label}", value))
        random.Random(seed).shuffle(found)
        per_doc.append(found)
    rounds = max(map(len, per_doc), default=0)  # round-robin over documents
    return [group[i] for i in range(rounds) for group in per_doc if i < len(group)][:limit]


def retrieval(emb: object, pdfs: list[Path], questions: list[tuple[str, str, str]], on: bool, tmp: Path,
              max_tokens: int) -> tuple[dict[str, tuple[float, float]], int, float]:
    """hit@1 and hit@5 per mode for one side, the number of chunks and the build seconds."""
    from index.kb import KnowledgeBase

    with table_pass(on):
        start = time.perf_counter()
        kb = KnowledgeBase.open(tmp / f"kb-{'tables' if on else 'pypdf'}-{max_tokens}", embedder=emb, ocr=False,
                                max_tokens=max_tokens, overlap=max_tokens // 10)
        kb.add([str(p) for p in pdfs])
        built = time.perf_counter() - start
    chunks = kb.store.db.execute("SELECT COUNT(*) FROM chunks").fetchone()[0]
    scores = {}
    for mode in MODES:
        ranks = []
        for _, question, value in questions:
            hits = kb.search(question, k=5, mode=mode)
            ranks.append(next((r for r, hit in enumerate(hits) if value in hit.text), None))
        scores[mode] = (sum(r == 0 for r in ranks) / len(ranks), sum(r is not None for r in ranks) / len(ranks))
    kb.close()
    return scores, chunks, built


def ratio(after: float, before: float) -> str:
    return f"{after / before:.2f}" if before else "inf"


def main(argv: list[str] | None = None) -> int:
    from index.embedder import load_embedder
    from ingest.load import load_document

    parser = argparse.ArgumentParser(description="PDF table pass: ingest cost and retrieval of table cells")
    parser.add_argument("--embedder", default="multilingual-e5-small", help="or hash-64 (no model, seconds)")
    parser.add_argument("--repeat", type=int, default=3, help="interleaved timing runs per side (best kept)")
    parser.add_argument("--questions", type=int, default=40)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--max-tokens", type=int, nargs="+", default=[500, 200],
                        help="chunk sizes to compare at (overlap: a tenth); 500 is the default of a new KB")
    args = parser.parse_args(argv)
    pdfs = [PDF_DIR / name for name in PDFS]
    if missing := [str(p) for p in pdfs if not p.is_file()]:
        print(f"skipped: shared data not found ({', '.join(missing)})")
        return 0
    print(f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs; repeat {args.repeat}")
    print("(a) load_document(ocr=False), best of the interleaved runs; baseline = table pass off")
    print(f"{'pdf':42} {'pypdf s':>8} {'+tables s':>9} {'ratio':>6} | {'CPU pypdf':>9} {'+tables':>8} {'ratio':>6}")
    best = time_loading(pdfs, args.repeat)
    total = [0.0] * 4
    for name, sides in best.items():
        (w0, c0), (w1, c1) = sides[False], sides[True]
        total = [a + b for a, b in zip(total, (w0, w1, c0, c1))]
        print(f"{name:42} {w0:>8.2f} {w1:>9.2f} {w1 / w0:>6.2f} | {c0:>9.2f} {c1:>8.2f} {c1 / c0:>6.2f}")
    w0, w1, c0, c1 = total
    print(f"{'total':42} {w0:>8.2f} {w1:>9.2f} {w1 / w0:>6.2f} | {c0:>9.2f} {c1:>8.2f} {c1 / c0:>6.2f}")

    docs = {}
    for on in (False, True):
        with table_pass(on):
            docs[on] = [load_document(p, ocr=False) for p in pdfs]
    tables = sum(p.text.count("\n|---") + p.text.startswith("|") for d in docs[True] for p in d.pages)
    questions = cell_questions(docs, args.questions, args.seed)
    print(f"\n(b) {len(questions)} questions from {tables} extracted tables, e.g. "
          + "; ".join(f"{q!r} -> {v}" for _, q, v in questions[:3]))
    emb = load_embedder(args.embedder)
    emb.encode_passages(["warm-up passage"])  # model load is counted on neither side
    print(f"embedder {emb.name}")
    with tempfile.TemporaryDirectory(prefix="bench-tables-") as tmp:
        for size in args.max_tokens:
            print(f"chunks of at most {size} tokens, overlap {size // 10}")
            print(f"  {'side':22} {'chunks':>6} {'build s':>7} "
                  + " ".join(f"{m + ' @1':>9} {m + ' @5':>9}" for m in MODES))
            results = {}
            for on in (False, True):
                scores, chunks, built = results[on] = retrieval(emb, pdfs, questions, on, Path(tmp), size)
                label = "with table pass" if on else "pypdf text (baseline)"
                print(f"  {label:22} {chunks:>6} {built:>7.1f} "
                      + " ".join(f"{scores[m][0]:>9.1%} {scores[m][1]:>9.1%}" for m in MODES))
            for m in MODES:
                (b1, b5), (a1, a5) = results[False][0][m], results[True][0][m]
                print(f"  {m:6} hit@1 {b1:.1%} -> {a1:.1%} (ratio {ratio(a1, b1)}), "
                      f"hit@5 {b5:.1%} -> {a5:.1%} (ratio {ratio(a5, b5)})")
    print(f"load average at the end: {os.getloadavg()[0]:.1f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
