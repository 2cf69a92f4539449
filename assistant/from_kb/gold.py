"""Where a gold answer is: which retrieved source holds it, which chunk of the knowledge base does,
and the cited target answer (used by ``finetune data from-kb``, :mod:`assistant.from_kb.build`).

Which source *holds the answer* (first rule that applies):

* the gold chunk id is known (question generated from a chunk): that chunk;
* a gold document is given: a source of that document (title, file name, path or sha256 prefix
  of >= 6 characters: :mod:`index.naming`) whose page range includes the gold page (any page
  when none is given); of several, the first that also contains a reference answer, else the first;
* no gold document: the first source whose text contains a reference answer, compared after
  NFKC normalisation, case folding and removal of all whitespace ("30 天" matches "30天").

Text matching only finds short, extractive references (RGB-style "12人", "6.4%"); a free-form
answer rarely appears verbatim in a chunk, so give its ``doc`` (and ``page``) in the Q&A file.

>>> from assistant.qa import QAItem
>>> from index.records import Hit
>>> hits = [Hit(f"c{i}", t, 1.0, f"sha{i}", f"doc{i}", f"/d/doc{i}.pdf", i, i, 0, len(t))
...         for i, t in ((1, "Office hours are 9 to 5."), (2, "Returns within 30 days."))]
>>> locate(hits, Gold(QAItem("How long?", ("30 DAYS",), "qa.jsonl:1")))
(1, 'text')
>>> locate(hits, Gold(QAItem("How long?", ("thirty days",), "qa.jsonl:1", doc="doc2.pdf", page=2)))
(1, 'doc/page')
>>> cite("Returns are accepted within 30 days [3].", 2), cite("购买后三十天内可以退货。", 1)
('Returns are accepted within 30 days [2].', '购买后三十天内可以退货 [1]。')
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Sequence

from assistant.citations import strip_citations
from assistant.evaluation.metrics import contains_answer  # the same gold test as `assistant eval`
from assistant.qa import QAItem
from index.naming import doc_matches  # "names the document": the rule of `ingest rm` and `assistant eval`

if TYPE_CHECKING:
    from index.records import Hit

CHUNK, DOC_PAGE, TEXT = "chunk", "doc/page", "text"  # how the source holding the answer was recognised
SEARCH_DEPTH = 100  # chunks searched (by question, then by answer) for the gold chunk without a gold doc
_FINAL_PUNCT = re.compile(r"[.。!！?？…]+$")


@dataclass(frozen=True)
class Gold:
    """A gold question and, for a generated one, the chunk it was generated from."""

    item: QAItem
    chunk_id: str | None = None

    @property
    def question(self) -> str:
        return self.item.question


def on_gold_page(hit: "Hit", item: QAItem) -> bool:
    """The source is in the gold document and its pages include the gold page (any page if none given)."""
    if not item.doc or not doc_matches(item.doc, title=hit.title, path=hit.path, sha256=hit.doc_sha256):
        return False
    return item.page is None or hit.page_start <= item.page <= hit.page_end


def locate(sources: Sequence["Hit"], gold: Gold) -> tuple[int | None, str | None]:
    """(0-based index of the source that holds the answer, how it was recognised) or (None, None)."""
    if gold.chunk_id:
        found = next((i for i, h in enumerate(sources) if h.chunk_id == gold.chunk_id), None)
        if found is not None:
            return found, CHUNK
    item = gold.item
    if item.doc:
        pages = [i for i, h in enumerate(sources) if on_gold_page(h, item)]
        best = next((i for i in pages if contains_answer(sources[i].text, item.answers)), None)
        best = best if best is not None else (pages[0] if pages else None)
        return (best, DOC_PAGE) if best is not None else (None, None)
    found = next((i for i, h in enumerate(sources) if contains_answer(h.text, item.answers)), None)
    return (found, TEXT) if found is not None else (None, None)


def holds_answer(hit: "Hit", gold: Gold) -> bool:
    """Any sign that ``hit`` holds the answer (gold chunk, gold doc/page, or a reference in its text):
    what a distractor-only prompt must not contain."""
    return (hit.chunk_id == gold.chunk_id or on_gold_page(hit, gold.item)
            or contains_answer(hit.text, gold.item.answers))


def cite(answer: str, number: int) -> str:
    """The answer with `` [number]`` before its final sentence punctuation (or at the end);
    [n] marks it already had are removed first (they point at other sources)."""
    text = strip_citations(answer).strip()
    end = _FINAL_PUNCT.search(text)
    if end is None or end.start() == 0:
        return f"{text} [{number}]"
    return f"{text[:end.start()].rstrip()} [{number}]{end.group()}"


def gold_chunk(kb: Any, gold: Gold, *, mode: str) -> "Hit | None":
    """The chunk of the knowledge base that holds the answer, or None.

    By chunk id; else by gold document and page (preferring a chunk that contains a reference);
    else the best-ranked chunk containing a reference among the ``SEARCH_DEPTH`` best for the
    question, then for the main reference itself.
    """
    if gold.chunk_id:
        found = kb.store.find_chunks(chunk_id=gold.chunk_id)
        if found:
            return found[0]
    item = gold.item
    if item.doc:
        shas = [d.sha256 for d in kb.documents() if doc_matches(item.doc, title=d.title, path=d.path, sha256=d.sha256,
                                                       paths=d.all_paths)]
        found = kb.store.find_chunks(doc_shas=shas, page=item.page)
        return next((h for h in found if contains_answer(h.text, item.answers)), found[0] if found else None)
    for query in (item.question, item.answer):
        hits = kb.search(query, k=SEARCH_DEPTH, mode=mode)
        found = next((h for h in hits if contains_answer(h.text, item.answers)), None)
        if found is not None:
            return found
    return None

