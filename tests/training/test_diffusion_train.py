"""Training: the loss falls, checkpoints resume exactly, the CLI trains and exports."""

import pytest

pytest.importorskip("torch", reason="needs torch (the training side; Python 3.11 here)")

import json

import numpy as np
import torch

from animateme.cli import main
from animateme.diffusion.data import FrameCorpus, per_vertex_scale
from animateme.diffusion.network import Denoiser, DenoiserConfig, SpiralConv
from animateme.diffusion.train import load_checkpoint, read_log, train
from animateme_blender.core.errors import AnimateMeError
from diffusion_fixture import grid_mesh, knn_spirals, tiny_train_config, write_fixture


@pytest.fixture()
def fixture(tmp_path):
    torch.set_num_threads(1)
    return tmp_path, write_fixture(tmp_path)


def test_spiral_conv_is_a_gather_then_one_linear():
    vertices, _ = grid_mesh(4)
    spirals = torch.as_tensor(knn_spirals(vertices, 5))
    conv = SpiralConv(2, 3, spirals)
    x = torch.randn(2, 16, 2)
    manual = torch.stack([conv.linear(x[b, spirals].reshape(16, 10)) for b in range(2)])
    assert torch.allclose(conv(x), manual, atol=1e-6)


def test_denoiser_returns_epsilon_consistent_with_its_x0():
    vertices, _ = grid_mesh(4)
    model = Denoiser(DenoiserConfig(16, 6, channels=(8, 8), spiral_lengths=(4, 6)), knn_spirals(vertices, 8))
    x, t, e = torch.randn(3, 16, 3), torch.tensor([1, 500, 1000]), torch.rand(3, 6)
    eps, x0 = model(x, t, e)
    a = model.sqrt_abar[t][:, None, None]
    assert torch.allclose(a * x0 + (1 - a ** 2).sqrt() * eps, x, atol=1e-4)
    with pytest.raises(AnimateMeError, match="spiral"):
        Denoiser(DenoiserConfig(16, 6, channels=(8,), spiral_lengths=(12,)), knn_spirals(vertices, 8))


def test_the_torch_forward_process_is_the_numpy_schedules():
    """noise.py's float32 formulas give what NoiseSchedule's float64 ones give, and eps_from_x0 and
    x0_from_v undo add_noise and the v target."""
    from animateme.diffusion.noise import TorchSchedule
    from animateme_blender.core.sample.schedule import NoiseSchedule

    schedule = NoiseSchedule(snr_shift=100.0)
    tables = TorchSchedule(schedule)
    x0, eps, t = torch.randn(3, 16, 3), torch.randn(3, 16, 3), torch.tensor([1, 400, 1000])
    x_t = tables.add_noise(x0, eps, t)
    for i, step in enumerate(t.tolist()):
        expected = schedule.add_noise(x0[i].double().numpy(), eps[i].double().numpy(), step)
        np.testing.assert_allclose(x_t[i].numpy(), expected, atol=1e-5)
    at = tables.at(t)
    assert torch.allclose(at.eps_from_x0(x_t, x0), eps, atol=1e-3)
    v = at.a * eps - at.s * x0
    assert torch.allclose(at.x0_from_v(x_t, v), x0, atol=1e-5)
    assert torch.equal(tables.one_minus_abar(t)[:, 0, 0], 1.0 - tables.abar[t])


@pytest.mark.parametrize("prediction,context", [("x0", False), ("v", True)])
def test_both_heads_keep_epsilon_and_x0_consistent(prediction, context):
    vertices, _ = grid_mesh(4)
    config = DenoiserConfig(16, 6, channels=(8, 8), spiral_lengths=(4, 6), prediction=prediction,
                            global_context=context)
    torch.manual_seed(0)
    model = Denoiser(config, knn_spirals(vertices, 8))
    x, t, e = torch.randn(3, 16, 3), torch.tensor([1, 500, 1000]), torch.rand(3, 6)
    eps, x0 = model(x, t, e)
    a = model.sqrt_abar[t][:, None, None]
    assert torch.allclose(a * x0 + (1 - a ** 2).sqrt() * eps, x, atol=1e-4)
    if prediction == "v":
        # x0 = sqrt(abar) x_t - sqrt(1 - abar) v: at t = 1 (sqrt(1 - abar) = 0.01) an untrained
        # network's x0 is already its input; an x0 head would have to learn that identity.
        assert (x0[0] - x[0]).abs().max() < 0.05 * x[0].abs().max()
    with pytest.raises(AnimateMeError, match="prediction"):
        DenoiserConfig(16, 6, prediction="eps")


def test_global_context_lets_a_far_vertex_change_the_output():
    """Spiral layers see a few rings; the mean over all vertices reaches across the face."""
    vertices, _ = grid_mesh(8)
    spirals = knn_spirals(vertices, 4)
    outputs = {}
    for context in (False, True):
        torch.manual_seed(0)
        model = Denoiser(DenoiserConfig(64, 6, channels=(8, 8), spiral_lengths=(4, 4), global_context=context),
                         spirals)
        for layer in model.contexts:             # as if trained: the zero-initialised maps have grown
            torch.nn.init.normal_(layer.weight, std=0.5)
        x, t, e = torch.zeros(1, 64, 3), torch.tensor([300]), torch.zeros(1, 6)
        moved = x.clone()
        moved[0, 63] = 5.0                           # the far corner of the grid
        outputs[context] = (model(x, t, e)[1][0, 0] - model(moved, t, e)[1][0, 0]).abs().max()
    assert outputs[False] == 0.0 and outputs[True] > 1e-4


def test_per_vertex_scale_is_rms_with_a_floor():
    deform = np.zeros((2, 3, 4, 3), np.float32)
    deform[..., 0, :] = 2.0
    deform[..., 1, :] = 0.001
    scale = per_vertex_scale(deform)
    assert np.isclose(scale[0], 2.0) and np.isclose(scale[1], 0.1) and np.isclose(scale[3], 0.1)


def test_loss_falls_and_checkpoint_holds_everything(fixture):
    folder, paths = fixture
    train(tiny_train_config(folder, paths, steps=150))
    log = read_log(folder / "run")
    assert log[-3:, 1].mean() < 0.6 * log[:3, 1].mean()
    state = load_checkpoint(folder / "run")
    assert state["step"] == 150 and set(state) >= {"model", "ema", "optimizer", "generator", "scale"}
    assert state["fingerprint"] == paths["fingerprint"]
    # EMA weights differ from the live ones but follow them.
    live, ema = state["model"]["head.linear.weight"], state["ema"]["head.linear.weight"]
    assert not torch.equal(live, ema) and torch.nn.functional.cosine_similarity(live.flatten(), ema.flatten(), 0) > 0.8


def test_seeded_runs_repeat_and_a_resumed_run_appends_to_its_log(fixture):
    folder, paths = fixture
    for name in ("a", "b"):
        train(tiny_train_config(folder, paths, steps=20, run_dir=str(folder / name)))
    a, b = load_checkpoint(folder / "a"), load_checkpoint(folder / "b")
    for key in a["model"]:
        assert torch.equal(a["model"][key], b["model"][key])            # same seed, same weights
    train(tiny_train_config(folder, paths, steps=30, run_dir=str(folder / "a")))   # longer plan
    assert load_checkpoint(folder / "a")["step"] == 30
    assert read_log(folder / "a")[:, 0].tolist() == [10, 20, 30]       # one log, appended


def test_resume_with_same_plan_is_bitwise_identical(fixture):
    folder, paths = fixture
    train(tiny_train_config(folder, paths, steps=20, run_dir=str(folder / "straight")))
    # The first call is stopped by its wall-clock budget before any step; the second resumes.
    config = tiny_train_config(folder, paths, steps=20, run_dir=str(folder / "split"), max_minutes=0.0)
    train(config)                                                       # stops at once, step 0
    assert load_checkpoint(folder / "split")["step"] == 0
    train(tiny_train_config(folder, paths, steps=20, run_dir=str(folder / "split")))
    a, b = load_checkpoint(folder / "straight"), load_checkpoint(folder / "split")
    for key in a["model"]:
        assert torch.equal(a["model"][key], b["model"][key])


def test_corpus_for_another_template_is_refused(fixture):
    folder, paths = fixture
    data = dict(np.load(paths["corpus"]))
    data["fingerprint"] = np.array("v64-othertemplate000")
    np.savez(folder / "other.npz", **data)
    with pytest.raises(AnimateMeError, match="built for template"):
        train(tiny_train_config(folder, paths, corpus=str(folder / "other.npz")))
    with pytest.raises(AnimateMeError, match="not found"):
        FrameCorpus.load(folder / "missing.npz")


def test_cli_train_then_export(fixture, capsys):
    folder, paths = fixture
    run = folder / "cli-run"
    code = main(["train", "--corpus", str(paths["corpus"]), "--template", str(paths["template"]),
                 "--run", str(run), "--steps", "15", "--batch", "8", "--channels", "8,8",
                 "--spiral-lengths", "4,6", "--threads", "1", "--no-progress", "--use-neutral"])
    assert code == 0 and (run / "checkpoint.pt").exists()
    out = folder / "models" / "m.onnx"
    code = main(["export", "--run", str(run), "--template", str(paths["template"]), "--out", str(out),
                 "--curve", str(folder / "curve.png")])
    assert code == 0 and out.exists() and (folder / "curve.png").stat().st_size > 1000
    assert "parity" in capsys.readouterr().out
    # Without --curve a candidate exported elsewhere draws its curve beside itself, never over the
    # committed reports/training_curve.png (the shipped model's).
    other = folder / "candidate" / "m.onnx"
    assert main(["export", "--run", str(run), "--template", str(paths["template"]), "--out", str(other)]) == 0
    assert (other.parent / "training_curve.png").stat().st_size > 1000
    assert main(["train", "--corpus", str(folder / "nope.npz"), "--template", str(paths["template"]),
                 "--run", str(run)]) == 2


def test_neutral_swap_shows_other_faces_to_the_share_asked(fixture):
    """0 shows every frame its own subject's neutral; 0.5 shows about half of them another's (a
    random row, which is the frame's own with probability 1/count); training with it runs."""
    from animateme.diffusion.examples import shown_subjects
    from animateme.diffusion.train import TrainConfig

    subjects = torch.arange(4000) % 50
    config = TrainConfig(corpus="", template="", run_dir="", neutral_swap=0.0)
    assert torch.equal(shown_subjects(config, subjects, 50, torch.Generator().manual_seed(1)), subjects)
    config.neutral_swap = 0.5
    shown = shown_subjects(config, subjects, 50, torch.Generator().manual_seed(1))
    changed = (shown != subjects).float().mean().item()
    expected = 0.5 * (1 - 1 / 50)
    assert abs(changed - expected) < 5 * (expected * (1 - expected) / 4000) ** 0.5
    assert shown.min() >= 0 and shown.max() < 50
    folder, paths = fixture
    checkpoint = train(tiny_train_config(folder / "swap", paths, steps=4, use_neutral=True, neutral_swap=0.5))
    assert load_checkpoint(checkpoint)["train_config"]["neutral_swap"] == 0.5


def test_a_run_started_from_an_exported_model_begins_at_its_weights(fixture):
    """--init-from: the new run's first state is the exported EMA weights (so its loss starts where
    the model left off, far below a fresh network's), the normalisation is the model's, and a model
    for another template is refused."""
    from animateme.diffusion.export import export
    from animateme.diffusion.warm_start import state_from_model

    folder, paths = fixture
    base = train(tiny_train_config(folder / "base", paths, steps=150, use_neutral=True))
    onnx_path = folder / "base.onnx"
    export(base, paths["template"], onnx_path)
    template = np.load(paths["template"])
    state = state_from_model(onnx_path, template["spirals"], str(template["fingerprint"]))
    ema = load_checkpoint(base)["ema"]
    assert set(state["model"]) == set(ema)
    assert all(torch.equal(state["model"][k], ema[k]) for k in ema)
    assert np.allclose(state["scale"], load_checkpoint(base)["scale"], rtol=1e-5)
    with pytest.raises(AnimateMeError, match="trained on template"):
        state_from_model(onnx_path, template["spirals"], "v64-othertemplate000")

    warm = train(tiny_train_config(folder / "warm", paths, steps=10, use_neutral=True, warmup=5,
                                   init_from=str(onnx_path)))
    cold = train(tiny_train_config(folder / "cold", paths, steps=10, use_neutral=True, warmup=5))
    first = {name: read_log(run.parent)[0, 1] for name, run in (("warm", warm), ("cold", cold))}
    assert first["warm"] < 0.5 * first["cold"]
    assert load_checkpoint(warm)["init_from"]["sha256"] == json.loads(onnx_path.with_suffix(".json").read_text())["sha256"]


def test_upper_face_weight_favours_the_vertices_above_the_nose_and_keeps_the_mean(fixture):
    """The weight is W above landmark 29's height and 1 below, rescaled to mean 1 (the loss keeps its
    size); 1 needs no landmarks; a template without them, or a weight <= 0, is refused before any
    training, and a run records the weight it was trained with."""
    from animateme.diffusion.examples import UPPER_FACE_FROM, vertex_loss_weights

    folder, paths = fixture
    vertices, _ = grid_mesh()
    landmarks = np.zeros(68, dtype=np.int64)
    landmarks[UPPER_FACE_FROM] = int(np.argmin(np.abs(vertices[:, 1] - 5.0)))   # a vertex near y = 5
    weights = vertex_loss_weights(vertices, landmarks, 3.0)
    upper = vertices[:, 1] > vertices[landmarks[UPPER_FACE_FROM], 1]
    assert 0 < upper.sum() < len(vertices)
    assert abs(weights.mean() - 1.0) < 1e-6
    assert np.allclose(weights[upper] / weights[~upper].max(), 3.0) and np.ptp(weights[~upper]) == 0
    assert np.array_equal(vertex_loss_weights(vertices, None, 1.0), np.ones(len(vertices), np.float32))
    with pytest.raises(AnimateMeError, match="landmarks"):
        vertex_loss_weights(vertices, None, 2.0)
    for bad in (0.0, -1.0, float("nan")):
        with pytest.raises(AnimateMeError, match="upper-face-weight"):
            vertex_loss_weights(vertices, landmarks, bad)

    with pytest.raises(AnimateMeError, match="landmarks"):   # the fixture's template has none
        train(tiny_train_config(folder / "none", paths, steps=2, upper_face_weight=3.0))
    assert not (folder / "none" / "run" / "checkpoint.pt").exists()
    with np.load(paths["template"]) as data:
        arrays = dict(data)
    marked = folder / "marked_template.npz"
    np.savez(marked, **arrays, landmarks=landmarks)
    checkpoint = train(tiny_train_config(folder / "upper", {**paths, "template": marked}, steps=4,
                                         upper_face_weight=3.0))
    assert load_checkpoint(checkpoint)["train_config"]["upper_face_weight"] == 3.0
    plain = train(tiny_train_config(folder / "plain", {**paths, "template": marked}, steps=4))
    # Same seed, same batches: only the weights differ, so the logged losses do too.
    assert read_log(checkpoint.parent)[-1, 1] != read_log(plain.parent)[-1, 1]
    from animateme.diffusion.export import export

    card = export(checkpoint, marked, folder / "upper.onnx")
    assert card["training"]["upper_face_weight"] == 3.0


def test_branch_states_are_what_an_ancestral_step_leaves_of_the_e0_trunk():
    """After Algorithm 1 branches at t_s, a DDPM posterior step from x_t = sqrt(abar_t) (b_t x_e0 +
    (1 - b_t) x0) + noise, given the true x0, has a mean whose share of x_e0 is b_{t-1}: the training
    states are the sampler's. b is 1 at t_s, 0 above it and at t = 0, and shrinks towards t = 0."""
    from animateme.diffusion.examples import branch_share
    from animateme_blender.core.sample.schedule import NoiseSchedule

    schedule = NoiseSchedule(snr_shift=100.0)
    share = branch_share(schedule, 400).double().numpy()
    assert share[400] == 1.0 and not share[401:].any() and share[0] == 0.0
    assert np.all(np.diff(share[1:401]) >= 0) and share[1] < 1e-3
    abar, alpha = np.asarray(schedule.alpha_bars), np.asarray(schedule.alphas)
    t = np.arange(2, 401)
    keep = np.sqrt(alpha[t]) * (1 - abar[t - 1]) / (1 - abar[t])       # the posterior's weight on x_t
    assert np.allclose(keep * np.sqrt(abar[t]) * share[t], np.sqrt(abar[t - 1]) * share[t - 1], rtol=1e-5)
    assert not branch_share(schedule, 0).any()


def test_training_on_branch_states_runs_records_and_refuses_a_step_outside_the_schedule(fixture):
    folder, paths = fixture
    with pytest.raises(AnimateMeError, match="--branch-at"):
        train(tiny_train_config(folder / "bad", paths, steps=2, branch_at=5000))
    branched = train(tiny_train_config(folder / "branched", paths, steps=4, branch_at=400))
    plain = train(tiny_train_config(folder / "plain", paths, steps=4))
    assert load_checkpoint(branched)["train_config"]["branch_at"] == 400
    from animateme.diffusion.export import export

    assert export(branched, paths["template"], folder / "branched.onnx")["training"]["branch_at"] == 400
    # Same seed and batches; only the states at t <= 400 differ, so the losses do.
    assert np.isfinite(read_log(branched.parent)[:, 1]).all()
    assert read_log(branched.parent)[-1, 1] != read_log(plain.parent)[-1, 1]
