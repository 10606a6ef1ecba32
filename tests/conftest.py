"""Fixtures: a tiny random BERT (4 layers, like TinyBERT), a tiny WordPiece vocabulary, tiny CSVs."""

from __future__ import annotations

import csv
import logging
import os
import random
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")

WORDS = {
    "Cinematography": ["camera", "shot", "lighting", "colour", "frame", "lens", "scenery", "visual"],
    "Characters": ["actor", "character", "role", "hero", "villain", "cast", "performance", "actress"],
    "Story": ["plot", "story", "ending", "twist", "script", "narrative", "pacing", "premise"],
}
FILLER = ["the", "a", "was", "is", "really", "very", "good", "bad", "movie", "film", "and", "of", "this"]
SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]


def pytest_addoption(parser):
    parser.addoption("--runslow", action="store_true", default=False, help="also run tests marked slow")


def pytest_collection_modifyitems(config, items):
    if config.getoption("--runslow"):
        return
    skip = pytest.mark.skip(reason="slow: run with --runslow (make test-all)")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)


def make_rows(n_per_class: int, seed: int = 0) -> list[tuple[str, str]]:
    rng = random.Random(seed)
    rows = []
    for label, words in WORDS.items():
        for _ in range(n_per_class):
            tokens = rng.choices(words, k=rng.randint(2, 4)) + rng.choices(FILLER, k=rng.randint(2, 12))
            rng.shuffle(tokens)
            rows.append((" ".join(tokens), label))
    rng.shuffle(rows)
    return rows


def write_csv(path: Path, rows: list[tuple[str, str]], header=("review", "aspect")) -> Path:
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)
    return path


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    """A random 4-layer BERT (hidden 32) with a WordPiece tokenizer over the fixture's words."""
    from transformers import AutoTokenizer, BertConfig, BertModel

    directory = tmp_path_factory.mktemp("tiny-bert")
    vocab = SPECIALS + sorted({w for ws in WORDS.values() for w in ws} | set(FILLER)) + ["##s", "##ing"]
    (directory / "vocab.txt").write_text("\n".join(vocab) + "\n", encoding="utf-8")
    # Loaded through the config, as a hub download is: transformers 5's BertTokenizerFast(vocab_file=...) saves a
    # tokenizer.json holding only the special tokens, which maps every word to [UNK]
    (directory / "tokenizer_config.json").write_text('{"tokenizer_class": "BertTokenizer", "do_lower_case": true}')
    tokenizer = AutoTokenizer.from_pretrained(str(directory))
    tokenizer.save_pretrained(directory)
    assert tokenizer.convert_ids_to_tokens(tokenizer("camera")["input_ids"]) == ["[CLS]", "camera", "[SEP]"]
    config = BertConfig(
        vocab_size=len(vocab), hidden_size=32, num_hidden_layers=4, num_attention_heads=2,
        intermediate_size=64, max_position_embeddings=160,
    )
    import torch

    torch.manual_seed(0)
    BertModel(config).save_pretrained(directory)
    return directory


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory) -> dict[str, Path]:
    directory = tmp_path_factory.mktemp("data")
    return {
        "train": write_csv(directory / "train.csv", make_rows(20, seed=1)),
        "test": write_csv(directory / "test.csv", make_rows(6, seed=2)),
    }


@pytest.fixture(scope="module")
def head_model(tmp_path_factory, tiny_model_dir, tiny_data) -> Path:
    """A tiny model with a trained head (`--freeze head`, one epoch), one per test module."""
    from freezeframe.cli import main

    out = tmp_path_factory.mktemp("runs") / "head"
    main(["train", "--train", str(tiny_data["train"]), "--model", str(tiny_model_dir), "--out", str(out),
          "--freeze", "head", "--epochs", "1", "--lr", "1e-3", "--quiet"])
    return out


@pytest.fixture
def reports():
    """Lines reported on the user's behalf (freezeframe.errors.report), in order."""
    lines: list[str] = []

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            lines.append(record.getMessage())

    logger = logging.getLogger("freezeframe")
    handler, level = Collect(level=logging.WARNING), logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    yield lines
    logger.removeHandler(handler)
    logger.setLevel(level)


@pytest.fixture
def run_cli(capsys):
    """Run the CLI in-process; return (exit code, stdout, stderr)."""
    from freezeframe.cli import main

    def run(*args: str) -> tuple[int, str, str]:
        try:
            main([str(a) for a in args])
            code = 0
        except SystemExit as done:
            code = done.code if isinstance(done.code, int) else 1
        captured = capsys.readouterr()
        return code, captured.out, captured.err

    return run


REAL_TRAIN = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "imdb-aspects" / "train.csv"


@pytest.fixture
def ctrl_c_after(monkeypatch):
    """``with ctrl_c_after(epoch): ...``: once epoch ``epoch``'s checkpoint is saved, Ctrl-C arrives."""
    import contextlib
    import signal

    from freezeframe.checkpoint import MemberCheckpoint

    save = MemberCheckpoint.save

    @contextlib.contextmanager
    def armed(epoch: int):
        def save_then_ctrl_c(self, state):
            save(self, state)
            if state["epoch"] == epoch:
                os.kill(os.getpid(), signal.SIGINT)

        monkeypatch.setattr(MemberCheckpoint, "save", save_then_ctrl_c)
        # a shell's background job (`make test &`) starts with SIGINT ignored, and then Python leaves it ignored
        previous = signal.signal(signal.SIGINT, signal.default_int_handler)
        try:
            yield
        finally:
            signal.signal(signal.SIGINT, previous)
            monkeypatch.setattr(MemberCheckpoint, "save", save)

    return armed


def without_weight(model_dir: Path, copy: Path, name: str) -> Path:
    """A copy of a saved model directory whose ``model.safetensors`` lacks the tensor ``name``."""
    import shutil

    from safetensors.torch import load_file, save_file

    shutil.copytree(model_dir, copy)
    weights = load_file(copy / "model.safetensors")
    del weights[name]
    save_file(weights, copy / "model.safetensors", metadata={"format": "pt"})
    return copy
