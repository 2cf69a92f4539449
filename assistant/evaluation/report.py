"""The files of ``assistant eval``: results JSON, a Markdown table, and a bar chart PNG of the systems.

JSON shares are fractions (0..1) and ``null`` where nothing was measured; the Markdown shows
them in percent (MRR stays a fraction) and "–" for "not measured".

>>> fmt_pct(0.5), fmt_pct(None), fmt_s({"mean": 0.1234, "p50": 0.1})
('50.0', '–', '0.123 / 0.100')
"""
from __future__ import annotations

import json
import math
from dataclasses import asdict
from pathlib import Path
from typing import Any

from assistant.evaluation.records import CLOSED_BOOK_PROMPT, STAGES, EvalResult

__all__ = ["to_dict", "write_json", "markdown", "write_markdown", "write_plot", "PLOT_METRICS"]

NA = "–"
ANSWER_COLUMNS = (  # (aggregate key, Markdown heading)
    ("exact_match", "EM %"), ("token_f1", "token F1 %"), ("contains", "contains %"),
    ("citation_precision", "citation precision %"), ("no_citation", "no citation %"),
    ("abstention_correct", "abstention correct %"), ("false_abstention", "false abstention %"),
)
PLOT_METRICS = (("exact_match", "EM"), ("token_f1", "token F1"), ("contains", "contains"),
                ("citation_precision", "citation precision"), ("abstention_correct", "abstention correct"))
RULE_TEXT = {"page": "gold page (doc + page)", "doc": "gold document", "answer": "a hit containing the answer"}


def to_dict(result: EvalResult) -> dict[str, Any]:
    """The whole run as plain JSON-able data: figures first, then every problem and row."""
    return {
        "items": result.items, "systems": list(result.systems), "skipped": result.skipped,
        "retrieval": result.retrieval, "compared": result.compared, "results": result.results, "config": result.config,
        "closed_book_prompt": CLOSED_BOOK_PROMPT, "load_s": result.load_s, "wall_s": result.wall_s,
        "problems": [asdict(p) for p in result.problems],
        "retrieval_rows": [asdict(r) for r in result.retrieval_rows],
        "rows": [asdict(r) for r in result.rows],
    }


def _write(path: Path, text: str) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def write_json(result: EvalResult, path: Path) -> Path:
    return _write(path, json.dumps(to_dict(result), ensure_ascii=False, indent=2) + "\n")


def fmt_pct(value: float | None) -> str:
    return NA if value is None else f"{100 * value:.1f}"


def fmt_s(stats: dict[str, float | None]) -> str:
    if stats.get("mean") is None:
        return NA
    return f"{stats['mean']:.3f} / {stats['p50']:.3f}"


def _table(head: list[str], rows: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
    return lines + ["| " + " | ".join(row) + " |" for row in rows]


def _header(result: EvalResult) -> list[str]:
    c = result.config
    first = next(iter(result.results.values()), {})
    counts = (f"{first['answerable']} answerable, {first['distractor']} distractor-only"
              if first else f"{result.retrieval['items']} answerable")
    decoding = "greedy" if not c.get("temperature") else f"temperature {c['temperature']}, top-p {c['top_p']}"
    return ["# Closed-book vs RAG vs adapter", "",
            f"{result.items} gold questions ({counts}); model `{c.get('model')}`, adapter "
            f"`{c.get('adapter') or 'none'}`, knowledge base `{c.get('kb')}`; {decoding}, "
            f"at most {c.get('max_new_tokens')} new tokens.", ""]


def fmt_diff(new: float | None, old: float | None, *, pct: bool) -> str:
    """``new - old``, signed: percentage points (``pct``) or a fraction (MRR); "–" when either is missing.

    >>> fmt_diff(0.75, 0.5, pct=True), fmt_diff(0.5, 0.75, pct=False), fmt_diff(None, 0.5, pct=True)
    ('+25.0', '-0.250', '–')
    """
    if new is None or old is None:
        return NA
    return f"{100 * (new - old):+.1f}" if pct else f"{new - old:+.3f}"


def _retrieval_row(label: str, r: dict[str, Any], cutoffs: list[str]) -> list[str]:
    return [label, *(fmt_pct(r[key]) for key in cutoffs), NA if r["mrr"] is None else f"{r['mrr']:.3f}",
            fmt_s(r["timings"]["retrieval_s"])]


def _chunk_note(compared: dict[str, Any]) -> str:
    """A sentence when the re-embedded copy was chunked smaller than the knowledge base (else "").

    >>> _chunk_note({"max_tokens": 256, "kb_max_tokens": 500})
    ' The copy was chunked at 256 tokens (the knowledge base: 500), the most the compared embedder reads.'
    """
    mine, other = compared.get("kb_max_tokens"), compared.get("max_tokens")
    if mine is None or other is None or mine == other:
        return ""
    return (f" The copy was chunked at {other} tokens (the knowledge base: {mine}), the most the compared "
            "embedder reads.")


def _retrieval(result: EvalResult) -> list[str]:
    """The retrieval table: the knowledge base's embedder, and with --compare-embedder the compared one and
    the difference (compared - KB's: percentage points for hit@c, a fraction for MRR)."""
    r, other = result.retrieval, (result.compared or {}).get("retrieval")
    cutoffs = [key for key in r if key.startswith("hit@")]
    head = ["embedder", *(f"{key} %" for key in cutoffs), "MRR", "retrieval s (mean / p50)"]
    mine = r.get("embedder", "knowledge base")
    rows = [_retrieval_row(f"`{mine}` (knowledge base)", r, cutoffs)]
    notes = []
    if other is not None:
        c = result.compared or {}
        rows.append(_retrieval_row(f"`{c['embedder']}` (compared)", other, cutoffs))
        rows.append(["difference (compared - knowledge base)", *(fmt_diff(other[key], r[key], pct=True)
                                                                 for key in cutoffs),
                     fmt_diff(other["mrr"], r["mrr"], pct=False), NA])
        reused = "reused from the cache" if c.get("reused") else "made for this run"
        notes = [f"Only retrieval is compared: the compared embedder searched a copy of the knowledge base "
                 f"re-embedded with it (`{c['kb']}`, {reused}); the systems below answer with the knowledge "
                 f"base's own embedder (`{mine}`). Differences: hit@c in percentage points, MRR as a fraction."
                 + _chunk_note(c), ""]
    rules = ", ".join(f"{RULE_TEXT[rule]}: {n}" for rule, n in r["rules"].items() if n) or "none"
    return [f"## Retrieval (top {r['k']}, {r['mode']}; {r['items']} answerable questions)", "",
            *_table(head, rows), "", f"Gold recognised by (questions): {rules}.", "", *notes]


def _answers(result: EvalResult) -> list[str]:
    lines = ["## Answers", ""]
    if result.systems:
        rows = []
        for system in result.systems:
            fig = result.results[system]
            cited = "" if fig["cited_answers"] is None else f" ({fig['cited_answers']} cited)"
            cells = [fmt_pct(fig[key]) + (cited if key == "citation_precision" else "") for key, _ in ANSWER_COLUMNS]
            rows.append([system, *cells, str(fig["errors"])])
        lines += _table(["system", *(h for _, h in ANSWER_COLUMNS), "errors"], rows) + [""]
    else:
        lines += ["No system ran.", ""]
    lines += [f"Not run: {system} ({why})." for system, why in result.skipped.items()]
    return lines + ([""] if result.skipped else [])


def _timings(result: EvalResult) -> list[str]:
    if not result.systems:
        return []
    rows = [[s, *(fmt_s(result.results[s]["timings"][st]) for st in STAGES)] for s in result.systems]
    head = ["system", *(st.removesuffix("_s").replace("_", " ") for st in STAGES)]
    return ["## Timings per stage (seconds, mean / p50)", "", *_table(head, rows), "",
            f"Model load (untimed warm-up): {result.load_s:.2f} s; whole run: {result.wall_s:.2f} s.", ""]


def _definitions() -> list[str]:
    return ["Definitions (see `assistant.evaluation.metrics`): EM = normalised answer equals a reference; token F1 = "
            "best word-overlap F1 (jieba for Chinese); contains = a reference occurs in the answer; citation "
            "precision = share of cited sources holding a reference answer (or the gold page), over answers that "
            "cite; abstention correct = distractor-only questions the system declined; false abstention = "
            "answerable questions it declined. EM, F1 and contains are over answerable questions.", ""]


def markdown(result: EvalResult) -> str:
    """The report: header, retrieval table, answers table, timings table, definitions, problems."""
    lines = _header(result) + _retrieval(result) + _answers(result) + _timings(result) + _definitions()
    if result.problems:
        lines += [f"## Problems ({len(result.problems)}; those items were skipped or scored as misses)", ""]
        lines += [f"- {p.detail}" for p in result.problems] + [""]
    return "\n".join(lines)


def write_markdown(result: EvalResult, path: Path) -> Path:
    return _write(path, markdown(result))


def write_plot(result: EvalResult, path: Path) -> Path:
    """Grouped bars (percent) of EM, F1, contains, citation precision and abstention per system."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg  # no pyplot: no global state, no display
    from matplotlib.figure import Figure

    systems = list(result.systems)
    fig = Figure(figsize=(9, 4.5), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    width = 0.8 / max(len(systems), 1)
    for i, system in enumerate(systems):
        values = [result.results[system][key] for key, _ in PLOT_METRICS]
        xs = [m + (i - (len(systems) - 1) / 2) * width for m in range(len(PLOT_METRICS))]
        bars = ax.bar(xs, [math.nan if v is None else 100 * v for v in values], width, label=system)
        ax.bar_label(bars, labels=["" if v is None else f"{100 * v:.0f}" for v in values], fontsize=7)
    ax.set_xticks(range(len(PLOT_METRICS)), [label for _, label in PLOT_METRICS])
    ax.set_ylim(0, 105)
    ax.set_ylabel("percent")
    ax.set_title(f"{result.items} gold questions" + ("" if systems else " (no system ran)"))
    ax.set_xlabel("citation precision: RAG systems only; abstention: distractor-only questions", fontsize=8)
    if systems:
        ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.14), ncol=len(systems), fontsize="small", frameon=False)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, format="png")
    return path
