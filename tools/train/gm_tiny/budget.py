"""Where a training stage runs and how long: the torch device, and a step count fitted to a
wall-clock budget (a lent GPU machine gives minutes, not hours).

`StepBudget(steps, minutes)`: the stage runs `steps` steps, or, with a budget, times its
first `CALIBRATION_STEPS` steps (after `WARMUP_STEPS` untimed ones: CUDA's first kernels
compile and allocate) and from then on runs at most as many as fit `BUDGET_SHARE` of the
budget (the rest is for evaluations and checkpoints). The count it settles on is printed and
written to the stage's checkpoint, so the run is reproduced with `--steps N` and no budget.
Single-threaded: the training loop's own helper.
"""

import time

import torch

WARMUP_STEPS = 5
CALIBRATION_STEPS = 20
BUDGET_SHARE = 0.85


def device_from(name: str) -> torch.device:
    """`cpu` or `cuda[:N]`; one clear error when CUDA is asked for and absent."""
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit(f"--device {name}: CUDA is not available to this torch "
                         f"({torch.__version__})")
    if device.type not in ("cpu", "cuda"):
        raise SystemExit(f"--device {name}: cpu or cuda")
    return device


def cpu_state(module: torch.nn.Module) -> dict:
    """A module's state dict with every tensor on the CPU (checkpoints load anywhere)."""
    return {k: v.detach().cpu() for k, v in module.state_dict().items()}


class StepBudget:
    def __init__(self, steps: int, minutes: float | None, clock=time.monotonic):
        self.steps = steps
        self.seconds = None if minutes is None else 60.0 * minutes
        self.clock = clock
        self.started = clock()
        self.timed_from = None

    def after_step(self, done: int) -> int:
        """Call after each step (`done` steps so far); returns the run's step count."""
        if self.seconds is None:
            return self.steps
        if done == WARMUP_STEPS:
            self.timed_from = self.clock()
        elif done == WARMUP_STEPS + CALIBRATION_STEPS:
            now = self.clock()
            per_step = (now - self.timed_from) / CALIBRATION_STEPS
            left = BUDGET_SHARE * self.seconds - (now - self.started)
            fits = done + max(0, int(left / per_step))
            if fits < self.steps:
                self.steps = fits
            print(f"budget: {per_step * 1000:.1f} ms a step, {self.steps} steps fit "
                  f"{self.seconds / 60:g} minutes", flush=True)
        return self.steps
