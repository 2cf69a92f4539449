"""``finetune embedder``: pairs and hard negatives built from a knowledge base as documented, a tiny
sentence-transformers model that learns them, an output folder that reloads anywhere."""
from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np
import pytest

from assistant.errors import ConfigError
from assistant.from_kb.embedder_config import EmbedderConfig
from assistant.from_kb.embedder_pairs import build_pairs, chance_cosines, split_questions, too_close
from assistant.from_kb.gold import Gold
from assistant.qa import QAItem
from finetune.embedder import RUN_CARD, TrainPair, read_run_card
from index.kb import KnowledgeBase

# Twelve one-chunk documents; each question names its topic only by paraphrase.
DOCS = {
    "lantern": "The lantern fair opens in Quanzhou each spring; paper lanterns line the old harbour for nine nights.",
    "glacier": "Ice cores drilled at the Vostok station record four glacial cycles spanning 420,000 years.",
    "tariff": "The 1930 Smoot-Hawley act raised import duties on over 20,000 goods and deepened the depression.",
    "enzyme": "Lactase splits lactose into glucose and galactose in the small intestine of mammals.",
    "violin": "Stradivari built about 1,100 string instruments in Cremona, of which some 650 survive.",
    "reactor": "Pressurised water reactors keep the coolant liquid at 155 bar so that it does not boil.",
    "orchid": "Vanilla is the cured seed pod of a climbing orchid first grown by the Totonac people.",
    "comet": "Halley's comet returns every 75 to 76 years; its last perihelion was in February 1986.",
    "bridge": "The Akashi Kaikyo bridge has a central span of 1,991 metres between its two towers.",
    "tea": "Oolong tea is partly oxidised, between green and black tea, and is a speciality of Fujian.",
    "volcano": "The 1815 eruption of Tambora caused the year without a summer across the northern hemisphere.",
    "chess": "Deep Blue beat the reigning world chess champion Garry Kasparov in a six-game match in 1997.",
}
QUESTIONS = {
    "lantern": "where is the spring festival of lights held", "glacier": "how far back does antarctic ice go",
    "tariff": "which law made the great slump worse", "enzyme": "what breaks down milk sugar",
    "violin": "how many instruments by the cremona luthier remain", "reactor": "why does the cooling water not boil",
    "orchid": "what plant gives us vanilla flavour", "comet": "when will the famous comet come back",
    "bridge": "what is the longest suspension span in japan", "tea": "which tea is half fermented",
    "volcano": "what caused the cold summer of 1816", "chess": "when did a computer first defeat the champion",
}


def _kb(tmp_path: Path, embedder: str) -> KnowledgeBase:
    folder = tmp_path / "docs"
    folder.mkdir(exist_ok=True)
    for name, text in DOCS.items():
        (folder / f"{name}.txt").write_text(text, encoding="utf-8")
    kb = KnowledgeBase.open(tmp_path / "kb", embedder=embedder)
    kb.add(sorted(folder.iterdir()))
    return kb


def _golds() -> list[Gold]:
    return [Gold(QAItem(q, (DOCS[name].split()[1],), f"qa.jsonl:{i + 1}", doc=f"{name}.txt"))
            for i, (name, q) in enumerate(QUESTIONS.items())]


def test_questions_are_split_by_question_with_a_seed():
    keys = [f"q{i}" for i in range(20)]
    train, held = split_questions(keys + keys[:5], 0.25, seed=3)
    assert len(held) == 5 and not set(train) & set(held) and sorted(train + held) == sorted(keys)
    assert split_questions(keys, 0.25, seed=3) == (train, held)
    assert split_questions(["only"], 0.5, seed=0) == (["only"], [])


def test_pairs_and_hard_negatives_come_from_the_knowledge_base_as_documented(tmp_path):
    kb = _kb(tmp_path, "hash-64")
    golds = _golds()
    extra = Gold(QAItem(QUESTIONS["tea"], ("oxidised",), "qa.jsonl:13", doc="comet.txt"))  # two golds, one question
    missing = Gold(QAItem("who won the 1954 world cup", ("West Germany",), "qa.jsonl:14", doc="football.txt"))
    pairs = build_pairs(kb, [*golds, extra, missing], hard_negatives=3, depth=12, val_ratio=0.25, val_corpus=100,
                        seed=0)
    assert [p.source for p in pairs.problems] == ["qa.jsonl:14"] and pairs.questions == 14
    held = set(pairs.val.queries.values())
    assert len(held) == 3 and not held & {p.query for p in pairs.train}
    assert len(pairs.val.corpus) == len(DOCS)  # a small knowledge base: every chunk
    by_text = {h.text: h for h in kb.store.hits([(i, 0.0) for i in kb.store.chunk_ids().tolist()])}
    for pair in pairs.train:
        golds_of_q = [DOCS[n] for n, q in QUESTIONS.items() if q == pair.query]
        if pair.query == QUESTIONS["tea"]:
            golds_of_q.append(DOCS["comet"])
        assert pair.positive in golds_of_q and len(pair.negatives) == 3
        assert not set(pair.negatives) & set(golds_of_q)  # never a chunk that is gold for the same question
        qvec = kb.embedder.encode_queries([pair.query])[0]
        pos = max(float(qvec @ kb.embedder.encode_passages([g])[0]) for g in golds_of_q)
        mined = [n for n in pair.negatives if n in by_text]
        chance = chance_cosines(kb, [pair.query], random.Random(0))[pair.query]  # the seed build_pairs had
        assert all(not too_close(float(qvec @ kb.embedder.encode_passages([n])[0]) - 1e-6, pos, chance)
                   for n in mined)
    tea = [p for p in pairs.train if p.query == QUESTIONS["tea"]]
    assert len(tea) in (0, 2) and len({p.query_id for p in tea}) <= 1
    for relevant in pairs.val.relevant.values():
        assert all(c in {h.chunk_id for h in by_text.values()} for c in relevant)
    capped = build_pairs(kb, golds, hard_negatives=1, depth=12, val_ratio=0.25, val_corpus=5, seed=0).val
    gold_ids = {c for rel in capped.relevant.values() for c in rel}
    assert len(capped.corpus) == 5 and gold_ids <= set(capped.corpus)  # the cap holds; gold always in
    kb.close()


def test_topical_negatives_of_a_compressed_cosine_model_are_mined():
    """e5-style cosines (unrelated text ~0.80): a same-topic chunk at 0.86 beside a gold at 0.88 is a hard
    negative, not a false one; 95 % of the raw cosine (0.836) rejected it and every chunk like it."""
    from assistant.from_kb.embedder_pairs import Located, negatives
    from index.records import Hit

    def hit(cid: str, text: str, cosine: float) -> Hit:
        return Hit(cid, text, 1.0, cid, cid, f"{cid}.txt", 1, 1, 0, len(text), similarity=cosine)

    gold = Gold(QAItem("how many died in the crush", ("12",), "qa.jsonl:1", doc="gold.txt"))
    cands = (hit("near", "The crush at the shrine: police closed the gate.", 0.879),  # as close as the gold
             hit("gold", "12 people died in the crush at the shrine.", 0.88),
             hit("topical", "Pilgrims returned to the shrine after the crush.", 0.86),
             hit("answer", "Officials said 12 were killed.", 0.85),  # holds the answer: never a negative
             hit("far", "The football final ended 2-1.", 0.81))
    located = [Located(gold, cands[1], cands, "doc/page")]
    assert [h.chunk_id for h in negatives(located, 0.88, 2, chance=0.80)] == ["topical", "far"]
    assert [h.chunk_id for h in negatives(located, 0.88, 2, chance=0.0)] == ["far"]  # the raw-cosine margin


def test_config_reports_every_bad_value_at_once():
    with pytest.raises(ConfigError) as err:
        EmbedderConfig(out="x", epochs=0, val_ratio=0.9, learning_rate=2, hard_negatives=0)
    text = str(err.value)
    for part in ("no questions", "epochs=0", "val_ratio=0.9", "learning_rate=2", "hard_negatives=0"):
        assert part in text


@pytest.fixture(scope="module")
def tiny_st(tmp_path_factory) -> Path:
    """A random 2-layer, 32-wide BERT with all-MiniLM-L6-v2's tokenizer, saved as a SentenceTransformer folder."""
    import torch
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer.modules import Normalize, Pooling, Transformer
    from transformers import AutoTokenizer, BertConfig, BertModel

    from index.embedder import minilm_path

    root = tmp_path_factory.mktemp("tiny-st")
    tok = AutoTokenizer.from_pretrained(str(minilm_path()))
    torch.manual_seed(0)
    BertModel(BertConfig(vocab_size=tok.vocab_size, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                         intermediate_size=64, max_position_embeddings=128)).save_pretrained(root / "raw")
    tok.save_pretrained(root / "raw")
    st = SentenceTransformer(modules=[Transformer(str(root / "raw"), max_seq_length=128), Pooling(32, "mean"),
                                      Normalize()])
    st.save(str(root / "st"))
    return root / "st"


def _hit1(kb: KnowledgeBase, names: list[str]) -> float:
    return float(np.mean([Path(kb.search(QUESTIONS[n], k=1, mode="dense")[0].path).stem == n for n in names]))


@pytest.mark.integration
def test_a_tiny_model_learns_its_pairs_and_the_output_reloads(tmp_path, tiny_st):
    from typer.testing import CliRunner

    from ui.cli.finetune import app

    kb = _kb(tmp_path, str(tiny_st))
    before = _hit1(kb, list(QUESTIONS))
    kb.close()
    qa = tmp_path / "qa.jsonl"
    qa.write_text("".join(json.dumps({"question": q, "answer": DOCS[n].split()[1], "doc": f"{n}.txt"}) + "\n"
                          for n, q in QUESTIONS.items()), encoding="utf-8")
    result = CliRunner().invoke(app, ["embedder", "--qa", str(qa), "--kb", str(tmp_path / "kb"), "--out",
                                      str(tmp_path / "adapted"), "--epochs", "10", "--batch-size", "4",
                                      "--mini-batch-size", "2", "--learning-rate", "3e-3", "--patience", "10",
                                      "--train-embeddings", "--device", "cpu", "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    card = read_run_card(tmp_path / "adapted")
    assert card["data"]["pairs"] == report["pairs"] and card["heldout_before"] == report["before"]
    assert card["base"] == str(tiny_st) and card["qa_files"][0]["sha256"]
    assert card["settings"]["mini_batch_size"] == 2  # GradCache in slices of 2 texts (batch 4)
    assert (tmp_path / "adapted" / RUN_CARD).is_file()
    train_questions, _ = split_questions(list(QUESTIONS.values()), 0.2, seed=0)  # the run's split (defaults)
    train_names = [n for n, q in QUESTIONS.items() if q in train_questions]
    assert report["train_questions"] == len(train_names)
    with KnowledgeBase.open(tmp_path / "kb") as base:
        base_train = _hit1(base, train_names)
        adapted = base.reindex(str(tmp_path / "adapted"))
    after_train = _hit1(adapted, train_names)
    assert after_train > base_train and after_train >= 0.8, (base_train, after_train, before)
    adapted.close()
    with KnowledgeBase.open(tmp_path / "kb") as again:  # opens with the adapted embedder it was reindexed with
        assert again.embedder.name == str((tmp_path / "adapted").resolve())


def test_training_pairs_fill_missing_negatives():
    pair = TrainPair("q", "gold", ("n1",), "q0", "c0")
    assert pair.columns(3) == {"anchor": "q", "positive": "gold", "negative_1": "n1", "negative_2": "n1",
                               "negative_3": "n1"}


class _Generator:
    """A stand-in question generator: one 'Q:/A:' pair per chunk, the question made of the passage's words."""

    def __init__(self) -> None:
        self.calls = 0

    def generate(self, messages: list[dict], params: object):
        self.calls += 1
        passage = messages[1]["content"].split("\n", 1)[1]
        words = passage.rstrip(".").split()
        yield f"Q: what about {' '.join(words[1:4])}?\nA: {' '.join(words[:6])}."


@pytest.mark.integration
def test_questions_generated_from_chunks_train_the_embedder(tmp_path, tiny_st):
    """Documents but no Q&A: every generated pair keeps its chunk as gold; the run card counts them."""
    from assistant.from_kb.adapt_embedder import adapt_embedder

    _kb(tmp_path, str(tiny_st)).close()
    generator = _Generator()
    config = EmbedderConfig(generate_questions=50, kb=tmp_path / "kb", out=tmp_path / "adapted", epochs=1,
                            batch_size=4, device="cpu")
    report = adapt_embedder(config, generator=generator)
    assert generator.calls == len(DOCS)
    assert report.pairs.generated == {"chunks": 12, "pairs": 12, "unparsable": 0, "ungrounded": 0}
    assert report.pairs.found == {"chunk": 12} and len(report.pairs.train) + len(report.pairs.val.queries) == 12
    card = read_run_card(tmp_path / "adapted")
    assert card["generated_questions"]["pairs"] == 12 and card["qa_files"] == []
