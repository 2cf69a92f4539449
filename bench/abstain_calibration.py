"""Bench: fit and check the assistant's decline decision (assistant/abstain.py), per language.

Knowledge bases (built with the product's ``KnowledgeBase``, multilingual-e5-small, kept in the
cache so reruns embed nothing): scifact (English abstracts), zh_rgb (Chinese news), zh_cmrc2018_dev
(Chinese Wikipedia paragraphs), each a seeded subset (``--queries`` dev/train questions, their
relevant passages and ``--distractors`` other passages), and the demo documents (demo/docs).

Answerable: a set's own questions over its knowledge base; DEMO_QUESTIONS over the demo docs.
Off-topic: every other set's questions over a knowledge base (cmrc2018 over zh_rgb, SciFact over the
demo docs, zh_rgb over SciFact, ...) and OFF_TOPIC (everyday questions, ~40 per language) over all.

Each question's features (assistant.abstain.Features) are computed exactly as the assistant does
(hybrid retrieval, k=5). A seeded hash of the question text splits them into a fit part and a
held-out part (the same question is in the same part over every knowledge base); per language a
logistic regression is fitted on the fit part, its threshold the highest that declines at most
``--max-false`` of the fit part's answerable questions, and stored as assistant/abstain_<embedder>.json
(``--dry-run``: not stored). Printed, per language and knowledge base, for the old gate (cosine
< 0.82) and the new one: the share of off-topic questions declined and of answerable ones declined.

    nice -n 5 .venv/bin/python bench/abstain_calibration.py [--queries 150 --distractors 600]
    # does the shipped calibration still hold on another backend's vectors?
    nice -n 5 .venv/bin/python bench/abstain_calibration.py --embedder-backend onnx --dry-run \
        --check assistant/abstain_multilingual-e5-small.json

To calibrate another embedder: ``--embedder NAME`` (writes assistant/abstain_<NAME>.json).
"""
from __future__ import annotations

import argparse
import hashlib
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.embcache import CachedEmbedder  # noqa: E402

DATA = ROOT.parent / "shared" / "data" / "retrieval"
SETS = ("scifact", "zh_rgb", "zh_cmrc2018_dev")
OLD_THRESHOLD = 0.82
K = 5
DEMO_QUESTIONS = [
    "How long is the warranty on the HV-320?", "How long does the battery last in Eco mode?",
    "What is the restocking fee for an opened product?", "How do I clean the pre-filter?",
    "Can I wash the HEPA filter?", "What does a red light flashing three times mean?",
    "How long does a full charge take?", "Which charger should I use with the vacuum?",
    "How do I make a warranty claim?", "Where is the serial number?", "How much does a spare battery cost?",
    "What is the dust bin capacity?", "How heavy is the vacuum?", "Can I use the HV-320 abroad?",
    "Is the motor covered for five years?", "What does the warranty not cover?",
    "How should I store the vacuum when I do not use it for a month?",
    "What should I do if the battery swells?", "How do I return an unused vacuum for a refund?",
    "What is in the box?", "What should I do if the brush roll stops?",
    "保修期是多久？", "电池保修多长时间？", "HEPA滤网可以水洗吗？", "前置滤网怎么清洗？", "备用电池多少钱？",
    "上海维修中心的营业时间是什么？", "电池续航变短怎么办？", "固件如何升级？", "带薪年假有几天？",
    "年假可以结转到什么时候？", "病假工资怎么发？", "试用期多长？", "婚假有几天？", "出差住宿标准是多少？",
    "出差伙食补助每天多少钱？", "报销需要在多少天内提交？", "公司电脑丢了怎么办？", "密码多久要换一次？",
    "研发部门的核心工作时段是什么时候？", "迟到多久按事假处理？", "体检费用标准是多少？",
    "吸尘器充满电需要多久？", "集尘盒容量是多少？", "红灯闪三次是什么意思？", "产假有多少天？", "陪产假几天？",
    "事假全年最多几天？", "报销款什么时候发？", "试用期评估结果有哪几种？", "深圳维修中心周末营业吗？",
    "软绒滚刷多少钱？",
    "What is the noise level in Standard mode?", "How many lights show the charge level?",
    "Can children use the vacuum?", "What is the phone number for support?", "How soon are refunds paid?",
    "Where can I buy genuine spare parts?", "How long does the motor warranty last if I register?",
    "What happens if the product is faulty on arrival?", "保修期内深圳维修中心可以上门取件吗？",
    "HEPA filter order code?",
]
OFF_TOPIC = [
    "How do I bake sourdough bread at home?", "What time does the football final start tonight?",
    "Recommend a good science fiction novel.", "How do I change a flat bicycle tyre?",
    "What is the best way to learn to play the guitar?", "Write a poem about autumn leaves.",
    "How many cups are in a litre?", "What should I pack for a beach holiday?",
    "How do I reset my router password?", "Who painted the Mona Lisa?",
    "What is a good name for a golden retriever puppy?", "How do I remove a red wine stain from a carpet?",
    "Translate 'good morning' into French.", "What is the capital of Australia?",
    "How long should I boil an egg for a soft yolk?", "Which programming language should I learn first?",
    "What's the weather like in Beijing today?", "How do I make pizza dough?", "Who won the World Cup in 2018?",
    "Do I need a visa to visit Japan?", "How do I cook braised pork belly?", "What is a good stretching routine?",
    "How do I grow tomatoes on a balcony?", "What are the rules of chess castling?", "How tall is the Eiffel Tower?",
    "Which phone has the best camera this year?", "How do I tie a tie?", "Tell me a joke about penguins.",
    "How can I save money on groceries?", "What is the plot of Hamlet?", "How do I train for a marathon?",
    "When is the next full moon?", "How do I fold a paper crane?", "What should I cook for a dinner party?",
    "How do I get rid of ants in the kitchen?", "What are good exercises for back pain?",
    "How do I renew my passport?", "Which wine goes well with fish?", "How do I write a cover letter?",
    "What is the population of Canada?",
    "怎么在家做红烧肉？", "今晚的足球比赛几点开始？", "推荐一本好看的科幻小说。", "自行车爆胎了怎么补？",
    "学吉他最好的方法是什么？", "写一首关于秋天落叶的诗。", "一升等于多少杯？", "去海边度假要带什么？",
    "路由器密码忘了怎么重置？", "蒙娜丽莎是谁画的？", "给金毛小狗起个什么名字好？", "地毯上的红酒渍怎么去掉？",
    "“早上好”用法语怎么说？", "澳大利亚的首都是哪里？", "煮溏心蛋要多长时间？", "初学编程应该先学哪种语言？",
    "北京今天天气怎么样？", "怎么做红烧肉？", "去日本旅游需要办签证吗？", "2018年世界杯冠军是谁？",
    "阳台上怎么种番茄？", "国际象棋的王车易位规则是什么？", "埃菲尔铁塔有多高？", "今年哪款手机拍照最好？",
    "领带怎么打？", "讲一个关于企鹅的笑话。", "买菜怎么省钱？", "《哈姆雷特》讲了什么故事？", "怎么训练跑马拉松？",
    "下一次满月是什么时候？", "纸鹤怎么折？", "请客吃饭做什么菜好？", "厨房里有蚂蚁怎么办？", "腰疼做什么运动好？",
    "护照过期了怎么续办？", "吃鱼配什么酒？", "求职信怎么写？", "加拿大有多少人口？", "怎么包饺子？",
    "周杰伦最好听的歌是哪首？",
]


def held_out(question: str, seed: int) -> bool:
    """The seeded split: about half the questions are held out (never fitted on)."""
    return hashlib.sha256(f"{seed}\0{question}".encode()).digest()[0] % 2 == 1


def open_kbs(args: argparse.Namespace, emb: object) -> dict[str, tuple[object, list[str]]]:
    """name -> (knowledge base, its answerable questions); built once into the cache folder."""
    from index.beir import load_beir, subset, to_documents
    from index.e5_offline import cache_root
    from index.embedder import backend_of
    from index.kb import KnowledgeBase

    backend = backend_of(emb.fingerprint)  # vectors differ by backend: one cached set of KBs each
    root = cache_root() / "abstain-kbs" / f"{Path(emb.name).name}-{backend}-{args.queries}-{args.distractors}"
    out = {}
    for name in SETS:
        data = subset(load_beir(DATA / name), args.queries, args.distractors, seed=0)
        kb = KnowledgeBase.open(root / name, embedder=emb)
        kb.add_documents(to_documents(data), progress=sys.stderr.isatty())
        out[name] = (kb, list(data.queries.values()))
    kb = KnowledgeBase.open(root / "demo", embedder=emb)
    kb.add(sorted((ROOT / "demo" / "docs").iterdir()))
    out["demo"] = (kb, list(DEMO_QUESTIONS))
    return out


def collect(kbs: dict[str, tuple[object, list[str]]]) -> list[dict]:
    """One row per (knowledge base, question): its features, whether it is answerable there."""
    from assistant.abstain import Gate

    rows = []
    for name, (kb, own) in kbs.items():
        gate = Gate(kb)
        others = [q for other, (_, qs) in kbs.items() if other != name for q in qs] + OFF_TOPIC
        for answerable, questions in ((True, own), (False, others)):
            for q in questions:
                hits = kb.search(q, k=K, mode="hybrid")
                rows.append({"kb": name, "question": q, "answerable": answerable,
                             "features": gate.features(q, hits, "hybrid")})
    return rows


def fit_logistic(x: np.ndarray, y: np.ndarray, weight: np.ndarray, l2: float = 1e-2,
                 steps: int = 50) -> tuple[np.ndarray, float]:
    """Weights and bias of ``P(y=1 | x)`` by Newton's method on standardised features (sample ``weight``,
    small L2)."""
    mu, sd = x.mean(axis=0), x.std(axis=0) + 1e-9
    z = np.hstack([(x - mu) / sd, np.ones((len(x), 1))])
    w = np.zeros(z.shape[1])
    reg = np.eye(len(w)) * l2
    reg[-1, -1] = 0.0
    for _ in range(steps):
        p = 1 / (1 + np.exp(-np.clip(z @ w, -60, 60)))
        grad = z.T @ (weight * (p - y)) + reg @ w
        hess = (z * (weight * p * (1 - p))[:, None]).T @ z + reg
        w -= np.linalg.solve(hess, grad)
    weights = w[:-1] / sd
    return weights, float(w[-1] - weights @ mu)


def balanced(rows: list[dict]) -> np.ndarray:
    """Sample weights: every (knowledge base, answerable) group weighs the same, however many questions it has
    (the demo documents' few questions count as much as a BEIR set's many)."""
    groups = [(r["kb"], r["answerable"]) for r in rows]
    sizes = {g: groups.count(g) for g in set(groups)}
    weight = np.array([1.0 / sizes[g] for g in groups])
    return weight * len(rows) / weight.sum()


def fit(rows: list[dict], max_false: float, balance: bool = False) -> dict:
    """Per language: the logistic model, its threshold the weighted ``max_false`` quantile of the answerable
    questions' probabilities (``balance``: every (knowledge base, answerable) group weighing the same)."""
    from assistant.abstain import LanguageModel

    models = {}
    for lang in ("zh", "en"):
        part = [r for r in rows if r["features"].language == lang]
        x = np.array([r["features"].vector() for r in part])
        y = np.array([1.0 if r["answerable"] else 0.0 for r in part])
        weight = balanced(part) if balance else np.ones(len(part))
        weights, bias = fit_logistic(x, y, weight)
        p = 1 / (1 + np.exp(-(x @ weights + bias)))
        order = np.argsort(p[y == 1])
        cum = np.cumsum(weight[y == 1][order]) / weight[y == 1].sum()
        threshold = float(p[y == 1][order][np.searchsorted(cum, max_false)])
        models[lang] = LanguageModel(tuple(round(float(v), 6) for v in weights), round(bias, 6),
                                     round(threshold * 0.999, 6))
    return models


def table(rows: list[dict], models: dict, title: str) -> None:
    from assistant.abstain import decide

    print(f"\n{title}: declined share (old gate: cosine < {OLD_THRESHOLD}; new: per-language model)")
    print(f"  {'lang':<4} {'knowledge base':<16} {'off-topic n':>11} {'old':>6} {'new':>6}   "
          f"{'answerable n':>12} {'old':>6} {'new':>6}")
    for lang in ("zh", "en"):
        for kb in [*dict.fromkeys(r["kb"] for r in rows), "ALL"]:
            sel = [r for r in rows if r["features"].language == lang and kb in ("ALL", r["kb"])]
            cells = []
            for answerable in (False, True):
                group = [r["features"] for r in sel if r["answerable"] == answerable]
                if not group:
                    cells.append(f"{0:>11} {'-':>6} {'-':>6}")
                    continue
                old = np.mean([f.cosine < OLD_THRESHOLD for f in group])
                new = np.mean([bool(decide(f, models)) for f in group])
                cells.append(f"{len(group):>11} {old:6.1%} {new:6.1%}")
            print(f"  {lang:<4} {kb:<16} {cells[0]}   {cells[1]}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--queries", type=int, default=150, help="questions per BEIR set")
    ap.add_argument("--distractors", type=int, default=600, help="extra passages per BEIR set")
    ap.add_argument("--embedder", default="multilingual-e5-small")
    ap.add_argument("--embedder-backend", default="auto", choices=("auto", "onnx", "torch"),
                    help="auto: the product's default (ONNX int8 on CPU for the built-in e5)")
    ap.add_argument("--check", type=Path, default=None,
                    help="also score this calibration file (e.g. the shipped assistant/abstain_<embedder>.json) "
                         "on the same questions, next to the refit")
    ap.add_argument("--max-false", type=float, default=0.03, help="answerable share declined on the fit part")
    ap.add_argument("--balance", action="store_true", help="weigh every (knowledge base, answerable) group alike")
    ap.add_argument("--seed", type=int, default=0, help="of the fit / held-out split")
    ap.add_argument("--dry-run", action="store_true", help="report only: do not write the calibration file")
    ap.add_argument("--out", type=Path, default=None,
                    help="folder to write abstain_<embedder>.json in (default: the user calibration folder, "
                         "$QDA_CALIBRATION_DIR or ~/.cache/qwen-domain-assistant/abstain, which the assistant reads "
                         "first; maintainers pass --out assistant/ to update the shipped one)")
    args = ap.parse_args()
    if not DATA.is_dir():
        print(f"skipped: {DATA} not found")
        return 0
    from assistant.abstain import calibration_path, save_calibration, user_calibration_dir
    from index.embedder import load_embedder

    start = time.perf_counter()
    emb = CachedEmbedder(load_embedder(args.embedder, args.embedder_backend))
    print(f"embedder {emb.name}, fingerprint {emb.fingerprint}")
    rows = collect(open_kbs(args, emb))
    print(f"{len(rows)} (knowledge base, question) pairs in {time.perf_counter() - start:.0f} s")
    fit_rows = [r for r in rows if not held_out(r["question"], args.seed)]
    test_rows = [r for r in rows if held_out(r["question"], args.seed)]
    models = fit(fit_rows, args.max_false, args.balance)
    for lang, m in models.items():
        print(f"{lang}: weights (cosine, margin, coverage) {m.weights}, bias {m.bias}, threshold {m.threshold}")
    table(fit_rows, models, f"FIT part ({len(fit_rows)} pairs)")
    table(test_rows, models, f"HELD-OUT part ({len(test_rows)} pairs, never fitted on)")
    if args.check:
        from assistant.abstain import read_calibration

        checked = read_calibration(args.check)
        if checked is None:
            print(f"\n{args.check}: fitted with other probes; not scored")
        else:
            table(test_rows, checked, f"HELD-OUT part, {args.check} as it is")
    if not args.dry_run:
        path = calibration_path(emb.name, args.out or user_calibration_dir())
        path.parent.mkdir(parents=True, exist_ok=True)
        save_calibration(path, emb.name, models, fitted_by="bench/abstain_calibration.py",
                         data=f"{', '.join(SETS)} (queries {args.queries}, distractors {args.distractors}), demo docs",
                         max_false=args.max_false, seed=args.seed)
        print(f"\nwrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
