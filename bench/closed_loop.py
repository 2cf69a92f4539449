"""Bench: does a LoRA adapter trained on the knowledge base's own RAG prompts answer better than the
base model with the same retrieval, and does RAG beat closed-book? (issue 5, the closed loop)

Question: on held-out questions over a real corpus, with the real small model, how do the four
systems of ``assistant eval`` compare: ``base`` (closed-book), ``base+rag``, ``adapter``
(closed-book) and ``adapter+rag``? Expected: adapter+rag beats base+rag on exact match and
citation precision, and both RAG systems beat both closed-book ones. The baseline (base+rag) is
measured in the same run, on the same questions, retrieval and decoding.

Data (``../shared/data/retrieval``, never copied into the repository):

* knowledge base: every relevant passage (qrels/dev.tsv) of the 150 zh_rgb dev questions plus a
  seeded sample of ``--other-passages`` other zh_rgb news passages (hard negatives of the same
  news period), one document per passage (``index.beir.to_documents``), ingested through
  ``KnowledgeBase.add_documents`` with the default embedder (multilingual-e5-small);
* gold questions: the zh_rgb questions with ONE short answer (134 of 150; RGB answers with several
  required parts, e.g. the list of RCEP countries, have no single reference), each with its
  acceptable variants; a seeded split into ``--train-questions`` and ``--eval-questions``;
* distractor-only questions: ``--distractors`` seeded zh_cmrc2018_dev questions (Wikipedia
  topics the news KB does not hold), ``"answerable": false``, in the eval set only.

Stages (each cached under ``--work``; a re-run skips finished stages, ``--redo STAGE`` redoes that
stage and the later ones): ``kb`` -> ``data`` (``finetune data from-kb``, k=3, default distractor
ratio 0.2, ``--on-miss inject``) -> ``parity`` (assert: for every training record, the prompt token
ids ``finetune train`` trains on equal the ids the assistant feeds the model for the same messages,
and the assistant's own retrieval reproduces each non-injected record's prompt) -> ``train``
(``finetune train``: a 2-step probe first prints the time estimate, then LoRA on the model) ->
``eval`` (``assistant eval``, greedy, k=3, the same ``--max-new-tokens`` as the data stage; the
parity check is repeated with the adapter's saved tokenizer and run-card system prompt) -> summary
(table, key ratios, sample answers: ``closed_loop.json`` / ``closed_loop.md``). The commands run
are the installed CLIs, printed as they run.

    nice -n 5 .venv/bin/python bench/closed_loop.py --work ~/closed_loop --threads 1     # ~1 h here
    .venv/bin/python bench/closed_loop.py --work /tmp/cl --quick --threads 1            # smoke: ~5 min
    .venv/bin/python bench/closed_loop.py --work ~/closed_loop --redo train --epochs 2   # retrain + eval

Training defaults (one epoch at learning rate 1e-3, batch 4) are sized by the probe on a busy
2-core machine: ~63 s per step of 4 examples (~37 tokens/s), so one epoch of 86 examples is ~20 min;
1.5 epochs at 5e-4 would have taken ~36 min (with 17 distractor records, 91 examples: 23 steps, 36 min
at load 9-10). Figures of the full run: README, "Closed loop". The summary also gives the training
mix (from-kb's records and report) and, per system, the answerable and distractor-only questions declined.

``--threads 1`` sets torch/OpenMP threads in this process and in every command: on a 2-core machine
loaded by other jobs one thread measured 2-5x faster than two (prefill 2.9 s vs 6-10 s for 550 tokens
of gemma-3-270m). The model defaults to gemma-3-270m from ``../shared/tools/offline-lm.py`` (a base
model without a chat template: training and the assistant both use the ChatML fallback).
"""
from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import random
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

# bench/ (on sys.path as the script's folder) holds scripts named like packages (ingest.py):
# the repository root goes first, bench/ is dropped.
ROOT = Path(__file__).resolve().parents[1]
sys.path[:] = [str(ROOT)] + [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]

DATA = ROOT.parent / "shared" / "data" / "retrieval"
GEMMA = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "offline-lm" / "gemma-3-270m"
STAGES = ("kb", "data", "parity", "train", "eval")
SYSTEMS = ("base", "base+rag", "adapter", "adapter+rag")
# settings that shape a stage's output: a work folder made with other values is not reused silently
SHAPING = ("quick", "model", "seed", "train_questions", "eval_questions", "distractors", "other_passages", "k",
           "max_new_tokens", "epochs", "learning_rate", "batch_size", "grad_accum", "lora_r", "max_length")


def log(message: str) -> None:
    print(message, flush=True)


# -- gold questions -------------------------------------------------------------------------------
def rgb_questions() -> list[dict]:
    """zh_rgb dev questions with one required answer, as gold records (variants as ``answers``)."""
    out = []
    with open(DATA / "zh_rgb" / "queries.jsonl", encoding="utf-8") as f:
        for line in f:
            q = json.loads(line)
            if len(q["answers"]) != 1:  # several required parts: no single reference to match
                continue
            alts = q["answers"][0]
            out.append({"id": f"zh_rgb:{q['_id']}", "question": q["text"].strip(),
                        "answers": [alts] if isinstance(alts, str) else list(alts)})
    return out


def distractor_questions(n: int, seed: int) -> list[dict]:
    with open(DATA / "zh_cmrc2018_dev" / "queries.jsonl", encoding="utf-8") as f:
        rows = [json.loads(line) for line in f if line.strip()]
    picked = random.Random(seed).sample(rows, n)
    return [{"id": f"zh_cmrc2018_dev:{r['_id']}", "question": r["text"].strip(), "answerable": False}
            for r in picked]


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return path


def write_gold(args: argparse.Namespace, work: Path) -> tuple[Path, Path, list[dict]]:
    """Seeded train / eval split (deterministic: rewritten identically on every run)."""
    questions = rgb_questions()
    random.Random(args.seed).shuffle(questions)
    if args.train_questions + args.eval_questions > len(questions):
        sys.exit(f"only {len(questions)} single-answer questions: lower --train-questions/--eval-questions")
    train = questions[:args.train_questions]
    held = questions[args.train_questions:args.train_questions + args.eval_questions]
    evals = held + distractor_questions(args.distractors, args.seed)
    return write_jsonl(work / "gold" / "train.jsonl", train), write_jsonl(work / "gold" / "eval.jsonl", evals), \
        train + held


# -- knowledge base -------------------------------------------------------------------------------
def kb_corpus(args: argparse.Namespace, used: list[dict]) -> tuple[dict, int]:
    """Relevant passages (of all 150 questions; --quick: of the questions used) + seeded others."""
    from index.beir import load_beir

    rgb = load_beir(DATA / "zh_rgb", "dev")
    qids = {q["id"].split(":", 1)[1] for q in used} if args.quick else set(rgb.qrels)
    relevant = sorted({d for q in qids for d, r in rgb.qrels.get(q, {}).items() if r > 0})
    others = sorted(set(rgb.corpus) - set(relevant))
    chosen = set(relevant) | set(random.Random(args.seed).sample(others, args.other_passages))
    return {d: rgb.corpus[d] for d in rgb.corpus if d in chosen}, len(relevant)


def build_kb(args: argparse.Namespace, work: Path, used: list[dict]) -> dict:
    from index.beir import BeirSet, to_documents
    from index.embedder import load_embedder
    from index.kb import KnowledgeBase

    corpus, relevant = kb_corpus(args, used)
    start = time.perf_counter()
    with KnowledgeBase.open(work / "kb", embedder=load_embedder()) as kb:
        report = kb.add_documents(to_documents(BeirSet("zh_rgb", "dev", corpus, {}, {})), progress=True)
        added = [f for f in report.files if f.status == "added"]
        info = {"passages": len(corpus), "relevant": relevant, "others": len(corpus) - relevant,
                "documents": len(kb.documents()), "chunks_added": sum(f.chunks for f in added),
                "embedder": kb.embedder.name, "seconds": time.perf_counter() - start}
    log(f"knowledge base {work / 'kb'}: {info['passages']} passages ({relevant} relevant), "
        f"{info['chunks_added']} chunks embedded in {info['seconds']:.0f} s")
    return info


# -- commands -------------------------------------------------------------------------------------
def command_env(threads: int | None) -> dict:
    env = dict(os.environ, TOKENIZERS_PARALLELISM="false", HF_HUB_OFFLINE="1")
    if threads:
        env.update(OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
    return env


def run(cmd: list[str], args: argparse.Namespace, stdout: Path | None = None) -> float:
    """Run an installed CLI (``finetune``, ``assistant``) from this venv; print it as a user types it."""
    log("$ " + shlex.join(cmd))
    start = time.perf_counter()
    with open(stdout, "w", encoding="utf-8") if stdout else contextlib.nullcontext() as sink:
        out = subprocess.run([str(Path(sys.executable).parent / cmd[0]), *cmd[1:]], env=command_env(args.threads),
                             stdout=sink)
    if out.returncode:
        sys.exit(f"command failed with exit status {out.returncode}: {shlex.join(cmd)}")
    return time.perf_counter() - start


def from_kb_command(args: argparse.Namespace, work: Path, gold: Path, out: Path) -> list[str]:
    return ["finetune", "data", "from-kb", str(gold), "--kb", str(work / "kb"), "--model", args.model,
            "--k", str(args.k), "--max-new-tokens", str(args.max_new_tokens), "--seed", str(args.seed),
            "--out", str(out), "--json"]


def train_command(args: argparse.Namespace, data: Path, out: Path, *, max_steps: int | None = None) -> list[str]:
    cmd = ["finetune", "train", "--data", str(data), "--model", args.model, "--output-dir", str(out),
           "--epochs", str(args.epochs), "--learning-rate", str(args.learning_rate), "--batch-size",
           str(args.batch_size), "--grad-accum", str(args.grad_accum), "--lora-r", str(args.lora_r),
           "--lora-alpha", str(4 * args.lora_r), "--max-length", str(args.max_length), "--logging-steps", "1",
           "--eval-steps", "1000", "--save-steps", "1000", "--seed", str(args.seed)]
    if max_steps:  # a probe or smoke run: no final validation pass
        cmd[cmd.index("--eval-steps") + 1] = "0"
    return cmd + (["--max-steps", str(max_steps)] if max_steps else [])


def eval_command(args: argparse.Namespace, work: Path, gold: Path) -> list[str]:
    gate = [] if args.abstain_threshold is None else ["--abstain-threshold", str(args.abstain_threshold)]
    return ["assistant", "eval", "--kb", str(work / "kb"), "--model", args.model, "--adapter", str(work / "adapter"),
            "--data", str(gold), "-k", str(args.k), "--max-new-tokens", str(args.max_new_tokens), "--temperature",
            "0", "--out", str(work / "eval" / "results.json"), "--plot", str(work / "eval" / "systems.png"), *gate]


# -- parity: training ids == inference ids ----------------------------------------------------------
def training_prompts(records: Path, model: str) -> dict[str, list[int]]:
    """record source (file:line) -> prompt ids exactly as ``finetune train`` builds them."""
    from finetune.data import prepare
    from finetune.loading import load_tokenizer
    from finetune.template import encode_conversation, ensure_chat_template

    report = prepare([records], val_ratio=0.0)  # the same reading and cleaning as training (no split)
    tok = load_tokenizer(model)
    ensure_chat_template(tok)
    out = {}
    for conv in report.train:
        examples, problems = encode_conversation(tok, conv, thinking="off", max_length=1 << 20)
        assert not problems, f"finetune would skip {conv.source}: {problems[0].detail}"
        out[conv.source] = list(examples[0].input_ids[:examples[0].prompt_len])
    return out


def assistant_ids(bot, messages: list[dict], use_adapter: bool) -> list[int]:
    """The ids LocalBackend.generate feeds the model for ``messages`` (its render, then its tokenizer)."""
    backend = bot.backend
    text = backend.render(messages, thinking=bot.thinking(use_adapter=use_adapter))
    return list(backend.tokenizer()(text, add_special_tokens=False)["input_ids"])


def parity(args: argparse.Namespace, work: Path, records: Path, adapter: Path | None = None) -> dict:
    """Compare, for every training record, training prompt ids with the assistant's; assert equality."""
    from assistant.answer import Assistant
    from assistant.config import AskOptions

    trained = training_prompts(records, args.model)
    bot = Assistant(kb=str(work / "kb"), model=args.model, adapter=str(adapter) if adapter else None, k=args.k,
                    max_new_tokens=args.max_new_tokens)
    stats = {"adapter": str(adapter) if adapter else None, "records": 0, "ids_equal": 0, "retrieval_checked": 0,
             "retrieval_equal": 0, "prompt_tokens_max": 0, "mismatches": []}
    try:
        lines = records.read_text(encoding="utf-8").splitlines()
        for n, line in enumerate(lines, 1):
            rec, source = json.loads(line), f"{records}:{n}"
            messages = rec["messages"][:-1]
            ids = assistant_ids(bot, messages, use_adapter=adapter is not None)
            stats["records"] += 1
            stats["prompt_tokens_max"] = max(stats["prompt_tokens_max"], len(ids))
            if ids == trained.get(source):
                stats["ids_equal"] += 1
            else:
                stats["mismatches"].append({"source": source, "assistant": len(ids),
                                            "training": len(trained.get(source) or [])})
            if rec["meta"]["kind"] == "answer" and rec["meta"].get("found") in ("text", "doc/page", "chunk"):
                stats["retrieval_checked"] += 1
                own = bot.prompt(messages[-1]["content"], options=AskOptions(use_adapter=adapter is not None))[0]
                stats["retrieval_equal"] += own == messages
    finally:
        bot.close()
    return stats


def check_parity(stats: dict) -> dict:
    log(f"parity ({'adapter ' + stats['adapter'] if stats['adapter'] else 'base model'}): prompt ids equal for "
        f"{stats['ids_equal']}/{stats['records']} records (longest prompt {stats['prompt_tokens_max']} tokens); "
        f"assistant retrieval reproduces {stats['retrieval_equal']}/{stats['retrieval_checked']} prompts")
    assert stats["ids_equal"] == stats["records"], (
        f"training and inference prompt ids differ: {stats['mismatches'][:3]}")
    assert stats["retrieval_equal"] == stats["retrieval_checked"], "the assistant retrieves other sources than from-kb"
    return stats


# -- training -------------------------------------------------------------------------------------
def probe(args: argparse.Namespace, work: Path, data: Path) -> dict:
    """A 2-step run of the same command: seconds per step, tokens/s, and the estimate for the full run."""
    folder = work / "train_probe"
    shutil.rmtree(folder, ignore_errors=True)
    wall = run(train_command(args, data, folder, max_steps=2), args)
    card = json.loads((folder / "run_card.json").read_text(encoding="utf-8"))
    shutil.rmtree(folder)
    examples = card["examples"]["train"]["examples"]
    steps = math.ceil(examples / (args.batch_size * args.grad_accum)) * args.epochs
    step_s = card["metrics"]["train_runtime"] / card["metrics"]["global_step"]
    est = {"examples": examples, "steps": math.ceil(steps), "step_s": step_s, "probe_wall_s": wall,
           "tokens_per_s": card["metrics"].get("train_tokens_per_second"),
           "estimate_s": step_s * math.ceil(steps) + (wall - card["metrics"]["train_runtime"])}
    log(f"train probe: {step_s:.0f} s/step, {est['tokens_per_s']:.1f} tokens/s -> estimate {est['steps']} steps "
        f"({args.epochs:g} epochs of {examples} examples) in {est['estimate_s'] / 60:.1f} min")
    return est


def train(args: argparse.Namespace, work: Path, data: Path) -> dict:
    est = None if args.quick else probe(args, work, data)
    wall = run(train_command(args, data, work / "adapter", max_steps=1 if args.quick else None), args)
    card = json.loads((work / "adapter" / "run_card.json").read_text(encoding="utf-8"))
    m = card["metrics"]
    val = f", validation loss {m['eval_loss']:.3f}" if "eval_loss" in m else ""
    log(f"trained in {wall / 60:.1f} min: {m.get('global_step', 0):.0f} steps, train loss "
        f"{m.get('train_loss', float('nan')):.3f}{val}, {m.get('train_tokens_per_second', float('nan')):.1f} tokens/s")
    return {"wall_s": wall, "probe": est, "metrics": m, "examples": card["examples"]}


# -- summary --------------------------------------------------------------------------------------
def pct(value: float | None) -> str:
    return "–" if value is None else f"{100 * value:.1f}"


def ratio(a: float | None, b: float | None) -> str:
    if a is None or b is None:
        return "–"
    diff = f"{100 * (a - b):+.1f} pp"
    return f"{a / b:.2f}x ({diff})" if b else f"n/a ({diff}; baseline 0)"


def table(results: dict) -> list[str]:
    cols = (("exact_match", "EM %"), ("contains", "contains %"), ("token_f1", "token F1 %"),
            ("citation_precision", "citation precision %"), ("abstention_correct", "abstention correct %"),
            ("false_abstention", "false abstention %"))
    lines = ["| system | " + " | ".join(h for _, h in cols) + " | s / answer (mean) |",
             "|---" * (len(cols) + 2) + "|"]
    for s in SYSTEMS:
        if s in results:
            r = results[s]
            lines.append(f"| {s} | " + " | ".join(pct(r[c]) for c, _ in cols)
                         + f" | {r['timings']['total_s']['mean']:.1f} |")
    return lines


def key_ratios(r: dict) -> tuple[list[str], dict]:
    ar, br, a, b = (r.get(s, {}) for s in ("adapter+rag", "base+rag", "adapter", "base"))
    lines = [f"- adapter+rag vs base+rag, EM: {ratio(ar.get('exact_match'), br.get('exact_match'))}; "
             f"citation precision: {ratio(ar.get('citation_precision'), br.get('citation_precision'))}; "
             f"contains: {ratio(ar.get('contains'), br.get('contains'))}",
             f"- base+rag vs base (closed-book), EM: {ratio(br.get('exact_match'), b.get('exact_match'))}; "
             f"adapter+rag vs adapter: {ratio(ar.get('exact_match'), a.get('exact_match'))}"]
    em = {s: (r.get(s) or {}).get("exact_match") or 0.0 for s in SYSTEMS}
    holds = {"adapter+rag > base+rag on EM": em["adapter+rag"] > em["base+rag"],
             "adapter+rag > base+rag on citation precision":
                 (ar.get("citation_precision") or 0) > (br.get("citation_precision") or 0),
             "both RAG > both closed-book on EM":
                 min(em["base+rag"], em["adapter+rag"]) > max(em["base"], em["adapter"])}
    lines += [f"- expected: {claim}: {'yes' if ok else 'NO'}" for claim, ok in holds.items()]
    return lines, holds


def samples(rows: list[dict], n: int) -> list[str]:
    """The first n answerable questions' answers by every system (Markdown)."""
    out, seen = [], []
    for row in rows:
        if row["answerable"] and row["source"] not in seen:
            seen.append(row["source"])
    for source in seen[:n]:
        group = [r for r in rows if r["source"] == source]
        out.append(f"- **{group[0]['question']}**")
        out += [f"  - {r['system']}: `{' '.join(r['text'].split())[:160]}`" + (" (EM)" if r["exact_match"] else "")
                for r in group]
    return out


def declines(rows: list[dict]) -> str:
    """Per system: answerable questions declined (false abstentions) and distractor-only ones declined."""
    out = []
    for system in SYSTEMS:
        mine = [r for r in rows if r["system"] == system]
        if mine:
            ans, off = [r for r in mine if r["answerable"]], [r for r in mine if not r["answerable"]]
            out.append(f"{system} {sum(r['abstained'] for r in ans)}/{len(ans)} answerable, "
                       f"{sum(r['abstained'] for r in off)}/{len(off)} distractor-only")
    return "Declined: " + "; ".join(out) + "."


def training_mix(report: dict) -> str:
    """The from-kb records trained on, by kind, and how each gold was found (or why a record was dropped)."""
    kinds = ", ".join(f"{n} {kind}" for kind, n in report.get("records", {}).items())
    found = ", ".join(f"{how} {n}" for how, n in report.get("found", {}).items())
    return f"Training records (from-kb): {kinds}; gold: {found}; {len(report.get('problems', []))} problem(s)."


def summarize(args: argparse.Namespace, work: Path, timings: dict, info: dict) -> None:
    res = json.loads((work / "eval" / "results.json").read_text(encoding="utf-8"))
    lines, holds = key_ratios(res["results"])
    ret = res["retrieval"]
    hits = ", ".join(f"{k} {pct(v)}%" for k, v in ret.items() if k.startswith("hit@")) + f", MRR {ret['mrr']:.3f}"
    first = next(iter(res["results"].values()))
    md = ["# Closed loop: zh_rgb, gemma-3-270m" if not args.quick else "# Closed loop (quick smoke run)", "",
          f"{first['answerable']} held-out answerable questions + {first['distractor']} distractor-only; "
          f"model `{args.model}`; k={args.k}, greedy, at most {args.max_new_tokens} new tokens; retrieval "
          f"({ret['items']} answerable): {hits}.", training_mix(info.get("from_kb", {})), "",
          *table(res["results"]), "", declines(res["rows"]), "", *lines, "",
          "Stage timings (s): " + ", ".join(f"{k} {v:.0f}" for k, v in timings.items()), "",
          "## Sample answers", "", *samples(res["rows"], 6), ""]
    (work / "closed_loop.md").write_text("\n".join(md), encoding="utf-8")
    summary = {"results": res["results"], "retrieval": ret, "expected": holds, "timings_s": timings, **info}
    (work / "closed_loop.json").write_text(json.dumps(summary, ensure_ascii=False, indent=2), encoding="utf-8")
    print("\n".join(md[:md.index("## Sample answers")]))
    log(f"wrote {work / 'closed_loop.md'}, {work / 'closed_loop.json'}, {work / 'eval'}/results.json/.md, systems.png")


# -- driver ---------------------------------------------------------------------------------------
def parse_args() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--work", type=Path, required=True, help="folder of every stage's output (reused on re-runs)")
    ap.add_argument("--quick", action="store_true", help="smoke run in WORK/quick: 6+3 questions, 1 step")
    ap.add_argument("--redo", choices=STAGES, help="redo this stage and every later one")
    ap.add_argument("--model", default=str(GEMMA), help="base model folder (default: gemma-3-270m)")
    ap.add_argument("--threads", type=int, default=None, help="torch/OpenMP threads (default: torch's)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--train-questions", type=int, default=84)
    ap.add_argument("--eval-questions", type=int, default=50)
    ap.add_argument("--distractors", type=int, default=15, help="distractor-only eval questions (cmrc2018)")
    ap.add_argument("--other-passages", type=int, default=300, help="non-relevant zh_rgb passages in the KB")
    ap.add_argument("--k", type=int, default=3)
    ap.add_argument("--max-new-tokens", type=int, default=48)
    ap.add_argument("--epochs", type=float, default=1.0)
    ap.add_argument("--learning-rate", type=float, default=1e-3)
    ap.add_argument("--batch-size", type=int, default=4)
    ap.add_argument("--grad-accum", type=int, default=1)
    ap.add_argument("--lora-r", type=int, default=8, help="LoRA rank (alpha = 4 x rank, the finetune default ratio)")
    ap.add_argument("--max-length", type=int, default=1536, help="tokens per training example")
    ap.add_argument("--abstain-threshold", type=float, default=None,
                    help="eval only: the plain cosine gate (e.g. 0.82, the gate before the per-language decision) "
                         "instead of the calibrated one; use with --redo eval")
    args = ap.parse_args()
    if args.quick:
        args.train_questions, args.eval_questions, args.distractors, args.other_passages = 6, 3, 2, 20
        args.max_new_tokens = 16
    return args


def work_folder(args: argparse.Namespace) -> Path:
    """WORK (or WORK/quick), refusing one made with other shaping settings; --redo clears stages."""
    work = (args.work / "quick" if args.quick else args.work).expanduser().resolve()
    work.mkdir(parents=True, exist_ok=True)
    settings = {k: getattr(args, k) for k in SHAPING}
    saved = work / "settings.json"
    if saved.is_file() and not args.redo:
        old = json.loads(saved.read_text(encoding="utf-8"))
        diff = {k: (old.get(k), v) for k, v in settings.items() if old.get(k) != v}
        if diff:
            sys.exit(f"{work} was made with other settings {diff}: use another --work, or --redo STAGE")
    if args.redo:
        outputs = {"kb": ["kb", "kb.json"], "data": ["kb_train.jsonl", "from_kb.json"], "parity": ["parity.json"],
                   "train": ["adapter", "train.json"], "eval": ["eval", "eval_run.json", "parity_adapter.json"]}
        for stage in STAGES[STAGES.index(args.redo):]:
            for name in outputs[stage]:
                path = work / name
                shutil.rmtree(path) if path.is_dir() else path.unlink(missing_ok=True)
    saved.write_text(json.dumps(settings, indent=1), encoding="utf-8")
    return work


def cached(path: Path, make, timings: dict, stage: str):
    """Stage output (JSON at ``path``): read it if there, else make, time and save it (and the timings)."""
    if path.is_file():
        log(f"[{stage}] done before: {path}")
        return json.loads(path.read_text(encoding="utf-8"))
    start = time.perf_counter()
    value = make()
    timings[stage] = time.perf_counter() - start
    path.write_text(json.dumps(value, ensure_ascii=False, indent=1), encoding="utf-8")
    (path.parent / "timings.json").write_text(json.dumps(timings, indent=1), encoding="utf-8")
    return value


def main() -> None:
    args = parse_args()
    if not (DATA / "zh_rgb").is_dir() or not Path(args.model).is_dir():
        sys.exit(f"needs {DATA}/zh_rgb and the model {args.model} (python ../shared/tools/offline-lm.py)")
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    work = work_folder(args)
    timings_file = work / "timings.json"
    timings = json.loads(timings_file.read_text(encoding="utf-8")) if timings_file.is_file() else {}
    train_gold, eval_gold, used = write_gold(args, work)
    info = {"kb": cached(work / "kb.json", lambda: build_kb(args, work, used), timings, "kb")}
    records = work / "kb_train.jsonl"

    def from_kb() -> dict:
        run(from_kb_command(args, work, train_gold, records), args, stdout=work / "from_kb.stdout")
        return json.loads((work / "from_kb.stdout").read_text(encoding="utf-8"))

    info["from_kb"] = cached(work / "from_kb.json", from_kb, timings, "data")
    cached(work / "parity.json", lambda: check_parity(parity(args, work, records)), timings, "parity")
    info["train"] = cached(work / "train.json", lambda: train(args, work, records), timings, "train")
    cached(work / "parity_adapter.json", lambda: check_parity(parity(args, work, records, work / "adapter")),
           timings, "parity_adapter")
    cached(work / "eval_run.json", lambda: {"wall_s": run(eval_command(args, work, eval_gold), args)}, timings, "eval")
    summarize(args, work, timings, info)


if __name__ == "__main__":
    main()
