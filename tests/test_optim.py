import pytest
import torch
from torch import nn

from freezeframe.freeze import optimizer_groups
from freezeframe.optim import FusedAdamW
from freezeframe.train import warmup_linear


def _network(seed: int) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(6, 8), nn.LayerNorm(8), nn.Linear(8, 3))


def _train(network: nn.Module, optimizer, steps: range, after_step=lambda: None) -> None:
    for step in steps:
        generator = torch.Generator().manual_seed(step)
        inputs, labels = torch.randn(5, 6, generator=generator), torch.randint(0, 3, (5,), generator=generator)
        optimizer.zero_grad()
        nn.functional.cross_entropy(network(inputs), labels).backward()
        optimizer.step()
        after_step()


def _groups(network: nn.Module) -> list[dict]:
    return [{"params": [p for p in network.parameters() if p.ndim == 2], "lr": 3e-2, "weight_decay": 0.1},
            {"params": [p for p in network.parameters() if p.ndim == 1], "lr": 1e-2, "weight_decay": 0.0}]


def test_matches_torch_fused_adamw_with_lambda_lr_bit_for_bit():
    ours, theirs = _network(0), _network(0)
    schedule = warmup_linear(12, 3)
    optimizer = FusedAdamW(_groups(ours), schedule)
    reference = torch.optim.AdamW(_groups(theirs), fused=True)
    scheduler = torch.optim.lr_scheduler.LambdaLR(reference, schedule)
    _train(ours, optimizer, range(12))
    _train(theirs, reference, range(12), scheduler.step)
    for mine, torchs in zip(ours.parameters(), theirs.parameters(), strict=True):
        assert torch.equal(mine, torchs)
    assert [g["lr"] for g in optimizer.param_groups] == [g["lr"] for g in reference.param_groups]


def test_state_dict_resumes_exactly():
    whole, split = _network(1), _network(1)
    schedule = warmup_linear(10, 2)
    _train(whole, FusedAdamW(_groups(whole), schedule), range(10))
    first = FusedAdamW(_groups(split), schedule)
    _train(split, first, range(4))
    saved = first.state_dict()
    second = FusedAdamW(_groups(split), schedule)
    second.load_state_dict(saved)
    assert second.steps == 4 and second.param_groups[0]["lr"] == pytest.approx(3e-2 * schedule(4))
    _train(split, second, range(4, 10))
    for a, b in zip(whole.parameters(), split.parameters(), strict=True):
        assert torch.equal(a, b)


def test_frozen_and_gradless_parameters_are_left_alone():
    network = _network(2)
    network[0].requires_grad_(False)
    frozen = network[0].weight.clone()
    optimizer = FusedAdamW(optimizer_groups(network, 1e-2, 0.01))
    _train(network, optimizer, range(3))
    assert torch.equal(network[0].weight, frozen)
    assert network[0].weight not in optimizer.state


def test_refuses_a_state_of_other_parameters():
    optimizer = FusedAdamW(_groups(_network(3)))
    wider = nn.Sequential(nn.Linear(6, 9), nn.LayerNorm(9), nn.Linear(9, 3))
    other = FusedAdamW(_groups(wider))
    _train(wider, other, range(1))
    with pytest.raises(ValueError, match="does not fit"):
        optimizer.load_state_dict(other.state_dict())


def test_a_run_warms_up_over_its_warmup_ratio_then_decays_linearly_to_zero(tiny_model_dir, tiny_data, monkeypatch):
    """The rates each step of a real run applies, per group: 60 rows in batches of 8 for 3 epochs are 24 steps, a
    warmup ratio of 0.2 warms up over 4 of them; every group (here the classifier's --head-lr and the layers') follows."""
    from freezeframe.config import DataConfig, ModelConfig, RunConfig, TrainConfig
    from freezeframe.fit import train_classifier

    applied: list[dict[float, float]] = []
    step = FusedAdamW.step

    def record(self) -> None:
        applied.append({group["base_lr"]: group["lr"] for group in self.param_groups})
        step(self)

    monkeypatch.setattr(FusedAdamW, "step", record)
    train_classifier(RunConfig(DataConfig(tiny_data["train"]), ModelConfig(str(tiny_model_dir), freeze="last-1"),
                               TrainConfig(lr=1e-3, head_lr=1e-2, epochs=3, batch_size=8, warmup_ratio=0.2, show_progress=False)))
    factors = [1 / 4, 2 / 4, 3 / 4, 1] + [(24 - s) / 20 for s in range(4, 24)]  # the peak at steps 3 and 4, 1/20 at the last
    assert len(applied) == 24 and {1e-3, 1e-2} == set(applied[0])
    for rates, factor in zip(applied, factors):
        assert all(rate == pytest.approx(base * factor) for base, rate in rates.items())
