"""Gold question/answer records for ``finetune data from-kb`` and ``assistant eval``.

A Q&A file is JSON or JSONL in any of the fine-tuning formats (alpaca, ShareGPT, OpenAI
messages; read by :mod:`finetune.formats`, so every problem names ``file:line``) or the plain
gold-set form ``{"question": ..., "answer": ...}`` / ``{"question": ..., "answers": [...]}``.
The question is the last user turn, the reference the last assistant turn. Optional keys on
any record:

* ``answers``: more acceptable references (a list of strings; e.g. RGB's short answers);
* ``doc`` (or ``gold_doc``): the document that holds the answer (title, file name, path or
  sha256 prefix) and ``page`` (or ``gold_page``, 1-based) where it is;
* ``answerable``: ``false`` marks a distractor-only question (the knowledge base does not hold
  the answer; the right reply is the abstention). Its reference may be empty.

Only ``finetune``'s data readers (no torch) are imported: ``finetune`` itself imports nothing
of ``assistant``, so the fine-tuning package still stands alone.

>>> import json, tempfile, pathlib
>>> p = pathlib.Path(tempfile.mkdtemp()) / "gold.jsonl"
>>> row = {"question": "退货期限？", "answers": ["三十天", "30天"], "doc": "policy.md", "page": 1}
>>> _ = p.write_text(json.dumps(row, ensure_ascii=False) + "\\n")
>>> items, problems = read_qa([p])
>>> items[0].question, items[0].answers, items[0].doc, items[0].page, problems
('退货期限？', ('三十天', '30天'), 'policy.md', 1, [])
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from finetune.formats import RawRecord, convert, iter_records
from finetune.records import Problem

__all__ = ["QAItem", "read_qa", "QA_FORMATS"]

QA_FORMATS = ("qa (question + answer/answers)", "alpaca", "sharegpt", "openai")
BAD_GOLD = "bad gold field"


@dataclass(frozen=True)
class QAItem:
    """One gold question: its references, where the answer is, and whether it is answerable."""

    question: str
    answers: tuple[str, ...]  # references, best first; () for a distractor-only question
    source: str  # "file:line"
    doc: str | None = None  # gold document: title, file name, path or sha256 prefix
    page: int | None = None  # gold page, 1-based
    answerable: bool = True
    system: str | None = None  # the record's own system prompt, if it had one

    @property
    def answer(self) -> str:
        """The main reference ('' for a distractor-only question)."""
        return self.answers[0] if self.answers else ""


def read_qa(files: Sequence[Path | str]) -> tuple[list[QAItem], list[Problem]]:
    """Every readable gold item of ``files`` and a Problem (file:line, reason, fix) for each bad one."""
    items: list[QAItem] = []
    problems: list[Problem] = []
    for path in map(Path, files):
        if not path.is_file():
            problems.append(Problem(str(path), "missing file", f"{path}: no such file; give a JSON/JSONL Q&A file"))
            continue
        for raw in iter_records(path):
            out = raw if isinstance(raw, Problem) else _item(raw)
            (problems if isinstance(out, Problem) else items).append(out)
    return items, problems


def _problem(source: str, message: str, fix: str) -> Problem:
    return Problem(source, BAD_GOLD, f"{source}: {message}; {fix}")


def _item(raw: RawRecord) -> QAItem | Problem:
    value = raw.value
    if isinstance(value, dict) and "question" in value and not any(k in value for k in ("instruction", "messages",
                                                                                         "conversations")):
        question, refs, system = value.get("question"), _listed(value.get("answer")), None
        if not isinstance(question, str) or not question.strip():
            return _problem(raw.source, f"'question' must be a non-empty string, got {question!r:.60}",
                            "write the question as text")
    else:
        _, conv = convert(raw)
        if isinstance(conv, Problem):
            return conv
        users = [m.content for m in conv.messages if m.role == "user"]
        replies = [m.content for m in conv.messages if m.role == "assistant"]
        if not users or not users[-1].strip():
            return _problem(raw.source, "the record has no user question", "give the question as the last user turn")
        question, refs = users[-1], _listed(replies[-1] if replies else None)
        system = next((m.content for m in conv.messages if m.role == "system"), None)
    return _gold(raw.source, value, question.strip(), refs, system)


def _listed(value: object) -> list[str]:
    if isinstance(value, str):
        return [value] if value.strip() else []
    if isinstance(value, list):
        return [v for v in value if isinstance(v, str) and v.strip()]
    return []


def _gold(source: str, value: dict, question: str, refs: list[str], system: str | None) -> QAItem | Problem:
    extra = value.get("answers")
    if extra is not None and (not isinstance(extra, list) or not all(isinstance(a, (str, int, float)) for a in extra)):
        return _problem(source, f"'answers' must be a list of strings, got {extra!r:.60}", 'write ["...", "..."]')
    answers = tuple(dict.fromkeys(a.strip() for a in [*refs, *map(str, extra or [])] if a.strip()))
    doc = value.get("doc", value.get("gold_doc"))
    page = value.get("page", value.get("gold_page"))
    answerable = value.get("answerable", True)
    if doc is not None and (not isinstance(doc, str) or not doc.strip()):
        return _problem(source, f"'doc' must name a document, got {doc!r:.60}", "give its title, file name or sha256")
    if page is not None and (isinstance(page, bool) or not isinstance(page, int) or page < 1):
        return _problem(source, f"'page' must be a page number >= 1, got {page!r}", "pages count from 1")
    if not isinstance(answerable, bool):
        return _problem(source, f"'answerable' must be true or false, got {answerable!r}", "write true or false")
    if answerable and not answers:
        return _problem(source, "the record has no reference answer",
                        "give 'answer' (or mark it \"answerable\": false)")
    return QAItem(question, answers if answerable else (), source, doc.strip() if doc else None, page,
                  answerable, system)
