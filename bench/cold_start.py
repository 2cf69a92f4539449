"""Bench: cold start of a search from the command line, in CPU seconds (before vs after, same run).

Question: how long does a user wait for the first result of ``index search`` and of
``assistant ask --retrieval-only`` in a fresh process? Issue 16 measured 50-60 s wall (~20 s CPU)
on a busy 2-core machine, nearly all of it importing sentence-transformers/torch and loading the
e5 tokenizer, while a search inside a warm process takes ~0.1 s.

Same run, same demo documents (demo/docs), two knowledge bases built once beforehand:
  before  ``--embedder-backend torch``: the query is embedded by sentence-transformers on torch;
  after   ``--embedder-backend onnx`` (the default for the built-in e5 on CPU): onnxruntime and
          ``tokenizers`` only, no torch import on the query path.
Each command runs ``--repeat`` times, interleaved (before, after, before, ...), in a fresh
process; a run's CPU seconds are the child's user + system time (``resource.RUSAGE_CHILDREN``
deltas: all its threads), which other processes' load inflates far less than wall time; the
median of the runs is kept on each side. Also timed: ``index search --mode bm25`` (loads no
embedder at all) and ``index --help``.
Run niced:  nice -n 5 .venv/bin/python bench/cold_start.py [--repeat 3]
"""
from __future__ import annotations

import argparse
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
DOCS = ROOT / "demo" / "docs"
QUESTION = "What restocking fee do I pay if I return an opened vacuum?"


def run(cmd: list[str]) -> tuple[float, float]:
    """(CPU s, wall s) of one fresh process running ``cmd`` (its output must say it succeeded)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    done = subprocess.run(cmd, capture_output=True, text=True, env=os.environ | {"HF_HUB_OFFLINE": "1"})
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        sys.exit(f"{' '.join(cmd)} failed ({done.returncode}):\n{done.stderr[-2000:]}")
    return (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime), wall


def build(kb: Path, backend: str) -> None:
    run([str(BIN / "ingest"), "add", str(DOCS), "--kb", str(kb), "--embedder-backend", backend])


def commands(kbs: dict[str, Path]) -> dict[str, dict[str, list[str]]]:
    search = [str(BIN / "index"), "search", QUESTION, "--k", "3"]
    ask = [str(BIN / "assistant"), "ask", QUESTION, "--retrieval-only", "--k", "3"]
    out = {}
    for side, kb in kbs.items():
        out[f"index search (hybrid), {side}"] = {side: search + ["--kb", str(kb)]}
        out[f"assistant ask --retrieval-only, {side}"] = {side: ask + ["--kb", str(kb)]}
    out["index search --mode bm25"] = {"after": search + ["--kb", str(kbs["after"]), "--mode", "bm25"]}
    out["index --help"] = {"after": [str(BIN / "index"), "--help"]}
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeat", type=int, default=3, help="fresh processes per command (median kept)")
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="bench-cold-"))
    try:
        kbs = {"before": tmp / "kb-torch", "after": tmp / "kb-onnx"}
        build(kbs["before"], "torch")
        build(kbs["after"], "onnx")
        rows = {name: [] for name in commands(kbs)}
        for _ in range(args.repeat):  # interleaved: load changes hit both sides alike
            for name, cmd in commands(kbs).items():
                rows[name].append(run(next(iter(cmd.values()))))
        load = os.getloadavg()[0]
        print(f"load average {load:.1f} on {os.cpu_count()} CPUs; median of {args.repeat} fresh processes")
        print(f"{'command':48} {'CPU s':>7} {'wall s':>7}")
        med = {}
        for name, runs in rows.items():
            med[name] = (statistics.median(r[0] for r in runs), statistics.median(r[1] for r in runs))
            print(f"{name:48} {med[name][0]:7.2f} {med[name][1]:7.2f}")
        for what in ("index search (hybrid)", "assistant ask --retrieval-only"):
            b, a = med[f"{what}, before"], med[f"{what}, after"]
            print(f"{what}: CPU {b[0]:.2f} -> {a[0]:.2f} s (ratio {b[0] / a[0]:.2f}x), wall {b[1]:.2f} -> {a[1]:.2f} s")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
