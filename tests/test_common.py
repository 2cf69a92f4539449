"""The one owner of each shared rule: CJK sets, atomic writes, file hashing, citation marks, document names."""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import pytest

from assistant.citations import CITATION_MARK, cited_numbers, strip_citations
from assistant.evaluation.metrics import normalise
from common import cjk
from common.files import (
    atomic_open,
    atomic_path,
    atomic_write_bytes,
    atomic_write_jsonl,
    atomic_write_text,
    file_sha256,
)
from finetune.metrics import tokenize as metric_words
from index.embedder import HashEmbedder
from index.errors import DocumentNotFound
from index.naming import SHA_PREFIX_MIN, doc_matches, find_document
from index.store import DocInfo
from index.tokenize import tokenize
from ingest.text import normalize_text

KANA, HANGUL, EXT_B, COMPAT, EXT_A = "の", "한", "\U00020000", "\uf900", "\u3400"


@pytest.mark.parametrize(("ch", "han", "spaceless", "per_char"), [
    (KANA, False, True, True), (HANGUL, False, False, True), (EXT_B, True, True, True),
    (COMPAT, True, True, True), (EXT_A, True, True, True), ("中", True, True, True),
    ("a", False, False, False), ("，", False, False, False),
])
def test_cjk_sets(ch: str, han: bool, spaceless: bool, per_char: bool) -> None:
    assert cjk.is_han(ch) is han and cjk.has_han(f"x{ch}y") is han
    assert cjk.is_cjk(ch) is spaceless
    assert (HashEmbedder(dim=8).count_tokens(f"ab{ch}cd") == 5) is per_char  # own token: ab, ch, cd + 2 specials


def test_cjk_users_agree_on_extension_b_and_compatibility_ideographs() -> None:
    text = f"{EXT_B}{COMPAT}"
    assert cjk.count_han(text) == 2 and cjk.is_chinese(f"{text} RAG")  # 2 Han > 1 Latin word
    assert tokenize(f"rcep{EXT_B}") == ["rcep", EXT_B]  # a Han run of its own, not part of a \w word
    assert normalise(f"{EXT_B} {EXT_B}") == EXT_B * 2  # Han text loses its spaces
    assert metric_words(EXT_B * 2) == [EXT_B, EXT_B]  # segmented by jieba, not one \w word
    assert normalize_text(f"{EXT_B} {KANA} 关 于 红 军") == f"{EXT_B}{KANA}关于红军"  # letter-spaced: joined


def test_atomic_write_leaves_the_old_file_when_writing_fails(tmp_path: Path) -> None:
    target = tmp_path / "data.json"
    atomic_write_text(target, "old")

    def rows():
        yield {"a": 1}
        raise RuntimeError("generator failed half-way")

    with pytest.raises(RuntimeError):
        atomic_write_jsonl(target, rows())
    with pytest.raises(OSError):
        with atomic_path(target) as tmp:
            tmp.write_text("partial")
            raise OSError("disk full")
    assert target.read_text() == "old" and [p.name for p in tmp_path.iterdir()] == ["data.json"]


def test_atomic_write_replaces_and_keeps_plain_file_mode(tmp_path: Path) -> None:
    target = tmp_path / "new" / "x.bin"
    atomic_write_bytes(target, b"\x00\x01")
    assert target.read_bytes() == b"\x00\x01"
    umask = os.umask(0)
    os.umask(umask)
    assert target.stat().st_mode & 0o777 == 0o666 & ~umask  # as open() makes it, not tempfile's 0o600
    with atomic_open(target, "w") as f:
        json.dump({"k": "值"}, f, ensure_ascii=False)
    assert json.loads(target.read_text(encoding="utf-8")) == {"k": "值"}
    assert atomic_write_jsonl(target, [], keep_empty=False) == 0 and target.read_text(encoding="utf-8") == '{"k": "值"}'
    with pytest.raises(ValueError, match="mode"):
        with atomic_open(target, "a"):
            pass


def test_file_sha256_equals_hashlib_on_a_multi_block_file(tmp_path: Path) -> None:
    data = os.urandom(3 << 20) + b"tail"  # 3 MiB and a few bytes: several 1 MiB blocks and a short one
    path = tmp_path / "big.bin"
    path.write_bytes(data)
    assert file_sha256(path) == hashlib.sha256(data).hexdigest()
    empty = tmp_path / "empty"
    empty.write_bytes(b"")
    assert file_sha256(empty) == hashlib.sha256(b"").hexdigest()


@pytest.mark.parametrize("text", ["[1]", "[1, 2]", "[1-3]", "[1~3]", "【1】", "【1，2】", "［１］", "[1】", "[２－３]"])
def test_one_citation_mark_rule_for_reading_stripping_and_scoring(text: str) -> None:
    assert CITATION_MARK.fullmatch(text)
    assert cited_numbers(text, n_sources=3)  # read
    assert strip_citations(f"Yes {text}.") == "Yes."  # stripped from past answers
    assert normalise(f"thirty days {text}") == "thirty days"  # dropped before scoring


def _doc(sha: str, path: str, title: str) -> DocInfo:
    return DocInfo(sha256=sha, path=path, title=title, kind="txt", n_pages=1, ocr_pages=(), n_chunks=1,
                   size=1, added_at=0.0)


def test_one_rule_names_a_document_for_rm_and_gold() -> None:
    docs = [_doc("abcdef0123" + "0" * 54, "/kb/Policy.pdf", "Returns policy"),
            _doc("abcdef9999" + "1" * 54, "/kb/other/policy.txt", "Policy")]
    prefix = docs[0].sha256[:SHA_PREFIX_MIN]
    assert SHA_PREFIX_MIN == 6 and prefix == "abcdef"
    with pytest.raises(DocumentNotFound, match="matches 2 documents"):
        find_document(docs, prefix)  # a prefix of both
    assert find_document(docs, "ABCDEF0").path == "/kb/Policy.pdf"
    assert find_document(docs, "policy.PDF").path == "/kb/Policy.pdf"  # file name, case folded
    assert find_document(docs, "returns policy").path == "/kb/Policy.pdf"  # title
    with pytest.raises(DocumentNotFound, match="matches 2 documents"):
        find_document(docs, "policy")  # both file names without suffix, equally precise
    with pytest.raises(DocumentNotFound, match="no document matches"):
        find_document(docs, "abcde")  # 5 characters: too short to be a prefix
    for name in ("abcdef0", "Policy.pdf", "/kb/Policy.pdf", "returns policy"):
        d = docs[0]
        assert doc_matches(name, title=d.title, path=d.path, sha256=d.sha256), name  # the same rule for gold
