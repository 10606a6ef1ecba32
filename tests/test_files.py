"""Data files as users have them (compressed, unreadable, spelled oddly), and writes that fail half-way."""

from __future__ import annotations

import gzip
import os
import zipfile
from pathlib import Path

import pytest

from freezeframe.data import load_labelled, load_texts
from freezeframe.errors import FreezeframeError

ROWS = "".join(f"the camera shot {i},Cinematography\nthe villain role {i},Characters\nthe plot twist {i},Story\n"
               for i in range(4))
TABLE = "review,aspect\n" + ROWS


def one_error(err: str) -> str:
    errors = [line for line in err.splitlines() if line.startswith("freezeframe: error:")]
    assert len(errors) == 1 and "Traceback" not in err, err
    return errors[0]


@pytest.fixture
def locked(tmp_path, monkeypatch):
    """A directory whose files cannot be looked at, as under a directory without permission (root passes
    permission checks, so the refusal is simulated where Python asks the system)."""
    directory = tmp_path / "locked"
    directory.mkdir()
    stat, read_bytes = Path.stat, Path.read_bytes

    def denied(path: Path) -> None:
        if directory in Path(os.path.abspath(path)).parents:
            raise PermissionError(13, "Permission denied", str(path))

    def guarded_stat(self, *args, **kwargs):
        denied(self)
        return stat(self, *args, **kwargs)

    def guarded_read(self):
        denied(self)
        return read_bytes(self)

    monkeypatch.setattr(Path, "stat", guarded_stat)
    monkeypatch.setattr(Path, "read_bytes", guarded_read)
    return directory


def test_a_file_that_cannot_be_read_is_named_in_one_line(run_cli, locked, tiny_data, tmp_path):
    """Before: Path.exists raised PermissionError, an internal error (exit 1) in train, evaluate and predict."""
    hidden = locked / "data.csv"
    with pytest.raises(FreezeframeError, match=f"^cannot read {hidden}: Permission denied$"):
        load_labelled(hidden)
    with pytest.raises(FreezeframeError, match="^cannot read .*: Permission denied$"):
        load_texts(locked / "texts.txt")
    for args in (["--train", hidden], ["--train", tiny_data["train"], "--valid", hidden]):
        code, _, err = run_cli("train", *args, "--out", tmp_path / "model", "--quiet")
        assert code == 2 and f"cannot read {hidden}: Permission denied" in one_error(err), err


@pytest.mark.parametrize("suffix", [".csv", ".txt", ".jsonl"])
def test_compressed_files_and_workbooks_are_named_with_the_fix(tmp_path, suffix):
    """Before: a gzip-compressed .csv was 'not valid UTF-8 (byte 0x8b at line 1)' with advice to re-encode it from
    Latin-1; a .csv.gz an 'unsupported file type'. Reading them is left to gzip: one command, and every reader
    (tables, .txt, standard input) keeps reading plain text."""
    read = load_texts if suffix == ".txt" else load_labelled
    packed = tmp_path / f"data{suffix}"
    packed.write_bytes(gzip.compress(TABLE.encode()))
    with pytest.raises(FreezeframeError, match=r"is gzip-compressed; decompress it first, e\.g\. `zcat FILE"):
        read(packed)
    with zipfile.ZipFile(packed, "w") as archive:  # what an Excel workbook is, saved under the wrong name
        archive.writestr("xl/workbook.xml", "<workbook/>")
    with pytest.raises(FreezeframeError, match="is a ZIP archive \\(an Excel .xlsx workbook is one\\), not text"):
        read(packed)
    named = tmp_path / f"data{suffix}.gz"
    named.write_bytes(gzip.compress(TABLE.encode()))
    with pytest.raises(FreezeframeError, match=r"unsupported file type '\.gz' \(compressed: decompress it first\)"):
        read(named)
    with pytest.raises(FreezeframeError, match=r"'\.xlsx' \(an Excel workbook: save the sheet as 'CSV UTF-8'\)"):
        read(tmp_path / "data.xlsx")


@pytest.fixture
def disk_full_at():
    """``with disk_full_at(kib): ...``: writes past ``kib`` KiB fail with 'File too large', as on a full disk
    (Python ignores SIGXFSZ, so the write raises instead of killing the process)."""
    import contextlib
    import resource

    @contextlib.contextmanager
    def limited(kib: int):
        soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
        resource.setrlimit(resource.RLIMIT_FSIZE, (kib * 1024, hard))
        try:
            yield
        finally:
            resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))

    return limited


def snapshot(directory: Path) -> dict[str, bytes]:
    return {str(p.relative_to(directory)): p.read_bytes() for p in sorted(directory.rglob("*")) if p.is_file()}


def test_a_save_that_runs_out_of_disk_is_one_line_and_keeps_what_was_there(run_cli, disk_full_at, head_model, tiny_model_dir,
                                                                          tiny_data, tmp_path):
    """Before: safetensors' own error ended train as 'internal error: SafetensorError: Error while serializing: I/O
    error: File too large (os error 27)' (exit 1), and compare's report as 'internal error: OSError'."""
    import shutil

    model = tmp_path / "model"
    shutil.copytree(head_model, model)
    before = snapshot(model)
    train = ["train", "--train", tiny_data["train"], "--model", tiny_model_dir, "--freeze", "head", "--epochs", "1",
             "--quiet"]
    with disk_full_at(64):  # the tiny model's weights are about 170 KiB
        kept = run_cli(*train, "--out", model, "--overwrite")
        new = run_cli(*train, "--out", tmp_path / "new")
        report = run_cli("compare", "--train", tiny_data["train"], "--test", tiny_data["test"], "--configs", "head",
                         "--model", tiny_model_dir, "--epochs", "1", "--quiet", "--out", tmp_path / "report")
    for (code, _, err), out, outcome in ((kept, model, "it is as it was"), (new, tmp_path / "new", "nothing was left there"),
                                         (report, tmp_path / "report", "nothing was left there")):
        assert code == 2 and one_error(err) == f"freezeframe: error: cannot write {out}: File too large; {outcome}", err
    assert snapshot(model) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]


def test_evaluate_plots_that_cannot_be_written_are_named(run_cli, disk_full_at, head_model, tiny_data, tmp_path,
                                                         monkeypatch):
    """Before: 'internal error: OSError: [Errno 27] File too large' (exit 1), leaving the new --plots directory."""
    import errno

    import freezeframe.evaluate

    plots = tmp_path / "plots"
    with disk_full_at(8):
        code, _, err = run_cli("evaluate", "--model", head_model, "--data", tiny_data["test"], "--plots", plots)
    assert code == 2 and "--plots " + str(plots) + ": cannot write confusion_matrix.png: File too large" in one_error(err)
    assert not plots.exists()

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(freezeframe.evaluate, "plot_learning_curves", full)
    code, _, err = run_cli("evaluate", "--model", head_model, "--data", tiny_data["test"], "--plots", plots)
    assert code == 2 and one_error(err).endswith("cannot write learning_curve.png: No space left on device "
                                                 "(confusion_matrix.png was written)"), err
    assert [p.name for p in plots.iterdir()] == ["confusion_matrix.png"]


def test_a_whole_number_written_two_ways_is_one_label(run_cli, tmp_path, tiny_model_dir, reports):
    """Before: '1' and '1.0' in one file were two classes (pandas writes a column of codes with a gap as floats), and a
    model trained on '1' refused evaluation data spelling it '1.0' as 'label(s) never seen in training'."""
    codes = "".join(f"the camera shot {i},0\nthe villain role {i},1\nthe plot twist {i},2\n" for i in range(6))
    floats = tmp_path / "floats.csv"
    floats.write_text("review,aspect\n" + codes.replace(",1\n", ",1.0\n").replace(",2\n", ",2.0\n"))
    mixed = tmp_path / "mixed.csv"
    mixed.write_text("review,aspect\n" + codes + "the lens 9,2.0\nthe actress 9,01\n")
    data = load_labelled(mixed)
    assert data.label_names == ["0", "01", "1", "2"]  # 01 may be a code of its own
    assert "labels that write one whole number two ways are read as one class ('2.0' as '2')" in reports[0]
    assert load_labelled(floats).label_names == ["0", "1.0", "2.0"]  # one spelling each: kept as written
    assert load_labelled(floats, known=["0", "1", "2"]).label_names == ["0", "1", "2"]
    assert "read as the model's label ('1.0' as '1', '2.0' as '2')" in reports[-2], reports
    model = tmp_path / "model"
    code, _, err = run_cli("train", "--train", floats, "--model", tiny_model_dir, "--out", model, "--freeze", "head",
                           "--epochs", "1", "--quiet")
    assert code == 0, err
    plain = tmp_path / "plain.csv"
    plain.write_text("review,aspect\n" + codes)
    code, out, err = run_cli("evaluate", "--model", model, "--data", plain, "--json")
    assert code == 0 and '"1.0": {' in out and "('1' as '1.0', '2' as '2.0')" in err, err


def test_labels_that_mark_a_missing_value_are_named(tmp_path, reports):
    """Before: 'NaN' (a missing label as pandas or Python writes it) trained silently as a class of its own."""
    path = tmp_path / "data.csv"
    path.write_text(TABLE + "the lens 9,NaN\nthe actress 9,N/A\nthe ending 9,None\n")
    data = load_labelled(path)
    assert data.label_names == ["Characters", "Cinematography", "N/A", "NaN", "None", "Story"]
    assert any("2 rows have a label that usually marks a missing value ('N/A', 'NaN'; data rows 13, 14); kept as a "
               "class of its own" in line for line in reports), reports


def test_a_json_array_in_a_json_lines_file_is_read_as_its_items(run_cli, tmp_path, head_model, reports):
    """Before: a .jsonl file holding one JSON array (what json.dump writes) was '1 of 1 records are not JSON objects
    (line 1)', where the same file named .json is read."""
    import json

    records = [{"review": line.split(",")[0], "aspect": line.split(",")[1]} for line in ROWS.splitlines()]
    path = tmp_path / "data.jsonl"
    path.write_text(json.dumps(records, indent=1))
    assert load_labelled(path).texts == [record["review"] for record in records]
    assert reports == [f"{path} holds one JSON array, not one object per line; read its items as the records"]
    code, out, _ = run_cli("predict", "--model", head_model, "--input", path)
    assert code == 0 and len(out.splitlines()) == len(records)
    path.write_text('[{"review": "a shot", "aspect": "Story"}, 1]')
    with pytest.raises(FreezeframeError, match=r"1 of 2 records are not JSON objects .* \(item 2\)"):
        load_labelled(path)


def test_a_table_read_one_text_per_line_is_named(run_cli, tmp_path, head_model, monkeypatch):
    """Before: a CSV without its suffix (or piped to standard input) was classified line by line, its header
    'review,aspect' first, without a word."""
    import io
    import sys

    table = tmp_path / "reviews"
    table.write_text(TABLE)
    code, out, err = run_cli("predict", "--model", head_model, "--input", table)
    assert code == 0 and len(out.splitlines()) == 13  # still one text per line, as .txt and no suffix are read
    assert (f"warning: {table}: read as one text per line, but its first line looks like a table's header "
            "('review,aspect'); to classify its 'review' column, name it .csv, .tsv or .jsonl") in err
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(b'{"review": "a shot"}\n{"review": "a plot"}\n')))
    code, out, err = run_cli("predict", "--model", head_model, "--input", "-")
    assert code == 0 and "standard input: read as one text per line, but its first line looks like a JSON record; " \
                         "to classify its 'review' column, pass it as a .csv, .tsv or .jsonl file" in err, err
    texts = tmp_path / "texts.txt"
    texts.write_text("review, the best film of the year, and then some\nthe camera\n")
    code, _, err = run_cli("predict", "--model", head_model, "--input", texts)
    assert code == 0 and "warning" not in err, err


def test_an_output_file_that_is_a_symlink_is_written_where_it_points(run_cli, tmp_path, head_model, tiny_data):
    """Before: the temporary file was renamed onto the link, which became a plain file, and the file it pointed to
    kept its old contents."""
    target, link = tmp_path / "kept" / "labelled.csv", tmp_path / "labelled.csv"
    target.parent.mkdir()
    target.write_text("old\n")
    link.symlink_to(target)
    code, _, err = run_cli("predict", "--model", head_model, "--input", tiny_data["test"], "--output", link, "--overwrite")
    assert code == 0, err
    assert link.is_symlink() and target.read_text().startswith("review,aspect,predicted_label")
    plots = tmp_path / "plots"
    plots.mkdir()
    (plots / "confusion_matrix.png").symlink_to(target)
    code, _, err = run_cli("evaluate", "--model", head_model, "--data", tiny_data["test"], "--plots", plots, "--overwrite")
    assert code == 0 and (plots / "confusion_matrix.png").is_symlink() and target.read_bytes().startswith(b"\x89PNG")


def test_a_table_with_old_mac_line_ends_is_read(tmp_path):
    """Before: a file whose lines end in a carriage return alone (classic Mac OS, some exporters) ended in 'internal
    error: Error: new-line character seen in unquoted field' from the check of repeated column names."""
    path = tmp_path / "data.csv"
    path.write_bytes(TABLE.replace("\n", "\r").encode())
    data = load_labelled(path)
    assert len(data) == 12 and data.texts[0] == "the camera shot 0"
    path.write_bytes(b"review,review\rthe plot,Story\r")
    with pytest.raises(FreezeframeError, match="column name 'review' appears more than once"):
        load_labelled(path)


def test_a_tsv_whose_texts_hold_quote_marks_is_read_as_written(tmp_path, reports):
    """Before: in a tab-separated file (TSV writers seldom quote) a text starting with a quote mark swallowed the
    lines up to the next quote mark into one text, silently, or when none followed was refused as 'cannot parse as TSV
    (Error tokenizing data. C error: EOF inside string starting at row 1)'; a CSV's unclosed quote is named in words."""
    path = tmp_path / "data.tsv"
    table = 'review\taspect\n"the camera\tCinematography\nthe 12" vinyl of the plot\tStory\n' + ROWS.replace(",", "\t")
    path.write_text(table)
    data = load_labelled(path)
    assert data.texts[:2] == ['"the camera', 'the 12" vinyl of the plot'] and len(data) == 14
    assert reports[-1] == (f"{path}: quote marks merged lines into one field (data row 1); read as TSV without quoting "
                           "instead: each line is one row, and quote marks are part of the texts")
    path.write_text(table.replace('12"', "12-inch"))
    assert load_labelled(path).texts[:2] == ['"the camera', "the 12-inch vinyl of the plot"]
    assert reports[-1] == (f"{path}: a quote mark in data row 1 opens a field that never closes; read as TSV without "
                           "quoting instead: each line is one row, and quote marks are part of the texts")
    path.write_text('review\taspect\n"a wide shot, ""then""\na close-up"\tCinematography\n' + ROWS.replace(",", "\t"))
    assert load_labelled(path).texts[0] == 'a wide shot, "then"\na close-up'  # quoted as Excel writes it: kept
    path = tmp_path / "data.csv"
    path.write_text('review,aspect\n' + ROWS + '"the camera,Cinematography\n')
    with pytest.raises(FreezeframeError, match=r"cannot parse as CSV \(a quote mark in data row 13 opens a field that "
                                               r"never closes\)$"):
        load_labelled(path)


def test_json_lists_or_objects_where_texts_or_labels_belong_are_named(tmp_path, reports):
    """Before: a JSON Lines file with nested texts ({"review": {"en": ...}}) trained on their JSON text, and one with
    a list of labels per text (multi-label data) on each list as a class of its own, without a word."""
    import json

    path = tmp_path / "data.jsonl"
    records = [{"review": {"en": f"the camera shot {i}"}, "aspect": "Cinematography"} for i in range(3)]
    records += [{"review": f"the plot {i}", "aspect": ["Story", "Characters"] if i == 1 else "Story"} for i in range(3)]
    path.write_text("".join(json.dumps(record) + "\n" for record in records))
    data = load_labelled(path)
    assert data.texts[0] == '{"en": "the camera shot 0"}' and '["Story", "Characters"]' in data.labels
    assert reports[0] == (f"{path}: 3 texts are JSON lists or objects, not strings (data rows 1, 2, 3); read as their "
                          "JSON text")
    assert reports[1] == (f"{path}: 1 label is a JSON list or object, not a string (data rows 5); each distinct one is a "
                          "class of its own (one label per text)")
    assert load_texts(path)[0] == '{"en": "the camera shot 0"}' and reports[-1] == reports[0]


def test_a_first_checkpoint_that_cannot_be_saved_leaves_no_empty_out(run_cli, disk_full_at, tiny_model_dir, tiny_data,
                                                                     tmp_path):
    """Before: a new --out whose first checkpoint failed to write kept an empty checkpoint/ directory."""
    out = tmp_path / "new"
    with disk_full_at(4):
        code, _, err = run_cli("train", "--train", tiny_data["train"], "--model", tiny_model_dir, "--out", out,
                               "--epochs", "2", "--ensemble", "1", "--keep-checkpoint", "--quiet")
    assert code == 2 and one_error(err).startswith(f"freezeframe: error: cannot save the checkpoint in {out / 'checkpoint'}: "
                                                   "File too large"), err
    assert not out.exists()
