"""``assistant eval``: closed-book vs RAG vs adapter on a gold Q&A set, one table, one run.

Four systems answer every gold question (:mod:`assistant.qa`):

* ``base``: the base model, closed-book: :data:`CLOSED_BOOK_PROMPT` + the question, no retrieval;
* ``base+rag``: the base model through :meth:`Assistant.ask` (retrieve, cite; ``use_adapter=False``);
* ``adapter`` / ``adapter+rag``: the same with the LoRA adapter switched on.

One model is loaded; the local backend disables the adapter for the base systems. Without an
adapter only the two base systems run (the report says why). Retrieval is scored once per
question (hit@k, MRR of the gold; it does not depend on the model); the RAG systems retrieve
again inside ``ask`` so their stage timings are real. Metrics: :mod:`assistant.evaluation.metrics`.
A model warm-up call (loading; reported as ``load_s``) runs before anything is timed.
``compare_embedder`` (``--compare-embedder``) scores retrieval once more over a cached copy of the
knowledge base re-embedded with another embedder (:mod:`assistant.evaluation.compare`); only
retrieval is compared: the systems answer with the knowledge base's own embedder.

>>> from assistant import Assistant
>>> bot = Assistant(kb="kb", model="path/to/Qwen3-0.6B", adapter="outputs/qwen3-lora")   # doctest: +SKIP
>>> result = run_eval(EvalConfig(data=("gold.jsonl",), plot="eval/systems.png"), bot)  # doctest: +SKIP
>>> result.results["adapter+rag"]["token_f1"]                                            # doctest: +SKIP
0.71
"""
from __future__ import annotations

import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

from assistant.backends.base import GenParams, ThinkSplitter
from assistant.config import AskOptions
from assistant.errors import ConfigError, PromptTooLong
from assistant.evaluation.metrics import (
    RULES,
    citation_precision,
    contains_answer,
    exact_match,
    gold_rank,
    gold_rule,
    is_abstention,
    reciprocal_rank,
    token_f1,
)
from assistant.evaluation.records import CLOSED_BOOK_PROMPT, STAGES, SYSTEMS, EvalResult, RetrievalRow, Row
from assistant.records import Answer, Timings
from common.cjk import is_chinese
from index.naming import doc_matches

if TYPE_CHECKING:
    from assistant.answer import Assistant
    from assistant.qa import QAItem
    from finetune.records import Problem

__all__ = ["EvalConfig", "plan_systems", "closed_book_messages", "closed_book", "score", "aggregate",
           "retrieval_pass", "retrieval_summary", "compare_pass", "evaluate", "run_eval"]

@dataclass(frozen=True)
class EvalConfig:
    """What ``assistant eval`` reads, runs and writes (its own flags; the model and KB are AssistantConfig's)."""

    data: tuple[Path, ...] = field(metadata={  # gold Q&A files (JSON/JSONL, see assistant.qa)
        "help": "gold Q&A file (JSON/JSONL; repeatable): question, answer(s), optional doc/page/answerable"})
    out: Path = field(default=Path("eval/results.json"), metadata={"help": "results JSON"})
    markdown: Path | None = field(default=None, metadata={"help": "Markdown table (none: beside --out, .md)"})
    plot: Path | None = field(default=None, metadata={"help": "bar chart PNG of the systems (none: no chart)"})
    systems: tuple[str, ...] | None = field(default=None, metadata={
        "help": f"comma-separated subset of {', '.join(SYSTEMS)} (none: every system that can run)"})
    limit: int | None = field(default=None, metadata={"help": "the first N questions only"})
    compare_embedder: str | None = field(default=None, metadata={
        "help": "another embedder (id or folder, e.g. `finetune embedder`'s --out): the retrieval pass (hit@k, MRR) "
                "runs again over a cached copy of the knowledge base re-embedded with it, shown beside the KB's "
                "own embedder with the difference; only retrieval is compared (the systems use the KB's embedder); "
                "the knowledge base itself is never changed"})
    progress: bool = field(default=False, metadata={"help": "progress bar on stderr"})

    def __post_init__(self) -> None:
        for name in ("out", "markdown", "plot"):
            value = getattr(self, name)
            if value is not None:
                object.__setattr__(self, name, Path(value))
        if isinstance(self.data, (str, Path)):
            object.__setattr__(self, "data", (self.data,))
        object.__setattr__(self, "data", tuple(Path(p) for p in self.data))
        if self.systems is not None:
            object.__setattr__(self, "systems", tuple(self.systems))
        problems = _problems(self)
        if problems:
            raise ConfigError("; ".join(problems))

    @property
    def markdown_path(self) -> Path:
        return self.markdown or self.out.with_suffix(".md")


def _problems(c: EvalConfig) -> list[str]:
    out = []
    if not c.data:
        out.append("no gold data: give --data FILE (JSON/JSONL questions with reference answers)")
    if c.systems is not None:
        bad = [s for s in c.systems if s not in SYSTEMS]
        if bad or not c.systems:
            out.append(f"systems={', '.join(bad) or '(none)'} not among {', '.join(SYSTEMS)}")
        elif len(set(c.systems)) != len(c.systems):
            out.append(f"systems={', '.join(c.systems)} names a system twice")
    if c.compare_embedder is not None and not str(c.compare_embedder).strip():
        out.append("compare_embedder is empty: give an embedder id or folder")
    if c.limit is not None and (isinstance(c.limit, bool) or not isinstance(c.limit, int) or c.limit < 1):
        out.append(f"limit={c.limit!r} must be an integer >= 1")
    if c.plot is not None and c.plot.suffix.lower() != ".png":
        out.append(f"plot={str(c.plot)!r} must be a .png file")
    if c.out.suffix.lower() != ".json":
        out.append(f"out={str(c.out)!r} must be a .json file")
    return out


def plan_systems(requested: Sequence[str] | None, *, adapter: bool, retrieval_only: bool = False
                 ) -> tuple[tuple[str, ...], dict[str, str]]:
    """The systems to run and why each other one does not.

    >>> plan_systems(None, adapter=False)
    (('base', 'base+rag'), {'adapter': 'no --adapter given', 'adapter+rag': 'no --adapter given'})
    """
    wanted = tuple(requested) if requested is not None else SYSTEMS
    skipped = {s: "not in --systems" for s in SYSTEMS if s not in wanted}
    if retrieval_only:
        return (), {**skipped, **{s: "--retrieval-only: retrieval metrics only" for s in wanted}}
    needs = [s for s in wanted if s.startswith("adapter")]
    if needs and not adapter:
        if requested is not None:
            raise ConfigError(f"--systems {','.join(needs)} needs --adapter (a LoRA adapter folder)")
        skipped.update({s: "no --adapter given" for s in needs})
        wanted = tuple(s for s in wanted if s not in needs)
    return wanted, skipped


def closed_book_messages(question: str) -> list[dict]:
    """The closed-book prompt: :data:`CLOSED_BOOK_PROMPT` as the system message, then the question."""
    return [{"role": "system", "content": CLOSED_BOOK_PROMPT}, {"role": "user", "content": question}]


def closed_book(bot: "Assistant", question: str, use_adapter: bool) -> Answer:
    """The model's answer without retrieval (greedy unless --temperature says otherwise)."""
    start = time.perf_counter()
    cfg, marks = bot.config, {}
    messages = closed_book_messages(question)
    params = GenParams(max_new_tokens=cfg.max_new_tokens, temperature=float(cfg.temperature), top_p=float(cfg.top_p),
                       thinking=bot.thinking(cfg, use_adapter), use_adapter=use_adapter)
    prompt_s = time.perf_counter() - start
    pieces = bot.backend.generate(messages, params,
                                  on_first_token=lambda: marks.setdefault("first", time.perf_counter() - start))
    splitter = ThinkSplitter()
    for piece in pieces:
        splitter.feed(piece)
    splitter.finish()
    total = time.perf_counter() - start
    timings = Timings(prompt_s=prompt_s, first_token_s=marks.get("first", total), generation_s=total - prompt_s,
                      total_s=total)
    return Answer(text=splitter.answer, reasoning=splitter.reasoning, question=question, timings=timings)


def score(system: str, item: "QAItem", answer: Answer) -> Row:
    """One answer's row: EM/F1/contains against the references, abstention, cited sources' precision."""
    rag = system.endswith("+rag")
    cited = tuple(c.number for c in answer.citations) if rag and not answer.abstained else ()
    precision = citation_precision(cited, answer.sources, item) if item.answerable else None
    t = answer.timings
    return Row(system=system, source=item.source, question=item.question, answerable=item.answerable,
               text=answer.text, exact_match=item.answerable and exact_match(answer.text, item.answers),
               token_f1=token_f1(answer.text, item.answers) if item.answerable else 0.0,
               contains=item.answerable and contains_answer(answer.text, item.answers),
               abstained=is_abstention(answer.text, answer.abstained), cited=cited, citation_precision=precision,
               timings={s: getattr(t, s) for s in STAGES})


def _answer(bot: "Assistant", system: str, item: "QAItem") -> Row:
    use_adapter = system.startswith("adapter")
    try:
        if system.endswith("+rag"):
            answer = bot.ask(item.question, options=AskOptions(use_adapter=use_adapter))
        else:
            answer = closed_book(bot, item.question, use_adapter)
    except PromptTooLong as exc:  # this item only; the run goes on
        return Row(system, item.source, item.question, item.answerable, "", False, 0.0, False, False, error=str(exc))
    return score(system, item, answer)


def _stats(values: Sequence[float]) -> dict[str, float | None]:
    if not values:
        return {"mean": None, "p50": None}
    return {"mean": statistics.fmean(values), "p50": statistics.median(values)}


def _mean(values: Sequence[float]) -> float | None:
    return statistics.fmean(values) if values else None


def aggregate(rows: Sequence[Row], *, rag: bool) -> dict[str, Any]:
    """A system's figures: means over answerable items (EM, F1, contains), citations, abstention, timings.

    Shares are fractions (0..1); None where nothing was measured (no distractor-only items, a
    closed-book system's citations or retrieval time, no cited answer). Timings skip failed items.
    """
    ans = [r for r in rows if r.answerable]
    dis = [r for r in rows if not r.answerable]
    cited = [r.citation_precision for r in ans if r.citation_precision is not None]
    ok = [r for r in rows if r.error is None]
    return {
        "items": len(rows), "answerable": len(ans), "distractor": len(dis),
        "exact_match": _mean([float(r.exact_match) for r in ans]),
        "token_f1": _mean([r.token_f1 for r in ans]),
        "contains": _mean([float(r.contains) for r in ans]),
        "citation_precision": _mean(cited) if rag else None,
        "cited_answers": len(cited) if rag else None,
        "no_citation": _mean([float(not r.cited) for r in ans]) if rag else None,
        "abstention_correct": _mean([float(r.abstained) for r in dis]),
        "false_abstention": _mean([float(r.abstained) for r in ans]),
        "errors": len(rows) - len(ok),
        "timings": {s: _stats([r.timings[s] for r in ok] if rag or s != "retrieval_s" else []) for s in STAGES},
    }


def hit_cutoffs(k: int) -> tuple[int, ...]:
    """The hit@c cut-offs reported for ``k`` retrieved chunks.

    >>> hit_cutoffs(5), hit_cutoffs(2)
    ((1, 3, 5), (1, 2))
    """
    return tuple(sorted({c for c in (1, 3, 5, 10) if c <= k} | {k}))


def retrieval_pass(bot: "Assistant", items: Sequence["QAItem"], *, kb: Any = None
                   ) -> tuple[list[RetrievalRow], dict[str, Any]]:
    """Rank of the gold among the top-k hits of each answerable item, and hit@c / MRR over them.

    ``kb``: the knowledge base searched (None: ``bot.kb``), with ``bot``'s k and mode."""
    cfg, rows, kb = bot.config, [], bot.kb if kb is None else kb
    answerable = [i for i in items if i.answerable]
    for question in {is_chinese(i.question): i.question for i in answerable}.values():  # untimed warm-up:
        kb.search(question, k=cfg.k, mode=cfg.mode)  # the embedder loads, and jieba on a Chinese query
    for item in answerable:
        start = time.perf_counter()
        hits = kb.search(item.question, k=cfg.k, mode=cfg.mode)
        rows.append(RetrievalRow(item.source, gold_rule(item), gold_rank(hits, item), time.perf_counter() - start))
    return rows, retrieval_summary(rows, k=cfg.k, mode=cfg.mode)


def retrieval_summary(rows: Sequence[RetrievalRow], *, k: int, mode: str) -> dict[str, Any]:
    """hit@c (share of questions with the gold in the top c) and MRR@k over ``rows``; how many per gold rule.

    >>> rows = [RetrievalRow("f:1", "page", 1, 0.1), RetrievalRow("f:2", "answer", None, 0.3)]
    >>> s = retrieval_summary(rows, k=3, mode="hybrid"); s["hit@1"], s["hit@3"], s["mrr"], s["rules"]["page"]
    (0.5, 0.5, 0.5, 1)
    """
    ranks = [r.rank for r in rows]
    summary: dict[str, Any] = {"k": k, "mode": mode, "items": len(rows),
                               "rules": {rule: sum(r.rule == rule for r in rows) for rule in RULES}}
    for c in hit_cutoffs(k):
        summary[f"hit@{c}"] = _mean([float(r is not None and r <= c) for r in ranks])
    summary["mrr"] = _mean([reciprocal_rank(r) for r in ranks])
    summary["timings"] = {"retrieval_s": _stats([r.retrieval_s for r in rows])}
    return summary


def compare_pass(bot: "Assistant", items: Sequence["QAItem"], embedder: str, *,
                 progress: bool = False) -> dict[str, Any]:
    """:func:`retrieval_pass` over ``bot``'s knowledge base re-embedded with ``embedder``
    (:mod:`assistant.evaluation.compare`: a cached copy; the knowledge base itself is only read).

    Returns ``embedder`` (the name the copy records), ``kb`` (the copy's folder), ``reused`` (True: the
    cached copy was used, nothing re-embedded), ``max_tokens`` (the copy's chunk size, embedder tokens: the
    knowledge base's, ``kb_max_tokens``, unless the compared model reads fewer), ``retrieval`` (as
    :func:`retrieval_summary`) and ``retrieval_rows`` (dicts of :class:`RetrievalRow`)."""
    from dataclasses import asdict

    from assistant.evaluation.compare import kb_embedder_name, open_compared

    copy, folder, reused = open_compared(bot.kb, embedder, progress=progress)
    with copy:
        rows, summary = retrieval_pass(bot, items, kb=copy)
        name = kb_embedder_name(copy)
    return {"embedder": name, "kb": str(folder), "reused": reused, "max_tokens": copy.config.max_tokens,
            "kb_max_tokens": getattr(getattr(bot.kb, "config", None), "max_tokens", None), "retrieval": summary,
            "retrieval_rows": [asdict(r) for r in rows]}


def unknown_docs(bot: "Assistant", items: Sequence["QAItem"]) -> list["Problem"]:
    """A problem for each gold ``doc`` that names no document of the knowledge base (its item scores a miss)."""
    from finetune.records import Problem

    docs = bot.kb.documents() if hasattr(bot.kb, "documents") else None
    if docs is None:
        return []
    out = []
    for item in items:
        if item.doc and not any(doc_matches(item.doc, title=d.title, path=d.path, sha256=d.sha256,
                                            paths=d.all_paths) for d in docs):
            out.append(Problem(item.source, "unknown gold doc",
                               f"{item.source}: doc {item.doc!r} names no document of the knowledge base; give its "
                               "title, file name, path or sha256 prefix (see `ingest list`)"))
    return out


def warm_up(bot: "Assistant", systems: Sequence[str]) -> float:
    """Load the model (and adapter) with a one-token generation per adapter setting; seconds taken."""
    start = time.perf_counter()
    for use_adapter in sorted({s.startswith("adapter") for s in systems}):
        params = GenParams(max_new_tokens=1, temperature=0.0, use_adapter=use_adapter)
        for _ in bot.backend.generate([{"role": "user", "content": "Hi"}], params):
            pass
    return time.perf_counter() - start


def evaluate(bot: "Assistant", items: Sequence["QAItem"], systems: Sequence[str], *,
             skipped: dict[str, str] | None = None, problems: Sequence["Problem"] = (),
             progress: bool = False, compare_embedder: str | None = None) -> EvalResult:
    """Score retrieval once (and, with ``compare_embedder``, once more with that embedder: :func:`compare_pass`),
    then every system on every item (item by item, all systems each)."""
    from tqdm.auto import tqdm

    from assistant.evaluation.compare import kb_embedder_name

    start = time.perf_counter()
    problems = [*problems, *unknown_docs(bot, items)]
    retrieval_rows, retrieval = retrieval_pass(bot, items)
    retrieval["embedder"] = kb_embedder_name(bot.kb)
    compared = compare_pass(bot, items, compare_embedder, progress=progress) if compare_embedder else None
    load_s = warm_up(bot, systems) if systems else 0.0
    rows: list[Row] = []
    with tqdm(total=len(items) * len(systems), desc="eval", unit="answer", disable=not progress) as bar:
        for item in items:
            for system in systems:
                rows.append(_answer(bot, system, item))
                bar.update(1)
    results = {s: aggregate([r for r in rows if r.system == s], rag=s.endswith("+rag")) for s in systems}
    return EvalResult(systems=tuple(systems), skipped=dict(skipped or {}), retrieval=retrieval, results=results,
                      rows=tuple(rows), retrieval_rows=tuple(retrieval_rows), problems=tuple(problems),
                      items=len(items), config=_public_config(bot), load_s=load_s,
                      wall_s=time.perf_counter() - start, compared=compared)


def _public_config(bot: "Assistant") -> dict[str, Any]:
    from dataclasses import asdict

    out = {k: str(v) if isinstance(v, Path) else v for k, v in asdict(bot.config).items()}
    out.pop("api_key", None)  # never written to a results file
    return out


def run_eval(cfg: EvalConfig, bot: "Assistant") -> EvalResult:
    """Read the gold data, run the systems, write the JSON, the Markdown table and (``plot``) the chart."""
    from assistant.evaluation.report import write_json, write_markdown, write_plot
    from assistant.qa import read_qa

    systems, skipped = plan_systems(cfg.systems, adapter=bool(bot.config.adapter),
                                    retrieval_only=bot.config.retrieval_only)
    items, problems = read_qa(cfg.data)
    if not items:
        detail = "; ".join(p.detail for p in problems[:5])
        raise ConfigError(f"no usable gold question in {', '.join(map(str, cfg.data))}" + (f": {detail}" if detail
                                                                                               else ""))
    items = items[:cfg.limit] if cfg.limit else items
    result = evaluate(bot, items, systems, skipped=skipped, problems=problems, progress=cfg.progress,
                      compare_embedder=cfg.compare_embedder)
    write_json(result, cfg.out)
    write_markdown(result, cfg.markdown_path)
    if cfg.plot is not None:
        write_plot(result, cfg.plot)
    return result
