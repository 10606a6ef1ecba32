"""--probe (LP-FT): the classifier is fitted on frozen sentence vectors before fine-tuning starts."""

from __future__ import annotations

import json

import torch

from freezeframe.config import DataConfig, ModelConfig, RunConfig, TrainConfig
from freezeframe.fit import train_classifier


def _run(data, model_dir, probe: bool, epochs: int = 1, valid_fraction: float = 0.15, **train) -> RunConfig:
    return RunConfig(DataConfig(data["train"], valid_fraction=valid_fraction), ModelConfig(model=str(model_dir), freeze="last-1"),
                     TrainConfig(lr=1e-3, epochs=epochs, probe=probe, show_progress=False, **train))


def test_probe_fits_the_head_before_fine_tuning(tiny_model_dir, tiny_data):
    cold = train_classifier(_run(tiny_data, tiny_model_dir, probe=False))
    warm = train_classifier(_run(tiny_data, tiny_model_dir, probe=True))
    probe = warm.meta["probe"]
    assert "probe" not in cold.meta
    assert probe["epochs_run"] >= probe["best_epoch"] >= 1
    # the probe is exactly what `--freeze head` trains (same seed, rate and vectors), then fine-tuning goes on
    head = train_classifier(RunConfig(DataConfig(tiny_data["train"]), ModelConfig(model=str(tiny_model_dir), freeze="head"),
                                      TrainConfig(show_progress=False)))
    assert probe["best_epoch"] == head.loop.best_epoch
    assert abs(probe["valid_loss"] - head.loop.best_valid_loss) < 1e-6
    # the probe leaves the plan's trainable set as it was
    trainable = {n for n, p in warm.model.plan_parameters() if p.requires_grad}
    assert any(".layer.3." in n for n in trainable) and not any(".layer.2." in n for n in trainable)


def test_probe_without_validation_data_runs_its_whole_schedule(tiny_model_dir, tiny_data):
    warm = train_classifier(_run(tiny_data, tiny_model_dir, probe=True, valid_fraction=0.0))
    probe = warm.meta["probe"]
    assert probe["epochs_run"] == probe["best_epoch"] == 60 and probe["valid_loss"] is None
    assert warm.metrics is None and warm.meta["data"]["valid_rows"] == 0


def test_probe_does_not_touch_the_encoder(tiny_model_dir, tiny_data):
    from freezeframe.encoder import load_pretrained
    from freezeframe.fit import encode_examples
    from freezeframe.freeze import FreezePlan
    from freezeframe.probe import Probe

    run = _run(tiny_data, tiny_model_dir, probe=True)
    model, tokenizer = load_pretrained(str(tiny_model_dir), ["Characters", "Cinematography", "Story"], "mean")
    plan = FreezePlan("last-1")
    plan.apply(model)
    from freezeframe.data import load_labelled
    from freezeframe.splits import split_train_valid

    train, valid = split_train_valid(load_labelled(tiny_data["train"]), 0.15, 0)
    sets = [encode_examples(tokenizer, d, train.label_names, run.model) for d in (train, valid)]
    before = {n: p.detach().clone() for n, p in model.plan_parameters()}
    Probe(run, model, *sets, torch.device("cpu")).fit(model, 0)
    changed = {n for n, p in model.plan_parameters() if not torch.equal(p, before[n])}
    assert changed and all(n.startswith("classifier.") for n in changed)


def test_probe_is_recorded_and_shown(run_cli, tmp_path, tiny_model_dir, tiny_data):
    out = tmp_path / "m"
    code, _, err = run_cli("train", "--train", tiny_data["train"], "--model", tiny_model_dir, "--out", out,
                           "--freeze", "last-1", "--probe", "--epochs", "1", "--quiet")
    assert code == 0, err
    assert json.loads((out / "freezeframe.json").read_text())["probe"]["best_epoch"] >= 1
    code, stdout, _ = run_cli("inspect", "--model", out)
    assert code == 0 and "LP-FT" in stdout


def test_a_resumed_run_keeps_the_probe_record(run_cli, tmp_path, tiny_model_dir, tiny_data, ctrl_c_after):
    args = ["train", "--train", tiny_data["train"], "--model", tiny_model_dir, "--freeze", "last-1", "--probe",
            "--epochs", "2", "--quiet"]
    code, _, err = run_cli(*args, "--out", tmp_path / "reference")
    assert code == 0, err
    with ctrl_c_after(1):
        assert run_cli(*args, "--out", tmp_path / "model")[0] == 130
    code, _, err = run_cli(*args, "--out", tmp_path / "model", "--resume")
    assert code == 0, err
    reference, resumed = (json.loads((tmp_path / d / "freezeframe.json").read_text()) for d in ("reference", "model"))
    def timeless(record: dict) -> dict:
        return {k: v for k, v in record.items() if k != "seconds"}

    assert timeless(resumed["probe"]) == timeless(reference["probe"]) and resumed["probe"]["epochs_run"] == 60


def test_probe_where_it_cannot_run_is_refused_not_skipped(run_cli, tiny_model_dir, tiny_data, tmp_path):
    """It was skipped silently and recorded as run: with the head plan, gradual unfreezing and the baseline."""
    for extra, reason in [(["--freeze", "head"], "the classifier alone trains, which is the probe itself"),
                          (["--freeze", "gradual"], "gradual unfreezing trains the classifier alone first already"),
                          (["--model", "baseline"], "the baseline has no pretrained encoder to probe")]:
        args = ["--model", tiny_model_dir, *extra] if extra[0] != "--model" else extra
        code, _, err = run_cli("train", "--train", tiny_data["train"], "--out", tmp_path / "m", "--probe", *args)
        assert code == 2 and "--probe: " in err and reason in err and "drop --probe" in err, err
        assert not (tmp_path / "m").exists()


def test_members_training_at_once_share_one_computation_of_the_vectors(tiny_model_dir, tiny_data, monkeypatch):
    """Each member's thread computed the vectors through member 1's network, and the first to end switched it back
    to training mode under the other (dropout in its last batches: the probe's scores varied from run to run)."""
    import time

    from freezeframe import probe

    original, calls = probe.sentence_vectors, []

    def slow(*args, **kwargs):
        calls.append(args[1])
        time.sleep(0.2)  # long enough for the other member's thread to arrive
        return original(*args, **kwargs)

    monkeypatch.setattr(probe, "sentence_vectors", slow)
    threads = torch.get_num_threads()
    torch.set_num_threads(2)  # members train at once only where there are threads to split
    try:
        outcome = train_classifier(_run(tiny_data, tiny_model_dir, probe=True, ensemble=2))
    finally:
        torch.set_num_threads(threads)
    assert outcome.meta["members"] == 2
    assert len(calls) == 2, "one computation for the training and one for the validation vectors, shared by the members"
