"""The onnx embedder backend: pooling as sentence-transformers does it, the export cache (once, atomic,
two processes), agreement with torch, and knowledge bases that refuse the other backend."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from index import embedder as embedder_mod
from index import onnx_backend
from index.config import IndexConfig
from index.embedder import SentenceTransformerEmbedder, backend_of, load_embedder, minilm_path, resolve_backend
from index.errors import EmbedderMismatch
from index.kb import KnowledgeBase

REPO = Path(__file__).resolve().parents[1]
# Per text, o2-int8 against torch fp32 (measured on 300 SciFact + zh_rgb chunks by bench/embed.py). A text that
# repeats one sentence 40 times gave 0.988 in a padded batch: activations are quantised per batch.
INT8_MIN_COSINE = 0.99
TEXTS = ["今年年初，印控克什米尔地区的寺庙发生踩踏事件，造成至少12人死亡、14人受伤。",
         "员工入职满一年后享有五天带薪年假，未休完的年假可顺延至次年三月底。",
         "The CDC recommends that women aged 19 to 70 eat about 46 grams of protein per day.",
         " ".join(f"Section {i}: the warranty covers parts and labour for {i + 1} years, except batteries, "
                  f"filters and damage caused by misuse; 第{i}条：保修期内免费维修，电池和滤网除外。"
                  for i in range(12))]  # 540 tokens: truncated at max_tokens (512)
QUERIES = ["年假没休完怎么办？", "how much protein should a woman eat per day"]


# -- pooling and configuration: no model ---------------------------------------------------
def test_pool_modes_match_sentence_transformers_definitions():
    h = np.arange(2 * 3 * 2, dtype=np.float32).reshape(2, 3, 2)
    mask = np.array([[1, 1, 1], [1, 1, 0]])
    assert onnx_backend.pool(h, mask, ("mean",)).tolist() == [[2, 3], [7, 8]]
    assert onnx_backend.pool(h, mask, ("cls", "max")).tolist() == [[0, 1, 4, 5], [6, 7, 8, 9]]
    assert onnx_backend.pool(h, mask, ("lasttoken",)).tolist() == [[4, 5], [8, 9]]
    assert np.allclose(onnx_backend.pool(h, mask, ("mean_sqrt_len",))[1], np.array([14, 16]) / np.sqrt(2))


def _folder(tmp_path: Path, modules: list[dict], pooling: dict) -> Path:
    tmp_path.mkdir()
    (tmp_path / "modules.json").write_text(json.dumps(modules))
    (tmp_path / "1_Pooling").mkdir()
    (tmp_path / "1_Pooling" / "config.json").write_text(json.dumps(pooling))
    return tmp_path


ST_MODULES = [{"path": "", "type": "sentence_transformers.models.Transformer"},
              {"path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
              {"path": "2_Normalize", "type": "sentence_transformers.models.Normalize"}]


def test_pooling_is_read_from_the_folder(tmp_path):
    assert onnx_backend.pooling_modes(_folder(tmp_path / "a", ST_MODULES, {
        "pooling_mode_cls_token": True, "pooling_mode_mean_tokens": False})) == ("cls",)
    assert onnx_backend.pooling_modes(_folder(tmp_path / "b", ST_MODULES, {"pooling_mode": "mean"})) == ("mean",)
    (tmp_path / "c").mkdir()
    assert onnx_backend.pooling_modes(tmp_path / "c") == ("mean",)  # a plain transformers folder
    dense = ST_MODULES + [{"path": "3_Dense", "type": "sentence_transformers.models.Dense"}]
    with pytest.raises(onnx_backend.OnnxExportError, match="Dense.*--embedder-backend torch"):
        onnx_backend.pooling_modes(_folder(tmp_path / "d", dense, {"pooling_mode_mean_tokens": True}))
    with pytest.raises(onnx_backend.OnnxExportError, match="weightedmean"):
        onnx_backend.pooling_modes(_folder(tmp_path / "e", ST_MODULES, {"pooling_mode_weightedmean_tokens": True}))


def test_auto_backend_is_onnx_for_the_builtin_e5_on_cpu_only(monkeypatch):
    monkeypatch.setattr(embedder_mod, "cuda_visible", lambda: False)
    assert resolve_backend("multilingual-e5-small") == "onnx"
    assert resolve_backend("BAAI/bge-small-zh-v1.5") == "torch"
    assert resolve_backend("BAAI/bge-small-zh-v1.5", "onnx") == "onnx"
    monkeypatch.setattr(embedder_mod, "cuda_visible", lambda: True)
    assert resolve_backend("multilingual-e5-small") == "torch"
    with pytest.raises(ValueError, match="tensorrt"):
        resolve_backend("multilingual-e5-small", "tensorrt")
    with pytest.raises(ValueError, match="embedder_backend"):
        IndexConfig(embedder_backend="tensorrt")
    assert backend_of(onnx_backend.backend_fingerprint("0" * 64, "o2-int8")) == "onnx"


def test_torch_runs_on_the_gpu_when_there_is_one(monkeypatch):
    """With a CUDA device the default stays torch, on the GPU (fp16 at load); without one, torch runs on CPU."""
    monkeypatch.setattr(embedder_mod, "cuda_visible", lambda: True)
    emb = load_embedder(str(minilm_path()))
    assert (emb.backend, emb.device) == ("torch", "cuda")
    monkeypatch.setattr(embedder_mod, "cuda_visible", lambda: False)
    assert load_embedder(str(minilm_path()), "torch").device == "cpu"


def test_export_runs_once_and_publishes_atomically(tmp_path, monkeypatch):
    """A second ensure exports nothing; a failed export leaves no folder and no temp folder."""
    monkeypatch.setenv("QDA_CACHE", str(tmp_path / "cache"))
    calls = []

    def fake_export(src, dest, recipe, max_tokens, src_fingerprint=""):
        calls.append(recipe)
        dest.mkdir(parents=True)
        (dest / onnx_backend.ONNX_FILE).write_bytes(b"onnx")
        if recipe == "fp32":
            raise onnx_backend.OnnxExportError("boom")
        (dest / onnx_backend.FINGERPRINT_FILE).write_text("f+onnx-o2-int8-r1\n")

    monkeypatch.setattr(onnx_backend, "export", fake_export)
    src = tmp_path / "model"
    first = onnx_backend.ensure_onnx(src, "ab" * 32, 512)
    assert onnx_backend.ensure_onnx(src, "ab" * 32, 512) == first and calls == ["o2-int8"]
    assert first.parent == tmp_path / "cache" / "embedders" and first.name.startswith("model.onnx-o2-int8-r1-abab")
    with pytest.raises(onnx_backend.OnnxExportError):
        onnx_backend.ensure_onnx(src, "ab" * 32, 512, recipe="fp32")
    left = sorted(p.name for p in first.parent.iterdir() if not p.name.endswith(".lock"))
    assert left == [first.name]


# -- knowledge bases record the backend through the fingerprint ------------------------------
class _Fake:
    """An embedder whose fingerprint says its backend (vectors from the hash fake)."""

    def __init__(self, backend: str) -> None:
        inner = embedder_mod.HashEmbedder(16)
        self.name, self.dim, self.max_tokens = "fake-model", 16, 512
        self.fingerprint = "f" * 64 + ("+onnx-o2-int8-r1" if backend == "onnx" else "")
        self.count_tokens, self.encode_passages, self.encode_queries = (
            inner.count_tokens, inner.encode_passages, inner.encode_queries)


def test_kb_built_on_one_backend_refuses_the_other(tmp_path, monkeypatch):
    (tmp_path / "a.txt").write_text("退货政策：三十天内可以退货。", encoding="utf-8")
    with KnowledgeBase.open(tmp_path / "kb", embedder=_Fake("onnx")) as kb:
        kb.add([tmp_path / "a.txt"])
    with pytest.raises(EmbedderMismatch) as err:
        KnowledgeBase.open(tmp_path / "kb", embedder=_Fake("torch"))
    message = str(err.value)
    assert "onnx backend and this asks for torch" in message and "--embedder-backend onnx" in message
    assert "index reindex" in message and "--embedder-backend torch" in message
    # auto (no backend given) opens it on the backend it was built with; a given one is loaded at open
    asked: list[tuple[str, str]] = []
    monkeypatch.setattr(embedder_mod, "load_embedder", lambda name, backend="auto": asked.append((name, backend))
                        or _Fake(backend))
    with KnowledgeBase.open(tmp_path / "kb") as kb:
        assert kb.search("退货", mode="dense")
    with KnowledgeBase.open(tmp_path / "kb", embedder="fake-model") as kb:
        pass
    with pytest.raises(EmbedderMismatch, match="--embedder-backend onnx"):
        KnowledgeBase.open(tmp_path / "kb", embedder_backend="torch")
    assert asked == [("fake-model", "onnx"), ("fake-model", "onnx"), ("fake-model", "torch")]


# -- integration: real exports ---------------------------------------------------------------
@pytest.fixture(scope="module")
def e5_pair():
    """The built-in e5 on onnx (exported into the real cache once, ~1 min) and on torch."""
    onnx = load_embedder("multilingual-e5-small", backend="onnx")
    return onnx, SentenceTransformerEmbedder(str(onnx.folder), name="multilingual-e5-small")


@pytest.mark.integration
def test_e5_onnx_int8_agrees_with_torch_in_both_languages(e5_pair):
    onnx, torch_emb = e5_pair
    assert (onnx.dim, onnx.max_tokens, onnx.passage_prefix) == (torch_emb.dim, torch_emb.max_tokens, "passage: ")
    assert backend_of(onnx.fingerprint) == "onnx" and onnx.fingerprint != torch_emb.fingerprint
    p, p_ref = onnx.encode_passages(TEXTS), torch_emb.encode_passages(TEXTS)
    q, q_ref = onnx.encode_queries(QUERIES), torch_emb.encode_queries(QUERIES)
    assert p.dtype == np.float32 and np.allclose(np.linalg.norm(p, axis=1), 1, atol=1e-5)
    assert np.sum(p * p_ref, axis=1).min() >= INT8_MIN_COSINE
    assert np.sum(q * q_ref, axis=1).min() >= INT8_MIN_COSINE
    assert (q @ p.T)[0].argmax() == 1 and (q @ p.T)[1].argmax() == 2  # zh and en queries find their passage
    single = np.vstack([onnx.encode_queries([t]) for t in QUERIES])  # the one-thread session
    # Alone or in a padded batch: activations are quantised per batch, so not bit-equal (measured 0.997).
    assert np.sum(single * q_ref, axis=1).min() >= INT8_MIN_COSINE and np.sum(single * q, axis=1).min() > 0.995
    recipe = json.loads((onnx._runner().path.parent / onnx_backend.RECIPE_FILE).read_text())
    assert recipe["recipe"] == "o2-int8" and recipe["min_cosine_vs_torch"] >= onnx_backend.VERIFY_MIN_COSINE


@pytest.mark.integration
def test_minilm_exports_once_across_processes_and_loads(tmp_path, monkeypatch):
    """Two processes export the same model at once: one export, one folder, no temp leftovers;
    then two more loads here export nothing."""
    cache = tmp_path / "cache"
    code = ("import json; from index import onnx_backend as ob; from index.embedder import "
            "SentenceTransformerEmbedder, minilm_path\nn = []; real = ob.export\n"
            "ob.export = lambda *a, **k: n.append(1) or real(*a, **k)\n"
            "fp = SentenceTransformerEmbedder(str(minilm_path()), backend='onnx').fingerprint\n"
            "print(json.dumps([len(n), fp]))")
    env = {**__import__("os").environ, "QDA_CACHE": str(cache)}
    procs = [subprocess.Popen([sys.executable, "-c", code], cwd=REPO, env=env, stdout=subprocess.PIPE, text=True)
             for _ in range(2)]
    outs = [json.loads(p.communicate(timeout=600)[0].strip().splitlines()[-1]) for p in procs]
    assert [p.returncode for p in procs] == [0, 0]
    assert sorted(n for n, _ in outs) == [0, 1] and outs[0][1] == outs[1][1]
    assert len([p for p in (cache / "embedders").iterdir() if not p.name.endswith(".lock")]) == 1
    monkeypatch.setenv("QDA_CACHE", str(cache))
    calls = []
    monkeypatch.setattr(onnx_backend, "export", lambda *a, **k: calls.append(a))
    loads = [SentenceTransformerEmbedder(str(minilm_path()), backend="onnx") for _ in range(2)]
    assert [e.fingerprint for e in loads] == [outs[0][1]] * 2 and calls == []
    torch_emb = SentenceTransformerEmbedder(str(minilm_path()))
    texts = ["A cat sits on the mat.", "Stock markets fell sharply on Monday."]
    cos = np.sum(loads[0].encode_passages(texts) * torch_emb.encode_passages(texts), axis=1)
    assert cos.min() >= onnx_backend.VERIFY_MIN_COSINE  # a smaller model: int8 costs it more (0.99-0.995)
    (tmp_path / "a.txt").write_text("Opened items are returned with a 15 percent restocking fee.", encoding="utf-8")
    with KnowledgeBase.open(tmp_path / "kb", embedder=torch_emb) as kb:
        kb.add([tmp_path / "a.txt"])
    with pytest.raises(EmbedderMismatch, match="torch backend and this asks for onnx"):
        KnowledgeBase.open(tmp_path / "kb", embedder=loads[0])
