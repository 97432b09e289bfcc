"""The training script under torchrun: two CPU processes, gloo, a few steps, identical weights."""

import pytest

pytest.importorskip("torch", reason="needs torch (the training side; Python 3.11 here)")

import os
import subprocess
import sys

import torch

from animateme.diffusion.train import load_checkpoint
from diffusion_fixture import write_fixture


def test_two_process_gloo_training(tmp_path):
    paths = write_fixture(tmp_path)
    run = tmp_path / "ddp-run"
    env = dict(os.environ, OMP_NUM_THREADS="1")
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
               "-m", "animateme.cli", "train", "--corpus", str(paths["corpus"]), "--template", str(paths["template"]),
               "--run-dir", str(run), "--steps", "6", "--batch", "8", "--channels", "8,8", "--spiral-lengths", "4,6",
               "--device", "cpu", "--threads", "1", "--no-progress"]
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    state = load_checkpoint(run)
    assert state["step"] == 6 and state["world_size"] == 2 and len(state["generator"]) == 2
    digests = {(run / f"rank{r}.sha256").read_text() for r in range(2)}
    assert len(digests) == 1                                             # DDP kept the ranks in step
    assert all(torch.isfinite(v).all() for v in state["model"].values() if v.is_floating_point())
