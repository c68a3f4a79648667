"""Bench data and model directories, all under bench/out/ (git-ignored), rebuilt only when missing.

Data: seeded synthetic HH-style conversations ("\\n\\nHuman: ...\\n\\nAssistant: ..."), 3-8 human turns, so
prompts are long, and responses of 5-400 words (log-uniform), so lengths vary widely and many pairs exceed
512 tokens. Words are made-up syllable words drawn Zipf-like; each conversation has a topic and the chosen
answer stays on it while the rejected one drifts to another topic and is sprinkled with evasive filler words
(EVASIVE_RATE of its words; 10% of pairs are left ambiguous: same topic, no filler), so a reward model has
something to learn without a length bias (both answer lengths are drawn independently). The filler is a signal a
randomly initialised model picks up within a few hundred steps, which makes `bench.quality` discriminate; the topic
drift needs the prompt and is learnt far more slowly.

Models: from rewardkit.encoding.scratch.SCRATCH_SIZES, random init, seed 0, with a tokenizer trained on the bench
training texts (rewardkit.modeling.scratch.build_scratch): DeBERTa-v3 architecture with an 8k SentencePiece vocabulary
(tiny, small), or BERT architecture at MiniLM-L6 size with a WordPiece vocabulary asked for 30k (minilm; the made-up
words of the bench texts give WordPiece fewer pieces than that to learn, so the vocabulary it reaches is printed by
the bench). """
from __future__ import annotations

import itertools
import json
import math
import os
import random
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUT = Path(os.environ.get("BENCH_OUT", ROOT / "bench" / "out"))  # tests point it at a temporary directory
WORKLOADS = {"tiny": "scratch-tiny", "small": "scratch-deberta-v3-small", "minilm": "scratch-minilm"}
VOCAB_SIZES = {"tiny": 8000, "small": 8000, "minilm": 30000}  # the size asked of the tokenizer trainer
SEED = 0
N_TRAIN, N_EVAL = 2000, 400
N_TOPICS, TOPIC_WORDS, COMMON_WORDS, EVASIVE_WORDS = 16, 400, 1600, 24
EVASIVE_RATE = 0.05
DATA_VERSION = 2  # part of the file names: a change of the generator never reuses old files or models


def _words(rng: random.Random, n: int) -> list[str]:
    syllables = [c + v for c in "bcdfghjklmnprstvwz" for v in ("a", "e", "i", "o", "u", "ai", "ou")]
    out: set[str] = set()
    while len(out) < n:
        out.add("".join(rng.choices(syllables, k=rng.choice((1, 2, 2, 3, 3, 4)))))
    return sorted(out)


class Lexicon:
    """Common words shared by all topics plus a word list per topic, sampled Zipf-like, and evasive filler."""

    def __init__(self, rng: random.Random):
        words = _words(rng, COMMON_WORDS + N_TOPICS * TOPIC_WORDS + EVASIVE_WORDS)
        rng.shuffle(words)
        self.common = words[:COMMON_WORDS]
        self.topics = [words[COMMON_WORDS + t * TOPIC_WORDS:COMMON_WORDS + (t + 1) * TOPIC_WORDS]
                       for t in range(N_TOPICS)]
        self.evasive = words[COMMON_WORDS + N_TOPICS * TOPIC_WORDS:]
        weights = list(itertools.accumulate(1 / (i + 1) for i in range(max(COMMON_WORDS, TOPIC_WORDS))))
        # cumulative once: random.choices draws the same words from cum_weights as from weights, without
        # summing the 1600 weights again for every word (most of the data's generation time)
        self.cum_common, self.cum_topic = weights[:COMMON_WORDS], weights[:TOPIC_WORDS]

    def word(self, rng: random.Random, topic: int, evasive_rate: float) -> str:
        if rng.random() < evasive_rate:
            return rng.choice(self.evasive)
        if rng.random() < 0.6:
            return rng.choices(self.common, cum_weights=self.cum_common)[0]
        return rng.choices(self.topics[topic], cum_weights=self.cum_topic)[0]

    def text(self, rng: random.Random, topic: int, n_words: int, evasive_rate: float = 0.0) -> str:
        """Sentences of about 60% common and 40% topic words (less `evasive_rate` of filler), capitalised and
        punctuated."""
        words = [self.word(rng, topic, evasive_rate) for _ in range(n_words)]
        sentences, i = [], 0
        while i < len(words):
            k = rng.randint(4, 16)
            chunk = words[i:i + k]
            sentences.append(" ".join([chunk[0].capitalize(), *chunk[1:]]) + rng.choice(".....?!,"))
            i += k
        return " ".join(sentences)


def _log_uniform(rng: random.Random, lo: int, hi: int) -> int:
    return int(round(math.exp(rng.uniform(math.log(lo), math.log(hi)))))


def conversation_pair(rng: random.Random, lex: Lexicon, index: int) -> dict:
    topic = rng.randrange(N_TOPICS)
    turns = rng.randint(3, 8)
    parts = []
    for t in range(turns):
        parts.append(f"\n\nHuman: {lex.text(rng, topic, rng.randint(5, 30))}")
        if t < turns - 1:
            parts.append(f"\n\nAssistant: {lex.text(rng, topic, rng.randint(5, 60))}")
    prompt = "".join(parts) + "\n\nAssistant:"
    ambiguous = rng.random() < 0.1
    off_topic = topic if ambiguous else (topic + rng.randint(1, N_TOPICS - 1)) % N_TOPICS
    chosen = " " + lex.text(rng, topic, _log_uniform(rng, 5, 400))
    rejected = " " + lex.text(rng, off_topic, _log_uniform(rng, 5, 400), 0.0 if ambiguous else EVASIVE_RATE)
    return {"id": f"bench-{index}", "prompt": prompt, "chosen": chosen, "rejected": rejected}


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    tmp.replace(path)
    return path


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def bench_data(n_train: int = N_TRAIN, n_eval: int = N_EVAL) -> tuple[Path, Path]:
    """(train, eval) JSONL paths of the seeded bench conversations; generated on first use."""
    stem = OUT / "data" / f"hh-v{DATA_VERSION}-s{SEED}-n{n_train}"
    train, held_out = stem.with_name(stem.name + "-train.jsonl"), stem.with_name(stem.name + "-eval.jsonl")
    if not (train.exists() and held_out.exists()):
        rng = random.Random(SEED)
        lex = Lexicon(rng)
        rows = [conversation_pair(rng, lex, i) for i in range(n_train + n_eval)]
        write_jsonl(held_out, rows[n_train:])
        write_jsonl(train, rows[:n_train])
    return train, held_out


def first_rows(path: Path, n: int) -> Path:
    """A file with the first n rows of `path` (cycled if it has fewer): what every trainer is given."""
    out = path.with_name(f"{path.stem}-first{n}.jsonl")
    if not out.exists():
        rows = read_jsonl(path)
        write_jsonl(out, (rows * (n // len(rows) + 1))[:n])
    return out


def model_dir(workload: str, train_data: Path) -> Path:
    """A randomly initialised model of `workload`'s architecture and dims, with a tokenizer trained on
    `train_data`."""
    from rewardkit.modeling.scratch import build_scratch

    vocab_size = VOCAB_SIZES[workload]
    out = OUT / "models" / f"{workload}-{train_data.stem}-v{vocab_size}"
    if not (out / "config.json").exists():
        rows = read_jsonl(train_data)
        texts = list(dict.fromkeys(t for r in rows for t in (r["prompt"], r["chosen"], r["rejected"])))
        build_scratch(WORKLOADS[workload], texts, vocab_size, out, SEED)
    return out


def vocab_size(model: Path) -> int:
    """The vocabulary the model directory's config holds (what its tokenizer reached)."""
    return json.loads((model / "config.json").read_text())["vocab_size"]
