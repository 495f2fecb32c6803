"""With a real Lightning Trainer: a run resumed from a mid-epoch checkpoint sees the same batches."""

from __future__ import annotations

import warnings
from pathlib import Path

import lightning.pytorch as pl
import pytest
import torch
from lightning.pytorch.callbacks import ModelCheckpoint

from vidgen.data.datamodule import SyntheticDataModule

TOTAL_STEPS = 8  # 10 clips, batch 3, drop_last: 3 batches per epoch -> epochs 0, 1 and part of 2


class Recorder(pl.LightningModule):
    """Records the clip indices of every training batch."""

    def __init__(self) -> None:
        super().__init__()
        self.weight = torch.nn.Parameter(torch.zeros(()))
        self.seen: list[list[int]] = []

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        self.seen.append(batch["index"].tolist())
        return (self.weight - batch["video"].mean()) ** 2

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=0.1)


def fit(
    root: Path, max_steps: int, num_workers: int, ckpt_path: Path | None = None, every: int | None = None
) -> Recorder:
    model = Recorder()
    data = SyntheticDataModule(
        num_frames=2,
        resolution=8,
        batch_size=3,
        train_clips=10,
        val_clips=2,
        seed=11,
        num_workers=num_workers,
    )
    callbacks = []
    if every is not None:
        callbacks.append(
            ModelCheckpoint(dirpath=root, every_n_train_steps=every, save_top_k=-1, filename="{step}")
        )
    trainer = pl.Trainer(
        accelerator="cpu",
        devices=1,
        max_steps=max_steps,
        limit_val_batches=0,
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        enable_checkpointing=every is not None,
        use_distributed_sampler=False,
        callbacks=callbacks,
        default_root_dir=root,
    )
    trainer.fit(model, datamodule=data, ckpt_path=ckpt_path)
    return model


@pytest.mark.parametrize("num_workers", [0, 2])
@pytest.mark.parametrize("stop_step", [4, 6])  # mid-epoch 1, and its last batch
def test_resumed_run_sees_the_uninterrupted_batch_sequence(
    tmp_path: Path, stop_step: int, num_workers: int
) -> None:
    reference = fit(tmp_path / "ref", TOTAL_STEPS, num_workers).seen
    assert len(reference) == TOTAL_STEPS
    assert reference[:3] != reference[3:6]  # epochs are reshuffled

    first = fit(tmp_path / "run", stop_step, num_workers, every=stop_step)
    ckpt = tmp_path / "run" / f"step={stop_step}.ckpt"
    state = torch.load(ckpt, weights_only=False)["loops"]["fit_loop"]["state_dict"]["combined_loader"]
    assert state == [
        {
            "epoch": (stop_step - 1) // 3,
            "batches": (stop_step - 1) % 3 + 1,
            "batch_size": 3,
            "num_items": 10,
            "world_size": 1,
        }
    ]

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        second = fit(tmp_path / "resumed", TOTAL_STEPS, num_workers, ckpt_path=ckpt)
    assert not [w for w in caught if "not resumable" in str(w.message)]
    assert first.seen + second.seen == reference
