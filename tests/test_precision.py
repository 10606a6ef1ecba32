"""--precision: bf16 mixed precision where the hardware multiplies bf16 natively, float32 elsewhere."""

import json
from dataclasses import replace

import pytest
import torch

from freezeframe import train


@pytest.mark.parametrize(("native", "trains_encoder", "expected"), [
    (True, True, "bf16"), (True, False, "fp32"), (False, True, "fp32"), (False, False, "fp32"),
])
def test_auto_is_bf16_only_on_a_cpu_with_native_bf16_for_runs_that_train_encoder_layers(monkeypatch, native, trains_encoder, expected):
    monkeypatch.setattr(train, "cpu_multiplies_bf16", lambda: native)
    assert train.resolve_precision("auto", torch.device("cpu"), trains_encoder) == expected
    for fixed in ("fp32", "bf16"):
        assert train.resolve_precision(fixed, torch.device("cpu"), trains_encoder) == fixed


def test_autocast_computes_in_the_chosen_precision():
    layer, x = torch.nn.Linear(4, 4), torch.randn(2, 4)
    with train.autocast_for(torch.device("cpu"), "bf16"):
        assert layer(x).dtype == torch.bfloat16
    for precision in ("fp32", None):  # None: float32 on the CPU (prediction)
        with train.autocast_for(torch.device("cpu"), precision):
            assert layer(x).dtype == torch.float32


def _train(run_cli, tiny_model_dir, tiny_data, out, *options):
    code, _, err = run_cli("train", "--train", tiny_data["train"], "--model", tiny_model_dir, "--out", out,
                           "--epochs", "1", "--quiet", *options)
    assert code == 0, err
    return json.loads((out / "freezeframe.json").read_text())


def test_the_precision_that_ran_is_recorded(run_cli, tiny_model_dir, tiny_data, tmp_path, monkeypatch):
    monkeypatch.setattr(train, "cpu_multiplies_bf16", lambda: True)
    metas = {p: _train(run_cli, tiny_model_dir, tiny_data, tmp_path / p, "--precision", p) for p in ("fp32", "bf16")}
    assert [m["precision"] for m in metas.values()] == ["fp32", "bf16"]
    assert metas["fp32"]["history"][0]["train_loss"] != metas["bf16"]["history"][0]["train_loss"]
    assert _train(run_cli, tiny_model_dir, tiny_data, tmp_path / "auto")["precision"] == "bf16"
    head = _train(run_cli, tiny_model_dir, tiny_data, tmp_path / "head", "--freeze", "head")
    assert head["precision"] == "fp32" and head["settings"]["train"]["precision"] == "auto"
    monkeypatch.setattr(train, "cpu_multiplies_bf16", lambda: False)
    assert _train(run_cli, tiny_model_dir, tiny_data, tmp_path / "plain")["precision"] == "fp32"


def test_an_unknown_precision_is_refused_in_one_line(run_cli, tiny_model_dir, tiny_data, tmp_path):
    code, _, err = run_cli("train", "--train", tiny_data["train"], "--model", tiny_model_dir, "--out", tmp_path / "m",
                           "--precision", "fp8")
    assert code != 0 and err.strip() == "freezeframe: error: --precision must be auto, fp32, bf16 or fp16, got 'fp8'"
    assert not (tmp_path / "m").exists()
    code, _, err = run_cli("train", "--train", tiny_data["train"], "--model", tiny_model_dir, "--out", tmp_path / "m",
                           "--precision", "fp16", "--device", "cpu")
    assert code != 0 and err.strip() == ("freezeframe: error: --precision fp16 needs a CUDA device; "
                                         "on the CPU use bf16 (where it is native) or fp32")
    assert not (tmp_path / "m").exists()
    # with the options, before any file is read or model loaded: the training file here does not exist
    code, _, err = run_cli("train", "--train", tmp_path / "absent.csv", "--model", tiny_model_dir, "--out", tmp_path / "m",
                           "--precision", "fp16", "--device", "cpu", "--freeze", "last-1")
    assert code == 2 and "--precision fp16 needs a CUDA device" in err


class _TinyGradients(torch.nn.Module):
    """Logits scaled so far down that their gradients, about 3e-9, fall below float16's smallest number."""

    def __init__(self) -> None:
        super().__init__()
        self.linear = torch.nn.Linear(4, 3)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.linear(features).float() * 1e-8


def test_fp16_scales_the_loss_so_that_small_gradients_survive():
    from freezeframe.batching import ExampleSet
    from freezeframe.config import TrainConfig

    generator = torch.Generator().manual_seed(0)
    data = ExampleSet([{"features": torch.randn(4, generator=generator)} for _ in range(32)], [i % 3 for i in range(32)])
    config = TrainConfig(lr=1e-2, epochs=1, batch_size=16, weight_decay=0.0, precision="fp16", show_progress=False)
    for precision in ("fp16", "fp32"):
        torch.manual_seed(0)
        model = _TinyGradients()
        before = model.linear.weight.detach().clone()
        train.train_loop(model, data, None, replace(config, precision=precision), torch.device("cpu"), quiet=True)
        assert not torch.equal(model.linear.weight, before), f"{precision} did not train"
    with torch.autocast("cpu", dtype=torch.float16):  # what an unscaled fp16 step would see: no gradient at all
        model = _TinyGradients()
        torch.nn.functional.cross_entropy(model(data.examples[0]["features"][None]), torch.tensor([1])).backward()
    assert not model.linear.weight.grad.any()
