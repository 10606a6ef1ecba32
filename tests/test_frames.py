"""A pandas DataFrame where the Python API takes a labelled file: read, checked and recorded as the file would be,
never changed and never copied into the model directory."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch
from safetensors.torch import load_file

from freezeframe.config import DataConfig, ModelConfig, RunConfig, TrainConfig
from freezeframe.frames import InvalidFrame


def tiny_run(model, data, epochs: int = 2) -> RunConfig:
    # as test_resume trains: the tiny model learns something, so that equal weights and predictions say something
    return RunConfig(data, ModelConfig(model=str(model), freeze="last-2", pooling="mean"),
                     TrainConfig(epochs=epochs, patience=epochs, lr=1e-2, seed=3, show_progress=False, ensemble=1))


def losses(outcome) -> list[tuple]:
    return [(r.train_loss, r.valid_loss) for r in outcome.loop.history]


def same_weights(a, b) -> bool:
    left, right = load_file(a / "model.safetensors"), load_file(b / "model.safetensors")
    return left.keys() == right.keys() and all(torch.equal(left[k], right[k]) for k in left)


def test_training_on_a_dataframe_equals_training_on_the_file(tiny_model_dir, tiny_data, tmp_path):
    from freezeframe.fit import train_classifier

    frame = pd.read_csv(tiny_data["train"])
    frame["extra"] = np.arange(len(frame), dtype=float)  # an unused column, as a notebook's frame has
    frame.loc[3, "extra"] = np.nan
    before = frame.copy(deep=True)
    from_file = train_classifier(tiny_run(tiny_model_dir, DataConfig(tiny_data["train"], valid_fraction=0.2)),
                                 out=tmp_path / "file")
    from_frame = train_classifier(tiny_run(tiny_model_dir, DataConfig(frame, valid_fraction=0.2)), out=tmp_path / "frame")
    pd.testing.assert_frame_equal(frame, before)  # values, dtypes, index and columns unchanged
    assert from_frame.metrics == from_file.metrics and losses(from_frame) == losses(from_file)
    assert same_weights(tmp_path / "file", tmp_path / "frame")
    texts = list(frame["review"][:5])
    assert from_frame.classifier().predict(texts) == from_file.classifier().predict(texts)
    meta = json.loads((tmp_path / "frame" / "freezeframe.json").read_text())
    assert meta["settings"]["data"]["train"] == f"<DataFrame: {len(frame)} rows>"
    assert meta["data"]["files"] == {} and meta["data"]["dataframes"]["train"]["name"] == f"<DataFrame: {len(frame)} rows>"
    assert meta["data"]["dataframes"]["train"]["digest"].startswith("dataframe-sha256:")
    on_disk = {p.name for p in (tmp_path / "frame").iterdir()}
    assert on_disk == {p.name for p in (tmp_path / "file").iterdir()}, "the frame is not copied into the model directory"


def test_a_validation_dataframe_is_named_as_the_validation_source(tiny_model_dir, tiny_data):
    from freezeframe.fit import train_classifier

    train, valid = pd.read_csv(tiny_data["train"]), pd.read_csv(tiny_data["test"])
    outcome = train_classifier(tiny_run(tiny_model_dir, DataConfig(train, valid=valid)))
    assert outcome.meta["data"]["valid_source"] == f"<DataFrame: {len(valid)} rows>"
    assert outcome.meta["settings"]["data"]["valid"] == f"<DataFrame: {len(valid)} rows>"
    assert outcome.metrics is not None


def test_resume_with_a_dataframe_needs_the_same_data(tiny_model_dir, tiny_data, tmp_path, ctrl_c_after):
    from freezeframe.checkpoint import TrainingInterrupted
    from freezeframe.errors import FreezeframeError
    from freezeframe.fit import train_classifier

    frame = pd.read_csv(tiny_data["train"])
    run = tiny_run(tiny_model_dir, DataConfig(frame, valid_fraction=0.2), epochs=3)
    reference = train_classifier(run, out=tmp_path / "reference")
    with ctrl_c_after(1), pytest.raises(TrainingInterrupted):
        train_classifier(run, out=tmp_path / "model")
    changed = frame.copy()
    changed.loc[0, "aspect"] = "Story" if changed.loc[0, "aspect"] != "Story" else "Characters"
    other = tiny_run(tiny_model_dir, DataConfig(changed, valid_fraction=0.2), epochs=3)
    with pytest.raises(FreezeframeError, match="this run differs from the interrupted one: the --train DataFrame has "
                                               "different contents"):
        train_classifier(other, out=tmp_path / "model", resume=True)
    equal = tiny_run(tiny_model_dir, DataConfig(frame.copy(), valid_fraction=0.2), epochs=3)  # equal, not the same object
    resumed = train_classifier(equal, out=tmp_path / "model", resume=True)
    assert losses(resumed) == losses(reference)
    assert same_weights(tmp_path / "model", tmp_path / "reference")


def test_evaluate_and_explore_take_a_dataframe(head_model, tiny_data):
    from freezeframe.evaluate import evaluate_model
    from freezeframe.explore import ExploreConfig, explore_data

    frame = pd.read_csv(tiny_data["test"])
    before = frame.copy(deep=True)
    assert evaluate_model(head_model, frame) == evaluate_model(head_model, tiny_data["test"])
    summary = explore_data(ExploreConfig(frame, model=str(head_model)))
    reference = explore_data(ExploreConfig(tiny_data["test"], model=str(head_model)))
    assert summary["file"] == f"<DataFrame: {len(frame)} rows>"
    assert {**summary, "file": None} == {**reference, "file": None}
    pd.testing.assert_frame_equal(frame, before)
    with pytest.raises(TypeError, match="data_path takes the path of a labelled file or a pandas DataFrame, got list"):
        evaluate_model(head_model, list(frame["review"]))


def test_compare_takes_dataframes(tiny_model_dir, tiny_data, tmp_path):
    from freezeframe.compare import CompareConfig, compare_configs

    train, test = pd.read_csv(tiny_data["train"]), pd.read_csv(tiny_data["test"])
    settings = {"configs": ["head"], "model": str(tiny_model_dir), "epochs": 1, "device": "cpu"}
    from_frames = compare_configs(CompareConfig(train, test, **settings), out=tmp_path / "report")
    from_files = compare_configs(CompareConfig(tiny_data["train"], tiny_data["test"], **settings))
    assert from_frames["settings"]["train"] == f"<DataFrame: {len(train)} rows>"
    assert from_frames["settings"]["evaluation"] == f"held-out DataFrame <DataFrame: {len(test)} rows>"
    assert from_frames["configs"]["head"]["accuracy"]["runs"] == from_files["configs"]["head"]["accuracy"]["runs"]
    json.loads((tmp_path / "report" / "results.json").read_text())
    assert "<DataFrame: " in (tmp_path / "report" / "report.md").read_text()


def test_bad_dataframes_are_value_errors_naming_the_column(tiny_model_dir, tiny_data, tmp_path):
    from freezeframe.data import load_labelled
    from freezeframe.fit import train_classifier

    frame = pd.read_csv(tiny_data["train"])
    with pytest.raises(ValueError, match=r"<DataFrame: 60 rows>: column 'text' not found; columns found: 'review', "
                                         r"'aspect'"):
        train_classifier(tiny_run(tiny_model_dir, DataConfig(frame, text_column="text")))
    empty = frame.assign(review=np.nan)
    with pytest.raises(InvalidFrame, match="no rows with both a text and a label \\(columns 'review' and 'aspect'\\)"):
        load_labelled(empty)
    mixed = frame.assign(aspect=frame["aspect"].where(frame.index % 2 == 0, frame["aspect"].str.upper()))
    with pytest.raises(ValueError, match="labels differ only in letter case"):
        load_labelled(mixed)
    renamed = frame.rename(columns={"aspect": " review"})  # a name that strips to another column's
    with pytest.raises(ValueError, match="column name 'review' appears more than once"):
        load_labelled(renamed)
    with pytest.raises(InvalidFrame, match="column name 'review' appears more than once"):  # the checkpoint's digest
        train_classifier(tiny_run(tiny_model_dir, DataConfig(renamed)), out=tmp_path / "model")  # read it first
    assert not (tmp_path / "model").exists()
    with pytest.raises(TypeError, match=r"^load_labelled's path must be a path \(str or pathlib.Path\) or a pandas "
                                        r"DataFrame, got Series$"):  # was Path()'s 'expected str, bytes or os.PathLike'
        load_labelled(frame["review"])
    with pytest.raises(TypeError, match=r"DataConfig.train must be a path \(str or pathlib.Path\) or a pandas DataFrame, "
                                        r"got list"):
        DataConfig(list(frame["review"]))
    with pytest.raises(TypeError, match="CompareConfig.test must be a path .* or a pandas DataFrame or None, got dict"):
        from freezeframe.compare import CompareConfig

        CompareConfig(frame, test={"review": []})


def test_a_dataframe_is_read_as_its_file_would_be(tiny_data, reports):
    """Missing cells (NaN, None, pd.NA) are dropped with the file's warning, integer labels are class names."""
    from freezeframe.data import load_labelled

    frame = pd.DataFrame({"review": ["a camera shot", None, "the plot", "  ", "a hero", "the cast", np.nan],
                          "aspect": [0, 1, pd.NA, 2, 1, 0, 2]}).astype({"aspect": "Int64"})
    data = load_labelled(frame)
    assert data.texts == ["a camera shot", "a hero", "the cast"] and data.labels == ["0", "1", "0"]
    assert data.rows == [1, 5, 6] and data.source == "<DataFrame: 7 rows>"
    assert any("<DataFrame: 7 rows>: dropped 3 rows with no text" in line for line in reports)
    assert any("<DataFrame: 7 rows>: dropped 1 row with no label (data rows 3)" in line for line in reports)
    assert str(frame["aspect"].dtype) == "Int64" and frame["review"].isna().sum() == 2
