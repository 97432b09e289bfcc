"""Everything `animateme eval` can evaluate, by name. A generator is one call:

    generate(neutral (V,3) mm, mix (C,), progression (K,), seed) -> (K,V,3) deformations, mm

`GENERATORS` maps a name to a factory that builds one from an `EvalContext`; a new kind of model
is one more entry. The diffusion model is evaluated through the shipped runtime (ONNX + numpy
sampler), i.e. exactly what users run.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from animateme import paths
from animateme_blender.core.errors import AnimateMeError
from animateme_blender.core.sample.progression import expression_signal
from animateme_blender.core.template import Template

from .corpus import Corpus

Generator = Callable[[np.ndarray, np.ndarray, np.ndarray, int], np.ndarray]


@dataclass
class EvalContext:
    corpus: Corpus
    template: Template
    checkpoint_dir: Path | None = None   # baselines; default data/checkpoints
    model_path: Path | None = None       # diffusion; default models/animateme.onnx
    diffusion_options: dict = field(default_factory=dict)  # forwarded to core.sample.sampler.sample


def _key(neutral: np.ndarray, mix: np.ndarray, progression: np.ndarray) -> str:
    digest = hashlib.sha256()
    for array in (neutral, mix, progression):
        digest.update(np.round(np.asarray(array, np.float64), 4).tobytes())
    return digest.hexdigest()


def ground_truth(context: EvalContext) -> Generator:
    """`gt`: the test sequence that has exactly this neutral, label mix and progression."""
    test = context.corpus.test
    lookup = {_key(test.neutral[i], test.mix(i), test.progression[i]): i for i in range(len(test))}

    def generate(neutral, mix, progression, seed):
        index = lookup.get(_key(neutral, mix, progression))
        if index is None:
            raise AnimateMeError("the gt generator only knows the test corpus's own conditions")
        return test.deform[index].copy()
    return generate


def _torch_generator(model: torch.nn.Module) -> Generator:
    """A deterministic baseline: the signal goes in, a deformation comes out; neutral and seed
    are not used (these models are subject-independent, 002 §5.2)."""
    def generate(neutral, mix, progression, seed):
        signal = torch.as_tensor(expression_signal(progression, mix))[None]
        with torch.no_grad():
            return model(signal)[0].numpy()
    return generate


def _baseline(kind: str) -> Callable[[EvalContext], Generator]:
    def factory(context: EvalContext) -> Generator:
        from animateme.baselines.training import build_model, load_checkpoint
        checkpoint = load_checkpoint(kind, context.corpus.fingerprint, context.checkpoint_dir)
        if checkpoint["label_names"] != list(context.corpus.label_names):
            raise AnimateMeError(f"the {kind} baseline was trained on other labels: "
                                 f"run `animateme baselines train {kind}` again")
        return _torch_generator(build_model(checkpoint))
    factory.__doc__ = f"`{kind}`: the {kind} baseline checkpoint (`animateme baselines train {kind}`)."
    return factory


def diffusion(context: EvalContext) -> Generator:
    """`diffusion`: models/animateme.onnx through core.sample.runtime + core.sample.sampler."""
    model_path = Path(context.model_path or paths.models_dir() / "animateme.onnx")
    if not model_path.is_file():
        raise AnimateMeError(
            f"no trained model at {model_path}: run `animateme train` and `animateme export` first")
    from animateme_blender.core.sample.runtime import load_runtime
    from animateme_blender.core.sample.sampler import sample
    from animateme_blender.core.sample.settings import SamplingSettings, card_sampling
    runtime = load_runtime(model_path, context.template)
    # The card's guidance and smoothing unless the command line set them, written back so the
    # report says which ran.
    context.diffusion_options.update(card_sampling(runtime) | context.diffusion_options)
    settings = SamplingSettings.for_runtime(runtime, **context.diffusion_options)

    def generate(neutral, mix, progression, seed):
        signal = expression_signal(progression, mix)
        return np.asarray(sample(runtime, neutral, signal, settings, seed=seed), dtype=np.float32)
    return generate


def frame_mean(context: EvalContext) -> Generator:
    """`framemean`: the training mean for each frame's label and progression (a yardstick, see
    framemean.py); neutral and seed are not used."""
    from .framemean import mean_table, read_table
    table = mean_table(context.corpus.train)

    def generate(neutral, mix, progression, seed):
        return read_table(table, mix, progression)
    return generate


GENERATORS: dict[str, Callable[[EvalContext], Generator]] = {
    "gt": ground_truth,
    "lstm": _baseline("lstm"),
    "pca": _baseline("pca"),
    "framemean": frame_mean,
    "diffusion": diffusion,
}

# Generators whose output does not depend on the seed: diversity is 0 without sampling twice.
DETERMINISTIC = {"gt", "lstm", "pca", "framemean"}


def parse_names(text: str) -> list[str]:
    names = [name.strip() for name in text.split(",") if name.strip()]
    unknown = [name for name in names if name not in GENERATORS]
    if unknown or not names:
        raise AnimateMeError(
            f"unknown generator {', '.join(unknown) or '(none given)'}: "
            f"choose from {', '.join(GENERATORS)} (e.g. --models gt,lstm,pca)")
    return list(dict.fromkeys(names))


def make_generator(name: str, context: EvalContext) -> Generator:
    if name not in GENERATORS:
        parse_names(name)  # raises the one-line error
    return GENERATORS[name](context)
