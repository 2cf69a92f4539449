"""An embedding cache for benchmarks: re-running a benchmark re-embeds nothing.

``CachedEmbedder(inner, folder)`` behaves like ``inner`` (same name, fingerprint, token
counts) but looks vectors up in ``folder/<fingerprint[:12]>/*.npz`` first, keyed by
``sha256(kind + "\\0" + text)``; new vectors go to a part file of this process, saved every
few hundred texts, so an interrupted run keeps its work. Several processes may share a folder.

>>> from index.embedder import HashEmbedder
>>> import tempfile; emb = CachedEmbedder(HashEmbedder(8), Path(tempfile.mkdtemp()))
>>> emb.encode_passages(["a b"]).shape, emb.computed
((1, 8), 1)
"""
from __future__ import annotations

import hashlib
import os
import time
from pathlib import Path
from typing import Sequence

import numpy as np


def default_cache_dir() -> Path:
    from index.e5_offline import cache_root

    return cache_root() / "bench-embeddings"


def key(kind: str, text: str) -> str:
    return hashlib.sha256(f"{kind}\0{text}".encode()).hexdigest()[:24]


class CachedEmbedder:
    def __init__(self, inner: object, folder: Path | None = None, *, save_every: int = 256) -> None:
        self.inner = inner
        self.name, self.fingerprint = inner.name, inner.fingerprint
        self.dim, self.max_tokens = inner.dim, inner.max_tokens
        self.count_tokens = inner.count_tokens
        self.folder = Path(folder or default_cache_dir()) / inner.fingerprint[:12]
        self.folder.mkdir(parents=True, exist_ok=True)
        self.part = self.folder / f"part-{os.getpid()}-{int(time.time())}.npz"
        self.save_every = save_every
        self.vectors: dict[str, np.ndarray] = {}
        self.new: dict[str, np.ndarray] = {}
        self.computed = 0
        for f in sorted(self.folder.glob("*.npz")):
            if ".tmp" not in f.name:
                with np.load(f, allow_pickle=False) as z:
                    self.vectors.update(zip(z["keys"].tolist(), z["vecs"]))

    def _save(self) -> None:
        if not self.new:
            return
        tmp = self.part.with_name(self.part.stem + ".tmp.npz")
        np.savez(tmp, keys=np.array(list(self.new)), vecs=np.stack(list(self.new.values())))
        os.replace(tmp, self.part)

    def _encode(self, kind: str, texts: Sequence[str], batch_size: int, show_progress: bool) -> np.ndarray:
        keys = [key(kind, t) for t in texts]
        todo = sorted({k: t for k, t in zip(keys, texts) if k not in self.vectors}.items(),
                      key=lambda kv: len(kv[1]))
        if todo:
            from tqdm import tqdm

            bar = tqdm(total=len(todo), desc=f"embed {kind}", disable=not show_progress)
            step = max(batch_size, 1) * 8
            for i in range(0, len(todo), step):
                part = todo[i: i + step]
                texts_ = [t for _, t in part]
                vecs = (self.inner.encode_queries(texts_) if kind == "q"
                        else self.inner.encode_passages(texts_, batch_size=batch_size))
                for (k, _), v in zip(part, vecs):
                    self.vectors[k] = self.new[k] = v
                self.computed += len(part)
                bar.update(len(part))
                if len(self.new) % self.save_every < step:
                    self._save()
            bar.close()
            self._save()
        if not keys:
            return np.zeros((0, self.dim), dtype=np.float32)
        return np.stack([self.vectors[k] for k in keys]).astype(np.float32, copy=False)

    def encode_passages(self, texts: Sequence[str], *, batch_size: int = 32,
                        show_progress: bool = False) -> np.ndarray:
        return self._encode("p", texts, batch_size, show_progress)

    def encode_queries(self, texts: Sequence[str]) -> np.ndarray:
        return self._encode("q", texts, 32, False)
