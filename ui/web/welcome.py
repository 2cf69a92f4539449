"""What the empty chat shows: a summary of the knowledge base and example questions made from it.

Each example names a document and a topic of it: the word of one of its first chunks that is most
frequent there and rarest in the other sampled chunks (tf-idf over chunks, ties to the longer
word; BM25's words, unstemmed: jieba words for Chinese, English words of 4+ letters not in the title).
The question is asked in the document's language: ``What does <title> say about <topic>?`` or
``《<title>》里关于<topic>说了什么？``.

>>> example_question("Kettle Manual", "descaling", chinese=False)
'What does Kettle Manual say about descaling?'
>>> example_question("员工手册", "年假", chinese=True)
'《员工手册》里关于年假说了什么？'
"""
from __future__ import annotations

import math
import re
from collections import Counter
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Sequence

from common.cjk import HAN_RE, is_chinese

if TYPE_CHECKING:
    from index.records import Hit
    from index.store import DocInfo

EXAMPLES = 4  # example questions shown
DOCS_SAMPLED = 8  # documents whose first chunks are read for topics
CHUNKS_PER_DOC = 6  # first chunks of each read
TITLES_SHOWN = 5
_WORD = re.compile(r"[a-z][a-z'-]{3,}")
_GENERIC = frozenset("""page pages chapter section table figure also must shall within without using used
use please note following include includes including made make more most other such than them then there
product products information customer customers service time times hours days weeks months years
these this those through under upon when where which while will with your yours their""".split())


def example_question(title: str, topic: str, *, chinese: bool) -> str:
    """The example question about ``topic`` of document ``title``, in Chinese or English."""
    return f"《{title}》里关于{topic}说了什么？" if chinese else f"What does {title} say about {topic}?"


def overview_markdown(kb: Any) -> str:
    """The knowledge base in one paragraph: documents (a few titles), chunks, embedder."""
    docs = kb.documents()
    if not docs:
        return "### Ask your documents\nThe knowledge base is empty: add documents in the **Documents** tab."
    chunks = sum(d.n_chunks for d in docs)
    name = str(getattr(kb.embedder, "name", "") or "?")
    name = Path(name).name if "/" in name and Path(name).is_absolute() else name
    titles = ", ".join(d.title for d in docs[:TITLES_SHOWN]) + (" …" if len(docs) > TITLES_SHOWN else "")
    plural = "s" if len(docs) != 1 else ""
    return (f"### Ask your documents\n**{len(docs)} document{plural} · {chunks} chunks · embedder {name}**\n\n"
            f"{titles}\n\nAnswers cite their sources as [n]: click one to read the passage.")


def example_questions(kb: Any, limit: int = EXAMPLES) -> list[str]:
    """Up to ``limit`` questions about the knowledge base's documents (round robin over documents)."""
    docs: Sequence[DocInfo] = kb.documents()[:DOCS_SAMPLED]
    texts = {d.sha256: [h.text for h in _first_chunks(kb, d.sha256)] for d in docs}
    topics = document_topics(docs, texts)
    out: list[str] = []
    for rank in range(max((len(t) for t in topics.values()), default=0)):
        for doc in docs:
            found = topics.get(doc.sha256, [])
            if rank < len(found) and len(out) < limit:
                text = " ".join(texts[doc.sha256])
                topic = as_written(found[rank], text)
                out.append(example_question(doc.title, topic, chinese=is_chinese(doc.title + " " + text[:400])))
    return out


def as_written(word: str, text: str) -> str:
    """``word`` (lower-cased by the tokenizer) as ``text`` writes it: lower-case when it is ever written so
    (not only at a sentence start), else as first written.

    >>> as_written("hepa", "Replace the HEPA filter."), as_written("fill", "Fill it. Do not fill it.")
    ('HEPA', 'fill')
    """
    written = re.findall(re.escape(word), text, re.IGNORECASE)
    return word if word in written or not written else written[0]


def _first_chunks(kb: Any, sha256: str) -> list["Hit"]:
    return list(kb.store.find_chunks(doc_shas=[sha256]))[:CHUNKS_PER_DOC]


def document_topics(docs: Sequence["DocInfo"], texts: dict[str, list[str]]) -> dict[str, list[str]]:
    """Per document, its chunks' best words by tf-idf over every sampled chunk (one per chunk, best first)."""
    words = {sha: [topic_words(t) for t in chunk_texts] for sha, chunk_texts in texts.items()}
    counts = Counter(w for per_doc in words.values() for chunk in per_doc for w in set(chunk))
    n_chunks = sum(len(per_doc) for per_doc in words.values())
    topics: dict[str, list[str]] = {}
    for doc in docs:
        title_words = set(topic_words(doc.title))
        best: list[tuple[float, str]] = []
        for chunk in words[doc.sha256]:
            scored = [(tf * math.log(1 + n_chunks / counts[w]), w) for w, tf in Counter(chunk).items()
                      if w not in title_words]
            if scored:
                best.append(max(scored, key=lambda s: (s[0], len(s[1]), -chunk.index(s[1]))))
        ranked = [w for _, w in sorted(best, key=lambda s: -s[0])]
        topics[doc.sha256] = list(dict.fromkeys(ranked))
    return topics


def topic_words(text: str) -> list[str]:
    """Candidate topic words of ``text``: jieba words of 2+ Han characters, English words of 4+ letters.

    >>> topic_words("Descaling the kettle: 退货政策的规定")
    ['descaling', 'kettle', '退货', '政策', '规定']
    """
    out = []
    for word in _precise()(text):
        if HAN_RE.match(word):
            if len(word) >= 2 and all(HAN_RE.match(c) for c in word):
                out.append(word)
        elif _WORD.fullmatch(word) and word not in _GENERIC:
            out.append(word)
    return out


@lru_cache(maxsize=1)
def _precise() -> Callable[[str], list[str]]:
    """BM25's tokenizer with jieba's precise mode and no stemming."""
    from index.tokenize import make_tokenizer

    return make_tokenizer(zh_mode="precise", stem=False)
