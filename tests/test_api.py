"""The Python API refuses the natural mistakes of a notebook user with a clear exception, before any work."""

from __future__ import annotations

import pandas as pd
import pytest

from freezeframe.config import DataConfig, RunConfig


def test_a_dataframe_where_texts_or_a_file_belong_is_named(head_model, tiny_data):
    from freezeframe.data import load_labelled
    from freezeframe.evaluate import evaluate_model
    from freezeframe.fit import train_classifier
    from freezeframe.predict import load_classifier

    frame = pd.read_csv(tiny_data["test"])
    classifier = load_classifier(head_model)
    for call in (classifier.predict, classifier.predict_proba):  # iterating a frame gave its column names
        with pytest.raises(TypeError, match=r"texts is a DataFrame; pass its text column, e.g. predict\(frame\['review'\]\)"):
            call(frame)
    assert len(classifier.predict(frame["review"])) == len(frame)
    with pytest.raises(TypeError, match="train_data takes LabelledTexts"):
        train_classifier(RunConfig(DataConfig(tiny_data["train"])), train_data=frame)
    with pytest.raises(ValueError, match="valid_data is used only with train_data"):  # it was ignored silently
        train_classifier(RunConfig(DataConfig(tiny_data["train"])), valid_data=load_labelled(tiny_data["test"]))
    with pytest.raises(TypeError, match="data_path takes the path of a labelled file or a pandas DataFrame, got list"):
        evaluate_model(head_model, list(frame["review"]))  # a DataFrame is taken (test_frames.py)


def test_entry_points_name_the_settings_they_take(head_model, tiny_data):
    from freezeframe.compare import compare_configs
    from freezeframe.describe import describe_plan
    from freezeframe.export import ExportConfig, export_model
    from freezeframe.predict import load_classifier
    from freezeframe.serve import create_app

    with pytest.raises(TypeError, match=r"export_model takes an ExportConfig, e.g. ExportConfig\('runs/minilm'\), got str"):
        export_model(str(head_model))
    with pytest.raises(TypeError, match="ExportConfig.opset must be an int, got str"):
        ExportConfig(head_model, opset="18")
    with pytest.raises(TypeError, match="compare_configs takes a CompareConfig"):
        compare_configs(str(tiny_data["train"]))
    with pytest.raises(TypeError, match=r"create_app takes a loaded classifier, e.g. create_app\(load_classifier"):
        create_app(str(head_model))
    with pytest.raises(TypeError, match="create_app's config takes a ServeConfig"):
        create_app(load_classifier(head_model), "x")
    with pytest.raises(TypeError, match="num_labels must be an int, got str"):
        describe_plan(str(head_model), num_labels="3")
    with pytest.raises(ValueError, match="--valid FILE and --valid-fraction both choose the validation data"):
        DataConfig(tiny_data["train"], valid=tiny_data["test"], valid_fraction=0.2)  # the CLI alone refused it
    assert RunConfig(DataConfig(tiny_data["train"], valid=tiny_data["test"])).data.valid_fraction is None


def test_resume_or_keep_checkpoint_without_out_is_refused(tiny_data):
    """Without ``out`` there is no checkpoint to continue or keep: the call said nothing and trained from epoch 1."""
    from freezeframe.fit import train_classifier

    run = RunConfig(DataConfig(tiny_data["train"]))
    with pytest.raises(ValueError, match=r"^resume needs out, the model directory whose checkpoint/ is continued"):
        train_classifier(run, resume=True)
    with pytest.raises(ValueError, match=r"^resume and keep_checkpoint need out"):
        train_classifier(run, resume=True, keep_checkpoint=True)
    with pytest.raises(ValueError, match=r"^keep_checkpoint needs out"):
        train_classifier(run, keep_checkpoint=True)


def test_what_a_notebook_shows_is_short(head_model, tiny_model_dir, tiny_data):
    """A notebook shows the repr of a cell's last value: a frame printed whole in the settings, or the network in the
    outcome, ran to thousands of characters; a loaded classifier showed only its address."""
    from freezeframe.compare import CompareConfig
    from freezeframe.fit import train_classifier
    from freezeframe.predict import load_classifier

    frame = pd.read_csv(tiny_data["train"])
    data = DataConfig(frame, valid_fraction=0.2)
    assert repr(data) == ("DataConfig(train=<DataFrame: 60 rows>, valid=None, valid_fraction=0.2, text_column='review', "
                          "label_column='aspect', normalize_labels=False)")
    assert repr(CompareConfig(frame)).startswith("CompareConfig(train=<DataFrame: 60 rows>, test=None, folds=5,")
    assert repr(DataConfig(tiny_data["train"])).startswith(f"DataConfig(train={tiny_data['train']!r}, valid=None")
    from freezeframe.config import ModelConfig, TrainConfig

    outcome = train_classifier(RunConfig(data, ModelConfig(model=str(tiny_model_dir), freeze="head"),
                                         TrainConfig(epochs=1, show_progress=False)))
    shown = repr(outcome)
    assert shown.startswith("TrainOutcome(directory=None, labels=['Characters', 'Cinematography', 'Story'], metrics={")
    assert "Linear(" not in shown and len(shown) < 1000, shown
    assert repr(load_classifier(head_model)) == ("Classifier(labels=['Characters', 'Cinematography', 'Story'], "
                                                 "kind='transformer', max_length=128, device='cpu')")


def test_every_settings_class_refuses_a_bad_value_with_a_value_error(tiny_data):
    """``except ValueError`` catches a bad setting of any command: CompareConfig and ExploreConfig raised
    FreezeframeError, which is no ValueError, where DataConfig, ModelConfig and TrainConfig raise ValueError."""
    from freezeframe.compare import CompareConfig
    from freezeframe.explore import ExploreConfig

    with pytest.raises(ValueError, match="--folds must be at least 2, got 1"):
        CompareConfig(tiny_data["train"], folds=1)
    with pytest.raises(ValueError, match="--valid-fraction must be a finite number, got nan"):
        CompareConfig(tiny_data["train"], valid_fraction=float("nan"))
    with pytest.raises(ValueError, match="--model is empty"):
        ExploreConfig(tiny_data["train"], model=" ")
