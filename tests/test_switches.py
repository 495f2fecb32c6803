"""The scale-out switches give the loss (and weights) training gives without them.

- activation checkpointing (``model.gradient_checkpointing=true``): exact; every block is recomputed in the
  backward pass from the same inputs with the same kernels, so loss, gradients and a whole training run are
  bit-for-bit those without it (asserted with tolerances of 1e-6 / 1e-5 all the same).
- ``torch.compile`` (``compile.enabled=true``): the same maths in fused kernels; floating-point results differ
  by reassociation only (see the tolerance there). Checkpoints keep the plain parameter names.
- ``trainer.precision=bf16-mixed`` on the CPU: matmuls in bfloat16, so only close; the weights, optimizer
  state and checkpoints stay float32.
- ``trainer.accumulate_grad_batches``: 2 x batch 2 reads exactly the clips of 1 x batch 4 per optimizer step
  and, with the random streams aligned, takes the same steps to float precision.

Note on step 0: Latte (like DiT) initialises its final layer and its adaLN gates to zero, so the prediction
at step 0 is exactly zero whatever the switch, and the step-0 loss is trivially equal. The comparisons that
mean something are those of the later steps; the runs use the demo recipe's ``optim.lr=1e-3``, where one
AdamW step already moves the loss of step 1 by ~3e-2 compared with not training at all (and a 10 % change
of the learning rate by ~2.5e-3), so the tolerances below are far below any real difference.
"""

from __future__ import annotations

import csv
import shutil
from pathlib import Path
from typing import Any

import lightning as L
import pytest
import torch

from tests.aligned_training import AlignedAccumulationModule, fit_tiny, max_weight_difference
from tests.conftest import TINY, compose_config
from vidgen.lit.build import build_module, load_module_from_checkpoint, read_checkpoint
from vidgen.lit.module import VideoDiffusionModule
from vidgen.lit.seeding import step_generator
from vidgen.lit.training import train

STEPS = 6
RUN = [
    *TINY,
    "logger=csv",
    f"trainer.max_steps={STEPS}",
    "trainer.val_check_interval=1000",  # no validation: only the training steps are compared
    "samples.num_videos=0",
    "samples.final_num_videos=0",
]
PROBE = "tests.test_switches.Probe"
_PROBES: dict[str, Probe] = {}


class Probe(L.Callback):
    """Records every training batch of an in-process run (looked up by ``name`` after the run): the step it
    belongs to, its clip indices, its loss (as Lightning normalises it for accumulation) and, once, what the
    denoiser looks like inside the trainer."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.batches: list[dict[str, Any]] = []
        self.facts: dict[str, Any] = {}
        self._step = 0
        _PROBES[name] = self

    def on_train_batch_start(self, trainer: L.Trainer, pl_module: Any, batch: Any, batch_idx: int) -> None:
        self._step = trainer.global_step

    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: Any, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        self.batches.append(
            {"step": self._step, "index": batch["index"].tolist(), "loss": float(outputs["loss"])}
        )

    def on_train_end(self, trainer: L.Trainer, pl_module: Any) -> None:
        import torch._dynamo.utils

        self.facts = {
            "compiled": getattr(pl_module.denoiser, "_compiled_call_impl", None) is not None,
            "dynamo_graphs": int(torch._dynamo.utils.counters["stats"]["unique_graphs"]),
            "param_dtypes": {p.dtype for p in pl_module.parameters()},
            "precision": str(trainer.precision),
        }


def _train_losses(run_dir: Path) -> dict[int, float]:
    """step -> train/loss from the CSV logger."""
    losses = {}
    with open(run_dir / "csv" / "metrics.csv") as handle:
        for row in csv.DictReader(handle):
            if row.get("train/loss"):
                losses[int(row["step"])] = float(row["train/loss"])
    return losses


def _run(tmp_path: Path, name: str, *overrides: str) -> dict[str, Any]:
    run_dir = tmp_path / name
    extra = [f"+callbacks.probe._target_={PROBE}", f"+callbacks.probe.name={name}"]
    summary = train(compose_config([*RUN, *overrides, *extra], run_dir=run_dir))
    checkpoint = read_checkpoint(run_dir / "checkpoints" / "last.ckpt")
    return {
        "run_dir": run_dir,
        "summary": summary,
        "losses": _train_losses(run_dir),
        "checkpoint": checkpoint,
        "probe": _PROBES.pop(name),
    }


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The plain float32 run every switch is compared with."""
    run = _run(tmp_path_factory.mktemp("switches"), "reference")
    assert sorted(run["losses"]) == list(range(STEPS)) and run["summary"]["global_step"] == STEPS
    return run


# ---------------------------------------------------------------------------------------------- checkpointing
def _perturbed_pair() -> tuple[VideoDiffusionModule, VideoDiffusionModule]:
    """The tiny module without and with activation checkpointing, with the same weights, moved away from
    the zero-initialised output layer / gates (at init every block would be an identity)."""
    plain = build_module(compose_config(TINY))
    checkpointed = build_module(compose_config([*TINY, "model.gradient_checkpointing=true"]))
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for p in plain.denoiser.parameters():
            p.add_(0.05 * torch.randn(p.shape, generator=generator))
    checkpointed.load_state_dict(plain.state_dict())
    assert not plain.denoiser.gradient_checkpointing and checkpointed.denoiser.gradient_checkpointing
    return plain.train(), checkpointed.train()


def _loss_and_gradients(module: VideoDiffusionModule) -> tuple[torch.Tensor, dict[str, torch.Tensor], int]:
    """Training loss of one fixed batch, the gradients, and how many block forwards ran (incl. recompute)."""
    calls = []
    hooks = [b.register_forward_pre_hook(lambda *_: calls.append(1)) for b in module.denoiser.blocks]
    video = torch.randn((4, 3, 4, 16, 16), generator=torch.Generator().manual_seed(2)).clamp(-1, 1)
    losses = module._diffusion_losses(module.denoiser, {"video": video}, step_generator(0, 0), train=True)
    loss = losses["loss"].mean()
    loss.backward()
    for hook in hooks:
        hook.remove()
    grads = {n: p.grad.clone() for n, p in module.denoiser.named_parameters() if p.requires_grad}
    return loss.detach(), grads, len(calls)


def test_activation_checkpointing_gives_the_same_loss_and_gradients() -> None:
    plain, checkpointed = _perturbed_pair()
    loss_a, grads_a, calls_a = _loss_and_gradients(plain)
    loss_b, grads_b, calls_b = _loss_and_gradients(checkpointed)
    depth = len(plain.denoiser.blocks)
    # the switch really recomputes: every block runs twice (forward, then again in the backward pass)
    assert calls_a == depth and calls_b == 2 * depth
    torch.testing.assert_close(loss_b, loss_a, rtol=1e-6, atol=1e-6)
    assert grads_a.keys() == grads_b.keys()
    assert any(float(g.abs().max()) > 1e-3 for g in grads_a.values())  # a real, non-trivial gradient
    for name in grads_a:
        torch.testing.assert_close(grads_b[name], grads_a[name], rtol=1e-6, atol=1e-6, msg=name)


def test_activation_checkpointing_trains_the_same_loss_curve(reference: dict, tmp_path: Path) -> None:
    run = _run(tmp_path, "checkpointing", "model.gradient_checkpointing=true")
    assert run["checkpoint"]["vidgen_config"]["model"]["gradient_checkpointing"] is True
    assert sorted(run["losses"]) == list(range(STEPS))
    for step, loss in reference["losses"].items():
        assert run["losses"][step] == pytest.approx(loss, abs=1e-5), f"step {step}"
    a, b = reference["checkpoint"]["state_dict"], run["checkpoint"]["state_dict"]
    assert (
        max_weight_difference(a, b, "denoiser.") <= 1e-6
        and max_weight_difference(a, b, "ema_denoiser.") <= 1e-6
    )


# ---------------------------------------------------------------------------------------------- torch.compile
@pytest.mark.skipif(
    not any(shutil.which(c) for c in ("g++", "c++", "clang++")),
    reason="inductor needs a C++ compiler on the CPU",
)
@pytest.mark.slow  # inductor compiles the forward and backward graphs with the C++ compiler: ~40-100 s cold
def test_compile_trains_the_same_loss_curve_and_writes_plain_checkpoints(
    reference: dict, tmp_path: Path
) -> None:
    torch._dynamo.reset()
    run = _run(tmp_path, "compiled", "compile.enabled=true")
    facts = run["probe"].facts
    assert facts["compiled"] and facts["dynamo_graphs"] >= 1, facts  # the trainer's denoiser ran compiled
    # Tolerance: inductor fuses and reorders float32 reductions (layer norm, softmax, the loss means) and
    # uses vectorised transcendental functions, so each op differs from eager by a few float32 ulps (~1e-7
    # relative), compounded over 6 AdamW steps. Observed: 6e-8 on the loss, 2e-7 on the weights. Allowed:
    # 1e-4 relative on the loss (25x below what a 10 % learning-rate change does at step 1) and 1e-5 on the
    # weights (each AdamW step moves a weight by up to lr = 1e-3).
    for step, loss in reference["losses"].items():
        assert run["losses"][step] == pytest.approx(loss, rel=1e-4), f"step {step}"
    state = run["checkpoint"]["state_dict"]
    assert not [k for k in state if "_orig_mod" in k]
    assert state.keys() == reference["checkpoint"]["state_dict"].keys()
    assert max_weight_difference(state, reference["checkpoint"]["state_dict"], "denoiser.") <= 1e-5
    # the checkpoint loads into a plain module (the stored config says compile.enabled=true; only a trainer
    # compiles, in configure_model)
    module, cfg = load_module_from_checkpoint(run["run_dir"] / "checkpoints" / "last.ckpt")
    assert cfg.compile.enabled is True
    for name, value in module.state_dict().items():
        if name.startswith(("denoiser.", "ema_denoiser.")):
            assert torch.equal(value, state[name]), name
    videos = module.generate(1, sampler={"name": "ddim", "steps": 2})
    assert videos.shape == (1, 3, 4, 16, 16) and torch.isfinite(videos).all()


# ---------------------------------------------------------------------------------------------- bf16-mixed
def test_bf16_mixed_on_cpu_trains_close_to_float32_and_keeps_float32_weights(
    reference: dict, tmp_path: Path
) -> None:
    run = _run(tmp_path, "bf16", "trainer.precision=bf16-mixed")
    assert run["probe"].facts["precision"] == "bf16-mixed"
    assert run["probe"].facts["param_dtypes"] == {torch.float32}  # autocast: weights are not converted
    losses = run["losses"]
    assert sorted(losses) == list(range(STEPS)) and all(torch.isfinite(torch.tensor(list(losses.values()))))
    # Tolerance: bfloat16 keeps 8 significant bits (unit roundoff 2^-8 = 3.9e-3), so every autocast matmul
    # is off by ~0.4 % and the runs drift apart through the AdamW steps; observed up to 7e-4 relative on the
    # loss by step 5. Allowed: 1e-2 relative (a run that did not train at all is 3-15 % off from step 1).
    differences = []
    for step, loss in reference["losses"].items():
        assert losses[step] == pytest.approx(loss, rel=1e-2), f"step {step}: {losses[step]} vs {loss}"
        differences.append(abs(losses[step] - loss))
    assert max(differences) > 1e-7  # the matmuls really ran in bfloat16 (else bit-identical to float32)
    # checkpointed weights, EMA weights and AdamW moments are float32
    checkpoint = run["checkpoint"]
    assert {v.dtype for v in checkpoint["state_dict"].values() if v.is_floating_point()} == {torch.float32}
    moments = [v for s in checkpoint["optimizer_states"][0]["state"].values() for v in s.values() if v.dim()]
    assert moments and {v.dtype for v in moments} == {torch.float32}


# ---------------------------------------------------------------------------------------------- accumulation
def test_gradient_accumulation_steps_max_steps_times_on_twice_the_batches(
    reference: dict, tmp_path: Path
) -> None:
    run = _run(tmp_path, "accumulation", "trainer.accumulate_grad_batches=2", "data.batch_size=2")
    assert run["summary"]["global_step"] == STEPS and run["checkpoint"]["global_step"] == STEPS
    batches, reference_batches = run["probe"].batches, reference["probe"].batches
    assert len(batches) == 2 * STEPS and len(reference_batches) == STEPS
    assert [b["step"] for b in batches] == [s for s in range(STEPS) for _ in range(2)]
    # the two micro-batches of step s are exactly the 4 clips of the single batch of step s (same order)
    for step in range(STEPS):
        micro = batches[2 * step]["index"] + batches[2 * step + 1]["index"]
        assert micro == reference_batches[step]["index"], f"step {step}"
    # The losses are NOT those of the batch-4 run: each micro-batch draws its own noise / timesteps (streams
    # keyed by global_step * 2 + micro-batch), i.e. other noise for the same clips. The exact equivalence is
    # checked with aligned streams below. The logged train/loss of a step is the mean of its micro-batches'
    # losses, i.e. the loss of the effective batch of 4.
    for step in range(STEPS):
        # Lightning hands the callbacks loss / accumulate_grad_batches
        micro = [2 * batches[2 * step + i]["loss"] for i in range(2)]
        assert run["losses"][step] == pytest.approx(sum(micro) / 2, rel=1e-6)


def _fit_aligned(batch_size: int, accumulation: int) -> tuple[dict[int, float], dict[str, torch.Tensor]]:
    probe = Probe(f"aligned{accumulation}")
    module = fit_tiny(
        [f"data.batch_size={batch_size}"],
        AlignedAccumulationModule,
        [probe],
        accumulate_grad_batches=accumulation,
    )
    _PROBES.pop(probe.name)
    losses: dict[int, float] = {}
    for batch in probe.batches:  # the optimizer step's loss: the sum of the normalised micro-batch losses
        losses[batch["step"]] = losses.get(batch["step"], 0.0) + batch["loss"]
    return losses, {k: v.detach().clone() for k, v in module.state_dict().items()}


def test_gradient_accumulation_with_aligned_streams_equals_the_full_batch() -> None:
    full_losses, full_weights = _fit_aligned(batch_size=4, accumulation=1)
    accumulated_losses, accumulated_weights = _fit_aligned(batch_size=2, accumulation=2)
    assert sorted(full_losses) == sorted(accumulated_losses) == [0, 1, 2, 3]
    for step, loss in full_losses.items():
        assert accumulated_losses[step] == pytest.approx(loss, rel=1e-6, abs=1e-7), f"step {step}"
    # mean of two half-batch gradients = full-batch gradient up to float32 summation order; AdamW turns
    # that into weight differences of ~4e-7 after 4 steps (each step moves a weight by up to lr = 1e-3)
    assert max_weight_difference(accumulated_weights, full_weights, "denoiser.") < 1e-5
    assert max_weight_difference(accumulated_weights, full_weights, "ema_denoiser.") < 1e-5
