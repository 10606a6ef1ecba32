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
