"""`animateme bench`: how long 40 frames take, through ONNX Runtime and in PyTorch eager.

The PyTorch model is rebuilt from the ONNX file's own weights (the exporter keeps parameter
names), so both sides time the same denoiser. GFLOP/s counts the spiral layers' multiply-adds;
the peak beside it is this machine's float32 matrix multiply, measured in the same run.
"""

from __future__ import annotations

import os
import platform
import time
from pathlib import Path

import numpy as np
import torch

from animateme_blender.core.errors import AnimateMeError
from animateme_blender.core.sample.progression import expression_signal, label_mix, progression_curve
from animateme_blender.core.sample.runtime import load_runtime
from animateme_blender.core.sample.sampler import sample
from animateme_blender.core.sample.settings import SamplingSettings

from .data import load_template_arrays
from .network import Denoiser, DenoiserConfig, count_flops
from .reference import TorchDenoiser


FAST_TARGET_SECONDS = 0.5     # issue 44: 40 frames, one network call per step


def torch_model_from_onnx(model_path: str | Path, card: dict, spirals: np.ndarray) -> Denoiser:
    """The exported weights back in a torch `Denoiser` (parameters matched by name)."""
    import onnx
    from onnx import numpy_helper

    config = {k: v for k, v in card["network"].items() if k in DenoiserConfig.__dataclass_fields__}
    model = Denoiser(DenoiserConfig(**config), spirals)
    stored = {init.name: numpy_helper.to_array(init) for init in onnx.load(str(model_path)).graph.initializer}
    state = {}
    learnt = card.get("learnt_guidance") or {}
    for name, parameter in model.named_parameters():
        key = next((k for k in (f"model.{name}", name) if k in stored), None)
        if key is None and name == "null_signal" and not learnt.get("in_graph"):
            continue                  # the learnt guided prediction never drops the label
        if key is None or stored[key].shape != tuple(parameter.shape):
            raise AnimateMeError(f"{model_path} lacks weight {name}: re-export it with `animateme export`")
        state[name] = torch.from_numpy(stored[key].copy())
    model.load_state_dict(state, strict=False)
    if learnt:                        # the weight the graph plays, as the export traced it
        if learnt.get("in_graph"):
            model.export_cfg = float(learnt["weight"])
        else:
            model.export_guidance = float(learnt["weight"])
    return model.eval()


def matmul_peak_gflops(size: int = 1024, repeats: int = 5) -> float:
    a, b = torch.randn(size, size), torch.randn(size, size)
    torch.mm(a, b)
    best = min(_timed(lambda: torch.mm(a, b)) for _ in range(repeats))
    return 2.0 * size ** 3 / best / 1e9


def _timed(call) -> float:
    start = time.perf_counter()
    call()
    return time.perf_counter() - start


def _cpu_timed(call) -> float:
    """CPU seconds of this process: what a busy, shared machine does not inflate."""
    start = time.process_time()
    call()
    return time.process_time() - start


def bench(model_path: Path, template_path: Path, frames: int = 40, repeats: int = 3,
          paper: bool = True) -> dict:
    template = load_template_arrays(template_path)
    runtime = load_runtime(model_path, template["fingerprint"])
    runtime.faces = template["faces"]       # the card's output smoothing runs on the template
    model = torch_model_from_onnx(model_path, runtime.card, template["spirals"])
    eager = TorchDenoiser(model, runtime.card, faces=template["faces"])
    neutral = template["vertices"].astype(np.float32)
    signal = expression_signal(progression_curve(frames), label_mix(runtime.labels[0], labels=runtime.labels))
    unique = len(np.unique(signal, axis=0))
    flops = count_flops(model.config)

    # One denoiser call over the whole batch of frames, both ways.
    x = np.random.default_rng(0).standard_normal((frames, runtime.num_vertices, 3)).astype(np.float32)
    t = np.full(frames, 200, dtype=np.int64)
    neutral_in = np.repeat(neutral[None], frames, 0) if runtime.uses_neutral else None
    call_ort = min(_timed(lambda: runtime.denoise(x, t, signal, neutral_in)) for _ in range(repeats + 1))
    call_torch = min(_timed(lambda: eager.denoise(x, t, signal, neutral_in)) for _ in range(repeats + 1))

    fast, paper_mode = (SamplingSettings.for_runtime(runtime, mode) for mode in ("ddim", "ddpm"))
    fast_ort = min(_timed(lambda: sample(runtime, neutral, signal, fast, seed=0)) for _ in range(repeats))
    fast_ort_all = _timed(lambda: sample(runtime, neutral, signal, fast, seed=0, dedupe=False))
    fast_ort_cpu = min(_cpu_timed(lambda: sample(runtime, neutral, signal, fast, seed=0))
                       for _ in range(repeats))
    fast_torch = min(_timed(lambda: sample(eager, neutral, signal, fast, seed=0)) for _ in range(repeats))
    paper_ort = (_timed(lambda: sample(runtime, neutral, signal, paper_mode, seed=0))
                 if paper else None)
    peak = matmul_peak_gflops()
    report = {
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} logical CPUs",
        "provider": runtime.provider,
        "frames": frames,
        "distinct_signals": unique,
        "model": str(model_path),
        "gflop_per_frame": flops / 1e9,
        "denoiser_call_seconds": {"onnxruntime": call_ort, "torch_eager": call_torch},
        "denoiser_gflops_per_second": {"onnxruntime": frames * flops / call_ort / 1e9,
                                       "torch_eager": frames * flops / call_torch / 1e9},
        "matmul_peak_gflops_per_second": peak,
        "load_average_1min": os.getloadavg()[0],
        "fast_ddim_seconds": {"onnxruntime": fast_ort, "onnxruntime_cpu_seconds": fast_ort_cpu,
                              "onnxruntime_no_dedupe": fast_ort_all,
                              "torch_eager": fast_torch},
        "paper_ddpm_seconds": {"onnxruntime": paper_ort},
        "ratios": {"torch_eager_over_onnxruntime_call": call_torch / call_ort,
                   "torch_eager_over_onnxruntime_fast": fast_torch / fast_ort,
                   "paper_over_fast_onnxruntime": (paper_ort / fast_ort) if paper_ort else None},
        "fast_target_seconds": FAST_TARGET_SECONDS,
        "fast_meets_target": fast_ort <= FAST_TARGET_SECONDS,
    }
    return report


def format_report(report: dict) -> str:
    calls, gf = report["denoiser_call_seconds"], report["denoiser_gflops_per_second"]
    fast, paper, ratio = report["fast_ddim_seconds"], report["paper_ddpm_seconds"], report["ratios"]
    lines = [
        f"{report['frames']} frames ({report['distinct_signals']} distinct e_k) on {report['machine']} "
        f"(load average {report['load_average_1min']:.1f}); ONNX Runtime provider {report['provider']}",
        f"denoiser call, {report['frames']} frames: onnxruntime {calls['onnxruntime'] * 1e3:.0f} ms "
        f"({gf['onnxruntime']:.1f} GFLOP/s), torch eager {calls['torch_eager'] * 1e3:.0f} ms "
        f"({gf['torch_eager']:.1f} GFLOP/s); matmul peak {report['matmul_peak_gflops_per_second']:.1f} GFLOP/s",
        f"fast (DDIM) : onnxruntime {fast['onnxruntime']:.2f} s wall, {fast['onnxruntime_cpu_seconds']:.2f} s CPU "
        f"(no de-dup {fast['onnxruntime_no_dedupe']:.2f} s), "
        f"torch eager {fast['torch_eager']:.2f} s  [target <= {report['fast_target_seconds']} s: "
        f"{'met' if report['fast_meets_target'] else 'MISSED'}]",
    ]
    if paper["onnxruntime"] is not None:
        lines.append(f"paper (DDPM T=1000, t_s=400): onnxruntime {paper['onnxruntime']:.1f} s "
                     f"({ratio['paper_over_fast_onnxruntime']:.0f}x the fast mode)")
    lines.append(f"torch eager / onnxruntime: {ratio['torch_eager_over_onnxruntime_call']:.2f}x per call, "
                 f"{ratio['torch_eager_over_onnxruntime_fast']:.2f}x fast mode")
    return "\n".join(lines)


def performance_rows(report: dict) -> tuple[list[str], list[list]]:
    """The sampler's section of the performance table (animateme/performance.py)."""
    fast, paper = report["fast_ddim_seconds"], report["paper_ddpm_seconds"]["onnxruntime"]
    rows = [["fast (DDIM, 9 steps)", report["distinct_signals"], fast["onnxruntime"], fast["onnxruntime_cpu_seconds"],
             fast["torch_eager"]]]
    if paper is not None:
        rows.append(["paper (DDPM, T = 1000, t_s = 400)", report["distinct_signals"], paper, "", ""])
    return ["mode", "distinct frames", "ONNX Runtime s", "its CPU s", "torch eager s"], rows
