"""BM25 tokenizer (zh/en) and index: ranking, hand-computed scores, save/load."""
from __future__ import annotations

import math

import numpy as np
import pytest

from index.bm25 import BM25Index, make_tokenizer, tokenize


def test_english_lowercased_stopped_stemmed():
    assert tokenize("The Proteins are BINDING to receptors.") == ["protein", "bind", "receptor"]


def test_chinese_search_mode_adds_subwords():
    toks = tokenize("中华人民共和国成立")
    assert "中华人民共和国" in toks and "共和国" in toks and "成立" in toks


def test_chinese_stopwords_dropped_and_mixed_text_split():
    assert tokenize("RCEP的成员国") == ["rcep", "成员", "成员国"]


def test_fullwidth_normalised_and_no_whitespace_in_tokens():
    toks = tokenize("ＡＢＣ１２３ 和 abc123\t中国 \n")
    assert toks[0] == "abc123" and toks.count("abc123") == 2
    assert all(t and not any(c.isspace() for c in t) for t in toks)


def test_bigram_and_precise_modes():
    assert make_tokenizer(zh_mode="bigram")("红茶饮料") == ["红茶", "茶饮", "饮料"]
    assert make_tokenizer(zh_mode="precise")("中华人民共和国") == ["中华人民共和国"]
    with pytest.raises(ValueError, match="zh_mode"):
        make_tokenizer(zh_mode="chars")


def test_empty_text():
    assert tokenize("") == [] and tokenize("  。，!") == []


CORPUS = {
    "tea": "Green tea contains catechins and caffeine.",
    "coffee": "Coffee contains more caffeine than tea.",
    "zh": "绿茶含有儿茶素和咖啡因。",
    "other": "The stock market fell sharply on Monday.",
}


@pytest.fixture
def index() -> BM25Index:
    return BM25Index.build(list(CORPUS), [tokenize(t) for t in CORPUS.values()])


def test_ranking(index: BM25Index):
    assert [d for d, _ in index.search(tokenize("green tea catechins"), 3)] == ["tea", "coffee"]
    assert index.search(tokenize("绿茶 咖啡因"), 1)[0][0] == "zh"
    assert index.search(tokenize("unrelated words"), 5) == []
    assert index.search(tokenize("caffeine"), 0) == []


def test_score_matches_hand_computation():
    # Two docs; "a" occurs twice in doc 0 (length 3), once in doc 1 (length 1).
    idx = BM25Index.build(["d0", "d1"], [["a", "a", "b"], ["a"]], k1=1.2, b=0.75)
    avg = 2.0
    idf_a = math.log(1 + (2 - 2 + 0.5) / (2 + 0.5))
    s0 = idf_a * 2 / (2 + 1.2 * (1 - 0.75 + 0.75 * 3 / avg))
    s1 = idf_a * 1 / (1 + 1.2 * (1 - 0.75 + 0.75 * 1 / avg))
    got = dict(idx.search(["a"], 2))
    assert got["d0"] == pytest.approx(s0, rel=1e-6) and got["d1"] == pytest.approx(s1, rel=1e-6)
    # A repeated query term counts twice.
    assert dict(idx.search(["a", "a"], 2))["d0"] == pytest.approx(2 * s0, rel=1e-6)


def test_ties_keep_index_order():
    idx = BM25Index.build(["x", "y", "z"], [["t"], ["t"], ["t"]])
    assert [d for d, _ in idx.search(["t"], 3)] == ["x", "y", "z"]


def test_save_load_round_trip(index: BM25Index, tmp_path):
    index.save(tmp_path / "bm25")
    again = BM25Index.load(tmp_path / "bm25")
    for q in ("green tea", "caffeine", "绿茶"):
        assert again.search(tokenize(q), 4) == index.search(tokenize(q), 4)
    assert not list((tmp_path / "bm25").glob("*.tmp*"))


def test_load_rejects_torn_or_missing(index: BM25Index, tmp_path):
    with pytest.raises(OSError):
        BM25Index.load(tmp_path / "nothing")
    index.save(tmp_path / "b")
    (tmp_path / "b" / "bm25.json").write_text('{"format": 99}')
    with pytest.raises(ValueError, match="format"):
        BM25Index.load(tmp_path / "b")


def test_empty_and_bad_builds():
    assert BM25Index.build([], []).search(["a"], 3) == []
    assert BM25Index.build(["e"], [[]]).search(["a"], 3) == []
    with pytest.raises(ValueError, match="ids"):
        BM25Index.build(["a"], [])
    with pytest.raises(ValueError, match="unique"):
        BM25Index.build(["a", "a"], [["x"], ["y"]])


def test_build_and_search_speed_scale():
    """10k synthetic chunks build in well under a second per 1k; a search takes milliseconds."""
    rng = np.random.default_rng(0)
    vocab = [f"w{i}" for i in range(5000)]
    lists = [[vocab[j] for j in rng.zipf(1.3, 150) % 5000] for _ in range(10_000)]
    idx = BM25Index.build([str(i) for i in range(10_000)], lists)
    assert len(idx) == 10_000 and len(idx.search(["w1", "w77"], 10)) == 10
