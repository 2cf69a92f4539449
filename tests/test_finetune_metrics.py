"""BLEU-4 / ROUGE-L implementation, checked against hand computation and NLTK 3.10.4 reference values."""
from __future__ import annotations

import math

import pytest

from finetune.metrics import bleu4, corpus_scores, rouge_l, tokenize


def test_segmentation_chinese_and_english():
    assert tokenize("我爱北京天安门") == ["我", "爱", "北京", "天安门"]
    assert tokenize("The cat, sat!") == ["the", "cat", ",", "sat", "!"]


def test_bleu4_matches_nltk_method3():
    # values from nltk.translate.bleu_score.sentence_bleu(..., smoothing_function=SmoothingFunction().method3)
    cand, ref = tokenize("the cat sat on the mat"), tokenize("the cat is on the mat")
    assert bleu4(cand, ref) == pytest.approx(37.99178428257963, abs=1e-9)
    cand, ref = tokenize("小明今天去北京天安门看升旗"), tokenize("小明明天去北京天安门看升国旗")
    assert bleu4(cand, ref) == pytest.approx(43.472087194499146, abs=1e-9)


def test_bleu4_by_hand():
    # candidate a b c d vs reference a b c e: p1=3/4, p2=2/3, p3=1/2, p4 empty -> 1/(2*1); same length: BP=1
    expected = 100 * math.exp((math.log(3 / 4) + math.log(2 / 3) + math.log(1 / 2) + math.log(1 / 2)) / 4)
    assert bleu4(list("abcd"), list("abce")) == pytest.approx(expected)
    assert bleu4(list("abcd"), list("abcd")) == pytest.approx(100.0)
    assert bleu4(list("xy"), list("abcd")) == 0.0 and bleu4([], list("ab")) == 0.0


def test_rouge_l_lcs_f1():
    # LCS of a b c d / a c d e is a c d (3): P = R = 3/4
    assert rouge_l(list("abcd"), list("acde")) == pytest.approx(75.0)
    # LCS 2, P = 2/2, R = 2/4 -> F1 = 2*1*0.5/1.5
    assert rouge_l(list("ab"), list("axby")) == pytest.approx(100 * 2 * 0.5 / 1.5)
    assert rouge_l(list("ab"), list("cd")) == 0.0


def test_corpus_scores_average():
    scores = corpus_scores(["我爱北京天安门", "hello world"], ["我爱北京天安门", "goodbye moon"])
    assert scores["bleu4"] == pytest.approx(50.0) and scores["rouge_l"] == pytest.approx(50.0)
    with pytest.raises(ValueError):
        corpus_scores(["a"], [])
