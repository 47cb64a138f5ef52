"""Tests of gm_tiny/budget.py: a stage's step count fitted to a wall-clock budget (the lent
GPU machine's minutes), on a clock the test drives, and the device choice's errors.

Needs torch (scripts/test.sh installs it with the export tools); without it the tests skip,
unless LATENTD_REQUIRE_EXPORT_TOOLS=1, when they fail.
"""

import importlib.util
import os
import sys
import unittest

HAVE_TORCH = importlib.util.find_spec("torch") is not None
if not HAVE_TORCH and os.environ.get("LATENTD_REQUIRE_EXPORT_TOOLS") == "1":
    raise RuntimeError("LATENTD_REQUIRE_EXPORT_TOOLS=1 but torch is missing")
if HAVE_TORCH:
    import torch

    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", ".."))
    from tools.train.gm_tiny.budget import (BUDGET_SHARE, CALIBRATION_STEPS, WARMUP_STEPS,
                                            StepBudget, cpu_state, device_from)


class Clock:
    def __init__(self):
        self.now = 100.0

    def __call__(self):
        return self.now


def run(budget: StepBudget, clock: Clock, step_s: float, first_step_s: float) -> int:
    """Steps until the budget says stop; the first WARMUP_STEPS steps cost `first_step_s`."""
    done = 0
    while done < budget.steps:
        clock.now += first_step_s if done < WARMUP_STEPS else step_s
        done += 1
        budget.after_step(done)
    return done


@unittest.skipIf(not HAVE_TORCH, "torch missing")
class StepBudgetTest(unittest.TestCase):
    def test_without_a_budget_the_steps_are_the_steps(self):
        clock = Clock()
        self.assertEqual(run(StepBudget(40, None, clock), clock, 10.0, 10.0), 40)

    def test_the_steps_that_fit_are_run_after_a_slow_start(self):
        clock = Clock()
        # 2 minutes; 5 slow first steps (2 s), then 50 ms a step.
        done = run(StepBudget(100_000, 2.0, clock), clock, 0.05, 2.0)
        spent = WARMUP_STEPS * 2.0 + (done - WARMUP_STEPS) * 0.05
        self.assertLessEqual(spent, BUDGET_SHARE * 120.0 + 0.05)
        self.assertGreater(spent, BUDGET_SHARE * 120.0 - 0.1)

    def test_a_budget_never_raises_the_step_count(self):
        clock = Clock()
        self.assertEqual(run(StepBudget(300, 60.0, clock), clock, 0.01, 0.01), 300)

    def test_a_budget_spent_by_calibration_stops_there(self):
        clock = Clock()
        done = run(StepBudget(1000, 0.01, clock), clock, 1.0, 1.0)
        self.assertEqual(done, WARMUP_STEPS + CALIBRATION_STEPS)

    def test_devices(self):
        self.assertEqual(device_from("cpu").type, "cpu")
        if not torch.cuda.is_available():
            with self.assertRaisesRegex(SystemExit, "CUDA is not available"):
                device_from("cuda")
        with self.assertRaisesRegex(SystemExit, "cpu or cuda"):
            device_from("meta")
        state = cpu_state(torch.nn.Linear(2, 2))
        self.assertTrue(all(v.device.type == "cpu" for v in state.values()))


if __name__ == "__main__":
    unittest.main()
