"""The from-scratch baseline: tokenizer, vocabulary, masked pooling, and the CLI end to end."""

from __future__ import annotations

import json

import pytest
import torch

from freezeframe.baseline import (
    PAD,
    TOKENIZER_FILE,
    TOKENIZER_VERSION,
    UNK,
    BaselineClassifier,
    BaselineSettings,
    WordTokenizer,
    build_baseline,
    build_vocabulary,
    load_baseline,
    split_words,
)
from freezeframe.config import ModelConfig
from freezeframe.errors import FreezeframeError


def test_split_words_lowercases_and_drops_punctuation():
    assert split_words("The CAMERA-work, isn't it... 4K?!") == ["the", "camera", "work", "isn't", "it", "4k"]
    assert split_words("  ...!!! ") == []


def test_new_baselines_split_words_of_any_script():
    assert split_words("Le film était très émouvant, j’ai adoré l’histoire") == [
        "le", "film", "était", "très", "émouvant", "j'ai", "adoré", "l'histoire"]
    assert split_words("Schöne Bilder, GROSSARTIGE Kamera") == ["schöne", "bilder", "grossartige", "kamera"]
    assert split_words("这部电影很棒！abc漢字") == ["这", "部", "电", "影", "很", "棒", "abc", "漢", "字"]  # Han/kana: a word each
    assert split_words("フィルムが好き😀") == ["フ", "ィ", "ル", "ム", "が", "好", "き"]
    assert split_words("فيلم مَدْرَسَة رائع") == ["فيلم", "مَدْرَسَة", "رائع"]  # vowel marks stay in their word
    assert split_words("हिन्दी फ़िल्म") == ["हिन्दी", "फ़िल्म"]
    # no-break space separates, invisible joiners and soft hyphens do not cut a word, full-width letters read as ASCII
    assert split_words("great\u00a0cine\u00adma zero\u200bwidth jo\u200din ＦＵＬＬ ﬁlm") == [
        "great", "cinema", "zero", "width", "join", "full", "film"]


def test_new_baselines_read_ascii_text_as_before():
    for text in ("The CAMERA-work, isn't it... 4K?!", "don't 1990's o'clock 'quoted' it's_fine", "a-b_c 3.14 x'2 "):
        assert split_words(text) == split_words(text, version=1)
    assert split_words("Schöne 这 don’t", version=1) == ["sch", "ne", "don", "t"]  # the pattern of older baselines


def test_vocabulary_is_frequency_ordered_with_alphabetical_ties():
    texts = ["plot plot plot camera", "camera actor zebra", "actor"]
    # plot 3; actor 2, camera 2 (tie -> alphabetical); zebra 1
    assert build_vocabulary(texts, 10) == [PAD, UNK, "plot", "actor", "camera", "zebra"]
    assert build_vocabulary(texts, 2) == [PAD, UNK, "plot", "actor"]
    assert build_vocabulary(list(reversed(texts)), 10) == build_vocabulary(texts, 10), "order of texts must not matter"


def test_unseen_words_become_unk_and_empty_text_is_one_unk():
    tokenizer = WordTokenizer.fit(["good plot", "good camera"], 10)
    assert tokenizer.pad_id == 0 and tokenizer.vocabulary[:2] == [PAD, UNK]
    ids, truncated = tokenizer.encode(["Good PLOT twist", "!!!"], max_length=8)
    assert ids == [[tokenizer.index["good"], tokenizer.index["plot"], 1], [1]]
    assert truncated == 0


def test_truncation_is_counted():
    tokenizer = WordTokenizer.fit(["a b c d e f"], 10)
    ids, truncated = tokenizer.encode(["a b c d e f", "a b"], max_length=4)
    assert [len(row) for row in ids] == [4, 2] and truncated == 1


def test_tokenizer_round_trips_through_a_file(tmp_path):
    tokenizer = WordTokenizer.fit(["the camera", "the plot twist"], 10)
    tokenizer.save(tmp_path)
    assert WordTokenizer.load(tmp_path).vocabulary == tokenizer.vocabulary
    with pytest.raises(FreezeframeError):
        WordTokenizer(["the", "camera"])


def test_tokenizer_version_is_saved_and_a_baseline_without_it_keeps_the_ascii_pattern(tmp_path):
    texts = ["Schöne Kamera", "schöne Geschichte"]
    new = WordTokenizer.fit(texts, 10)
    (tmp_path / "new").mkdir()
    new.save(tmp_path / "new")
    assert json.loads((tmp_path / "new" / TOKENIZER_FILE).read_text()) == {"version": TOKENIZER_VERSION}
    loaded = WordTokenizer.load(tmp_path / "new")
    assert loaded.version == 2 and loaded.encode(["schöne"], 8)[0] == [[loaded.index["schöne"]]]
    # a baseline saved before the version was recorded: vocab.txt alone, as the ASCII pattern built it
    (tmp_path / "old").mkdir()
    (tmp_path / "old" / "vocab.txt").write_text("<PAD>\n<UNK>\nsch\nne\nkamera\n", encoding="utf-8")
    old = WordTokenizer.load(tmp_path / "old")
    assert old.version == 1 and old.encode(["Schöne Kamera"], 8)[0] == [[2, 3, 4]]
    old.save(tmp_path / "old")
    assert not (tmp_path / "old" / TOKENIZER_FILE).exists(), "re-saving an old tokenizer must not relabel it"


@pytest.mark.parametrize("content, expected", [("{", "is damaged"), ('{"version": "2"}', "is damaged"),
                                               ('{"version": 0}', "is damaged"), ('{"version": 3}', "version 3 is unknown")])
def test_a_damaged_or_newer_tokenizer_version_is_refused(tmp_path, content, expected):
    WordTokenizer.fit(["a b"], 10).save(tmp_path)
    (tmp_path / TOKENIZER_FILE).write_text(content, encoding="utf-8")
    with pytest.raises(FreezeframeError, match=expected):
        WordTokenizer.load(tmp_path)


def test_padding_positions_change_nothing():
    torch.manual_seed(0)
    model = BaselineClassifier(BaselineSettings(vocabulary_size=20, embedding_dim=8, num_labels=3, dropout=0.5)).eval()
    ids = torch.tensor([[5, 7, 9]])
    mask = torch.ones_like(ids)
    # Padded with pad id 0 and with arbitrary ids: the mask alone must decide what counts.
    for filler in (0, 13):
        padded = torch.tensor([[5, 7, 9, filler, filler]])
        padded_mask = torch.tensor([[1, 1, 1, 0, 0]])
        assert torch.allclose(model(padded, padded_mask), model(ids, mask), atol=1e-6)
    expected = model.embedding(ids)[0].mean(0)
    assert torch.allclose(model.pool(ids, mask)[0], expected, atol=1e-6)


def test_build_names_blocks_and_saves(tmp_path):
    config = ModelConfig(model="baseline", vocab_size=5, embedding_dim=6, dropout=0.1)
    model, tokenizer = build_baseline(config, ["a", "b"], ["x y z x", "w v u t s"])
    assert len(tokenizer) == 7 and model.embedding.weight.shape == (7, 6)
    assert {n for n, _ in model.named_parameters()} == {"embedding.weight", "classifier.weight", "classifier.bias"}
    model.save(tmp_path)
    tokenizer.save(tmp_path)
    loaded, loaded_tokenizer = load_baseline(tmp_path)
    assert loaded.kind == "baseline" and loaded_tokenizer.vocabulary == tokenizer.vocabulary
    ids = torch.tensor([[2, 3, 1]])
    assert torch.equal(loaded(ids, torch.ones_like(ids)), model.eval()(ids, torch.ones_like(ids)))
    (tmp_path / "vocab.txt").write_text("<PAD>\n<UNK>\nx\n", encoding="utf-8")
    with pytest.raises(FreezeframeError, match="mixes two models"):
        load_baseline(tmp_path)


@pytest.fixture(scope="module")
def baseline_dir(tmp_path_factory, tiny_data):
    from freezeframe.cli import main

    out = tmp_path_factory.mktemp("baseline") / "model"
    main(["train", "--model", "baseline", "--train", str(tiny_data["train"]), "--out", str(out),
          "--epochs", "30", "--lr", "0.01", "--quiet"])
    return out


def test_baseline_directory_holds_vocab_weights_config_and_meta(baseline_dir):
    names = {p.name for p in baseline_dir.iterdir()}
    assert {"vocab.txt", "word_tokenizer.json", "model.safetensors", "baseline_config.json", "freezeframe.json"} <= names
    meta = json.loads((baseline_dir / "freezeframe.json").read_text())
    assert meta["kind"] == "baseline" and meta["freeze"]["plan"] == "full"
    assert meta["freeze"]["trainable_parameters"] == meta["freeze"]["total_parameters"]
    assert meta["labels"] == ["Characters", "Cinematography", "Story"]


def test_baseline_evaluate_predict_inspect(run_cli, baseline_dir, tiny_data):
    code, out, err = run_cli("evaluate", "--model", baseline_dir, "--data", tiny_data["test"], "--json")
    assert code == 0, err
    metrics = json.loads(out)
    assert metrics["n"] == 18 and metrics["accuracy"] > 0.6, "the fixture's words are easy to separate"
    code, out, err = run_cli("predict", "--model", baseline_dir, "the camera lighting", "a villain role")
    assert code == 0, err
    rows = [json.loads(line) for line in out.splitlines()]
    assert [r["label"] for r in rows] == ["Cinematography", "Characters"]
    code, out, err = run_cli("inspect", "--model", baseline_dir, "--freeze", "full")
    assert code == 0, err
    assert "embeddings" in out and "classifier" in out and "100.00%" in out


def test_inspect_an_untrained_baseline_as_training_would_build_it(run_cli, baseline_dir):
    code, out, err = run_cli("inspect", "--model", "baseline")
    assert code == 0, err
    trained = json.loads((baseline_dir / "freezeframe.json").read_text())["settings"]["model"]
    rows = {line.split()[0]: line.split()[1:] for line in out.splitlines()[2:] if line.strip()}
    assert "freeze plan full" in out and rows["total"][0] == f"{(trained['vocab_size'] + 2) * trained['embedding_dim'] + 3 * trained['embedding_dim'] + 3:,}"
    assert rows["trainable"][1] == "100.00%"
    code, _, err = run_cli("inspect", "--model", "baseline", "--freeze", "last-2")
    assert code == 2 and "has no encoder layers; use full or head" in err
    # the example names once each (the baseline's three were listed as "..., classifier.weight, classifier.weight, ...")
    code, _, err = run_cli("inspect", "--model", "baseline", "--freeze", "embeddings.*")
    assert code == 2 and "names look like: embedding.weight, classifier.weight, classifier.bias (or use" in err, err


def test_a_baseline_saved_without_a_tokenizer_version_predicts_with_the_ascii_pattern(run_cli, baseline_dir, tmp_path):
    import shutil

    from freezeframe.predict import load_classifier

    old = tmp_path / "old"
    shutil.copytree(baseline_dir, old)
    (old / TOKENIZER_FILE).unlink()
    texts = ["the camëra lighting", "a villain’s role"]  # cut differently by the two patterns
    assert load_classifier(baseline_dir).tokenizer.version == 2
    classifier = load_classifier(old)
    assert classifier.tokenizer.version == 1
    assert classifier.tokenizer.encode(texts, 64)[0] == WordTokenizer(classifier.tokenizer.vocabulary, 1).encode(texts, 64)[0]
    assert classifier.tokenizer.encode(texts, 64)[0] != load_classifier(baseline_dir).tokenizer.encode(texts, 64)[0]
    code, out, err = run_cli("predict", "--model", old, *texts)
    assert code == 0 and len(out.splitlines()) == 2, err


def test_damaged_baseline_directory_is_one_line_error(run_cli, baseline_dir, tmp_path):
    import shutil

    broken = tmp_path / "broken"
    shutil.copytree(baseline_dir, broken)
    (broken / "vocab.txt").unlink()
    code, _, err = run_cli("predict", "--model", broken, "the camera")
    assert code == 2 and "vocab.txt" in err and "Traceback" not in err
