"""The ARKit rig (core/rig/arkit.py, rig_weights.py, build.py) and its glTF file (animateme/gltf.py):
names and sources, deformation transfer's exact cases, bounded weights, and the file read back."""

from __future__ import annotations

import numpy as np
import pygltflib
import pytest

from addon_fixture import TEMPLATE, neutral_face, session_model
from animateme_blender.core.rig.arkit import ARKIT_NAMES, arkit_basis, face_model_sources, personalise
from animateme_blender.core.errors import AnimateMeError
from animateme.gltf import write_glb
from animateme_blender.core.pipeline import Pipeline
from animateme_blender.core.request import Request
from animateme_blender.core.rig.build import build_rig, perform
from animateme_blender.core.rig.rig_weights import solve_weights
from animateme.evaluation.toy import grid_mesh


def test_fifty_two_apple_names_each_from_face_model_shapes():
    assert len(ARKIT_NAMES) == len(set(ARKIT_NAMES)) == 52
    assert face_model_sources("eyeBlinkLeft") == ("eyeBlink_L",)
    assert face_model_sources("mouthSmileRight") == ("mouthSmile_R",)
    assert face_model_sources("browInnerUp") == ("browInnerUp_L", "browInnerUp_R")
    assert face_model_sources("jawLeft") == ("jawLeft",) and face_model_sources("jawOpen") == ("jawOpen",)
    assert face_model_sources("tongueOut") == ()


def synthetic_shapes(vertices: np.ndarray, seed: int = 0):
    """Every face-model shape the mapping asks for, as a smooth random field (E,V,3)."""
    names = sorted({s for n in ARKIT_NAMES for s in face_model_sources(n)})
    rng = np.random.default_rng(seed)
    centres = rng.uniform(vertices.min(0), vertices.max(0), (len(names), 3))
    width = np.ptp(vertices, axis=0).max() / 4
    falloff = np.exp(-np.sum((vertices[None] - centres[:, None]) ** 2, -1) / (2 * width ** 2))
    return rng.normal(size=(len(names), 1, 3)) * falloff[..., None], np.array(names)


def test_basis_sums_the_sides_and_keeps_tongue_out_empty():
    vertices, _ = grid_mesh(6)
    modes, names = synthetic_shapes(vertices)
    basis = arkit_basis(modes, names)
    names = list(names)
    assert basis.shape == (52,) + vertices.shape
    np.testing.assert_allclose(basis[ARKIT_NAMES.index("browInnerUp")],
                               modes[names.index("browInnerUp_L")] + modes[names.index("browInnerUp_R")])
    np.testing.assert_array_equal(basis[ARKIT_NAMES.index("eyeWideRight")], modes[names.index("eyeWide_R")])
    assert not basis[ARKIT_NAMES.index("tongueOut")].any()
    with pytest.raises(AnimateMeError, match="lacks the face-model shape 'jawOpen'"):
        arkit_basis(modes[1:], [n for n in names if n != "jawOpen"])


def test_deformation_transfer_is_exact_on_its_own_face_and_for_translations():
    vertices, faces = grid_mesh(7)
    vertices = vertices + np.c_[np.zeros((len(vertices), 2)), 0.02 * vertices[:, 0] ** 2]   # not flat
    modes, _ = synthetic_shapes(vertices, seed=1)
    shapes = modes[:5]
    np.testing.assert_allclose(personalise(shapes, vertices, vertices, faces), shapes, atol=1e-7)
    subject = vertices * np.array([1.2, 0.9, 1.1]) + np.sin(vertices[:, [1, 2, 0]] / 10)
    shift = np.broadcast_to(np.array([0.5, -1.0, 2.0]), vertices.shape)[None]
    np.testing.assert_allclose(personalise(shift, vertices, subject, faces), shift, atol=1e-7)
    # a real subject gets its own version: the same kind of motion, not the same numbers
    own = personalise(shapes, vertices, subject, faces)
    assert not np.allclose(own, shapes, atol=1e-3)
    for mine, generic in zip(own, shapes):
        assert np.sum(mine * generic) > 0.5 * np.sum(generic * generic)


def random_basis(shapes=8, vertices=40, seed=0):
    return np.random.default_rng(seed).normal(size=(shapes, vertices, 3))


def test_weights_recover_an_exact_performance_and_stay_in_bounds():
    basis = random_basis()
    rng = np.random.default_rng(1)
    truth = rng.uniform(0, 1, (12, 8))
    fit = solve_weights(basis, np.einsum("ks,svc->kvc", truth, basis), smoothing=0.0)
    np.testing.assert_allclose(fit.weights, truth, atol=1e-4)
    assert fit.residual_mm.max() < 1e-3 * fit.target_mm.min()
    beyond = solve_weights(basis, 2.0 * basis[None, 0], smoothing=0.0)   # twice a shape: clipped at 1
    assert beyond.weights.min() >= 0 and beyond.weights.max() <= 1
    assert beyond.weights[0, 0] == pytest.approx(1.0, abs=1e-6)


def test_smoothing_damps_flicker_and_leaves_a_steady_pose_alone():
    basis = random_basis(seed=2)
    rng = np.random.default_rng(3)
    steady = np.tile(rng.uniform(0.2, 0.8, 8), (10, 1))
    fit = solve_weights(basis, np.einsum("ks,svc->kvc", steady, basis), smoothing=1.0)
    np.testing.assert_allclose(fit.weights, steady, atol=1e-3)       # nothing to smooth: exact
    flicker = np.clip(steady + rng.choice([-0.15, 0.15], steady.shape), 0, 1)
    frames = np.einsum("ks,svc->kvc", flicker, basis)
    raw = solve_weights(basis, frames, smoothing=0.0).weights
    smooth = solve_weights(basis, frames, smoothing=1.0).weights
    assert np.abs(np.diff(smooth, axis=0)).sum() < 0.7 * np.abs(np.diff(raw, axis=0)).sum()


@pytest.mark.parametrize("basis, frames, message", [
    (np.zeros((3, 4, 3)), np.zeros((2, 5, 3)), "share"),
    (np.zeros((3, 4, 3)), np.full((2, 4, 3), np.nan), "NaN"),
])
def test_weight_solver_refuses_bad_input(basis, frames, message):
    with pytest.raises(AnimateMeError, match=message):
        solve_weights(basis, frames)


def read_accessor(gltf: pygltflib.GLTF2, index: int) -> np.ndarray:
    accessor = gltf.accessors[index]
    view = gltf.bufferViews[accessor.bufferView]
    blob = gltf.binary_blob()
    dtype = np.uint32 if accessor.componentType == pygltflib.UNSIGNED_INT else np.float32
    width = {"SCALAR": 1, "VEC3": 3}[accessor.type]
    data = np.frombuffer(blob, dtype, accessor.count * width, view.byteOffset + (accessor.byteOffset or 0))
    return data.reshape(accessor.count, width) if width > 1 else data


def test_gltf_file_reads_back_with_names_targets_and_weights_over_time(tmp_path):
    vertices, faces = grid_mesh(5)
    vertices = vertices.astype(np.float32) / 1000
    targets = random_basis(shapes=4, vertices=len(vertices)).astype(np.float32) / 1000
    weights = np.random.default_rng(4).uniform(0, 1, (6, 4)).astype(np.float32)
    names = ["jawOpen", "mouthSmileLeft", "mouthSmileRight", "tongueOut"]
    path = write_glb(tmp_path / "rig.glb", vertices, faces, targets, names, weights, fps=24)
    gltf = pygltflib.GLTF2().load(str(path))
    mesh = gltf.meshes[0]
    assert mesh.extras["targetNames"] == names
    primitive = mesh.primitives[0]
    np.testing.assert_array_equal(read_accessor(gltf, primitive.attributes.POSITION), vertices)
    np.testing.assert_array_equal(read_accessor(gltf, primitive.indices).reshape(-1, 3), faces)
    for target, expected in zip(primitive.targets, targets):
        np.testing.assert_array_equal(read_accessor(gltf, target["POSITION"]), expected)
    animation = gltf.animations[0]
    assert animation.channels[0].target.path == "weights" and animation.channels[0].target.node == 0
    sampler = animation.samplers[0]
    np.testing.assert_allclose(read_accessor(gltf, sampler.input), np.arange(6) / 24, rtol=1e-6)
    np.testing.assert_array_equal(read_accessor(gltf, sampler.output).reshape(6, 4), weights)
    with pytest.raises(AnimateMeError, match="disagree"):
        write_glb(tmp_path / "bad.glb", vertices, faces, targets[:3], names, weights)


def test_rig_on_a_registered_face_replays_the_generated_clip(tmp_path):
    vertices, faces = neutral_face(2000, scale=1.0, z_up=False)
    pipeline = Pipeline(session_model() / "animateme.onnx", TEMPLATE)
    result = pipeline.generate(vertices, faces, Request("surprise", frames=12))
    registered, _ = pipeline.register(vertices, faces)
    rig = build_rig(pipeline.template, registered.fit.template_space, registered.binding)
    assert rig.names == ARKIT_NAMES and rig.shapes.shape == (52,) + vertices.shape
    jaw = np.linalg.norm(rig.shapes[ARKIT_NAMES.index("jawOpen")], axis=-1)
    assert jaw.max() > 5 * np.median(jaw)                 # a shape moves a part of the face
    assert not rig.shapes[ARKIT_NAMES.index("tongueOut")].any()
    performance = perform(rig, result.template_deform)
    assert performance.weights.shape == (12, 52)
    assert performance.weights.min() >= 0 and performance.weights.max() <= 1
    replayed = rig.replay(performance.weights)
    motion = np.linalg.norm(result.displacements, axis=-1).mean(axis=1)
    gap = np.linalg.norm(replayed - result.displacements, axis=-1).mean(axis=1)
    apex = int(np.argmax(motion))
    assert gap[apex] < 0.5 * motion[apex]                  # the rig carries most of the motion


def test_a_clip_sampled_in_the_rigs_span_is_what_its_curves_replay():
    """output "rig": every step's prediction is projected on the face's 52 shapes, so the weights
    rebuild the clip up to their temporal smoothing, where a free clip keeps what they cannot say;
    the rig is built once and kept with the fit."""
    from animateme_blender.core.rig.build import rig_for_result

    vertices, faces = neutral_face(2000, scale=1.0, z_up=False)
    pipeline = Pipeline(session_model() / "animateme.onnx", TEMPLATE)
    free = pipeline.generate(vertices, faces, Request("surprise", frames=12))
    in_span = pipeline.generate(vertices, faces, Request("surprise", frames=12), output="rig")
    rig, performance = rig_for_result(pipeline, vertices, faces, in_span)
    assert rig_for_result(pipeline, vertices, faces, free)[0] is rig
    _, free_performance = rig_for_result(pipeline, vertices, faces, free)
    moving = np.asarray(in_span.progression) > 0
    size = performance.target_mm[moving].mean()
    assert size > 0
    assert performance.residual_mm[moving].mean() < 0.05 * size
    assert performance.residual_mm[moving].mean() < 0.5 * free_performance.residual_mm[moving].mean()
    with pytest.raises(AnimateMeError, match="unknown output"):
        pipeline.generate(vertices, faces, Request("surprise", frames=12), output="curves")
