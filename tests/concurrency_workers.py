"""Processes for tests/test_concurrency.py: a writer with a slow fake embedder, a searching reader.

Run as a script (``python tests/concurrency_workers.py writer|reader ARGS``); each prints JSON lines.

- ``writer KB LOCK_TIMEOUT_S DELAY_S BARRIER PARTIES FILE...``: ``KnowledgeBase.add`` of the files
  with :class:`SlowHashEmbedder` (every encode call waits at the barrier, then sleeps DELAY_S);
  prints one line ``{"ok", "counts", "holds"}``, or ``{"error"}`` (exit status 1).
- ``reader KB QUERY K TARGET STOP``: until the file STOP exists, opens the knowledge base, searches
  (hybrid) and closes it again, printing per search ``{"n": hits, "target": [texts of TARGET's hits]}``;
  its rows are read 2 ms late, which widens the window where a search that read the indexes and
  the rows in two transactions would see two states.
"""
from __future__ import annotations

import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from index.embedder import HashEmbedder  # noqa: E402

BARRIER_CAP_S = 120.0  # a barrier that never fills (writers that failed) lets the others go on after this


class SlowHashEmbedder(HashEmbedder):
    """The exact fake embedder, made slow: each ``encode_passages`` call first waits until ``parties``
    processes have reached the ``barrier`` folder (when given), then sleeps ``delay_s``.

    >>> SlowHashEmbedder(dim=8).encode_passages(["a b"]).shape
    (1, 8)
    """

    def __init__(self, dim: int = 64, delay_s: float = 0.0, barrier: str = "", parties: int = 0) -> None:
        super().__init__(dim=dim)
        self.delay_s, self.barrier, self.parties = delay_s, barrier, parties

    def encode_passages(self, texts, **kw):  # type: ignore[override]
        if self.barrier:
            _wait_at(Path(self.barrier), self.parties)
        time.sleep(self.delay_s)
        return super().encode_passages(texts, **kw)


def _wait_at(folder: Path, parties: int) -> None:
    import os

    folder.mkdir(parents=True, exist_ok=True)
    (folder / str(os.getpid())).touch()
    give_up = time.monotonic() + BARRIER_CAP_S
    while len(list(folder.iterdir())) < parties and time.monotonic() < give_up:
        time.sleep(0.02)


def writer(kb_dir: str, lock_timeout_s: str, delay_s: str, barrier: str, parties: str, *files: str) -> int:
    from index.errors import KBLocked
    from index.kb import KnowledgeBase

    emb = SlowHashEmbedder(dim=64, delay_s=float(delay_s), barrier=barrier, parties=int(parties))
    with KnowledgeBase.open(kb_dir, embedder=emb, lock_timeout_s=float(lock_timeout_s)) as kb:
        try:
            report = kb.add(list(files))
        except KBLocked as e:
            print(json.dumps({"error": str(e)}), flush=True)
            return 1
    holds = [[h.kind, h.seconds, h.files] for h in report.lock_holds]
    print(json.dumps({"ok": report.ok, "counts": report.to_json()["counts"], "holds": holds}), flush=True)
    return 0


def reader(kb_dir: str, query: str, k: str, target: str, stop: str) -> int:
    from index.kb import KnowledgeBase
    from index.store import Store

    hits_of = Store.hits

    def late_hits(self: Store, scored: object) -> object:  # widens the window between reading the
        time.sleep(0.002)  # indexes and the rows, where two read transactions would disagree
        return hits_of(self, scored)

    Store.hits = late_hits  # type: ignore[method-assign]
    while not Path(stop).exists():
        with KnowledgeBase.open(kb_dir, embedder=HashEmbedder(dim=64)) as kb:
            hits = kb.search(query, k=int(k))
        print(json.dumps({"n": len(hits), "target": [h.text for h in hits if h.path == target]}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit({"writer": writer, "reader": reader}[sys.argv[1]](*sys.argv[2:]))
