"""Checkpoints and resume: a run killed (SIGKILL) or interrupted (Ctrl-C) and resumed ends exactly
like an uninterrupted one; resuming with other settings or data is refused; same seed, same weights."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from freezeframe.checkpoint import CHECKPOINT_DIR, STATE_FILE, MemberCheckpoint, read_state
from freezeframe.errors import FreezeframeError

EPOCHS = 4


def train_args(model: Path, data: Path, out: Path, *extra: str, valid_fraction: str = "0.15") -> list[str]:
    # mean pooling, a high rate and last-2 (cached prefix): the tiny model's best epoch is not the first
    return ["train", "--train", str(data), "--model", str(model), "--out", str(out), "--freeze", "last-2",
            "--pooling", "mean", "--lr", "1e-2", "--epochs", str(EPOCHS), "--patience", str(EPOCHS), "--seed", "1",
            "--valid-fraction", valid_fraction, "--quiet", *extra]


def looks_complete(out: Path) -> bool:
    return all((out / name).exists() for name in ("freezeframe.json", "config.json", "model.safetensors"))


def outcome(out: Path) -> dict:
    meta = json.loads((out / "freezeframe.json").read_text())
    return {"best_epoch": meta["best_epoch"], "metrics": meta["validation_metrics"],
            "valid_losses": [r["valid_loss"] for r in meta["history"]],
            "train_losses": [r["train_loss"] for r in meta["history"]]}


def same_weights(a: Path, b: Path) -> bool:
    left, right = load_file(a / "model.safetensors"), load_file(b / "model.safetensors")
    return left.keys() == right.keys() and all(torch.equal(left[k], right[k]) for k in left)


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory, tiny_model_dir, tiny_data) -> Path:
    from freezeframe.cli import main

    out = tmp_path_factory.mktemp("resume") / "reference"
    main(train_args(tiny_model_dir, tiny_data["train"], out))
    return out


def test_same_seed_gives_identical_metrics_and_weights(run_cli, uninterrupted, tiny_model_dir, tiny_data, tmp_path):
    code, _, err = run_cli(*train_args(tiny_model_dir, tiny_data["train"], tmp_path / "again"))
    assert code == 0, err
    assert outcome(tmp_path / "again") == outcome(uninterrupted)
    assert same_weights(tmp_path / "again", uninterrupted)
    assert not (uninterrupted / CHECKPOINT_DIR).exists(), "the checkpoint is removed after success"


def test_sigkill_then_resume_ends_like_an_uninterrupted_run(run_cli, uninterrupted, tiny_model_dir, tiny_data,
                                                            tmp_path):
    out = tmp_path / "model"
    command = [sys.executable, "-m", "freezeframe", *train_args(tiny_model_dir, tiny_data["train"], out)]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                               env={**os.environ, "HF_HUB_OFFLINE": "1"})
    deadline = time.monotonic() + 180
    while not (out / CHECKPOINT_DIR / STATE_FILE.format(0)).exists():
        if process.poll() is not None:
            pytest.fail(f"training ended before its first checkpoint: {process.stderr.read().decode()}")
        if time.monotonic() > deadline:
            process.kill()
            pytest.fail("no checkpoint within 180 s")
        time.sleep(0.005)
    process.send_signal(signal.SIGKILL)
    process.wait()
    process.stderr.close()
    assert not looks_complete(out), "a killed run must not leave a directory that looks complete"
    assert 1 <= read_state(out / CHECKPOINT_DIR)["members"][0]["epoch"] < EPOCHS
    code, _, err = run_cli(*train_args(tiny_model_dir, tiny_data["train"], out, "--resume"))
    assert code == 0, err
    assert "resuming from the checkpoint of epoch" in err
    assert outcome(out) == outcome(uninterrupted)
    assert same_weights(out, uninterrupted)
    assert not (out / CHECKPOINT_DIR).exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")], "no temporary left beside --out"


def test_ctrl_c_saves_says_how_to_resume_and_refuses_changes(run_cli, uninterrupted, tiny_model_dir, tiny_data,
                                                             tmp_path, ctrl_c_after):
    out = tmp_path / "model"
    args = train_args(tiny_model_dir, tiny_data["train"], out)
    with ctrl_c_after(2):
        code, _, err = run_cli(*args)
    assert code == 130
    last = err.strip().splitlines()[-1]
    assert f"interrupted; epochs 1-2 of {EPOCHS} are saved" in last and "--resume" in last
    assert "Traceback" not in err and not looks_complete(out)

    code, _, err = run_cli(*args)
    assert code == 2 and "--resume" in err and "--overwrite" in err
    code, _, err = run_cli(*[a if a != "1e-2" else "2e-2" for a in args], "--resume")
    assert code == 2 and "--lr 0.02 (checkpoint: 0.01)" in err
    code, _, err = run_cli(*args, "--no-cache", "--cache-budget", "64", "--resume")
    assert code == 2 and "--no-cache (checkpoint: --cache)" in err and "--cache-budget 64.0 (checkpoint: its default)" in err, err
    other = tmp_path / "other.csv"
    other.write_text(Path(tiny_data["train"]).read_text() + "one more camera shot,Cinematography\n")
    code, _, err = run_cli(*[str(other) if a == str(tiny_data["train"]) else a for a in args], "--resume")
    assert code == 2 and "the --train file has different contents" in err

    (tmp_path / ".model.tmp-cut-short").mkdir()  # as a kill during the final write leaves it
    code, _, err = run_cli(*args, "--resume", "--keep-checkpoint")
    assert code == 0, err
    assert not (tmp_path / ".model.tmp-cut-short").exists()
    assert outcome(out) == outcome(uninterrupted)
    assert (out / CHECKPOINT_DIR / STATE_FILE.format(0)).exists(), "--keep-checkpoint keeps it inside the model directory"


def test_ctrl_c_while_an_epoch_is_being_saved_still_saves_it(run_cli, uninterrupted, tiny_model_dir, tiny_data,
                                                            tmp_path, monkeypatch):
    from freezeframe.checkpoint import CheckpointStore

    put = CheckpointStore._put

    def ctrl_c_then_put(self, index, state):  # Ctrl-C lands as the epoch's state starts to be serialized
        if state["epoch"] == 1:
            os.kill(os.getpid(), signal.SIGINT)
        put(self, index, state)

    monkeypatch.setattr(CheckpointStore, "_put", ctrl_c_then_put)
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)  # as in a terminal (not a background job)
    out = tmp_path / "model"
    try:
        code, _, err = run_cli(*train_args(tiny_model_dir, tiny_data["train"], out))
    finally:
        signal.signal(signal.SIGINT, previous)
    assert code == 130 and f"interrupted; epoch 1 of {EPOCHS} is saved" in err, err
    monkeypatch.setattr(CheckpointStore, "_put", put)
    code, _, err = run_cli(*train_args(tiny_model_dir, tiny_data["train"], out, "--resume"))
    assert code == 0, err
    assert outcome(out) == outcome(uninterrupted) and same_weights(out, uninterrupted)


def test_ctrl_c_as_the_last_epoch_ends_saves_it_and_during_the_final_write_finishes_the_model(
        run_cli, uninterrupted, tiny_model_dir, tiny_data, tmp_path, monkeypatch):
    from freezeframe import tokenizer, train

    previous = signal.signal(signal.SIGINT, signal.default_int_handler)  # as in a terminal (not a background job)
    try:
        record = train.EpochRecord

        def last_epoch_then_ctrl_c(epoch, *rest):  # while the last epoch is being logged
            if epoch == EPOCHS:
                os.kill(os.getpid(), signal.SIGINT)
            return record(epoch, *rest)

        monkeypatch.setattr(train, "EpochRecord", last_epoch_then_ctrl_c)
        out = tmp_path / "model"
        code, _, err = run_cli(*train_args(tiny_model_dir, tiny_data["train"], out))
        assert code == 130 and f"interrupted; epochs 1-{EPOCHS} of {EPOCHS} are saved" in err, err
        monkeypatch.setattr(train, "EpochRecord", record)
        code, _, err = run_cli(*train_args(tiny_model_dir, tiny_data["train"], out, "--resume"))
        assert code == 0, err
        assert outcome(out) == outcome(uninterrupted) and same_weights(out, uninterrupted)

        write = tokenizer.record_max_length

        def ctrl_c_while_writing(*args):
            os.kill(os.getpid(), signal.SIGINT)
            write(*args)

        monkeypatch.setattr(tokenizer, "record_max_length", ctrl_c_while_writing)
        again = tmp_path / "again"
        code, _, err = run_cli(*train_args(tiny_model_dir, tiny_data["train"], again))
        assert code == 130 and "the model was finished first and is saved in" in err, err
        assert looks_complete(again) and same_weights(again, uninterrupted)
    finally:
        signal.signal(signal.SIGINT, previous)


def test_an_overwrite_stopped_before_its_first_save_keeps_the_earlier_checkpoint(run_cli, uninterrupted, tiny_model_dir,
                                                                                 tiny_data, tmp_path, ctrl_c_after,
                                                                                 monkeypatch):
    from freezeframe.checkpoint import CheckpointStore

    out = tmp_path / "model"
    args = train_args(tiny_model_dir, tiny_data["train"], out)
    with ctrl_c_after(2):
        assert run_cli(*args)[0] == 130
    saved = (out / CHECKPOINT_DIR / STATE_FILE.format(0)).read_bytes()

    def stopped(self, index, state):
        raise KeyboardInterrupt

    monkeypatch.setattr(CheckpointStore, "_put", stopped)
    code, _, err = run_cli(*args, "--overwrite")
    assert code == 130 and "still holds the earlier run's checkpoint" in err, err
    assert (out / CHECKPOINT_DIR / STATE_FILE.format(0)).read_bytes() == saved
    monkeypatch.undo()
    code, _, err = run_cli(*args, "--resume")
    assert code == 0 and "resuming from the checkpoint of epoch 2" in err, err
    assert outcome(out) == outcome(uninterrupted) and same_weights(out, uninterrupted)


def test_resume_without_validation_data_keeps_the_last_epoch(run_cli, tiny_model_dir, tiny_data, tmp_path, ctrl_c_after):
    # nothing held out: the kept weights are the last epoch's, not those of the epoch the run resumed from
    reference, out = tmp_path / "reference", tmp_path / "model"
    args = train_args(tiny_model_dir, tiny_data["train"], out, valid_fraction="0")
    code, _, err = run_cli(*train_args(tiny_model_dir, tiny_data["train"], reference, valid_fraction="0"))
    assert code == 0, err
    with ctrl_c_after(2):
        assert run_cli(*args)[0] == 130
    code, _, err = run_cli(*args, "--resume")
    assert code == 0, err
    assert outcome(out) == outcome(reference)
    assert outcome(out)["best_epoch"] == EPOCHS and outcome(out)["metrics"] is None
    assert same_weights(out, reference)


def test_resume_without_a_checkpoint_starts_over_or_refuses(run_cli, uninterrupted, tiny_model_dir, tiny_data,
                                                            tmp_path):
    code, _, err = run_cli(*train_args(tiny_model_dir, tiny_data["train"], uninterrupted, "--resume"))
    assert code == 2 and "no checkpoint to resume" in err
    fresh = tmp_path / "fresh"
    code, _, err = run_cli(*train_args(tiny_model_dir, tiny_data["train"], fresh, "--resume", "--epochs", "1"))
    assert code == 0 and "starting from epoch 1" in err
    assert looks_complete(fresh)


@pytest.mark.parametrize("keep", [False, True])
def test_the_last_epoch_is_checkpointed_only_when_the_checkpoint_is_kept(run_cli, tiny_model_dir, tiny_data, tmp_path,
                                                                       monkeypatch, keep):
    saved_epochs: list[int] = []
    save = MemberCheckpoint.save

    def counting_save(self, state):
        saved_epochs.append(state["epoch"])
        save(self, state)

    monkeypatch.setattr(MemberCheckpoint, "save", counting_save)
    out = tmp_path / "model"
    code, _, err = run_cli(*train_args(tiny_model_dir, tiny_data["train"], out, *(["--keep-checkpoint"] if keep else [])))
    assert code == 0, err
    # the final model is written right after the last epoch, so its checkpoint would only be deleted
    assert saved_epochs == list(range(1, EPOCHS + (1 if keep else 0)))
    assert (out / CHECKPOINT_DIR / STATE_FILE.format(0)).exists() == keep
    if keep:
        assert read_state(out / CHECKPOINT_DIR)["members"][0]["epoch"] == EPOCHS


def test_resume_knows_the_model_directory_under_another_name(run_cli, uninterrupted, tiny_model_dir, tiny_data, tmp_path,
                                                             ctrl_c_after, monkeypatch):
    """Before: --model was compared as text, so resuming from another working directory (or with a trailing slash)
    was refused ('--model tiny-bert0/ (checkpoint: /tmp/.../tiny-bert0)'), while --train's path may change."""
    import shutil

    out = tmp_path / "model"
    with ctrl_c_after(2):
        assert run_cli(*train_args(tiny_model_dir, tiny_data["train"], out))[0] == 130
    other = shutil.copytree(tiny_model_dir, tmp_path / "other")  # the same files, another directory: refused
    code, _, err = run_cli(*train_args(other, tiny_data["train"], out, "--resume"))
    assert code == 2 and f"--model {other.resolve()}" in err, err
    monkeypatch.chdir(tiny_model_dir.parent)
    code, _, err = run_cli(*train_args(f"{tiny_model_dir.name}/", tiny_data["train"], out, "--resume"))
    assert code == 0, err
    assert outcome(out) == outcome(uninterrupted) and same_weights(out, uninterrupted)


def test_a_second_train_into_the_same_out_is_refused_while_the_first_runs(run_cli, tiny_model_dir, tiny_data, tmp_path,
                                                                           monkeypatch):
    """Before: a second run started before the first had saved an epoch trained too, the two interleaving their
    checkpoints in OUT/checkpoint, and both said 'model saved': the one that ended last had silently replaced the
    other's model. (Once a checkpoint is there, a second run is refused without --resume or --overwrite, and with
    them it raced the same way.)"""
    from freezeframe import train

    out = tmp_path / "model"
    epoch, second = train._train_epoch, []

    def start_another_then_train(*args, **kwargs):  # as the first run's first epoch starts, a second process starts
        if not second:
            command = [sys.executable, "-m", "freezeframe", *train_args(tiny_model_dir, tiny_data["train"], out, "--seed", "2")]
            second.append(subprocess.run(command, capture_output=True, text=True, timeout=300, check=False,
                                         env={**os.environ, "HF_HUB_OFFLINE": "1"}))
        return epoch(*args, **kwargs)

    monkeypatch.setattr(train, "_train_epoch", start_another_then_train)
    code, _, err = run_cli(*train_args(tiny_model_dir, tiny_data["train"], out))
    assert code == 0, err
    refused = second[0]
    assert refused.returncode == 2 and refused.stderr.count("\n") == 1, refused.stderr
    assert f"--out {out} is being written by another freezeframe process" in refused.stderr
    assert json.loads((out / "freezeframe.json").read_text())["settings"]["train"]["seed"] == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"], "the claim leaves nothing beside --out"


def test_a_baseline_checkpoint_from_before_the_word_tokenizer_version_is_not_resumed(tiny_data, tiny_model_dir):
    """Its embedding rows follow the ASCII vocabulary; resuming would rebuild another one and pair words with
    other words' vectors (or fail on the shapes)."""
    from freezeframe.config import DataConfig, ModelConfig, RunConfig
    from freezeframe.fingerprint import fingerprint_differences, run_fingerprint

    current = run_fingerprint(RunConfig(DataConfig(tiny_data["train"]), ModelConfig(model="baseline")))
    earlier = json.loads(json.dumps(current))
    del earlier["settings"]["model.word_tokenizer"]
    assert fingerprint_differences(current, current) == []
    assert fingerprint_differences(earlier, current) == [
        ("the baseline cuts words with tokenizer version 2 (checkpoint: version 1, whose vocabulary this version cannot "
         "rebuild: only the earlier freezeframe that wrote it can resume it)")]
    encoder = run_fingerprint(RunConfig(DataConfig(tiny_data["train"]), ModelConfig(model=str(tiny_model_dir))))
    assert "model.word_tokenizer" not in encoder["settings"]


def test_each_data_file_is_read_for_its_digest_once(tiny_data, tmp_path, monkeypatch):
    """The checkpoint's fingerprint and freezeframe.json's data record name the same digests: the files are hashed
    once, for the fingerprint, and the record takes them from there (a large file was read twice)."""
    import freezeframe.fingerprint
    import freezeframe.fit
    from freezeframe.config import DataConfig, ModelConfig, RunConfig, TrainConfig
    from freezeframe.storage import file_sha256

    hashed = []

    def counted(path):
        hashed.append(Path(path).name)
        return file_sha256(path)

    monkeypatch.setattr(freezeframe.fingerprint, "file_sha256", counted)
    monkeypatch.setattr(freezeframe.fit, "file_sha256", counted)
    run = RunConfig(DataConfig(tiny_data["train"], valid=tiny_data["test"]), ModelConfig(model="baseline"),
                    TrainConfig(epochs=1, show_progress=False))
    freezeframe.fit.train_classifier(run, out=tmp_path / "model")
    assert sorted(hashed) == ["test.csv", "train.csv"]
    meta = json.loads((tmp_path / "model" / "freezeframe.json").read_text())
    assert meta["data"]["files"] == {str(tiny_data[role]): file_sha256(tiny_data[role]) for role in ("train", "test")}


def test_a_checkpoint_whose_head_orders_the_classes_otherwise_is_not_resumed(tmp_path):
    """Before class order put numbers by value, '10' came before '2': a checkpoint of that time holds head rows in
    that order, and resuming it under the new order would train each row toward another class."""
    from freezeframe.checkpoint import CheckpointStore

    numbers = [str(i) for i in range(12)]
    saved = {"fingerprint": {"settings": {}, "data": {}}, "members": {}, "count": 1}  # written before classes were recorded
    with pytest.raises(FreezeframeError, match=r"from class 3 on, its head orders the classes '10', '11', '2', '3', "
                                               r"'4', '5' and 4 more, this version '2', '3', '4', '5', '6', '7' and 4 more"):
        CheckpointStore(tmp_path, {"settings": {}, "data": {}}, saved).record_classes(numbers)
    grades = ["a", "b", "c", "d", "e", "f", "grade 2", "grade 10"]  # the first six shown agree: the message starts later
    with pytest.raises(FreezeframeError, match=r"from class 7 on, its head orders the classes 'grade 10', 'grade 2', "
                                               r"this version 'grade 2', 'grade 10';"):
        CheckpointStore(tmp_path, {"settings": {}, "data": {}}, saved).record_classes(grades)
    names = ["Characters", "Cinematography", "Story"]
    CheckpointStore(tmp_path, {"settings": {}, "data": {}}, saved).record_classes(names)  # sorted() agrees: resumed
    recorded = {"fingerprint": {"settings": {}, "data": {}, "classes": numbers}, "members": {}, "count": 1}
    store = CheckpointStore(tmp_path, {"settings": {}, "data": {}}, recorded)
    store.record_classes(numbers)
    assert store.fingerprint["classes"] == numbers  # saved with every epoch from now on
