"""Cross-encoder reranking with a tiny random BERT cross-encoder built in the test (no download)."""
from __future__ import annotations

from pathlib import Path

import pytest

from index.records import Hit
from index.rerank import Reranker, RerankerNotFound, rerank

WORDS = "[PAD] [UNK] [CLS] [SEP] [MASK] green tea coffee caffeine market stock the is a of 茶 咖 啡".split()


@pytest.fixture(scope="module")
def tiny_cross_encoder(tmp_path_factory) -> Path:
    import torch
    from transformers import BertConfig, BertForSequenceClassification, BertTokenizerFast

    folder = tmp_path_factory.mktemp("tiny-ce")
    (folder / "vocab.txt").write_text("\n".join(WORDS) + "\n")
    tok = BertTokenizerFast(vocab_file=str(folder / "vocab.txt"), do_lower_case=True)
    torch.manual_seed(0)
    cfg = BertConfig(vocab_size=len(WORDS), hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                     intermediate_size=32, max_position_embeddings=64, num_labels=1)
    BertForSequenceClassification(cfg).eval().save_pretrained(folder)
    tok.save_pretrained(folder)
    return folder


def _hit(i: int, text: str) -> Hit:
    return Hit(f"c{i}", text, 100.0 - i, f"d{i}", f"doc {i}", f"/docs/{i}.txt", 1, 1, 0, len(text))


HITS = [_hit(0, "green tea"), _hit(1, "stock market"), _hit(2, "coffee caffeine"), _hit(3, "茶 咖啡")]


def test_rerank_replaces_scores_and_sorts(tiny_cross_encoder: Path):
    from sentence_transformers import CrossEncoder

    reranker = Reranker(str(tiny_cross_encoder), max_length=32)
    out = reranker.rerank("green tea", HITS, top_k=3)
    assert len(out) == 3
    assert [h.score for h in out] == sorted((h.score for h in out), reverse=True)
    direct = CrossEncoder(str(tiny_cross_encoder), max_length=32).predict([("green tea", h.text) for h in HITS])
    expected = sorted(((float(s), h.chunk_id) for s, h in zip(direct, HITS)), key=lambda t: -t[0])[:3]
    assert [(h.chunk_id) for h in out] == [c for _, c in expected]
    assert [h.score for h in out] == pytest.approx([s for s, _ in expected], rel=1e-5)
    # everything but the score is carried over
    assert {(h.chunk_id, h.text, h.path) for h in out} <= {(h.chunk_id, h.text, h.path) for h in HITS}
    # deterministic, and the function form agrees
    assert reranker.rerank("green tea", HITS, top_k=3) == out
    assert rerank("green tea", HITS, 3, model=reranker) == out


def test_rerank_edge_cases(tiny_cross_encoder: Path):
    reranker = Reranker(str(tiny_cross_encoder))
    assert reranker.rerank("tea", [], top_k=5) == []
    assert len(reranker.rerank("tea", HITS, top_k=10)) == len(HITS)
    with pytest.raises(ValueError, match="top_k"):
        reranker.rerank("tea", HITS, top_k=0)


def test_missing_model_is_a_clear_error(tmp_path: Path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(RerankerNotFound, match="no-such-reranker"):
        Reranker("org/no-such-reranker").rerank("q", HITS, top_k=1)


def test_unreachable_hub_fails_at_once_with_the_fix(monkeypatch):
    """Not offline, but the hub does not answer: one reachability check, no download attempt (the
    hub client's own retries took ~57 s here), and the message says how to get the model."""
    import sentence_transformers

    import common.hub

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(common.hub, "offline_mode", lambda: False)
    asked, loads = [], []
    monkeypatch.setattr(common.hub, "hub_unreachable", lambda repo: asked.append(repo) or True)

    def cross_encoder(name, **kwargs):
        loads.append(kwargs["local_files_only"])
        raise OSError("not in the cache")

    monkeypatch.setattr(sentence_transformers, "CrossEncoder", cross_encoder)
    with pytest.raises(RerankerNotFound, match=r"cannot be reached.*hf download org/x .*--reranker ./x"):
        Reranker("org/x").rerank("q", HITS, top_k=1)
    assert asked == ["org/x"] and loads == [True]  # the cache only: never a download
