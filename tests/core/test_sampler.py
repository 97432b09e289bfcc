"""Algorithm 1 (consistent noise) and its DDIM variant, through ONNX Runtime on a tiny trained model."""

import pytest

pytest.importorskip("torch", reason="needs torch (the training side; Python 3.11 here)")

import numpy as np
import torch

from animateme.diffusion.reference import reference_sample
from animateme.diffusion.train import ema_model, load_checkpoint
from animateme_blender.core.errors import AnimateMeError
from animateme_blender.core.sample.runtime import load_runtime, neutral_feature
from animateme_blender.core.progress import Cancelled
from animateme_blender.core.sample import sampler
from animateme_blender.core.sample.settings import FAST_TEMPERATURE, SamplingSettings
from diffusion_fixture import LABELS, trained_fixture


def sample(runtime, neutral, signal, *, seed=0, dedupe=True, progress=None, cancel=None, constrain=None,
           **settings):
    """The sampler with its settings read from `runtime`'s card, `settings` overriding them: the card's
    rules (settings.py) and the steps (sampler.py) tested together, as a generation runs them."""
    return sampler.sample(runtime, neutral, signal, SamplingSettings.for_runtime(runtime, **settings), seed=seed,
                          dedupe=dedupe, progress=progress, cancel=cancel, constrain=constrain)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    paths = trained_fixture(tmp_path_factory.mktemp("sampler"))
    runtime = load_runtime(paths["onnx"], paths["fingerprint"])
    model = ema_model(load_checkpoint(paths["checkpoint"]), np.load(paths["template"])["spirals"])
    return paths, runtime, model


class Recording:
    """The real runtime, remembering every call's inputs and outputs."""

    def __init__(self, runtime):
        self.runtime, self.calls = runtime, []

    def __getattr__(self, name):
        return getattr(self.runtime, name)

    def denoise(self, x_t, t, signal, neutral=None):
        eps, x0 = self.runtime.denoise(x_t, t, signal, neutral)
        self.calls.append((x_t.copy(), t.copy(), signal.copy(), eps, x0))
        return eps, x0


def ramp_signal(label: int, frames: int = 6) -> np.ndarray:
    signal = np.zeros((frames, len(LABELS)), np.float32)
    signal[:, label] = np.linspace(0, 1, frames)
    return signal


def neutral_of(runtime):
    return np.zeros((runtime.num_vertices, 3), np.float32)


@pytest.mark.parametrize("mode", ["ddpm", "ddim"])
def test_all_frames_identical_when_every_signal_is_equal(tiny, mode):
    _, runtime, _ = tiny
    signal = np.tile(np.eye(6, dtype=np.float32)[2] * 0.7, (5, 1))
    out = sample(runtime, neutral_of(runtime), signal, mode=mode, seed=1, dedupe=False)
    assert out.shape == (5, runtime.num_vertices, 3)
    assert np.abs(out - out[0]).max() < 1e-5
    assert np.abs(out[0]).max() > 0.5                               # and it is not a trivial zero


def test_frames_differ_only_through_their_signal(tiny):
    _, runtime, _ = tiny
    signal = ramp_signal(0)
    base = sample(runtime, neutral_of(runtime), signal, mode="ddpm", t_s=200, seed=4, dedupe=False)
    changed = signal.copy()
    changed[3] = np.eye(6, dtype=np.float32)[4]                      # only frame 3's e_k changes
    other = sample(runtime, neutral_of(runtime), changed, mode="ddpm", t_s=200, seed=4, dedupe=False)
    per_frame = np.abs(other - base).max(axis=(1, 2))
    assert per_frame[3] > 0.5
    assert np.all(np.delete(per_frame, 3) < 1e-5)
    assert np.abs(base[1] - base[4]).max() > 0.1                     # different e_k, different frames


def test_shared_trajectory_then_branching_with_z1_zero(tiny):
    paths, runtime, _ = tiny
    T, t_s = 1000, 300
    recording = Recording(runtime)
    signal = ramp_signal(1)
    out = sample(recording, neutral_of(runtime), signal, mode="ddpm", t_s=t_s, seed=7, dedupe=False)
    steps = [int(call[1][0]) for call in recording.calls]
    assert steps == list(range(T, 0, -1))                            # every step, once
    shared, branched = recording.calls[:T - t_s], recording.calls[T - t_s:]
    assert all(len(c[0]) == 1 and np.array_equal(c[2][0], signal[0]) for c in shared)  # on e_0 only
    assert all(len(c[0]) == len(signal) and np.array_equal(c[2], signal) for c in branched)
    start = branched[0][0]
    assert np.abs(start - start[0]).max() == 0                       # every frame starts from d_s
    # The noise added at each branched step is the same for all frames (consistent noise).
    schedule = runtime.schedule
    for (x, t, _, eps, _), (x_next, *_rest) in zip(branched[:-1], branched[1:]):
        t = int(t[0])
        mean = (x - schedule.betas[t] / np.sqrt(1 - schedule.alpha_bars[t]) * eps) / np.sqrt(schedule.alphas[t])
        z = x_next - mean
        assert np.abs(z - z[0]).max() < 1e-4
    # z_1 = 0: the output is exactly the last step's mean, no noise added.
    x, t, _, eps, _ = recording.calls[-1]
    assert int(t[0]) == 1
    mean = (x - schedule.betas[1] / np.sqrt(1 - schedule.alpha_bars[1]) * eps) / np.sqrt(schedule.alphas[1])
    assert np.allclose(out, mean * runtime.scale[None, :, None], atol=1e-4)


def test_ddim_keeps_the_structure_with_few_steps(tiny):
    _, runtime, _ = tiny
    recording = Recording(runtime)
    signal = ramp_signal(2, 8)
    sample(recording, neutral_of(runtime), signal, mode="ddim", steps=10, branch_steps=3, t_s=400, seed=2,
           dedupe=False)
    sizes = [len(call[0]) for call in recording.calls]
    assert sizes == [1] * 7 + [8] * 3
    steps = [int(call[1][0]) for call in recording.calls]
    assert steps[0] == 1000 and steps[7] == 400 and steps == sorted(steps, reverse=True)


def test_seed_reproduces_and_changes_the_result(tiny):
    _, runtime, _ = tiny
    signal = ramp_signal(3)
    a = sample(runtime, neutral_of(runtime), signal, seed=11)
    b = sample(runtime, neutral_of(runtime), signal, seed=11)
    c = sample(runtime, neutral_of(runtime), signal, mode="ddim", steps=30, eta=1.0, seed=12)
    d = sample(runtime, neutral_of(runtime), signal, mode="ddim", steps=30, eta=1.0, seed=11)
    assert np.array_equal(a, b)
    assert np.abs(c - d).max() > 1e-3


def test_temperature_scales_the_spread_between_seeds(tiny):
    _, runtime, _ = tiny
    signal = ramp_signal(2)

    def spread(temperature):
        a, b = (sample(runtime, neutral_of(runtime), signal, seed=seed, temperature=temperature) for seed in (1, 2))
        return np.linalg.norm(a - b, axis=-1).mean(), a

    cold, frozen = spread(0.0)
    warm, _ = spread(0.5)
    hot, _ = spread(1.0)
    assert cold == 0.0 and np.abs(frozen[-1]).max() > 0.5           # deterministic, not zero
    assert 0.0 < warm < hot
    default = sample(runtime, neutral_of(runtime), signal, seed=1)       # fast mode: its own temperature
    assert np.array_equal(default, sample(runtime, neutral_of(runtime), signal, seed=1,
                                          temperature=FAST_TEMPERATURE))
    assert not np.array_equal(default, sample(runtime, neutral_of(runtime), signal, seed=1, temperature=0.5))


@pytest.mark.parametrize("mode", ["ddim", "ddpm"])
def test_a_subset_of_frames_samples_exactly_those_frames(tiny, mode):
    """A frame depends only on its own e_k and the shared trajectory and noise: what lets
    `animateme eval-modes` run paper mode on a sequence's apex frame alone."""
    _, runtime, _ = tiny
    signal = ramp_signal(3, 8)
    whole = sample(runtime, neutral_of(runtime), signal, mode=mode, seed=4)
    chosen = [1, 5, 7]
    part = sample(runtime, neutral_of(runtime), signal[chosen], mode=mode, seed=4)
    assert np.abs(part - whole[chosen]).max() < 1e-3 * np.abs(whole).max()


def test_dedupe_gives_the_same_frames(tiny):
    _, runtime, _ = tiny
    signal = np.concatenate([ramp_signal(5, 4), ramp_signal(5, 4)[::-1]])
    a = sample(runtime, neutral_of(runtime), signal, seed=3)
    b = sample(runtime, neutral_of(runtime), signal, seed=3, dedupe=False)
    assert np.abs(a - b).max() < 1e-4


def test_ddim_eta_one_over_all_steps_is_the_ddpm_sampler(tiny):
    _, runtime, _ = tiny
    signal = ramp_signal(4, 3)
    ddpm = sample(runtime, neutral_of(runtime), signal, mode="ddpm", seed=5)
    ddim = sample(runtime, neutral_of(runtime), signal, mode="ddim", steps=1000, eta=1.0, t_s=400, seed=5)
    assert np.abs(ddpm - ddim).max() < 1e-3 * np.abs(ddpm).max()      # float noise over 1000 steps


def test_fast_ddim_and_paper_ddpm_agree_and_follow_the_label(tiny):
    paths, runtime, _ = tiny
    patterns = paths["patterns"]
    for label in range(len(LABELS)):
        signal = np.zeros((2, 6), np.float32)
        signal[:, label] = (0.0, 0.8)
        fast = sample(runtime, neutral_of(runtime), signal, mode="ddim", seed=label)
        paper = sample(runtime, neutral_of(runtime), signal, mode="ddpm", seed=label)
        target = 0.8 * patterns[label]
        for out in (fast, paper):
            errors = [np.linalg.norm(out[1] - 0.8 * p, axis=-1).mean() for p in patterns]
            assert int(np.argmin(errors)) == label                   # the right expression
            assert np.linalg.norm(out[0], axis=-1).mean() < 0.35      # p = 0 stays near neutral
        assert np.linalg.norm(fast[1] - paper[1], axis=-1).mean() < 0.5 * np.linalg.norm(target, axis=-1).mean()


@pytest.mark.parametrize("mode,kwargs", [
    ("ddpm", {}), ("ddpm", {"temperature": 0.5}),
    ("ddim", {"steps": 20, "branch_steps": 8, "eta": 0.0, "temperature": 1.0, "spacing": "linear"}),
    ("ddim", {"steps": 20, "branch_steps": 8, "eta": 0.5, "temperature": 1.0, "spacing": "quadratic"}),
    ("ddim", {"steps": 20, "branch_steps": 8, "eta": 0.5, "temperature": 0.5, "spacing": "quadratic"})])
def test_onnx_sampler_matches_the_torch_reference(tiny, mode, kwargs):
    _, runtime, model = tiny
    signal = ramp_signal(1, 4)
    ours = sample(runtime, neutral_of(runtime), signal, mode=mode, t_s=400, seed=9, dedupe=False, **kwargs)
    torch.set_num_threads(1)
    reference = reference_sample(model, runtime.card, neutral_of(runtime), signal, mode=mode, t_s=400,
                                 seed=9, **kwargs)
    assert np.abs(ours - reference).max() < 1e-3 * max(1.0, np.abs(reference).max())


def test_progress_and_cancel(tiny):
    _, runtime, _ = tiny
    seen = []
    sample(runtime, neutral_of(runtime), ramp_signal(0), progress=lambda f, m: seen.append(f))
    assert seen and seen[-1] == 1.0 and seen == sorted(seen)
    with pytest.raises(Cancelled):
        sample(runtime, neutral_of(runtime), ramp_signal(0), cancel=lambda: True)


@pytest.mark.parametrize("signal,kwargs,message", [
    (-ramp_signal(0), {}, "negative"),
    (np.full((3, 6), np.nan, np.float32), {}, "NaN or infinite"),
    (np.full((3, 6), np.inf, np.float32), {}, "NaN or infinite"),
    (np.zeros((0, 6), np.float32), {}, "frame count"),
    (np.zeros((5000, 6), np.float32), {}, "frame count"),
    (np.zeros((3, 5), np.float32), {}, "shape"),
    (ramp_signal(0), {"mode": "dpm++"}, "unknown sampling mode"),
    (ramp_signal(0), {"mode": "ddpm", "steps": 10}, "DDPM runs all"),
    (ramp_signal(0), {"steps": 5000}, "DDIM steps"),
    (ramp_signal(0), {"t_s": 1000}, "t_s"),
    (ramp_signal(0), {"seed": -1}, "seed"),
    (ramp_signal(0), {"eta": 2.0}, "eta"),
    (ramp_signal(0), {"temperature": -0.1}, "temperature"),
    (ramp_signal(0), {"temperature": float("nan")}, "temperature"),
    (ramp_signal(0), {"guidance": -1.0}, "guidance"),
    (ramp_signal(0), {"guidance": 1.0, "guidance_kind": "cfg"}, "guidance kind"),
])
def test_bad_input_is_refused_before_any_work(tiny, signal, kwargs, message):
    _, runtime, _ = tiny
    recording = Recording(runtime)
    with pytest.raises(AnimateMeError, match=message):
        sample(recording, neutral_of(runtime), signal, **kwargs)
    assert recording.calls == []


def test_a_model_trained_on_branch_states_is_sampled_at_its_branch_step_only(tiny):
    _, runtime, _ = tiny
    card = {"training": {"branch_at": 400}}
    for mode in ("ddim", "ddpm"):
        settings = SamplingSettings.from_card(card, mode, schedule=runtime.schedule, labels=runtime.labels)
        assert settings.t_s == 400 and settings.branch_times[0] == 400
    with pytest.raises(AnimateMeError, match="trained to branch its frames at step 400"):
        SamplingSettings.from_card(card, "ddim", schedule=runtime.schedule, labels=runtime.labels, t_s=700)


def test_bad_neutral_is_refused(tiny):
    _, runtime, _ = tiny
    with pytest.raises(AnimateMeError, match="neutral"):
        sample(runtime, np.zeros((10, 3)), ramp_signal(0))
    bad = neutral_of(runtime)
    bad[0, 0] = np.nan
    with pytest.raises(AnimateMeError, match="neutral"):
        sample(runtime, bad, ramp_signal(0))


def test_unknown_label_is_refused_before_a_signal_exists():
    from animateme_blender.core.sample.progression import label_mix

    with pytest.raises(AnimateMeError, match="unknown expression 'joy'"):
        label_mix("joy")


def test_fast_defaults_follow_the_models_schedule():
    """A model trained before the shifted schedule keeps the fast settings measured for it."""
    from animateme_blender.core.sample.settings import FAST_T_S, UNSHIFTED_FAST, fast_defaults
    from animateme_blender.core.sample.schedule import NoiseSchedule

    assert fast_defaults(NoiseSchedule()) == UNSHIFTED_FAST and UNSHIFTED_FAST["t_s"] == 700
    shifted = fast_defaults(NoiseSchedule(snr_shift=100.0))
    assert shifted["t_s"] == FAST_T_S == 400 and shifted["temperature"] == FAST_TEMPERATURE


class ZeroAtNeutral(Recording):
    """The real runtime, except that a neutral signal (e = 0) predicts exactly 0, eps and x0; with
    `factor`, every other prediction is multiplied by it."""

    def __init__(self, runtime, factor=1.0):
        super().__init__(runtime)
        self.factor = factor

    def denoise(self, x_t, t, signal, neutral=None):
        eps, x0 = self.runtime.denoise(x_t, t, signal, neutral)
        keep = np.where(signal.sum(axis=1) > 0, np.float32(self.factor), np.float32(0.0))[:, None, None]
        self.calls.append((x_t.copy(), t.copy(), signal.copy()))
        return eps * keep, x0 * keep


@pytest.mark.parametrize("mode", ["ddim", "ddpm"])
def test_label_guidance(tiny, mode):
    """w = 0 is the plain sampler, bit for bit; "neutral" guidance with pred(0) = 0 is pred(e) (1 + w)
    at every step, the neutral frame e_0 (and the trunk on it) unguided."""
    _, runtime, _ = tiny
    signal = ramp_signal(2, 5)
    kwargs = dict(mode=mode, seed=3) if mode == "ddpm" else dict(mode=mode, seed=3, steps=12, branch_steps=6)
    plain = sample(runtime, neutral_of(runtime), signal, **kwargs)
    assert np.array_equal(plain, sample(runtime, neutral_of(runtime), signal, guidance=0.0,
                                        guidance_kind="others", **kwargs))
    w = 0.5
    guided_model = ZeroAtNeutral(runtime)
    guided = sample(guided_model, neutral_of(runtime), signal, guidance=w, **kwargs)
    scaled = sample(ZeroAtNeutral(runtime, 1.0 + w), neutral_of(runtime), signal, **kwargs)
    assert np.abs(guided - scaled).max() < 1e-4 * np.abs(scaled).max()
    assert np.abs(guided - sample(ZeroAtNeutral(runtime), neutral_of(runtime), signal, **kwargs)).max() > 0.1
    trunk = [c for c in guided_model.calls if len(c[0]) == 1]
    branched = [c for c in guided_model.calls if len(c[0]) > 1]
    assert trunk and all(not c[2].any() for c in trunk)                 # e_0 = 0: no contrast call
    assert all(len(c[0]) == 5 + 4 and not c[2][5:].any() for c in branched)  # 4 frames with e != 0


@pytest.mark.parametrize("mode", ["ddim", "ddpm"])
def test_guidance_rescale_keeps_the_unguided_size(tiny, mode):
    """With pred(0) = 0, "neutral" guidance only scales each prediction by 1 + w; a full rescale
    (phi = 1) brings it back to the unguided size, so the whole sample is the unguided one, and
    phi = 0 is plain guidance."""
    _, runtime, _ = tiny
    signal = ramp_signal(4, 5)
    kwargs = dict(mode=mode, seed=5) if mode == "ddpm" else dict(mode=mode, seed=5, steps=12, branch_steps=6)
    plain = sample(ZeroAtNeutral(runtime), neutral_of(runtime), signal, **kwargs)
    rescaled = sample(ZeroAtNeutral(runtime), neutral_of(runtime), signal, guidance=2.0, guidance_rescale=1.0,
                      **kwargs)
    guided = sample(ZeroAtNeutral(runtime), neutral_of(runtime), signal, guidance=2.0, **kwargs)
    moved = np.abs(guided - plain).max()
    assert moved > 0.1                                               # guidance alone changes the sample
    assert np.abs(rescaled - plain).max() < 1e-2 * moved             # the full rescale undoes it
    assert np.array_equal(guided, sample(ZeroAtNeutral(runtime), neutral_of(runtime), signal, guidance=2.0,
                                         guidance_rescale=0.0, **kwargs))
    with pytest.raises(AnimateMeError, match="rescale"):
        sample(runtime, neutral_of(runtime), signal, guidance=1.0, guidance_rescale=-0.1, **kwargs)


def test_per_label_guidance_weighs_each_frame_by_its_labels(tiny):
    """A one-hot frame gets its label's weight (the same sample as that weight for every label), a
    blend of two labels the intensity-weighted mean of theirs, e = 0 none; a card lacking a label
    is refused."""
    from animateme_blender.core.sample.guidance import label_guidance, row_guidance

    _, runtime, _ = tiny
    by_label = {name: 0.2 * k for k, name in enumerate(runtime.labels)}
    weights = label_guidance(runtime.labels, 0.5, by_label)
    signal = np.zeros((3, len(runtime.labels)), np.float32)
    signal[1, 3] = 0.8
    signal[2, [1, 4]] = (0.3, 0.1)
    rows = row_guidance(signal, weights)
    assert rows[0] == 0 and rows[1] == pytest.approx(0.6) and rows[2] == pytest.approx((0.3 * 0.2 + 0.1 * 0.8) / 0.4)
    kwargs = dict(mode="ddim", seed=4, steps=8, branch_steps=4, guidance_kind="blend")
    ramp = ramp_signal(3, 5)
    per_label = sample(runtime, neutral_of(runtime), ramp, guidance=0.5, guidance_by_label=by_label, **kwargs)
    uniform = sample(runtime, neutral_of(runtime), ramp, guidance=0.6, **kwargs)
    assert np.abs(per_label - uniform).max() < 1e-4 * np.abs(uniform).max()
    with pytest.raises(AnimateMeError, match="lacks"):
        label_guidance(runtime.labels, 0.5, {runtime.labels[0]: 1.0})


def test_the_cards_per_label_guidance_is_the_default_until_a_weight_is_named(tiny, tmp_path):
    import shutil

    from animateme.diffusion.export import write_sampling
    from animateme_blender.core.sample.runtime import card_path

    paths, runtime, _ = tiny
    copy = tmp_path / "per_label.onnx"
    shutil.copy(paths["onnx"], copy)
    shutil.copy(card_path(paths["onnx"]), card_path(copy))
    by_label = {name: 0.1 + 0.2 * k for k, name in enumerate(runtime.labels)}
    write_sampling(copy, 0.5, "blend", guidance_by_label=by_label)
    asking = load_runtime(copy, paths["fingerprint"])
    kwargs = dict(mode="ddim", seed=6, steps=8, branch_steps=4)
    ramp = ramp_signal(3, 4)                                                     # its weight: 0.7
    by_card = sample(asking, neutral_of(runtime), ramp, **kwargs)
    assert np.array_equal(by_card, sample(runtime, neutral_of(runtime), ramp, guidance=0.5, guidance_kind="blend",
                                          guidance_by_label=by_label, **kwargs))
    assert np.abs(by_card - sample(runtime, neutral_of(runtime), ramp, guidance=0.5, guidance_kind="blend",
                                   **kwargs)).max() > 0
    named = sample(asking, neutral_of(runtime), ramp, guidance=0.9, **kwargs)       # 0.9 for every label
    assert np.array_equal(named, sample(runtime, neutral_of(runtime), ramp, guidance=0.9, guidance_kind="blend",
                                        **kwargs))
    # A paper-mode table (calibrated apart) drives mode "ddpm" only.
    paper = {name: 1.5 - 0.2 * k for k, name in enumerate(runtime.labels)}
    write_sampling(copy, 0.5, "blend", guidance_by_label=by_label, paper_guidance_by_label=paper)
    both = load_runtime(copy, paths["fingerprint"])
    assert np.array_equal(sample(both, neutral_of(runtime), ramp, **kwargs), by_card)
    paper_kwargs = dict(mode="ddpm", seed=6, t_s=200)
    assert np.array_equal(sample(both, neutral_of(runtime), ramp, **paper_kwargs),
                          sample(runtime, neutral_of(runtime), ramp, guidance=0.5, guidance_kind="blend",
                                 guidance_by_label=paper, **paper_kwargs))
    assert np.abs(sample(both, neutral_of(runtime), ramp, **paper_kwargs)
                  - sample(asking, neutral_of(runtime), ramp, **paper_kwargs)).max() > 0
    # The card's fast-mode temperature is fast mode's default; paper mode keeps Algorithm 1's 1.
    write_sampling(copy, 0.5, "blend", guidance_by_label=by_label, fast_temperature=0.5)
    cooler = load_runtime(copy, paths["fingerprint"])
    assert np.array_equal(sample(cooler, neutral_of(runtime), ramp, **kwargs),
                          sample(asking, neutral_of(runtime), ramp, temperature=0.5, **kwargs))
    assert np.abs(sample(cooler, neutral_of(runtime), ramp, **kwargs) - by_card).max() > 0
    assert np.array_equal(sample(cooler, neutral_of(runtime), ramp, **paper_kwargs),
                          sample(asking, neutral_of(runtime), ramp, **paper_kwargs))
    with pytest.raises(AnimateMeError, match="temperature"):
        write_sampling(copy, 0.5, "blend", fast_temperature=1.5)


def test_the_cards_guidance_is_the_default(tiny, tmp_path):
    """A card that asks for guidance (`animateme set-sampling`, or export --guidance) gets it when
    the caller names none; an explicit 0 turns it off; a card exported without it samples unguided."""
    import shutil

    from animateme.diffusion.export import write_sampling
    from animateme_blender.core.sample.runtime import card_path
    from animateme_blender.core.sample.settings import card_sampling

    paths, runtime, _ = tiny
    unguided = {"guidance": 0.0, "guidance_kind": "neutral", "guidance_rescale": 0.0, "smoothing": 0.0}
    assert runtime.card["sampling"] == unguided
    assert card_sampling(runtime) == unguided
    copy = tmp_path / "guided.onnx"
    shutil.copy(paths["onnx"], copy)
    shutil.copy(card_path(paths["onnx"]), card_path(copy))
    write_sampling(copy, 0.5, "neutral")
    with pytest.raises(AnimateMeError, match="guidance"):
        write_sampling(copy, -1.0, "neutral")
    asking = ZeroAtNeutral(load_runtime(copy, paths["fingerprint"]))    # the checksum still holds
    assert card_sampling(asking) == unguided | {"guidance": 0.5}
    with pytest.raises(AnimateMeError, match="rescale"):
        write_sampling(copy, 0.5, "neutral", guidance_rescale=1.5)
    signal = ramp_signal(1, 4)
    kwargs = dict(mode="ddim", seed=2, steps=8, branch_steps=4)
    by_card = sample(asking, neutral_of(runtime), signal, **kwargs)
    named = sample(ZeroAtNeutral(runtime), neutral_of(runtime), signal, guidance=0.5, guidance_kind="neutral", **kwargs)
    plain = sample(ZeroAtNeutral(runtime), neutral_of(runtime), signal, **kwargs)
    assert np.array_equal(by_card, named)
    assert np.array_equal(sample(asking, neutral_of(runtime), signal, guidance=0.0, **kwargs), plain)
    assert np.abs(by_card - plain).max() > 0.1 * np.abs(plain).max()


def test_the_cards_smoothing_low_passes_the_output(tiny, tmp_path):
    """A card with `sampling.smoothing` gets the sampler's output low-passed over the template (the
    same as smoothing it afterwards); without the template's triangles that is refused, not skipped."""
    import shutil

    from animateme.diffusion.export import write_sampling
    from animateme_blender.core.sample.runtime import card_path
    from animateme_blender.core.sample.smoothing import smooth_deformations

    paths, runtime, _ = tiny
    copy = tmp_path / "smooth.onnx"
    shutil.copy(paths["onnx"], copy)
    shutil.copy(card_path(paths["onnx"]), card_path(copy))
    write_sampling(copy, 0.0, "neutral", smoothing=0.5)
    smoothing = load_runtime(copy, paths["fingerprint"])
    signal = ramp_signal(3, 4)
    kwargs = dict(mode="ddim", seed=5, steps=8, branch_steps=4)
    with pytest.raises(AnimateMeError, match="triangles"):
        sample(smoothing, neutral_of(runtime), signal, **kwargs)
    faces = np.load(paths["template"])["faces"]
    smoothing.faces = faces
    plain = sample(smoothing, neutral_of(runtime), signal, smoothing=0.0, **kwargs)
    smoothed = sample(smoothing, neutral_of(runtime), signal, **kwargs)
    np.testing.assert_allclose(smoothed, smooth_deformations(plain, faces, 0.5), atol=1e-5)
    assert np.abs(smoothed - plain).max() > 1e-3


def test_guidance_contrasts_move_the_intensity_to_the_other_labels():
    from animateme_blender.core.sample.guidance import guidance_contrasts

    signal = np.zeros((3, 6), np.float32)
    signal[1, 1] = 0.6                                                  # sad at 0.6; row 0 neutral...
    signal[2, [0, 3]] = (0.3, 0.1)                                      # ... and a mix at 0.4
    rows, contrasts, weights = guidance_contrasts(signal, "others")
    mine = rows == 1
    assert np.array_equal(contrasts[mine], 0.6 * np.delete(np.eye(6, dtype=np.float32), 1, axis=0))
    assert np.allclose(weights[mine], 0.2)
    assert np.isclose(weights[rows == 2].sum(), 1.0) and len(weights[rows == 2]) == 6
    rows, contrasts, _ = guidance_contrasts(signal, "blend")
    assert list(rows) == [1, 2] and np.allclose(contrasts[0], np.where(np.arange(6) == 1, 0.0, 0.12))
    assert np.isclose(contrasts[1].sum(), 0.4)
    rows, contrasts, _ = guidance_contrasts(signal, "neutral")
    assert list(rows) == [1, 2] and not contrasts.any()


def test_a_kind_per_label_guides_each_frame_by_its_labels_kinds():
    """One kind for all labels is the single kind, entry for entry; a label of its own kind gets
    that kind's contrast, and a mix of two kinds takes each in its label's share of the intensity."""
    from animateme_blender.core.sample.guidance import guidance_contrasts

    signal = np.zeros((4, 6), np.float32)
    signal[1, 1] = 0.6                                                  # sad (blend)
    signal[2, 5] = 0.8                                                  # disgust (neutral)
    signal[3, [1, 5]] = (0.3, 0.1)                                      # a mix of the two
    for kind in ("blend", "others", "neutral"):
        single, per_label = guidance_contrasts(signal, kind), guidance_contrasts(signal, (kind,) * 6)
        assert all(np.array_equal(a, b) for a, b in zip(single, per_label))
    rows, contrasts, weights = guidance_contrasts(signal, ("blend",) * 5 + ("neutral",))
    blend = guidance_contrasts(signal, "blend")
    assert np.array_equal(contrasts[rows == 1], blend[1][blend[0] == 1]) and weights[rows == 1] == [1.0]
    assert not contrasts[rows == 2].any() and weights[rows == 2] == [1.0]
    mixed_contrasts, mixed_weights = contrasts[rows == 3], weights[rows == 3]
    assert np.allclose(mixed_weights, (0.75, 0.25))                     # sad's share, disgust's share
    assert np.array_equal(mixed_contrasts[0], blend[1][blend[0] == 3][0]) and not mixed_contrasts[1].any()


def test_a_mixed_kind_guides_between_its_parts(tiny):
    """'blend:0.7+neutral:0.3' pushes away from 0.7 of the blend's prediction and 0.3 of the neutral
    frame's: the guided step is the same mixture of the two kinds' guided steps (guidance is linear in
    the contrast), and a mixture that does not sum to 1 or names a kind twice is refused."""
    from animateme_blender.core.sample.guidance import guidance_contrasts, guided_denoise, kind_parts

    assert kind_parts("blend") == (("blend", 1.0),)
    assert kind_parts("blend:0.7 + neutral:0.3") == (("blend", 0.7), ("neutral", 0.3))
    for bad in ("blend:0.7+neutral:0.2", "blend:0.5+blend:0.5", "blend:-0.5+neutral:1.5", "blend:x", "cfg:1"):
        with pytest.raises(AnimateMeError, match="guidance kind"):
            kind_parts(bad)
    _, runtime, _ = tiny
    signal = ramp_signal(1, 4)[[0, 2, 3]]                               # neutral, half and full intensity
    x = np.random.default_rng(3).standard_normal((len(signal), runtime.num_vertices, 3)).astype(np.float32)
    neutral = neutral_feature(neutral_of(runtime))[None] if runtime.uses_neutral else None
    weights = np.full(len(signal), 0.8)

    def guided(kind):
        return guided_denoise(runtime, x, 300, signal, neutral, weights, guidance_contrasts(signal, kind))

    mixed, blend, still = guided("blend:0.7+neutral:0.3"), guided("blend"), guided("neutral")
    for got, a, b in zip(mixed, blend, still):
        expected = 0.7 * a + 0.3 * b
        assert np.abs(got - expected).max() <= 1e-4 * (1.0 + np.abs(expected).max())
        assert np.abs(a - b).max() > 1e-3                               # the two kinds do differ
    rows, _, contrast_weights = guidance_contrasts(signal, "blend:0.7+neutral:0.3")
    assert np.allclose([contrast_weights[rows == row].sum() for row in (1, 2)], 1.0) and 0 not in rows


def test_the_cards_kind_per_label_is_the_default(tiny, tmp_path):
    """A card guiding one label against the neutral frame samples that label as guidance "neutral"
    does and the others as its own kind does; a kind named by the caller is for every label."""
    import shutil

    from animateme.diffusion.export import write_sampling
    from animateme_blender.core.sample.runtime import card_path
    from animateme_blender.core.sample.settings import card_sampling

    paths, runtime, _ = tiny
    copy = tmp_path / "kinds.onnx"
    shutil.copy(paths["onnx"], copy)
    shutil.copy(card_path(paths["onnx"]), card_path(copy))
    with pytest.raises(AnimateMeError, match="sum to 0.9"):
        write_sampling(copy, 0.5, "blend", guidance_kind_by_label={LABELS[2]: "blend:0.5+neutral:0.4"})
    mixed = write_sampling(copy, 0.5, "blend", guidance_kind_by_label={LABELS[2]: "blend:0.50 + neutral:.5"})
    assert mixed["sampling"]["guidance_kind_by_label"] == {LABELS[2]: "blend:0.5+neutral:0.5"}
    write_sampling(copy, 0.5, "blend", guidance_kind_by_label={LABELS[2]: "neutral", LABELS[0]: "blend:1",
                                                                LABELS[1]: " blend "})
    with pytest.raises(AnimateMeError, match="guidance kind"):
        write_sampling(copy, 0.5, "blend", guidance_kind_by_label={LABELS[2]: "cfg"})
    asking = load_runtime(copy, paths["fingerprint"])
    # The default left out, however it is spelled.
    assert card_sampling(asking)["guidance_kind_by_label"] == {LABELS[2]: "neutral"}
    kwargs = dict(mode="ddim", seed=6, steps=8, branch_steps=4, guidance=0.5)
    own, other = ramp_signal(2, 4), ramp_signal(4, 4)
    assert np.array_equal(sample(asking, neutral_of(runtime), own, **kwargs),
                          sample(runtime, neutral_of(runtime), own, guidance_kind="neutral", **kwargs))
    by_blend = sample(runtime, neutral_of(runtime), other, guidance_kind="blend", **kwargs)
    assert np.array_equal(sample(asking, neutral_of(runtime), other, **kwargs), by_blend)
    assert np.array_equal(sample(asking, neutral_of(runtime), own, guidance_kind="others", **kwargs),
                          sample(runtime, neutral_of(runtime), own, guidance_kind="others", **kwargs))
    assert np.abs(sample(asking, neutral_of(runtime), own, **kwargs)
                  - sample(runtime, neutral_of(runtime), own, guidance_kind="blend", **kwargs)).max() > 0
    with pytest.raises(AnimateMeError, match="unknown labels"):
        sample(asking, neutral_of(runtime), own, guidance_kind_by_label={"smirk": "neutral"}, **kwargs)


def test_fast_modes_signal_gain_is_that_labels_signal_times_the_gain(tiny, tmp_path):
    """A gain on one label samples fast mode exactly as that label's column of the signal times the
    gain (a blended label untouched); the card's gains are fast mode's default and paper mode samples
    the signal as given; gains out of range or on unknown labels are refused when written."""
    import shutil

    from animateme.diffusion.export import write_sampling
    from animateme_blender.core.sample.runtime import card_path

    paths, runtime, _ = tiny
    neutral = neutral_of(runtime)
    kwargs = dict(mode="ddim", seed=4, steps=8, branch_steps=4, guidance=0.0)
    blend = ramp_signal(2, 4) + 0.5 * ramp_signal(4, 4)
    scaled = blend.copy()
    scaled[:, 2] *= np.float32(1.6)
    gained = sample(runtime, neutral, blend, fast_gain_by_label={LABELS[2]: 1.6}, **kwargs)
    assert np.array_equal(gained, sample(runtime, neutral, scaled, fast_gain_by_label={}, **kwargs))
    assert np.abs(gained - sample(runtime, neutral, blend, fast_gain_by_label={}, **kwargs)).max() > 1e-3
    copy = tmp_path / "gains.onnx"
    shutil.copy(paths["onnx"], copy)
    shutil.copy(card_path(paths["onnx"]), card_path(copy))
    card = write_sampling(copy, 0.0, "neutral", fast_gain_by_label={LABELS[2]: 1.6, LABELS[3]: 1.0})
    assert card["sampling"]["fast_gain_by_label"] == {LABELS[2]: 1.6}          # a gain of 1 is no gain
    asking = load_runtime(copy, paths["fingerprint"])
    assert np.array_equal(sample(asking, neutral, blend, **kwargs), gained)
    paper = dict(mode="ddpm", seed=4, guidance=0.0)
    assert np.array_equal(sample(asking, neutral, blend[:2], **paper), sample(runtime, neutral, blend[:2], **paper))
    for bad, words in (({"smirk": 1.2}, "unknown labels"), ({LABELS[0]: 0.0}, "signal gain"),
                       ({LABELS[0]: 5.0}, "signal gain")):
        with pytest.raises(AnimateMeError, match=words):
            write_sampling(copy, 0.0, "neutral", fast_gain_by_label=bad)
        with pytest.raises(AnimateMeError, match=words):
            sample(runtime, neutral, blend, fast_gain_by_label=bad, **kwargs)


@pytest.mark.parametrize("mode", ["ddpm", "ddim"])
def test_a_constraint_on_the_prediction_keeps_every_frame_in_its_span(tiny, mode):
    """`constrain` moves each step's x0 (mm) and eps follows from the same x_t: the identity leaves
    the sampler as it was (to float32 rounding); a projection on a few shapes ends every frame in
    their span, still following the label."""
    from animateme_blender.core.rig.rig_weights import SpanProjection

    _, runtime, _ = tiny
    signal = ramp_signal(1, 5)
    kwargs = dict(mode=mode, seed=2) if mode == "ddpm" else dict(mode=mode, seed=2, steps=12, branch_steps=6)
    plain = sample(runtime, neutral_of(runtime), signal, smoothing=0.0, **kwargs)
    same = sample(runtime, neutral_of(runtime), signal, smoothing=0.0, constrain=lambda x0: x0, **kwargs)
    assert np.abs(same - plain).max() <= 1e-3 * np.abs(plain).max()
    rng = np.random.default_rng(0)
    shapes = np.concatenate([plain[-1:], rng.normal(size=(2,) + plain.shape[1:])]) * 2.0
    projection = SpanProjection(shapes)
    spanned = sample(runtime, neutral_of(runtime), signal, smoothing=0.0, constrain=projection, **kwargs)
    rebuilt = projection(spanned)
    assert np.abs(rebuilt - spanned).max() <= 1e-4 * np.abs(spanned).max()
    weights = projection.weights(spanned)
    assert weights.min() >= 0.0 and weights.max() <= 1.0
    assert weights[-1, 0] > weights[0, 0]          # the label's apex grows along the ramp
