"""ingest.chunk: token limit (fake and real e5 tokenizer), sentence cuts, overlap, page/offset mapping.

Chunking speed is measured in ``bench/ingest.py`` (its "chunk" stage), not asserted here."""
from __future__ import annotations

import doctest
import re
import unicodedata
from collections.abc import Callable, Sequence
from pathlib import Path

import pytest

from ingest import chunk as chunk_module
from ingest.chunk import chunk_pages, sentence_spans
from ingest.load import load_document
from ingest.records import Chunk, Page

EN = ("Hybrid retrieval fuses dense vectors with keyword scores. The refund policy allows returns within "
      "thirty days! Did the customer keep the receipt? Dr. Smith reviewed Fig. 3 on the same day. ")
ZH = ("混合检索把向量检索和关键词检索的结果融合在一起。退货政策规定购买后三十天内可以退货！"
      "顾客保留了收据吗？“是的。”他说；")


def words(text: str) -> int:
    """An exact fake embedder: one token per blank-separated word plus 2 special tokens."""
    return len(text.split()) + 2


def chars(text: str) -> int:
    """A fake embedder for Chinese: one token per non-blank character plus 2 special tokens."""
    return len("".join(text.split())) + 2


def check_mapping(pages: Sequence[Page], chunks: list[Chunk], doc: str = "d") -> None:
    """Every chunk's text is exactly its page slices joined with "\\n", or, for a chunk starting
    inside a Markdown table's rows, a header and separator line of the document's tables + "\\n" +
    those slices (the repeated header is no part of the span); ordinals and flags are right."""
    document = "\n".join(page.text for page in pages)
    index = {page.number: i for i, page in enumerate(pages)}
    assert [c.ordinal for c in chunks] == list(range(len(chunks)))
    for c in chunks:
        first, last = index[c.page_start], index[c.page_end]
        assert first <= last and c.doc_sha256 == doc
        if first == last:
            rebuilt = pages[first].text[c.char_start:c.char_end]
        else:
            rebuilt = "\n".join([pages[first].text[c.char_start:], *(p.text for p in pages[first + 1:last]),
                                 pages[last].text[:c.char_end]])
        if rebuilt != c.text:  # tables (PDF pages with tables hold them) repeat their header
            header, separator, rest = c.text.split("\n", 2)
            assert rest == rebuilt and re.fullmatch(r"\|(---\|)+", separator) and header.startswith("|")
            assert f"\n{header}\n{separator}\n" in f"\n{document}\n"
        assert c.text == c.text.strip() and c.text
        assert c.ocr == any(p.ocr for p in pages[first:last + 1])


def run(pages: Sequence[Page], count: Callable[[str], int], max_tokens: int, overlap: int) -> list[Chunk]:
    chunks = chunk_pages(pages, doc_sha256="d", max_tokens=max_tokens, overlap=overlap, count_tokens=count)
    check_mapping(pages, chunks)
    assert all(count(c.text) <= max_tokens for c in chunks)
    return chunks


# ---------------------------------------------------------------- sentences

def test_sentence_spans_english_chinese_and_paragraphs() -> None:
    text = ("He said “好的。”然后离开了！Really? Yes. Prof. J. Smith et al. wrote it, e.g. here.\n\n"
            "A paragraph without a full stop\nNext line. 3.14 stays.")
    assert [text[s:e] for s, e in sentence_spans(text)] == [
        "He said “好的。”", "然后离开了！", "Really?", "Yes.", "Prof. J. Smith et al. wrote it, e.g. here.",
        "A paragraph without a full stop\nNext line.", "3.14 stays."]


def test_chunks_end_at_sentence_boundaries() -> None:
    pages = [Page(1, EN * 6), Page(2, ZH * 6)]
    chunks = run(pages, words, max_tokens=40, overlap=0)
    assert len(chunks) > 3
    for c in chunks:
        assert c.text[-1] in ".!?。！？；”", c.text[-20:]


# ---------------------------------------------------------------- limit and cutting

@pytest.mark.parametrize(("max_tokens", "overlap"), [(500, 50), (64, 16), (24, 0), (16, 4)])
def test_real_e5_limit_holds_on_mixed_text(e5_count: Callable[[str], int], max_tokens: int, overlap: int) -> None:
    pages = [Page(1, (EN + ZH) * 8), Page(2, ""), Page(3, "   \n "), Page(4, ZH * 10, ocr=True), Page(5, EN * 10)]
    chunks = run(pages, e5_count, max_tokens, overlap)
    assert {c.page_start for c in chunks} >= {1, 4, 5} and not {2, 3} & {c.page_start for c in chunks}
    assert any(c.ocr for c in chunks) and not all(c.ocr for c in chunks)
    if max_tokens == 500:
        assert max(e5_count(c.text) for c in chunks) > 400  # packed close to the limit


def test_over_long_sentences_are_cut_at_clauses_blanks_then_characters(e5_count: Callable[[str], int]) -> None:
    clauses = "，".join(["混合检索把向量检索和关键词检索的结果融合在一起"] * 30) + "。"
    no_punct = "东北电气发展股份有限公司" * 60  # no punctuation and no blanks at all
    blob = "x9Qz" * 300  # one long "word" (base64-like)
    english = " ".join(["retrieval"] * 300)
    pages = [Page(1, clauses), Page(2, no_punct), Page(3, blob), Page(4, english)]
    chunks = run(pages, e5_count, max_tokens=32, overlap=0)
    by_page = {n: [c for c in chunks if c.page_start == n] for n in range(1, 5)}
    assert all(len(group) > 1 for group in by_page.values())
    assert all(c.text.endswith(("，", "。")) for c in by_page[1])  # cut after clause punctuation
    assert "".join(c.text for c in by_page[2]) == no_punct  # character cuts lose nothing
    assert all(c.text.endswith("retrieval") for c in by_page[4])  # cut at blanks, never inside a word


def test_character_cuts_keep_combining_marks_with_their_base() -> None:
    text = "e\u0301" * 400  # "é" written as e + combining acute accent
    chunks = run([Page(1, text)], lambda t: len(t) + 2, max_tokens=51, overlap=0)
    assert len(chunks) > 5
    for c in chunks:
        assert unicodedata.combining(c.text[0]) == 0 and c.text.endswith("\u0301")


def test_pages_join_with_newline_and_chunks_cross_pages() -> None:
    pages = [Page(3, "First page ends mid"), Page(4, "sentence here. Second sentence."), Page(5, "Third.")]
    chunks = run(pages, words, max_tokens=100, overlap=0)
    assert len(chunks) == 1
    c = chunks[0]
    assert (c.text, c.page_start, c.char_start, c.page_end, c.char_end) == (
        "First page ends mid\nsentence here. Second sentence.\nThird.", 3, 0, 5, 6)


def test_offsets_point_into_pages_with_blank_edges() -> None:
    pages = [Page(1, "  \n Alpha beta gamma. Delta epsilon.  "), Page(2, "\n\nZeta eta theta.\n")]
    chunks = run(pages, lambda t: 3 * len(t.split()), max_tokens=10, overlap=0)  # a chunk per sentence
    assert [(c.text, c.page_start, c.char_start, c.page_end, c.char_end) for c in chunks] == [
        ("Alpha beta gamma.", 1, 4, 1, 21), ("Delta epsilon.", 1, 22, 1, 36), ("Zeta eta theta.", 2, 2, 2, 17)]


def test_empty_and_blank_pages_make_no_chunks() -> None:
    assert chunk_pages([], doc_sha256="d", count_tokens=words) == []
    assert chunk_pages([Page(1, ""), Page(2, " \n\t ")], doc_sha256="d", count_tokens=words) == []


# ---------------------------------------------------------------- overlap

def test_overlap_repeats_whole_trailing_sentences_within_budget() -> None:
    sentences = [f"Sentence number {i} has exactly seven words." if i % 2 else f"Short {i}." for i in range(40)]
    pages = [Page(1, " ".join(sentences))]
    chunks = run(pages, words, max_tokens=40, overlap=10)
    spans = {pages[0].text[s:e] for s, e in sentence_spans(pages[0].text)}
    shared = 0
    for prev, nxt in zip(chunks, chunks[1:]):
        assert nxt.char_start > prev.char_start and nxt.char_end > prev.char_end
        if nxt.char_start < prev.char_end:  # overlapping: the shared text is whole sentences
            repeated = pages[0].text[nxt.char_start:prev.char_end]
            assert all(repeated[s:e] in spans for s, e in sentence_spans(repeated))
            assert words(repeated) - 2 <= 10
            shared += 1
    assert shared >= len(chunks) // 2


def test_no_overlap_means_chunks_tile_the_text() -> None:
    pages = [Page(1, EN * 10), Page(2, ZH * 10)]
    chunks = run(pages, chars, max_tokens=60, overlap=0)
    for prev, nxt in zip(chunks, chunks[1:]):
        assert (nxt.page_start, nxt.char_start) >= (prev.page_end, prev.char_end)
    joined = "".join("".join(c.text.split()) for c in chunks)
    assert joined == "".join((EN * 10 + ZH * 10).split())


# ---------------------------------------------------------------- validation and cost

@pytest.mark.parametrize(("kwargs", "message"), [
    ({"max_tokens": 50, "overlap": 50}, "max_tokens=50 must be larger than overlap=50"),
    ({"max_tokens": 50, "overlap": -1}, "overlap=-1 must be >= 0"),
    ({"max_tokens": 9, "overlap": 0}, "max_tokens=9 leaves no room .* adds 5 tokens"),
    ({"max_tokens": 50.0, "overlap": 5}, "max_tokens=50.0 must be an integer"),
    ({"max_tokens": 50, "overlap": True}, "overlap=True must be an integer"),
])
def test_bad_arguments_name_the_value(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        chunk_pages([Page(1, "text")], doc_sha256="d", count_tokens=lambda t: len(t.split()) + 5, **kwargs)


def test_token_counting_is_linear_not_quadratic() -> None:
    calls: list[int] = []

    def counting(text: str) -> int:
        calls.append(len(text))
        return words(text)

    text = EN * 200  # 800 sentences
    chunks = run([Page(1, text)], counting, max_tokens=120, overlap=20)
    sentences = len(sentence_spans(text))
    assert len(calls) <= sentences + 3 * len(chunks) + 10 + len(chunks)  # +len(chunks): run() re-checks
    assert sum(calls) < 4 * len(text)


def test_chunk_ids_are_stable_and_distinct() -> None:
    pages = [Page(1, EN * 5)]
    a = chunk_pages(pages, doc_sha256="abc", max_tokens=30, overlap=5, count_tokens=words)
    b = chunk_pages(pages, doc_sha256="abc", max_tokens=30, overlap=5, count_tokens=words)
    assert [c.chunk_id for c in a] == [c.chunk_id for c in b] and len({c.chunk_id for c in a}) == len(a)


def test_doctests() -> None:
    result = doctest.testmod(chunk_module)
    assert result.attempted > 0 and result.failed == 0


# ---------------------------------------------------------------- real documents

@pytest.mark.integration
@pytest.mark.parametrize("name", ["zh_text_tables_quarterly_report_22p.pdf", "en_text_react_paper_31p.pdf"])
def test_real_documents_chunk_within_the_limit(shared_data: Path, e5_count: Callable[[str], int],
                                                    name: str) -> None:
    doc = load_document(shared_data / "pdfs" / name, ocr=False)
    chunks = chunk_pages(doc.pages, doc_sha256=doc.sha256, max_tokens=500, overlap=50, count_tokens=e5_count)
    check_mapping(doc.pages, chunks, doc.sha256)
    counts = [e5_count(c.text) for c in chunks]
    assert max(counts) <= 500 and sum(counts) / len(counts) > 400
    assert chunks[-1].page_end == len(doc.pages)
    if name.startswith("zh"):
        assert any("东北电气" in c.text for c in chunks)
