"""AdamW with its learning-rate schedule, on torch's fused AdamW kernel.

``torch.optim.AdamW(fused=True)`` with a ``LambdaLR`` scheduler runs the same kernel and gives the
same updates, bit for bit (``tests/test_optim.py``). This class exists because every method of
``torch.optim.Optimizer`` imports ``torch._dynamo`` on first use: about a second of every training
run on 2 cores (a twentieth of training the default model), for a compiler training never uses.
"""

from __future__ import annotations

from collections.abc import Callable

import torch


class FusedAdamW:
    """AdamW (decoupled weight decay) over parameter groups; each group's learning rate is its
    ``lr`` times ``schedule(steps taken so far)``, as ``LambdaLR`` would set it.

    Args:
        groups: dicts with ``params`` and their ``lr`` and ``weight_decay`` (other keys are kept).
        schedule: learning-rate factor by step, from step 0.
        betas, eps: as for ``torch.optim.AdamW``.
    """

    def __init__(self, groups: list[dict], schedule: Callable[[int], float] = lambda step: 1.0,
                 betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8) -> None:
        self.param_groups = [{**group, "params": list(group["params"]), "base_lr": group["lr"]} for group in groups]
        self.schedule, self.betas, self.eps = schedule, betas, eps
        self.steps = 0
        self.state: dict[torch.Tensor, dict[str, torch.Tensor]] = {}
        self._set_rates()

    def zero_grad(self) -> None:
        for group in self.param_groups:
            for param in group["params"]:
                param.grad = None

    @torch.no_grad()
    def step(self) -> None:
        """One update of every parameter that has a gradient, then the next step's learning rates."""
        for group in self.param_groups:
            by_kind: dict[tuple, list[torch.Tensor]] = {}
            for param in group["params"]:
                if param.grad is not None:
                    by_kind.setdefault((param.device, param.dtype), []).append(param)
            for params in by_kind.values():
                states = [self._state(p) for p in params]
                steps = [s["step"] for s in states]
                torch._foreach_add_(steps, 1)
                torch._fused_adamw_(
                    params, [p.grad for p in params], [s["exp_avg"] for s in states], [s["exp_avg_sq"] for s in states],
                    [], steps, lr=group["lr"], beta1=self.betas[0], beta2=self.betas[1],
                    weight_decay=group["weight_decay"], eps=self.eps, amsgrad=False, maximize=False,
                    grad_scale=None, found_inf=None,
                )
        self.steps += 1
        self._set_rates()

    def state_dict(self) -> dict:
        """Moment estimates by parameter position (group by group), and the step count."""
        params = [p for group in self.param_groups for p in group["params"]]
        return {"steps": self.steps, "state": {i: dict(self.state[p]) for i, p in enumerate(params) if p in self.state}}

    def load_state_dict(self, saved: dict) -> None:
        params = [p for group in self.param_groups for p in group["params"]]
        if any(not 0 <= int(i) < len(params) for i in saved["state"]):
            raise ValueError("the optimizer state does not fit these parameters")
        self.state = {}
        for i, values in saved["state"].items():
            param = params[int(i)]
            if any(value.shape != param.shape for name, value in values.items() if name != "step"):
                raise ValueError("the optimizer state does not fit these parameters")
            self.state[param] = {name: value.to(param.device) for name, value in values.items()}
        self.steps = int(saved["steps"])
        self._set_rates()

    def _state(self, param: torch.Tensor) -> dict[str, torch.Tensor]:
        if param not in self.state:  # as torch's fused AdamW starts them
            self.state[param] = {"step": torch.zeros((), dtype=torch.float32, device=param.device),
                                 "exp_avg": torch.zeros_like(param, memory_format=torch.preserve_format),
                                 "exp_avg_sq": torch.zeros_like(param, memory_format=torch.preserve_format)}
        return self.state[param]

    def _set_rates(self) -> None:
        factor = self.schedule(self.steps)
        for group in self.param_groups:
            group["lr"] = group["base_lr"] * factor
