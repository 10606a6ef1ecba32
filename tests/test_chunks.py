"""`predict --input` read, classified and written chunk by chunk: the same output as a whole read, errors in a later
chunk leave no output file, JSON lines flow to stdout chunk by chunk, and a closed pipe ends quietly."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from freezeframe.chunks import open_texts
from freezeframe.decode import DecodedStream, split_lines

TEXTS = ["the camera shot", "", "a villain role, with a comma", "plot \"twist\" ending", "\u200b", "lens\nflare",
         "  the hero  ", "bell\x07ring", "the cast", "story"] * 3


@pytest.fixture(scope="module")
def baseline(tmp_path_factory, tiny_data) -> Path:
    from freezeframe.cli import main

    out = tmp_path_factory.mktemp("runs") / "baseline"
    main(["train", "--train", str(tiny_data["train"]), "--model", "baseline", "--out", str(out), "--epochs", "1",
          "--quiet"])
    return out


def _inputs(directory: Path) -> list[Path]:
    """One file of TEXTS per input type, with a BOM and Windows line ends in the CSV, and a key that first appears
    in a later chunk of the JSON Lines file."""
    import csv
    import io

    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerow(["id", "review", "note"])
    writer.writerows([i, text, "n" if i % 3 else ""] for i, text in enumerate(TEXTS))
    (directory / "in.csv").write_bytes(b"\xef\xbb\xbf" + buffer.getvalue().encode("utf-8"))
    (directory / "in.tsv").write_text("review\tid\n" + "".join(f"{t.replace(chr(10), ' ')}\t{i}\n"
                                                              for i, t in enumerate(TEXTS)), encoding="utf-8")
    records = [{"review": text, "id": i} | ({"late": [i], "flag": True} if i == 25 else {}) for i, text in enumerate(TEXTS)]
    (directory / "in.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    (directory / "in.txt").write_bytes("\r\n".join(t for t in TEXTS if "\n" not in t).encode("utf-8") + b"\rlast")
    return [directory / name for name in ("in.csv", "in.tsv", "in.jsonl", "in.txt")]


def _expected_texts(source: Path) -> list[str]:
    """The texts :func:`_inputs` wrote into ``source``, as a reading of it must find them (not read by freezeframe)."""
    if source.suffix == ".tsv":
        return [text.replace("\n", " ") for text in TEXTS]
    if source.suffix == ".txt":
        return [text.strip() for text in TEXTS if "\n" not in text and text.strip()] + ["last"]
    return TEXTS


def test_every_chunk_size_gives_the_same_output_and_the_texts_written(run_cli, baseline, tmp_path):
    """Every output type, from every input type, read 1 and 4 rows at a time, is byte-identical to the default (one
    chunk), and holds the texts and columns of the input."""
    import csv
    import io

    for source in _inputs(tmp_path):
        expected = ["an argument"] + _expected_texts(source)
        column = "text" if source.suffix == ".txt" else "review"
        code, whole, err = run_cli("predict", "--model", baseline, "an argument", "--input", source)
        assert code == 0, err
        assert [json.loads(line)["text"] for line in whole.splitlines()] == expected, source.name
        for rows in ("1", "4"):
            code, out, err = run_cli("predict", "--model", baseline, "an argument", "--input", source,
                                     "--chunk-rows", rows)
            assert code == 0 and out == whole, (source.name, rows, err)
        for suffix, sep in ((".csv", ","), (".tsv", "\t"), (".jsonl", None)):
            written = {}
            for rows in ("1", "4", None):
                target = tmp_path / f"out-{source.suffix[1:]}-{rows}{suffix}"
                code, _, err = run_cli("predict", "--model", baseline, "an argument", "--input", source, "--output",
                                       target, *(("--chunk-rows", rows) if rows else ()))
                assert code == 0 and f"wrote {len(expected)} predictions" in err, err
                written[rows] = target.read_bytes()
            assert written["1"] == written["4"] == written[None], (source.name, suffix)
            text = written[None].decode("utf-8")
            records = ([json.loads(line) for line in text.splitlines()] if sep is None
                       else list(csv.DictReader(io.StringIO(text, newline=""), delimiter=sep)))
            assert [record[column] for record in records] == expected, (source.name, suffix)
            if source.suffix in (".csv", ".jsonl"):
                ids = [str(record["id"]) for record in records[1:]]
                assert ids == [str(i) for i in range(len(TEXTS))] and records[0]["id"] in (None, "")


def test_chunks_hold_at_most_chunk_rows_and_the_warning_counts_the_whole_input(run_cli, baseline, tmp_path):
    source = _inputs(tmp_path)[0]
    sizes = [len(texts) for texts, _ in open_texts(["given"], source, chunk_rows=7)]
    assert sizes == [1, 7, 7, 7, 7, 2]
    code, _, err = run_cli("predict", "--model", baseline, "--input", source, "--chunk-rows", "3")
    assert code == 0
    assert "warning: 6 of 30 texts are empty or invisible (number 2, 5, 12, 15, 22, ...)" in err


def test_a_bad_line_late_in_the_file_is_refused_before_any_work(run_cli, baseline, tmp_path, monkeypatch):
    source = tmp_path / "late.jsonl"
    lines = [json.dumps({"review": f"the camera {i}"}) for i in range(40)]
    lines[33] = '{"review": "cut off'
    source.write_text("\n".join(lines) + "\n", encoding="utf-8")
    target = tmp_path / "out.csv"
    monkeypatch.setattr("freezeframe.predict.Classifier.predict",
                        lambda *a, **k: pytest.fail("classified a file that is refused"))
    code, out, err = run_cli("predict", "--model", baseline, "--input", source, "--chunk-rows", "5", "--output", target)
    assert code == 2 and out == ""
    assert err.strip() == (f"freezeframe: error: {source}: 1 of 40 records are not JSON objects like "
                           '{"review": "...", "aspect": "..."} (line 34); fix or remove them')
    assert list(tmp_path.iterdir()) == [source]


def test_an_error_in_a_later_chunk_of_stdin_leaves_the_old_output(run_cli, baseline, tmp_path, monkeypatch):
    """Standard input is read once, as it is classified: bytes that are not UTF-8 on line 41 stop the run after
    earlier chunks were classified; the --overwrite target keeps its content and no temporary file is left."""
    import io

    raw = b"".join(b"the camera shot %d\n" % i for i in range(40)) + b"caf\xe9\n"
    monkeypatch.setattr("sys.stdin", io.TextIOWrapper(io.BytesIO(raw)))
    target = tmp_path / "out.jsonl"
    target.write_text("old\n", encoding="utf-8")
    seen = []
    from freezeframe.predict import Classifier

    original = Classifier.predict
    monkeypatch.setattr(Classifier, "predict", lambda self, texts, *a: seen.append(len(texts)) or original(self, texts, *a))
    monkeypatch.setattr("freezeframe.decode._BLOCK", 64)
    code, _, err = run_cli("predict", "--model", baseline, "--input", "-", "--chunk-rows", "10", "--output", target,
                             "--overwrite")
    assert code == 2 and seen[:2] == [10, 10]
    assert err.strip() == ("freezeframe: error: standard input is not valid UTF-8 (byte 0xe9 at line 41); re-save "
                           "it as UTF-8, e.g. `iconv -f latin1 -t utf-8 in.csv > out.csv`")
    assert target.read_text(encoding="utf-8") == "old\n" and sorted(p.name for p in tmp_path.iterdir()) == ["out.jsonl"]


def test_ctrl_c_in_a_later_chunk_leaves_no_output(run_cli, baseline, tmp_path, monkeypatch):
    source = _inputs(tmp_path)[0]
    from freezeframe.predict import Classifier

    original, calls = Classifier.predict, []

    def interrupted(self, texts, *args):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return original(self, texts, *args)

    monkeypatch.setattr(Classifier, "predict", interrupted)
    code, _, err = run_cli("predict", "--model", baseline, "--input", source, "--chunk-rows", "4", "--output",
                           tmp_path / "out.tsv")
    assert code == 130 and err.splitlines()[-1] == "freezeframe: interrupted"
    assert not (tmp_path / "out.tsv").exists() and not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_each_chunk_is_written_before_the_next_is_read(baseline):
    from freezeframe.predict import load_classifier, stream_predictions

    events = []

    class Out:
        def write(self, text: str) -> None:
            events.append(("wrote", text.count("\n")))

        def flush(self) -> None:
            events.append(("flushed", 0))

    def chunks():
        for start in range(0, 6, 2):
            events.append(("read", start))
            yield TEXTS[start:start + 2], None

    count = stream_predictions(load_classifier(baseline, device="cpu"), chunks(), out=Out())
    assert count == 6
    assert events == [("read", 0), ("wrote", 2), ("flushed", 0), ("read", 2), ("wrote", 2), ("flushed", 0),
                      ("read", 4), ("wrote", 2), ("flushed", 0)]


def test_a_closed_stdout_ends_quietly(run_cli, baseline, tmp_path, monkeypatch):
    class Closed:
        def write(self, text: str) -> None:
            raise BrokenPipeError(32, "Broken pipe")

        def flush(self) -> None:
            raise BrokenPipeError(32, "Broken pipe")

    source = tmp_path / "plain.txt"
    source.write_text("the camera shot\nthe plot\n" * 10, encoding="utf-8")
    monkeypatch.setattr("sys.stdout", Closed())
    code, _, err = run_cli("predict", "--model", baseline, "--input", source, "--chunk-rows", "4")
    assert code == 141 and err == ""


def test_predict_into_head_ends_quietly(baseline, tmp_path):
    """A real pipe closed after the first line (`predict ... | head -1`): exit 141, as SIGPIPE would, and no traceback."""
    source = tmp_path / "many.txt"
    source.write_text("the camera shot and the lighting of the frame\n" * 20_000, encoding="utf-8")
    process = subprocess.Popen([sys.executable, "-m", "freezeframe", "predict", "--model", str(baseline),
                                "--input", str(source), "--chunk-rows", "500"],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=os.environ | {"PYTHONUNBUFFERED": "0"})
    first = process.stdout.readline()
    process.stdout.close()
    _, err = process.communicate(timeout=120)
    assert json.loads(first)["text"].startswith("the camera shot")
    assert process.returncode == 141 and err == b""


@pytest.mark.parametrize("text", ["a\r\nb\rc\nd\x0be\u2028f\r\n\r\n\n", "one\r", "\r\n\r\nx\ny", "no end", ""])
def test_split_lines_cuts_as_splitlines_whatever_the_blocks(text):
    for size in (1, 2, 3):
        blocks = [text[i:i + size] for i in range(0, len(text), size)]
        assert list(split_lines(iter(blocks))) == text.splitlines()


@pytest.mark.parametrize("block", [1, 2, 3, 4, 5])
def test_split_lines_numbers_the_lines_of_a_file_whatever_the_read_blocks(tmp_path, monkeypatch, block):
    """A line spanning many read blocks, \\r\\n cut between blocks, other line ends and multi-byte characters: the
    lines, and their numbers (as a JSON Lines error names them), of ``str.splitlines`` on the whole text."""
    from freezeframe.errors import FreezeframeError

    monkeypatch.setattr("freezeframe.decode._BLOCK", block)
    text = ("a\r\n" + "é long line, " * 40 + "\r\r\n\nx\u2028y\rz\x0b" + "\u65e5" * 30 + "\r\n\r\nend")
    path = tmp_path / "lines.txt"
    path.write_bytes(text.encode("utf-8"))
    stream = DecodedStream(path)
    assert list(enumerate(split_lines(stream.blocks()), 1)) == list(enumerate(text.splitlines(), 1))
    source = tmp_path / "long.jsonl"
    source.write_text(json.dumps({"review": "the camera " * 50}) + "\r\n\r\n" + '{"review": "ok"}\r\nnot json\n',
                      encoding="utf-8")
    with pytest.raises(FreezeframeError, match=r"1 of 3 records are not JSON objects .* \(line 4\)"):
        open_texts([], source)


def test_decoded_stream_names_the_line_of_a_bad_byte_in_a_later_block(tmp_path, monkeypatch):
    from freezeframe.errors import FreezeframeError

    monkeypatch.setattr("freezeframe.decode._BLOCK", 5)
    path = tmp_path / "latin.txt"
    path.write_bytes("\ufeffé\x00\n".encode() + b"line\n" * 7 + b"caf\xe9\n")
    with pytest.raises(FreezeframeError, match=r"not valid UTF-8 \(byte 0xe9 at line 9\)"):
        list(DecodedStream(path).blocks())
    path.write_bytes("\ufeffé\x00\n".encode() + "ça\n".encode() * 7)
    stream = DecodedStream(path)
    assert stream.read() == "é\n" + "ça\n" * 7 and stream.nuls == 1


def test_python_code_streams_through_the_same_functions(baseline, tmp_path):
    from freezeframe.predict import load_classifier, stream_predictions

    source = _inputs(tmp_path)[2]
    classifier = load_classifier(baseline, device="cpu")
    target = tmp_path / "out.jsonl"
    assert stream_predictions(classifier, open_texts([], source, chunk_rows=4), target) == len(TEXTS)
    assert [json.loads(line)["id"] for line in target.read_text(encoding="utf-8").splitlines()] == list(range(30))
    with pytest.raises(ValueError, match="unsupported file type '.txt'"):
        stream_predictions(classifier, open_texts([], source), tmp_path / "out.txt")
    with pytest.raises(ValueError, match="chunk_rows must be a whole number"):
        open_texts([], source, chunk_rows=0)


def test_a_pipe_given_as_input_is_read_once(tmp_path):
    """`--input <(cmd)` or /dev/stdin names a pipe, which a check pass would empty: a text file is checked as it is
    classified, as standard input is, and a table, which needs two passes, is refused naming the fix."""
    from freezeframe.errors import FreezeframeError

    read, write = os.pipe()
    os.write(write, b"one\r\ntwo\nthree")
    os.close(write)
    try:
        assert [texts for texts, _ in open_texts(["given"], f"/dev/fd/{read}", chunk_rows=2)] == [
            ["given"], ["one", "two"], ["three"]]
    finally:
        os.close(read)
    os.mkfifo(tmp_path / "in.csv")
    with pytest.raises(FreezeframeError, match=r"in\.csv is a pipe, not a file, and a \.csv input is read twice"):
        open_texts([], tmp_path / "in.csv")


@pytest.mark.parametrize(("name", "before", "after"), [
    ("in.csv", "review\nthe camera\n", "note,text\nx,the camera\n"),
    ("in.jsonl", '{"review": "the camera"}\n', '{"review": "the camera"}\nnot json\n'),
    ("in.txt", "the camera\n", ""),
])
def test_a_file_that_changes_after_its_check_is_refused(tmp_path, name, before, after):
    """The chunks are read again after the check: a file rewritten in between (while the model loads) is refused in
    one line, not parsed as if it had been checked."""
    from freezeframe.errors import FreezeframeError

    source = tmp_path / name
    source.write_text(before, encoding="utf-8")
    chunks = open_texts([], source)
    source.write_text(after, encoding="utf-8")
    with pytest.raises(FreezeframeError, match=f"^{source} changed after predict checked it"):
        list(chunks)


def test_a_chunked_read_reports_once_whatever_the_chunks(tmp_path, reports):
    """Nested JSON texts, a control character and NUL bytes are reported once, in the same words, read whole
    (``load_texts``) or a row at a time."""
    from freezeframe.data import load_texts

    source = tmp_path / "in.jsonl"
    source.write_bytes(b'{"review": ["a", "list"]}\n{"review": "bell\\u0007ring"}\n{"review": "the\x00 cast"}\n'
                       b'{"review": {"an": "object"}}\n')
    assert load_texts(source) == ['["a", "list"]', "bell\x07ring", "the cast", '{"an": "object"}']
    whole = list(reports)
    assert whole == [
        f"{source}: removed 1 NUL byte",
        f"{source}: 2 texts are JSON lists or objects, not strings (data rows 1, 4); read as their JSON text",
        f"{source}: 1 text holds control characters (e.g. '\\x07'); read as spaces, as in training",
    ]
    for rows in (1, 3):
        reports.clear()
        list(open_texts([], source, chunk_rows=rows))
        assert reports == whole, rows


@pytest.mark.parametrize("block", [1, 2, 3, 5])
def test_a_text_file_is_cut_into_the_same_lines_whatever_the_blocks(tmp_path, monkeypatch, block):
    """Line breaks (\\r\\n, a lone \\r, \\n) cut between two read blocks, a line longer than many blocks, a text
    with no line break at its end and a multi-byte character across blocks: the lines written, whatever the chunks."""
    monkeypatch.setattr("freezeframe.decode._BLOCK", block)
    source = tmp_path / "in.txt"
    source.write_bytes("\ufeffa\r\nbé\rc\n\r\n  \nthe whole of a long line, read over many blocks\r\n\rx\u00e9\u65e5\rlast".encode())
    expected = ["a", "bé", "c", "the whole of a long line, read over many blocks", "x\u00e9\u65e5", "last"]
    for rows in (1, 2, 100):
        assert [text for texts, _ in open_texts([], source, chunk_rows=rows) for text in texts] == expected
