"""Learnt guidance (issue 44): label dropout + model guidance, a validation split of training
identities, the export that bakes one weight into the graph, and one-call-per-step sampling."""

import pytest

pytest.importorskip("torch", reason="needs torch (the training side; Python 3.11 here)")

import json

import numpy as np
import torch

from animateme.cli import main
from animateme.diffusion.export import export
from animateme.diffusion.network import Denoiser, DenoiserConfig
from animateme.diffusion.examples import draw_guidance, guided_target, training_rows, validation_identities
from animateme.diffusion.train import TrainConfig, ema_model, load_checkpoint, read_log, train
from animateme.diffusion.data import FrameCorpus
from animateme.diffusion.warm_start import state_from_model
from animateme_blender.core.errors import AnimateMeError
from animateme_blender.core.sample.runtime import load_runtime
from animateme_blender.core.sample.sampler import sample
from animateme_blender.core.sample.settings import SamplingSettings
from diffusion_fixture import LABELS, knn_spirals, grid_mesh, tiny_train_config, write_fixture


@pytest.fixture()
def fixture(tmp_path):
    torch.set_num_threads(1)
    return tmp_path, write_fixture(tmp_path, subjects=8)


def small_model(learnt: bool, seed: int = 0) -> Denoiser:
    torch.manual_seed(seed)
    vertices, _ = grid_mesh()
    config = DenoiserConfig(num_vertices=len(vertices), num_labels=len(LABELS), channels=(8, 8),
                            spiral_lengths=(6, 6), use_neutral=True, prediction="v", learnt_guidance=learnt)
    return Denoiser(config, knn_spirals(vertices, 12)).eval()


def inputs(batch: int = 4, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(batch, 64, 3, generator=g), torch.randint(1, 1000, (batch,), generator=g),
            torch.rand(batch, len(LABELS), generator=g), torch.randn(batch, 64, 3, generator=g))


def test_a_new_guidance_path_starts_silent_and_a_plain_model_refuses_it():
    """Zero-initialised: a learnt-guidance network plays exactly as its plain twin, whatever w, until
    it trains; the null label starts as the zero signal feature. A plain network takes no w."""
    plain, learnt = small_model(False), small_model(True)
    with torch.no_grad():
        for layer in plain.modulations:          # as after training: the conditioning reaches the output
            layer.weight.normal_(0.0, 0.1)
    state = {k: v for k, v in learnt.state_dict().items()}
    state.update(plain.state_dict())
    learnt.load_state_dict(state)
    x = inputs()
    with torch.no_grad():
        want = plain(*x)[1]
        for w in (0.0, 2.0):
            got = learnt(*x, torch.full((4,), w), torch.zeros(4, dtype=torch.bool))[1]
            assert torch.allclose(got, want, atol=1e-6)
        learnt.export_guidance = 1.5
        assert torch.allclose(learnt(*x)[1], want, atol=1e-6)
        with torch.no_grad():
            learnt.guidance_mlp[2].bias.fill_(0.3)
        assert not torch.allclose(learnt(*x)[1], want, atol=1e-3)    # now w reaches the output
    with pytest.raises(AnimateMeError, match="no learnt guidance"):
        plain(*x, torch.zeros(4))


def test_guided_target_is_the_data_plus_w_times_the_teachers_label_direction():
    """Frames at w = 0 keep their x0; a frame at w > 0 is shifted by w (x0(e) - x0(null)) of the
    teacher, both taken at w = 0 on the same noisy input."""
    teacher = small_model(True, seed=1)
    with torch.no_grad():
        for layer in teacher.modulations:
            layer.weight.normal_(0.0, 0.1)
        teacher.null_signal.fill_(0.7)          # a null label the conditional model differs from
    x_t, t, signal, neutral = inputs(5)
    x0 = torch.randn(5, 64, 3)
    weight = torch.tensor([0.0, 1.0, 0.0, 2.5, 0.5])
    target = guided_target(teacher, x0, [x_t, t, signal, neutral], weight)
    with torch.no_grad():
        zero = torch.zeros(5)
        cond = teacher(x_t, t, signal, neutral, zero, torch.zeros(5, dtype=torch.bool))[1]
        uncond = teacher(x_t, t, signal, neutral, zero, torch.ones(5, dtype=torch.bool))[1]
    want = x0 + weight[:, None, None] * (cond - uncond)
    assert torch.allclose(target, want, atol=1e-5)
    assert torch.equal(target[[0, 2]], x0[[0, 2]])
    assert (cond - uncond).abs().max() > 1e-3
    assert guided_target(teacher, x0, [x_t, t, signal, neutral], torch.zeros(5)) is x0


def test_guidance_draws_keep_their_shares():
    config = TrainConfig(corpus="", template="", run_dir="", label_dropout=0.2, guidance_max=2.0,
                         guidance_zero_share=0.25)
    weight, drop = draw_guidance(config, 20_000, torch.Generator().manual_seed(0))
    assert abs(drop.float().mean().item() - 0.2) < 0.02
    assert torch.all(weight[drop] == 0)
    kept = weight[~drop]
    assert abs((kept == 0).float().mean().item() - 0.25) < 0.02
    assert kept.max() <= 2.0 and abs(kept[kept > 0].mean().item() - 1.0) < 0.05


def test_validation_identities_are_never_trained_on_and_survive_a_resume(fixture):
    folder, paths = fixture
    corpus = FrameCorpus.load(paths["corpus"])
    held = validation_identities(corpus, 2, seed=0)
    assert len(held) == 2 and np.array_equal(held, validation_identities(corpus, 2, seed=0))
    rows = training_rows(corpus, held).numpy()
    seen = set(corpus.identity[corpus.subject_of[rows]])
    assert seen.isdisjoint(set(held)) and len(seen) == 6
    with pytest.raises(AnimateMeError, match="val-subjects"):
        validation_identities(corpus, 8, seed=0)
    config = tiny_train_config(folder, paths, steps=10, val_subjects=2, learnt_guidance=True,
                               prediction="v", use_neutral=True)
    train(config)
    state = load_checkpoint(folder / "run")
    assert state["val_identities"] == held.tolist()
    assert json.loads((folder / "run" / "validation.json").read_text())["identities"] == held.tolist()
    config.steps, config.val_subjects = 20, 3           # a resumed run keeps its own split
    train(config)
    assert load_checkpoint(folder / "run")["val_identities"] == held.tolist()
    assert read_log(folder / "run")[:, 0].tolist() == [10, 20]


def test_learnt_guidance_plays_the_guided_prediction_in_one_call(fixture):
    """A tiny model trained with learnt guidance: its prediction at w moves the clean frame further
    along the label than at w = 0; the export bakes w into the graph (parity holds, the card carries
    it and no sampler guidance) and the sampler calls the network once per step."""
    folder, paths = fixture
    checkpoint = train(tiny_train_config(folder, paths, steps=300, learnt_guidance=True, prediction="v",
                                         use_neutral=True, global_context=True, guidance_max=2.0,
                                         label_dropout=0.2))
    model = ema_model(load_checkpoint(checkpoint), np.load(paths["template"])["spirals"])
    # At a mid noise level, w = 2 lengthens the move towards the label's pattern.
    pattern = torch.from_numpy(paths["patterns"][0] / FrameCorpus.load(paths["corpus"]).scale[:, None])
    signal = torch.zeros(16, len(LABELS))
    signal[:, 0] = 1.0
    g = torch.Generator().manual_seed(3)
    x_t = torch.randn(16, 64, 3, generator=g)
    t = torch.full((16,), 300)
    neutral = torch.zeros(16, 64, 3)
    with torch.no_grad():
        along = {w: float((model(x_t, t, signal, neutral, torch.full((16,), w))[1] * pattern).sum(dim=(1, 2)).mean())
                 for w in (0.0, 2.0)}
    assert along[2.0] > along[0.0] > 0

    out = folder / "mg.onnx"
    card = export(checkpoint, paths["template"], out, learnt_guidance=1.0)
    assert card["learnt_guidance"]["weight"] == 1.0 and card["network"]["learnt_guidance"] is True
    assert card["sampling"]["guidance"] == 0.0 and not any(k.endswith("_by_label") for k in card["sampling"])
    assert max(card["parity"]["x0_max_rel_diff"], card["parity"]["epsilon_max_rel_diff"]) < 1e-4
    with pytest.raises(AnimateMeError, match="learnt its guidance"):
        export(checkpoint, paths["template"], folder / "bad.onnx", guidance=0.5, learnt_guidance=1.0)

    # The other one-call form: true CFG against the null label on a doubled batch inside the graph.
    cfg = folder / "cfg.onnx"
    card = export(checkpoint, paths["template"], cfg, learnt_guidance=1.5, guidance_in_graph=True)
    assert card["learnt_guidance"] == card["learnt_guidance"] | {"weight": 1.5, "in_graph": True}
    with torch.no_grad():
        zero, no = torch.zeros(16), torch.zeros(16, dtype=torch.bool)
        cond = model(x_t, t, signal, neutral, zero, no)[1]
        uncond = model(x_t, t, signal, neutral, zero, ~no)[1]
    got = load_runtime(cfg, paths["fingerprint"]).denoise(x_t.numpy(), t.numpy(), signal.numpy(), neutral.numpy())[1]
    assert np.allclose(got, (cond + 1.5 * (cond - uncond)).numpy(), atol=1e-4)

    # The bench's torch twin of each export plays what its graph plays.
    from animateme.diffusion.bench import torch_model_from_onnx
    for path, w in ((out, 1.0), (cfg, 1.5)):
        onnx_card = json.loads(path.with_suffix(".json").read_text())
        twin = torch_model_from_onnx(path, onnx_card, np.load(paths["template"])["spirals"])
        want = load_runtime(path, paths["fingerprint"]).denoise(x_t.numpy(), t.numpy(), signal.numpy(),
                                                                neutral.numpy())[1]
        with torch.no_grad():
            assert np.allclose(twin(x_t, t, signal, neutral)[1].numpy(), want, atol=1e-4)

    runtime = load_runtime(out, paths["fingerprint"])
    calls = []
    denoise = runtime.denoise

    def counting(*args):
        calls.append(len(args[0]))
        return denoise(*args)
    runtime.denoise = counting
    frames = np.zeros((10, len(LABELS)), np.float32)
    frames[:, 0] = np.linspace(0, 1, 10)
    result = sample(runtime, np.zeros((64, 3), np.float32), frames, SamplingSettings.for_runtime(runtime, "ddim"), seed=0)
    assert result.shape == (10, 64, 3) and np.all(np.isfinite(result))
    # 3 shared jumps on e_0 (batch 1), 6 branched on the 10 distinct frames: one call each.
    assert calls == [1] * 3 + [10] * 6


def test_a_plain_model_warm_starts_a_learnt_guidance_run_at_its_own_predictions(fixture):
    folder, paths = fixture
    base = train(tiny_train_config(folder / "base", paths, steps=30, use_neutral=True))
    onnx_path = folder / "base.onnx"
    export(base, paths["template"], onnx_path)
    template = np.load(paths["template"])
    state = state_from_model(onnx_path, template["spirals"], str(template["fingerprint"]), {"learnt_guidance": True})
    assert state["model_config"]["learnt_guidance"] is True
    learnt = Denoiser(DenoiserConfig(**state["model_config"]), template["spirals"]).eval()
    learnt.load_state_dict(state["model"])
    plain = ema_model(load_checkpoint(base), template["spirals"])
    x = inputs()
    with torch.no_grad():
        assert torch.allclose(learnt(*x, torch.full((4,), 1.0))[1], plain(*x)[1], atol=1e-5)
    with pytest.raises(AnimateMeError, match="cannot change"):
        state_from_model(onnx_path, template["spirals"], str(template["fingerprint"]), {"channels": (4,)})
    # The CLI: a learnt-guidance run from the plain model, then its export with a weight.
    run = folder / "cli"
    assert main(["train", "--corpus", str(paths["corpus"]), "--template", str(paths["template"]), "--run", str(run),
                 "--steps", "5", "--batch", "8", "--threads", "1", "--no-progress", "--init-from", str(onnx_path),
                 "--learnt-guidance", "--val-subjects", "2", "--warmup", "2"]) == 0
    out = folder / "cli.onnx"
    assert main(["export", "--run", str(run), "--template", str(paths["template"]), "--out", str(out),
                 "--curve", str(folder / "c.png"), "--learnt-guidance-weight", "0.8"]) == 0
    card = json.loads(out.with_suffix(".json").read_text())
    assert card["learnt_guidance"]["weight"] == 0.8 and card["training"]["validation_identities"] == 2
    assert main(["export", "--run", str(base.parent), "--template", str(paths["template"]), "--out",
                 str(folder / "x.onnx"), "--curve", str(folder / "c.png"), "--learnt-guidance-weight", "0.8"]) == 2


def test_the_null_label_starts_at_the_mean_signal_feature_and_guidance_waits_its_start(fixture):
    folder, paths = fixture
    checkpoint = train(tiny_train_config(folder, paths, steps=1, learnt_guidance=True, prediction="v", lr=1e-9,
                                         warmup=1, guidance_start=5))
    state = load_checkpoint(checkpoint)
    model = ema_model(state, np.load(paths["template"])["spirals"])
    corpus = FrameCorpus.load(paths["corpus"])
    with torch.no_grad():
        mean = model.signal_mlp(torch.from_numpy(corpus.signal)).mean(dim=0)
    assert torch.allclose(model.null_signal, mean, atol=0.05 * float(mean.abs().max()) + 1e-4)
    # Before guidance_start every target is the data: the loss equals a run with guidance off.
    a = train(tiny_train_config(folder / "a", paths, steps=4, learnt_guidance=True, guidance_start=10, log_every=1))
    b = train(tiny_train_config(folder / "b", paths, steps=4, learnt_guidance=True, guidance_start=10,
                                guidance_max=1e-9, log_every=1))
    assert np.allclose(read_log(a.parent)[:, 1], read_log(b.parent)[:, 1], rtol=1e-4)


def test_the_validation_set_holds_exactly_the_held_identities(fixture, tmp_path):
    from animateme.diffusion.validation import write_validation_set

    folder, paths = fixture
    judge = tmp_path / "judge"
    judge.mkdir()
    (judge / "train.npz").symlink_to(paths["corpus"])
    summary = write_validation_set(paths["corpus"], [5, 2], tmp_path / "val", judge)
    source = np.load(paths["corpus"])
    rows = np.flatnonzero(np.isin(source["subject"], [2, 5]))
    with np.load(tmp_path / "val" / "test.npz") as got:
        for key in ("deform", "neutral", "label", "progression", "subject"):
            assert np.array_equal(got[key], source[key][rows])
        assert [str(n) for n in got["label_names"]] == list(LABELS)
    assert summary["sequences"] == len(rows) == 12 and summary["identities"] == [2, 5]
    assert (tmp_path / "val" / "train.npz").resolve() == paths["corpus"].resolve()
    with pytest.raises(AnimateMeError, match="no validation identities"):
        write_validation_set(paths["corpus"], [], tmp_path / "v2", judge)


def test_the_weight_sweep_measures_every_label_on_the_validation_set_and_picks_one_w(fixture, tmp_path):
    from animateme.diffusion.sweep import markdown, sweep

    folder, paths = fixture
    run = folder / "run"
    train(tiny_train_config(folder, paths, steps=40, learnt_guidance=True, prediction="v", val_subjects=2))
    judge = tmp_path / "judge"
    judge.mkdir()
    (judge / "train.npz").symlink_to(paths["corpus"])
    assert main(["val-set", "--run", str(run), "--out", str(tmp_path / "val"), "--judge", str(judge)]) == 0
    result = sweep(run, tmp_path / "val", paths["template"], [0.0, 1.0], per_label=1, show_progress=False)
    assert list(result["ratio"]) == [0.0, 1.0] and result["chosen"] in (0.0, 1.0)
    assert all(set(by_label) == set(LABELS) and all(v > 0 for v in by_label.values())
               for by_label in result["ratio"].values())
    assert "| w |" in markdown(result, "x")
