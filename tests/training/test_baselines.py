"""The baselines of Potamias et al.: mesh hierarchy, spiral convolution, LSTM + spiral decoder and
PCA blendshapes, trained for seconds on a tiny synthetic corpus."""

import pytest

pytest.importorskip("torch", reason="needs torch (the training side; Python 3.11 here)")

import numpy as np
import torch

from animateme.baselines import training
from animateme.baselines.hierarchy import build_hierarchy
from animateme.baselines.lstm_decoder import SpiralConv, Upsample, coherence_loss, pair_loss
from animateme.evaluation import metrics
from animateme.evaluation.corpus import load_corpus
from animateme.evaluation.toy import toy_template, write_toy_corpus
from animateme_blender.core.errors import AnimateMeError
from animateme_blender.core.template import Template


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    torch.set_num_threads(1)
    corpus = load_corpus(write_toy_corpus(tmp_path_factory.mktemp("toy"), train_subjects=6, test_subjects=2))
    return corpus, Template.load(corpus.template_path)


@pytest.fixture(scope="module")
def lstm_checkpoint(toy):
    corpus, template = toy
    # 100 epochs: long enough that "learns" holds with a wide margin for any seed (measured over
    # seeds 0-7, a stand-in for another CPU's rounding: loss ratio <= 0.77, error/still <= 0.72,
    # PCA error/still <= 0.49), so no assertion hangs on the last digit of one machine.
    return training.train_lstm(corpus, template, seed=3, epochs=100, batch=4, show_progress=False,
                               log=lambda _: None)


def test_hierarchy_levels_nest_and_upsampling_interpolates():
    template = toy_template(side=16)
    hierarchy = build_hierarchy(template.vertices, template.faces, template.spirals, depth=3, factor=4)
    sizes = [len(level) for level in hierarchy.levels]
    assert sizes == [256, 64, 16, 4]
    for finer, coarser in zip(hierarchy.levels[1:], hierarchy.levels[2:]):
        assert np.array_equal(finer[:len(coarser)], coarser)       # each level holds the next
    for level, spirals in enumerate(hierarchy.spirals):
        assert spirals.shape == (sizes[level], 9)
        assert np.array_equal(spirals[:, 0], np.arange(sizes[level]))  # a spiral starts at its centre
        assert spirals.min() >= 0 and spirals.max() < sizes[level]
    for level, (index, weight) in enumerate(zip(hierarchy.up_index, hierarchy.up_weight)):
        assert index.shape == weight.shape == (sizes[level], 3)
        assert np.allclose(weight.sum(axis=1), 1.0) and weight.min() >= 0
        # a vertex kept at the coarser level is copied, not blended
        kept = hierarchy.levels[1] if level == 0 else np.arange(sizes[level + 1])  # FPS prefixes
        assert np.array_equal(index[kept, 0], np.arange(sizes[level + 1]))
        assert np.allclose(weight[kept, 0], 1.0)
    # one up-sampling step: a constant field stays constant, positions land within two grid steps
    upsample = Upsample(hierarchy.up_index[0], hierarchy.up_weight[0])
    assert torch.allclose(upsample(torch.ones(1, 64, 2)), torch.ones(1, 256, 2))
    positions = upsample(torch.as_tensor(template.vertices[hierarchy.levels[1]])[None])[0].numpy()
    spacing = 120.0 / 15
    assert np.linalg.norm(positions - template.vertices, axis=1).max() < 2 * spacing


def test_spiral_conv_is_a_gather_along_the_spiral_and_one_linear_layer():
    torch.manual_seed(0)
    spirals = np.random.default_rng(0).integers(0, 30, (30, 5))
    conv = SpiralConv(4, 7, spirals)
    features = torch.randn(2, 30, 4)
    direct = conv.linear(features[:, torch.as_tensor(spirals)].reshape(2, 30, -1))
    assert torch.allclose(conv(features), direct, atol=1e-5)


def test_pair_loss_agrees_with_eq5_on_one_pair():
    predicted, truth = torch.randn(3, 2, 5, 3), torch.randn(3, 2, 5, 3)
    assert torch.allclose(pair_loss(predicted[:, None], truth[:, None]), coherence_loss(predicted, truth))
    assert coherence_loss(truth, truth) == 0
    shifted = truth + 0.5  # a constant offset: L1 error 0.5 per coordinate, motion unchanged
    assert coherence_loss(shifted, truth).item() == pytest.approx(0.5)


def test_lstm_baseline_learns_and_is_reproducible_from_its_seed(toy, lstm_checkpoint):
    corpus, template = toy
    history = lstm_checkpoint["history"]
    assert history[-1] < 0.9 * history[0]
    again = training.train_lstm(corpus, template, seed=3, epochs=1, show_progress=False, log=lambda _: None)
    first_epoch = training.train_lstm(corpus, template, seed=3, epochs=1, show_progress=False, log=lambda _: None)
    for key, value in again["state_dict"].items():
        assert torch.equal(value, first_epoch["state_dict"][key]), key
    assert lstm_checkpoint["template_fingerprint"] == template.fingerprint
    model = training.build_model(lstm_checkpoint)
    with torch.no_grad():
        generated = model(torch.as_tensor(corpus.test.signal())).numpy()
    assert generated.shape == corpus.test.deform.shape
    # better than standing still (the neutral), which scores the mean motion
    still = metrics.per_vertex_error(np.zeros_like(generated), corpus.test.deform)
    assert metrics.per_vertex_error(generated, corpus.test.deform) < 0.85 * still


def test_pca_baseline_is_driven_by_the_lstm_latent(toy, lstm_checkpoint):
    corpus, _ = toy
    checkpoint = training.train_pca(corpus, lstm_checkpoint, log=lambda _: None)
    assert checkpoint["explained_variance"] > 0.9
    model = training.build_model(checkpoint)
    lstm = training.build_model(lstm_checkpoint)
    for key, value in lstm.encoder.state_dict().items():
        assert torch.equal(model.encoder.state_dict()[key], value)   # the same, frozen encoder
    with torch.no_grad():
        generated = model(torch.as_tensor(corpus.test.signal())).numpy()
        fitted = model(torch.as_tensor(corpus.train.signal())).numpy()
    # Exact, whatever the CPU: the map is a ridge least-squares fit over the training frames, and
    # the zero map (every frame = the PCA mean) is one of its candidates with no ridge penalty, so
    # the fit's training error cannot exceed the mean's (float32 forward pass: 1e-4 slack).
    mean = model.mean.numpy().reshape(-1, 3)
    fitted_sse = np.square(fitted - corpus.train.deform, dtype=np.float64).sum()
    assert fitted_sse <= (1 + 1e-4) * np.square(mean - corpus.train.deform, dtype=np.float64).sum()
    # and on held-out subjects the latent drives it well clear of standing still
    still = metrics.per_vertex_error(np.zeros_like(generated), corpus.test.deform)
    assert metrics.per_vertex_error(generated, corpus.test.deform) < 0.7 * still
    refit = training.train_pca(corpus, lstm_checkpoint, log=lambda _: None)
    assert all(torch.equal(v, refit["state_dict"][k]) for k, v in checkpoint["state_dict"].items())


def test_checkpoints_round_trip_and_refuse_another_template(toy, lstm_checkpoint, tmp_path):
    path = training.checkpoint_path("lstm", tmp_path)
    training.save_checkpoint(lstm_checkpoint, path)
    loaded = training.load_checkpoint("lstm", lstm_checkpoint["template_fingerprint"], tmp_path)
    assert all(torch.equal(v, loaded["state_dict"][k]) for k, v in lstm_checkpoint["state_dict"].items())
    with pytest.raises(AnimateMeError, match="trained on template .* run `animateme baselines train lstm`"):
        training.load_checkpoint("lstm", "v144-0000000000000000", tmp_path)
    with pytest.raises(AnimateMeError, match="no pca baseline .* run `animateme baselines train pca` first"):
        training.load_checkpoint("pca", lstm_checkpoint["template_fingerprint"], tmp_path)
