"""Training the denoiser frame by frame with the DDPM forward process (T = 1000).

One example = one corpus frame: x0 is its normalised deformation, t ~ U{1..T}, x_t = sqrt(abar_t)
x0 + sqrt(1-abar_t) eps (noise.py), and the network is fitted on the x0 it predicts (equivalent
to a reweighted noise loss; see network.py). EMA weights are what gets exported.

A run lives in one folder (runs/<name>/): `checkpoint.pt` (model, EMA, optimiser, RNG, step),
`log.csv` (step, loss, lr, seconds). Running again with resume continues where it stopped, so a run
may span sessions. CPU by default, CUDA when present; under `torchrun` each process takes its own
batches and DDP averages the gradients (gloo on CPU, nccl on GPU).
"""

from __future__ import annotations

import copy
import csv
import hashlib
import json
import math
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from animateme_blender.core.errors import AnimateMeError
from animateme_blender.core.sample.schedule import NoiseSchedule

from .data import FrameCorpus, load_template_arrays
from .examples import (branch_share, draw_guidance, draw_timesteps, guided_target, shown_subjects,
                       training_rows, validation_identities, vertex_loss_weights)
from .network import Denoiser, DenoiserConfig
from .noise import TorchSchedule
from .warm_start import state_from_model

CHECKPOINT = "checkpoint.pt"
LOG = "log.csv"
VALIDATION = "validation.json"


@dataclass
class TrainConfig:
    corpus: str                      # train.npz
    template: str                    # template.npz
    run_dir: str                     # checkpoints and log
    steps: int = 20_000
    batch: int = 32
    lr: float = 1e-3
    warmup: int = 500
    ema_decay: float = 0.999
    seed: int = 0
    device: str = "auto"
    max_minutes: float | None = None  # stop (with a checkpoint) after this much wall time
    checkpoint_seconds: float = 120.0
    log_every: int = 25
    channels: tuple[int, ...] = (32, 32, 48, 48, 64, 64)
    spiral_lengths: tuple[int, ...] = (9, 9, 12, 12, 12, 12)
    use_neutral: bool = False
    snr_shift: float = 100.0         # see core/sample/schedule.py: why Algorithm 1 needs it at t_s = 400
    prediction: str = "v"            # the head: v (new runs) or x0; see network.py
    global_context: bool = True
    t_focus: int = 500               # draw t <= t_focus this often: above it the state is ~noise
    focus_share: float = 0.75
    neutral_swap: float = 0.0        # share of frames shown another training subject's neutral (examples.py)
    upper_face_weight: float = 1.0   # loss weight of the brows and eyes over the rest (examples.py)
    init_from: str | None = None     # a new run starts from this exported model's weights (warm_start.py)
    threads: int | None = None       # torch intra-op threads (1 is fastest on a busy 2-core box)
    learnt_guidance: bool = False    # label dropout + model guidance (examples.py): one call per step
    label_dropout: float = 0.1       # share of frames shown the null label (the unconditional model)
    guidance_max: float = 3.0        # w drawn from U[0, guidance_max] for the guided frames
    guidance_zero_share: float = 0.25  # share of labelled frames trained at w = 0 (the plain model)
    guidance_start: int = 0          # steps before the guided targets start (the null label learns first)
    val_subjects: int = 0            # training identities kept out of training, for choosing settings
    branch_at: int = 0               # > 0: train t <= branch_at on Algorithm 1's branch states (examples.py)
    progress: bool = True
    extra: dict = field(default_factory=dict)


def pick_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise AnimateMeError("--device cuda asked for, but no CUDA GPU is visible: use --device cpu")
    if name not in ("cpu", "cuda"):
        raise AnimateMeError(f"unknown device {name!r}: use auto, cpu or cuda")
    return torch.device(name)


class DistributedSetup:
    """Rank/world from torchrun's environment; a no-op for a plain single process."""

    def __init__(self, device_name: str):
        self.world = int(os.environ.get("WORLD_SIZE", "1"))
        self.rank = int(os.environ.get("RANK", "0"))
        local_rank = int(os.environ.get("LOCAL_RANK", "0"))
        self.device = pick_device(device_name)
        if self.device.type == "cuda":
            self.device = torch.device("cuda", local_rank)
            torch.cuda.set_device(self.device)
        if self.world > 1:
            import torch.distributed as dist
            dist.init_process_group(backend="nccl" if self.device.type == "cuda" else "gloo")

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def agree(self, flag: bool) -> bool:
        """Rank 0's wall-clock decision, shared so every process checkpoints or stops together."""
        if self.world == 1:
            return bool(flag)
        import torch.distributed as dist
        value = torch.tensor([1 if flag else 0], dtype=torch.int32, device=self.device)
        dist.broadcast(value, src=0)
        return bool(value.item())

    def close(self):
        if self.world > 1:
            import torch.distributed as dist
            dist.barrier()
            dist.destroy_process_group()


def model_config(config: TrainConfig, corpus: FrameCorpus) -> DenoiserConfig:
    return DenoiserConfig(num_vertices=corpus.num_vertices, num_labels=len(corpus.label_names),
                          channels=tuple(config.channels), spiral_lengths=tuple(config.spiral_lengths),
                          use_neutral=config.use_neutral, prediction=config.prediction,
                          global_context=config.global_context, learnt_guidance=config.learnt_guidance,
                          schedule=NoiseSchedule(snr_shift=config.snr_shift).to_dict())


def learning_rate(config: TrainConfig, step: int) -> float:
    """Linear warm-up, then cosine decay to 5 % over the planned steps."""
    if step < config.warmup:
        return config.lr * (step + 1) / config.warmup
    progress = min(1.0, (step - config.warmup) / max(1, config.steps - config.warmup))
    return config.lr * (0.05 + 0.95 * 0.5 * (1.0 + math.cos(math.pi * progress)))


def init_null_label(models, signal: torch.Tensor) -> None:
    """Start the null label at the mean signal feature over the training frames: near what the
    unconditional model must play (the average frame), so the first guided targets are not
    pushed away from an arbitrary point."""
    with torch.no_grad():
        mean = models[0].signal_mlp(signal).mean(dim=0)
        for model in models:
            model.null_signal.copy_(mean)


def train(config: TrainConfig) -> Path:
    """Train (or resume) the run in `config.run_dir`; returns the checkpoint path."""
    setup = DistributedSetup(config.device)
    try:
        return _train(config, setup)
    finally:
        setup.close()


def _train(config: TrainConfig, setup: DistributedSetup) -> Path:
    run_dir = Path(config.run_dir)
    checkpoint_path = run_dir / CHECKPOINT
    template = load_template_arrays(config.template)
    corpus = FrameCorpus.load(config.corpus)
    if corpus.fingerprint != template["fingerprint"]:
        raise AnimateMeError(
            f"the corpus was built for template {corpus.fingerprint}, not {template['fingerprint']}: rebuild it"
        )
    state = None
    if checkpoint_path.exists():
        state = torch.load(checkpoint_path, map_location="cpu", weights_only=False)
        if state["model_config"]["num_vertices"] != corpus.num_vertices:
            raise AnimateMeError(f"{checkpoint_path} is for another template: pick a new --run folder")
    elif config.init_from:
        state = state_from_model(config.init_from, template["spirals"], template["fingerprint"],
                                 {"learnt_guidance": True} if config.learnt_guidance else None)
    if config.threads:
        torch.set_num_threads(int(config.threads))
    torch.manual_seed(config.seed)
    net_config = DenoiserConfig(**state["model_config"]) if state else model_config(config, corpus)
    model = Denoiser(net_config, template["spirals"]).to(setup.device)
    ema = copy.deepcopy(model).eval().requires_grad_(False)
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=1e-4)
    # Each process draws its own batches; DDP keeps the weights identical.
    generator = torch.Generator().manual_seed(config.seed * 1000 + setup.rank)
    step = 0
    if state:
        model.load_state_dict(state["model"])
        ema.load_state_dict(state["ema"])
        if "optimizer" in state:  # absent when the run starts from an exported model
            optimizer.load_state_dict(state["optimizer"])
            generator.set_state(state["generator"][min(setup.rank, len(state["generator"]) - 1)])
        step = int(state["step"])
        corpus_scale = np.asarray(state["scale"], dtype=np.float32)
        if not np.allclose(corpus_scale, corpus.scale, rtol=1e-4):
            corpus.frames *= (corpus.scale / corpus_scale)[None, :, None]  # keep the run's normalisation
            corpus.scale = corpus_scale
    if net_config.learnt_guidance and (state is None or "optimizer" not in state):
        # A new run (from scratch or from an exported model): see init_null_label.
        every = torch.from_numpy(corpus.signal)
        drawn = torch.randint(0, len(every), (4096,), generator=torch.Generator().manual_seed(config.seed))
        init_null_label((model, ema), every[drawn].to(setup.device))
    if state and "val_identities" in state:
        held = np.asarray(state["val_identities"], dtype=np.int64)   # the run's own split, always
    else:
        held = validation_identities(corpus, config.val_subjects, config.seed)
    rows = training_rows(corpus, held)
    if net_config.learnt_guidance and not 0.0 < config.label_dropout < 1.0:
        raise AnimateMeError(f"--label-dropout must lie in (0, 1) for learnt guidance, got {config.label_dropout}")
    trained = model
    if setup.world > 1:
        trained = nn.parallel.DistributedDataParallel(model)

    schedule = NoiseSchedule.from_dict(net_config.schedule)
    weights = torch.from_numpy(vertex_loss_weights(template["vertices"], template.get("landmarks"),
                                                   config.upper_face_weight))[None, :, None].to(setup.device)
    forward_process = TorchSchedule(schedule)
    frames = torch.from_numpy(corpus.frames)
    signal = torch.from_numpy(corpus.signal)
    if not 0 <= int(config.branch_at) < schedule.T:
        raise AnimateMeError(f"--branch-at must lie in [0, {schedule.T - 1}], got {config.branch_at}")
    trunk = branch_share(schedule, int(config.branch_at)) if config.branch_at > 0 else None
    frames_per_take = len(corpus.frames) // len(corpus.neutral)
    first_frame = torch.from_numpy(corpus.subject_of) * frames_per_take   # each row's e_0 frame
    neutral = torch.from_numpy(corpus.neutral)
    subject_of = torch.from_numpy(corpus.subject_of)

    run_dir.mkdir(parents=True, exist_ok=True)
    if setup.is_main:
        (run_dir / VALIDATION).write_text(json.dumps({"corpus": str(config.corpus), "seed": config.seed,
                                                      "identities": [int(i) for i in held]}) + "\n")
    log_path = run_dir / LOG
    if setup.is_main and not log_path.exists():
        log_path.write_text("step,loss,lr,seconds,samples_per_second\n")
    started = time.monotonic()
    elapsed_before = float(state["seconds"]) if state else 0.0
    last_checkpoint = started
    running, count, window_start = 0.0, 0, time.monotonic()
    bar = tqdm(total=config.steps, initial=step, desc="train", unit="step", dynamic_ncols=True,
               disable=not (config.progress and setup.is_main))

    def save():
        generators = _gather_generator_states(generator, setup)   # a collective: every rank calls it
        if not setup.is_main:
            return
        payload = {
            "model": model.state_dict(), "ema": ema.state_dict(), "optimizer": optimizer.state_dict(),
            "generator": generators, "step": step,
            "seconds": elapsed_before + time.monotonic() - started,
            "model_config": net_config.to_dict(), "train_config": asdict(config),
            "scale": corpus.scale, "label_names": list(corpus.label_names),
            "fingerprint": template["fingerprint"], "world_size": setup.world,
            "init_from": (state or {}).get("init_from"),
            "val_identities": [int(i) for i in held],
        }
        partial = checkpoint_path.with_name(CHECKPOINT + ".partial")
        torch.save(payload, partial)
        partial.replace(checkpoint_path)

    model.train()
    while step < config.steps:
        if setup.agree(config.max_minutes is not None and time.monotonic() - started > 60 * config.max_minutes):
            break
        lr = learning_rate(config, step)
        for group in optimizer.param_groups:
            group["lr"] = lr
        index = rows[torch.randint(0, len(rows), (config.batch,), generator=generator)]
        t = draw_timesteps(config, schedule.T, generator)
        noise = torch.randn((config.batch,) + tuple(frames.shape[1:]), generator=generator)
        x0 = frames[index]
        if trunk is None:
            x_t = forward_process.add_noise(x0, noise, t)
        else:  # the state the sampler hands the network after the branch: x0 still mixed with e_0's frame
            b = trunk[t][:, None, None]
            x_t = forward_process.add_noise(x0 + b * (frames[first_frame[index]] - x0), noise, t)
        inputs = [x_t, t, signal[index], neutral[shown_subjects(config, subject_of[index], len(neutral), generator)]]
        inputs = [tensor.to(setup.device) for tensor in inputs]
        target = x0.to(setup.device)
        if net_config.learnt_guidance:
            weight, drop = (v.to(setup.device) for v in draw_guidance(config, config.batch, generator))
            if step < config.guidance_start:
                weight = torch.zeros_like(weight)
            target = guided_target(ema, target, inputs, weight)
            _, predicted = trained(*inputs, weight, drop)
        else:
            _, predicted = trained(*inputs)
        # x0 head: plain x0 MSE. v head: the v MSE, which is the x0 MSE weighted by 1 / (1 - abar_t)
        # (x0 error = sqrt(1 - abar_t) x v error): the clean end, where detail lives, counts most.
        error = (predicted - target) ** 2
        if net_config.prediction == "v":
            error = error / forward_process.one_minus_abar(t).to(setup.device)
        loss = torch.mean(error * weights)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        step += 1
        with torch.no_grad():
            decay = min(config.ema_decay, (1 + step) / (10 + step))
            for kept, live in zip(ema.parameters(), model.parameters()):
                kept.lerp_(live, 1.0 - decay)
        value = float(loss.detach())
        if not math.isfinite(value):
            raise AnimateMeError(f"training diverged at step {step} (loss {value}): lower --lr and resume")
        running += value
        count += 1
        bar.update(1)
        if step % config.log_every == 0 or step == config.steps:
            now = time.monotonic()
            rate = count * config.batch * setup.world / max(now - window_start, 1e-9)
            if setup.is_main:
                with log_path.open("a") as log:
                    log.write(f"{step},{running / count:.6f},{lr:.3e},"
                              f"{elapsed_before + now - started:.1f},{rate:.1f}\n")
            bar.set_postfix(loss=f"{running / count:.4f}", lr=f"{lr:.1e}", fps=f"{rate:.0f}")
            running, count, window_start = 0.0, 0, now
        if setup.agree(time.monotonic() - last_checkpoint > config.checkpoint_seconds):
            save()
            last_checkpoint = time.monotonic()
    bar.close()
    save()
    if setup.world > 1:
        # Proof for the DDP test that the processes ended with the same weights.
        digest = hashlib.sha256()
        for tensor in model.state_dict().values():
            digest.update(tensor.detach().cpu().numpy().tobytes())
        (run_dir / f"rank{setup.rank}.sha256").write_text(digest.hexdigest())
    return checkpoint_path


def _gather_generator_states(generator: torch.Generator, setup: DistributedSetup) -> list:
    if setup.world == 1:
        return [generator.get_state()]
    import torch.distributed as dist
    states = [None] * setup.world
    dist.all_gather_object(states, generator.get_state())
    return states


def read_log(run_dir: str | Path) -> np.ndarray:
    """(N, 5) rows of log.csv: step, loss, lr, seconds, samples/s."""
    path = Path(run_dir) / LOG
    if not path.exists():
        raise AnimateMeError(f"no training log at {path}: train first")
    with path.open() as handle:
        rows = [[float(v) for v in row] for row in list(csv.reader(handle))[1:] if row]
    return np.asarray(rows, dtype=np.float64).reshape(-1, 5)


def load_checkpoint(path: str | Path) -> dict:
    path = Path(path)
    if path.is_dir():
        path = path / CHECKPOINT
    if not path.exists():
        raise AnimateMeError(f"no checkpoint at {path}: run `animateme train` first")
    try:
        return torch.load(path, map_location="cpu", weights_only=False)
    except Exception as error:  # torch raises many types for a damaged file
        raise AnimateMeError(f"cannot read checkpoint {path} ({error}): train again") from None


def ema_model(checkpoint: dict, spirals: np.ndarray) -> Denoiser:
    model = Denoiser(DenoiserConfig(**checkpoint["model_config"]), spirals)
    model.load_state_dict(checkpoint["ema"])
    return model.eval()
