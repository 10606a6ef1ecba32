"""Property-based tests: whatever the input, only FreezeframeError escapes (the CLI prints it in one line)."""

from __future__ import annotations

import csv
import io
import itertools
import json

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from freezeframe.data import check_classes, load_labelled, load_texts
from freezeframe.errors import FreezeframeError
from freezeframe.splits import split_train_valid

FUZZ = settings(max_examples=30, deadline=None, derandomize=True,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

# any code point a Python str can hold, lone surrogates included; NUL and control characters often
any_char = st.characters(codec=None, categories=None)
texts = st.one_of(
    st.text(any_char, max_size=40),
    st.text(st.sampled_from("\x00\x01\x7f\x85\u2028 \t\r\n,\"'\\\ufeff\u200b\U0001F3AC"), max_size=20),
    st.builds(lambda char, n: char * n, any_char, st.integers(0, 30_000)),
)
labels = st.one_of(st.sampled_from(["Story", " Story", "story", "STORY", "Characters", "", " ", "1", "1.0"]),
                   st.text(any_char, max_size=8))
_counter = itertools.count()


@pytest.fixture(scope="module")
def scratch(tmp_path_factory):
    """A directory for files made inside @given (function-scoped tmp_path does not mix with it)."""
    return tmp_path_factory.mktemp("fuzz")


def _load_and_split(path) -> None:
    try:
        data = load_labelled(path)
        check_classes(data)
        split_train_valid(data, 0.15, 0)
    except FreezeframeError as err:
        assert str(err).strip(), "a refusal says why"


@FUZZ
@given(payload=st.binary(max_size=400), suffix=st.sampled_from([".csv", ".tsv", ".jsonl", ".json"]))
@example(payload=b"review,aspect\n\x00,\x00\n", suffix=".csv")
@example(payload=b'{"review": "\\ud800", "aspect": [1]}\n{"review": 1e999, "aspect": null}\n', suffix=".jsonl")
@example(payload=b"[" * 5000, suffix=".json")
@example(payload=b"\xff\xfe\x00r", suffix=".csv")
def test_arbitrary_bytes_only_raise_freezeframe_errors(scratch, payload, suffix):
    path = scratch / f"bytes{next(_counter)}{suffix}"
    path.write_bytes(payload)
    _load_and_split(path)


@FUZZ
@given(rows=st.lists(st.tuples(texts, labels), max_size=25), header=st.booleans())
def test_arbitrary_unicode_rows_only_raise_freezeframe_errors(scratch, rows, header):
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["review", "aspect"] if header else ["x", "y"])
    writer.writerows(rows)
    path = scratch / f"rows{next(_counter)}.csv"
    path.write_bytes(buffer.getvalue().encode("utf-8", "surrogatepass"))
    _load_and_split(path)
    path = scratch / f"rows{next(_counter)}.jsonl"
    lines = [json.dumps({"review": t, "aspect": y}) for t, y in rows]
    path.write_text("\n".join(lines), encoding="utf-8")
    _load_and_split(path)


@FUZZ
@given(payload=st.binary(max_size=300), suffix=st.sampled_from([".txt", ".csv", ".jsonl"]))
def test_predict_input_files_only_raise_freezeframe_errors(scratch, payload, suffix):
    path = scratch / f"input{next(_counter)}{suffix}"
    path.write_bytes(payload)
    try:
        assert all(isinstance(t, str) for t in load_texts(path))
    except FreezeframeError:
        pass


@pytest.fixture(scope="module")
def classifier(tiny_model_dir):
    from freezeframe.encoder import load_pretrained
    from freezeframe.predict import Classifier

    model, tokenizer = load_pretrained(str(tiny_model_dir), ["Characters", "Cinematography", "Story"])
    return Classifier(model, tokenizer, ["Characters", "Cinematography", "Story"], 32, device="cpu")


@FUZZ
@given(batch=st.lists(texts, max_size=6))
@example(batch=["", "\x00", "\ud800", " " * 10, "a" * 1_000_000, "camera " * 40_000])
def test_predict_handles_any_text(classifier, batch):
    rows = classifier.predict(batch, batch_size=4)
    assert [row["text"] for row in rows] == batch
    for row in rows:
        assert row["label"] in classifier.labels
        assert abs(sum(row["scores"].values()) - 1) < 1e-4
