"""Gradual unfreezing: one more layer per epoch, recorded, and the cache follows the plan."""

from __future__ import annotations

import json

import torch

from freezeframe.freeze import FreezePlan


def test_stages_grow_one_layer_per_epoch():
    plan = FreezePlan("gradual-2")
    assert [plan.stage(e, 4).spec for e in range(1, 6)] == ["last-0", "last-1", "last-2", "last-2", "last-2"]
    assert FreezePlan("gradual").stage(9, 4).spec == "last-4"


def test_gradual_training_unfreezes_top_down(run_cli, tmp_path, tiny_model_dir, tiny_data):
    out = tmp_path / "gradual"
    code, _, err = run_cli("train", "--train", tiny_data["train"], "--model", tiny_model_dir, "--out", out,
                           "--freeze", "gradual-2", "--epochs", "4", "--patience", "4", "--lr", "1e-3", "--quiet")
    assert code == 0, err
    meta = json.loads((out / "freezeframe.json").read_text())
    schedule = meta["freeze"]["schedule"]
    assert [s["plan"] for s in schedule] == ["last-0", "last-1", "last-2"]
    assert [s["from_epoch"] for s in schedule] == [1, 2, 3]
    assert schedule[0]["trainable_parameters"] < schedule[1]["trainable_parameters"] < schedule[2]["trainable_parameters"]
    assert meta["cache"] == {"used": True, "level": "rebuilt when a layer unfreezes"}
    from freezeframe.encoder import load_pretrained
    from freezeframe.predict import load_classifier

    original, _ = load_pretrained(str(tiny_model_dir), meta["labels"], pooling="mean")
    trained = dict(load_classifier(out, device="cpu").model.plan_parameters())
    # the kept weights are those of the best epoch: layers unfrozen by then have trained, no others
    depth = min(meta["best_epoch"] - 1, 2)
    trained_prefixes = ("classifier.",) + tuple(f"bert.encoder.layer.{3 - i}." for i in range(depth))
    for name, param in original.plan_parameters():
        changed = not torch.equal(param, trained[name])
        assert changed == name.startswith(trained_prefixes), name


def test_inspect_shows_a_gradual_plan(run_cli, tiny_model_dir):
    code, out, _ = run_cli("inspect", "--model", tiny_model_dir, "--freeze", "gradual-2")
    assert code == 0 and "layer 2" in out and "one more layer per epoch" in out


def test_a_schedule_too_short_for_its_depth_is_said_and_inspect_shows_what_trained(run_cli, tmp_path, tiny_model_dir,
                                                                                   tiny_data):
    out = tmp_path / "short"
    code, _, err = run_cli("train", "--train", tiny_data["train"], "--model", tiny_model_dir, "--out", out,
                           "--freeze", "gradual-3", "--epochs", "2", "--lr", "1e-3")
    assert code == 0, err
    assert "--freeze gradual-3: 2 epoch(s) unfreeze only 1 of its 3 layers" in err and "--epochs 4 or more" in err
    code, shown, _ = run_cli("inspect", "--model", out)
    assert code == 0 and "gradual, as trained: last-0 from epoch 1, last-1 from epoch 2" in shown
    trained_layers = [line.split()[1] for line in shown.splitlines() if line.startswith("layer ") and "trainable" in line]
    assert trained_layers == ["3"], shown  # the last stage reached (last-1), not the plan's full depth
    assert "the kept epoch" not in shown
    meta = json.loads((out / "freezeframe.json").read_text())
    (out / "freezeframe.json").write_text(json.dumps(meta | {"best_epoch": 1}))  # as early stopping keeps epoch 1
    code, shown, _ = run_cli("inspect", "--model", out)
    assert code == 0 and "(the last stage is shown above; the kept epoch, 1 of 2, trained under last-0)" in shown, shown


def _schedule(out) -> list[tuple[int, str, int]]:
    meta = json.loads((out / "freezeframe.json").read_text())
    return [(s["from_epoch"], s["plan"], s["trainable_parameters"]) for s in meta["freeze"]["schedule"]]


def test_the_schedule_is_recorded_once_for_an_ensemble_and_whole_after_a_resume(run_cli, tmp_path, tiny_model_dir,
                                                                               tiny_data, ctrl_c_after):
    """Each member's hook appended its stages (an ensemble of two listed every stage twice), and a resumed run
    recorded only the stages from the epoch it resumed at."""
    args = ("train", "--train", tiny_data["train"], "--model", tiny_model_dir, "--freeze", "gradual-2",
            "--epochs", "3", "--lr", "1e-3", "--quiet")
    code, _, err = run_cli(*args, "--out", tmp_path / "two", "--ensemble", "2", "--no-cache")
    assert code == 0, err
    expected = _schedule(tmp_path / "two")
    assert [stage[:2] for stage in expected] == [(1, "last-0"), (2, "last-1"), (3, "last-2")]
    # it recorded a cache "rebuilt when a layer unfreezes" that --no-cache had turned off
    assert json.loads((tmp_path / "two" / "freezeframe.json").read_text())["cache"] == {"used": False, "reason": "--no-cache"}
    code, shown, _ = run_cli("inspect", "--model", tmp_path / "two")
    assert "as trained: last-0 from epoch 1, last-1 from epoch 2, last-2 from epoch 3 (" in shown, shown
    resumed = tmp_path / "resumed"
    with ctrl_c_after(2):
        assert run_cli(*args, "--out", resumed, "--ensemble", "1")[0] == 130
    code, _, err = run_cli(*args, "--out", resumed, "--ensemble", "1", "--resume")
    assert code == 0, err
    assert _schedule(resumed) == expected


def test_gradual_unfreezing_of_the_baseline_is_refused_in_one_line(run_cli, tmp_path, tiny_data):
    """The baseline has no encoder layers to unfreeze: train stopped on an AttributeError (an internal error), and
    inspect showed a plan 'down to 0 layers'."""
    out = tmp_path / "baseline"
    code, _, err = run_cli("train", "--train", tiny_data["train"], "--model", "baseline", "--out", out,
                           "--freeze", "gradual", "--epochs", "2", "--quiet")
    assert code == 2 and err.strip() == "freezeframe: error: --freeze gradual: the model has no encoder layers; use full or head"
    assert not out.exists()
    code, _, err = run_cli("inspect", "--model", "baseline", "--freeze", "gradual")
    assert code == 2 and "--freeze gradual: the model has no encoder layers" in err


def test_a_cache_over_the_budget_is_recorded_as_not_used(tiny_model_dir, tiny_data):
    """Each stage's cache pass checks --cache-budget; freezeframe.json said the cache was used all the same."""
    from freezeframe.config import DataConfig, ModelConfig, RunConfig, TrainConfig
    from freezeframe.fit import train_classifier

    def cache(budget_mb: float) -> dict:
        run = RunConfig(DataConfig(tiny_data["train"], valid_fraction=0.2), ModelConfig(str(tiny_model_dir), freeze="gradual"),
                        TrainConfig(epochs=2, show_progress=False, cache_budget_mb=budget_mb))
        return train_classifier(run).meta["cache"]

    assert cache(1e-4) == {"used": False, "reason": "over budget", "bytes_needed": 7680}  # not even the head's vectors
    partly = cache(0.05)  # the head's vectors (epoch 1) fit, the hidden states from epoch 2 on do not
    assert partly["used"] and partly["not_used"]["reason"] == "over budget"


def test_a_gradual_run_resumed_mid_stage_ends_with_the_weights_of_an_uninterrupted_one(run_cli, tmp_path, tiny_model_dir,
                                                                                      tiny_data, ctrl_c_after):
    """The resumed run starts with a fresh hook: it must apply the stage of the epoch it resumes at and rebuild that
    stage's cache (the input of layer 3 for gradual-1 at epoch 3), not the head's of epoch 1."""
    from safetensors.torch import load_file

    args = ("train", "--train", tiny_data["train"], "--model", tiny_model_dir, "--freeze", "gradual-1", "--epochs", "4",
            "--lr", "1e-2", "--quiet")
    assert run_cli(*args, "--out", tmp_path / "whole")[0] == 0
    with ctrl_c_after(2):
        assert run_cli(*args, "--out", tmp_path / "resumed")[0] == 130
    code, _, err = run_cli(*args, "--out", tmp_path / "resumed", "--resume")
    assert code == 0, err
    whole, resumed = load_file(tmp_path / "whole" / "model.safetensors"), load_file(tmp_path / "resumed" / "model.safetensors")
    assert whole.keys() == resumed.keys() and all(torch.equal(whole[name], resumed[name]) for name in whole)
