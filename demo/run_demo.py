"""The demo (`make demo`): ingest demo/docs, show the cited passages for two questions, answer them.

    python demo/run_demo.py                 # knowledge base in ./kb (or $QDA_KB)
    python demo/run_demo.py --kb /tmp/kb -k 5
    python demo/run_demo.py --model ./Qwen3-0.6B --adapter out/qwen3-lora
    python demo/run_demo.py --no-download   # never contact the Hugging Face hub

Answers come from the default model (Qwen/Qwen3-0.6B): a local folder given with --model, the copy
in the Hugging Face cache, or else downloaded into that cache (its size is stated first, then a
progress bar; about 1.5 GB). Where the hub cannot be reached (or HF_HUB_OFFLINE is set, or with
--no-download) the demo says why within seconds and stops at the cited passages.

The first run builds the default embedder (multilingual-e5-small, about a minute); later runs
find every file unchanged, embed nothing and only encode the two questions.
"""
from __future__ import annotations

import argparse
import os
import re
import sys
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run from a checkout without `pip install -e .`
DOCS = ROOT / "demo" / "docs"


@dataclass(frozen=True)
class Example:
    """A demo question and where its answer is (the test checks the top hit against it)."""

    question: str
    file: str  # file name in demo/docs
    page: int  # 1-based page holding the answer


EXAMPLES = (
    Example("入职满一年后，员工每年有几天带薪年假？没休完的年假怎么处理？",
            "yunshan_employee_handbook.pdf", 2),
    Example("What restocking fee do I pay if I return an opened vacuum that is not faulty?",
            "nordhaven_hv320_manual.pdf", 3),
)


def ingest(kb: object, docs: Path = DOCS) -> object:
    """Add (or skip, when unchanged) every file of ``docs``; returns the AddReport."""
    return kb.add([docs], progress=True)


def retrieve(kb: object, question: str, k: int = 3) -> list:
    """The ``k`` best passages (index.records.Hit) for ``question`` by hybrid search."""
    return kb.search(question, k=k, mode="hybrid")


_TERM = re.compile(r"[a-z0-9]{2,}|[\u3400-\u9fff]{2}")


def _terms(text: str) -> set[str]:
    """Lower-cased words plus overlapping CJK character pairs (enough to spot the answer)."""
    text = text.lower()
    cjk = re.findall(r"[\u3400-\u9fff]+", text)
    return set(_TERM.findall(text)) | {s[i:i + 2] for s in cjk for i in range(len(s) - 1)}


def snippet(text: str, question: str, width: int = 180) -> str:
    """From the sentence of ``text`` sharing most terms with ``question``, ``width`` cells on."""
    from rich.cells import cell_len  # a CJK character takes two terminal cells

    flat = re.sub(r"\s+", " ", text).strip()  # ingest already re-joined broken Chinese lines
    sentences = [s for s in re.split(r"(?<=[。！？；.!?;])\s*", flat) if s.strip()] or [flat]
    want = _terms(question)
    best = max(range(len(sentences)), key=lambda i: len(want & _terms(sentences[i])))
    out = sentences[best]
    for nxt in sentences[best + 1:]:  # the answer often follows the matching sentence
        if cell_len(out + nxt) >= width:
            break
        out += nxt if re.match(r"[\u3000-\u9fff\uff00-\uffef]", nxt) else " " + nxt
    if cell_len(out) <= width:
        return out
    out = out[:width]
    while cell_len(out) >= width:
        out = out[:-1]
    return out + "…"


def passages_table(question: str, hits: list, seconds: float) -> object:
    from rich.table import Table

    from ui.cli.index import score_column  # the cosine to the query, not the per-query fused score

    table = Table(title=f"[bold]{question}[/]", caption=f"hybrid search, {seconds * 1000:.0f} ms",
                  show_lines=True, title_justify="left")
    header, scores = score_column(hits)
    for col, kw in (("#", {"justify": "right"}), (header, {"justify": "right"}),
                    ("document", {"max_width": 28}), ("page", {"justify": "right"}), ("passage", {})):
        table.add_column(col, overflow="fold", **kw)
    for rank, (hit, score) in enumerate(zip(hits, scores), 1):
        pages = str(hit.page_start) if hit.page_end == hit.page_start else f"{hit.page_start}-{hit.page_end}"
        table.add_row(str(rank), score, f"{hit.title}\n[dim]{Path(hit.path).name}[/]",
                      pages, snippet(hit.text, question))
    return table


def _positive(text: str) -> int:
    """An argparse type: an integer >= 1."""
    if not text.strip().isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer >= 1")
    return int(text)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    from index.config import default_kb

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kb", type=Path, default=default_kb(), help="knowledge-base folder")
    parser.add_argument("-k", type=_positive, default=3, help="passages shown per question")
    parser.add_argument("--model", default="Qwen/Qwen3-0.6B", help="hub id or local model folder")
    parser.add_argument("--adapter", default=None, help="LoRA adapter folder from `finetune train`")
    parser.add_argument("--max-new-tokens", type=_positive, default=256, help="longest answer in tokens")
    parser.add_argument("--no-download", action="store_true",
                        help="never contact the Hugging Face hub: answer only with a local or cached model")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.no_download:  # set before huggingface_hub is imported: nothing then asks the hub, the loader neither
        os.environ["HF_HUB_OFFLINE"] = "1"
    from rich.console import Console

    from index.kb import KnowledgeBase

    console = Console()
    console.rule(f"[bold]1. ingest {DOCS.relative_to(ROOT)} -> {args.kb}")
    start = time.perf_counter()
    with KnowledgeBase.open(args.kb) as kb:
        report = ingest(kb)
        console.print(report.render())
        console.print(f"ingest took {time.perf_counter() - start:.1f} s "
                      f"(embedder: {kb.embedder.name}; unchanged files are not re-embedded)")
        console.rule("[bold]2. ask: top passages with citations")
        with console.status("loading the embedding model and the indexes..."):
            retrieve(kb, "warm-up 预热")  # so that the timings below are search only
        for ex in EXAMPLES:
            start = time.perf_counter()
            hits = retrieve(kb, ex.question, args.k)
            console.print(passages_table(ex.question, hits, time.perf_counter() - start))
        console.rule("[bold]3. answer with citations")
        model = choose_model(console, args)
        if model is not None:
            answer_examples(console, kb, args, model)
    return 0 if report.ok else 1


NO_MODEL = "(the cited passages above are what --retrieval-only returns)"


def choose_model(console: object, args: argparse.Namespace) -> str | None:
    """The model to answer with: ``--model`` when it is a local path (or a mistyped one), else the hub id's
    copy in the Hugging Face cache, else with --no-download the hub id as given (the loader then says how
    to get the model here), else that copy downloaded now (size stated first, then progress bars).

    None, having said why, when the download cannot be done (offline mode, hub unreachable: in seconds).
    """
    from huggingface_hub import constants

    from finetune.download import cached_model, download_model, plan_download
    from finetune.loading import local_model_problem
    from finetune.train_errors import ModelLoadError

    local = Path(args.model).expanduser().exists() or local_model_problem(args.model) is not None
    if local:  # a mistyped path too: the assistant's loader says what is wrong
        return args.model
    cached = cached_model(args.model)  # reads the cache only
    if cached is not None:
        return str(cached)
    if args.no_download:  # the loader then says how to get the model onto this machine
        console.print(f"--no-download: {args.model} is not in the Hugging Face cache and the hub is not asked")
        return args.model
    try:
        with console.status(f"asking the Hugging Face hub about {args.model}..."):
            plan = plan_download(args.model)
        console.print(f"{args.model} is not in the Hugging Face cache: downloading it ({plan.size_text}) into "
                      f"{constants.HF_HUB_CACHE}; Ctrl-C stops it (the next run resumes), --no-download skips it")
        return str(download_model(args.model, plan=plan))
    except ModelLoadError as e:
        console.print(f"[yellow]No model, so no generated answers: {e}[/]\n{NO_MODEL}")
        return None


def answer_examples(console: object, kb: object, args: argparse.Namespace, model: str) -> None:
    """Generated, cited answers to the examples with ``model``; the model-load message when it cannot load."""
    from assistant.answer import Assistant
    from assistant.errors import ConfigError
    from finetune.errors import FinetuneError  # the model or adapter does not load (ModelLoadError), no GPU, ...

    try:
        assistant = Assistant(kb=kb, model=model, adapter=args.adapter, k=args.k, max_new_tokens=args.max_new_tokens)
        for ex in EXAMPLES:
            with console.status(f"answering: {ex.question}"):
                answer = assistant.ask(ex.question)
            console.print(f"[bold]Q:[/] {ex.question}\n[bold]A:[/] {answer.text}")
            for c in answer.citations:
                console.print(f"   [{c.number}] {c.title}, page {c.page}")
    except (ConfigError, FinetuneError) as e:
        console.print(f"[yellow]{e}[/]\n{NO_MODEL}")


if __name__ == "__main__":
    raise SystemExit(main())
