import numpy as np
import pytest

from animateme_blender.core.errors import AnimateMeError
from animateme_blender.core.sample.schedule import NoiseSchedule, ddim_timesteps


def test_linear_schedule_matches_ddpm_definitions():
    s = NoiseSchedule()
    assert s.T == 1000 and s.betas.shape == (1001,)
    assert s.betas[0] == 0 and np.isclose(s.betas[1], 1e-4) and np.isclose(s.betas[-1], 0.02)
    assert s.alpha_bars[0] == 1.0
    assert np.all(np.diff(s.alpha_bars) < 0)                       # noise only grows
    assert np.allclose(s.alpha_bars[1:], np.cumprod(1 - np.linspace(1e-4, 0.02, 1000)))
    assert 3e-5 < s.alpha_bars[-1] < 1e-4                          # x_T is nearly pure noise


def test_posterior_variance_is_zero_at_the_last_step_and_below_beta():
    s = NoiseSchedule()
    var = s.posterior_variance
    assert var[0] == 0 and var[1] == 0                             # z_1 = 0 in Algorithm 1
    assert np.all(var[2:] > 0) and np.all(var[2:] <= s.betas[2:])


def test_card_round_trip_and_bad_values():
    s = NoiseSchedule(steps=50, beta_start=1e-3, beta_end=0.05)
    assert NoiseSchedule.from_dict(s.to_dict()) == s
    with pytest.raises(AnimateMeError, match="schedule"):
        NoiseSchedule.from_dict({"kind": "linear"})
    with pytest.raises(AnimateMeError, match="betas"):
        NoiseSchedule(beta_start=0.1, beta_end=0.01)
    with pytest.raises(AnimateMeError, match="unknown noise schedule"):
        NoiseSchedule(kind="cosine-ish")


def test_ddim_timesteps_cover_the_segment_without_repeats():
    times = ddim_timesteps(1000, 400, 6)
    assert times[0] == 1000 and times[-1] == 400 and len(times) == 7
    assert np.all(np.diff(times) < 0)
    assert np.array_equal(ddim_timesteps(5, 0, 50), np.arange(5, -1, -1))   # capped at every step
    with pytest.raises(AnimateMeError):
        ddim_timesteps(10, 10, 3)


def test_snr_shift_divides_the_signal_to_noise_ratio_at_every_step():
    plain, shifted = NoiseSchedule(), NoiseSchedule(snr_shift=100.0)
    assert np.allclose(shifted.snr[1:] * 100.0, plain.snr[1:], rtol=1e-9)
    assert np.all(np.diff(shifted.alpha_bars) < 0) and np.all((shifted.betas[1:] > 0) & (shifted.betas[1:] < 1))
    var = shifted.posterior_variance
    assert var[1] == 0 and np.all(var[2:] > 0) and np.all(var[2:] <= shifted.betas[2:])
    assert NoiseSchedule.from_dict(shifted.to_dict()) == shifted
    card = plain.to_dict()
    del card["snr_shift"]                                           # a card written before the shift
    assert NoiseSchedule.from_dict(card) == plain
    with pytest.raises(AnimateMeError, match="snr_shift"):
        NoiseSchedule(snr_shift=0.0)


def test_quadratic_spacing_is_denser_near_the_clean_end():
    times = ddim_timesteps(400, 0, 6, "quadratic")
    assert times[0] == 400 and times[-1] == 0 and len(times) == 7
    jumps = -np.diff(times)
    assert np.all(jumps > 0) and np.all(np.diff(jumps) < 0)         # strictly shrinking jumps
    assert np.array_equal(ddim_timesteps(400, 0, 400, "quadratic"), np.arange(400, -1, -1))
    assert len(np.unique(ddim_timesteps(400, 0, 300, "quadratic"))) == 301  # rounding never merges
    with pytest.raises(AnimateMeError, match="spacing"):
        ddim_timesteps(400, 0, 6, "cubic")


def test_the_schedule_owns_the_forward_noise_and_both_reverse_steps():
    """add_noise and eps_from_x0 invert each other; a deterministic DDIM step from the true x0 and
    eps lands exactly on the forward process at the next time; a DDPM step's noise is one draw
    shared by every frame, and the last step (t = 1) adds none."""
    schedule = NoiseSchedule(snr_shift=4.0)
    rng = np.random.default_rng(0)
    x0, eps = rng.standard_normal((3, 50, 3)), rng.standard_normal((3, 50, 3))
    for t in (1, 400, 1000):
        x_t = schedule.add_noise(x0, eps, t)
        np.testing.assert_allclose(schedule.eps_from_x0(x_t, x0, t), eps, rtol=1e-6, atol=1e-6)
    x_t = schedule.add_noise(x0, eps, 600)
    step = schedule.ddim_step(x_t, eps, x0, 600, 300, 0.0, rng)
    np.testing.assert_allclose(step, schedule.add_noise(x0, eps, 300), rtol=1e-9, atol=1e-12)
    same = np.repeat(x_t[:1], 3, axis=0)
    moved = schedule.ddpm_step(same, np.repeat(eps[:1], 3, axis=0), 600, rng)
    assert np.array_equal(moved[0], moved[1]) and np.array_equal(moved[1], moved[2])   # one z_t
    last = schedule.ddpm_step(x_t, eps, 1, rng)
    assert np.array_equal(last, schedule.ddpm_step(x_t, eps, 1, np.random.default_rng(9)))   # z_1 = 0
