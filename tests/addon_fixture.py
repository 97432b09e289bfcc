"""Fixtures for the add-on, pipeline and batch tests: a tiny model trained in seconds on the real
template, and neutral test faces on topologies of their own.

Everything is built at test time under a temporary folder from `data/template.npz` (made at
set-up), or under $ANIMATEME_TEST_SHARED (ignored build/test-shared in make test) when that is set,
so that the Python 3.13 run reuses what the 3.11 run made; nothing derived from the face model is
stored in the repository.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
TEMPLATE = REPO / "data" / "template.npz"
LABELS = ("happy", "sad", "surprise", "fear", "angry", "disgust")
# Each label drives a few of the template's generic expression shapes (names as in the template).
LABEL_SHAPES = {
    "happy": ("mouthSmile_L", "mouthSmile_R", "cheekSquint_L", "cheekSquint_R"),
    "sad": ("mouthFrown_L", "mouthFrown_R", "browInnerUp_L", "browInnerUp_R"),
    "surprise": ("browOuterUp_L", "browOuterUp_R", "jawOpen", "eyeWide_L", "eyeWide_R"),
    "fear": ("eyeWide_L", "eyeWide_R", "mouthStretch_L", "mouthStretch_R", "browInnerUp_L"),
    "angry": ("browDown_L", "browDown_R", "noseSneer_L", "noseSneer_R", "mouthPress_L"),
    "disgust": ("noseSneer_L", "noseSneer_R", "mouthUpperUp_L", "mouthUpperUp_R"),
}
FRAMES = 10


def label_deformations(template) -> np.ndarray:
    """(C,V,3) mm: each label's apex as a sum of the template's expression shapes."""
    names = [str(n) for n in template.expression_names]
    return np.stack([sum(template.expression_modes[names.index(s)] for s in LABEL_SHAPES[label])
                     for label in LABELS]).astype(np.float32)


def tiny_corpus(folder: Path, subjects: int = 4, seed: int = 0) -> Path:
    """train.npz in the corpus contract: neutral faces from identity modes, label shapes ramped."""
    from animateme_blender.core.template import Template

    template = Template.load(TEMPLATE)
    rng = np.random.default_rng(seed)
    apex = label_deformations(template)
    ramp = np.minimum(1.0, np.linspace(0, 2, FRAMES)).astype(np.float32)
    rows = {k: [] for k in ("neutral", "deform", "label", "progression", "subject")}
    for s in range(subjects):
        weights = rng.normal(0, 1, size=len(template.identity_modes)).astype(np.float32)
        face = template.vertices + np.tensordot(weights, template.identity_modes, axes=1)
        for c in range(len(LABELS)):
            p = rng.uniform(0.6, 1.0) * ramp
            rows["neutral"].append(face)
            rows["deform"].append(p[:, None, None] * apex[c][None])
            rows["label"].append(c)
            rows["progression"].append(p)
            rows["subject"].append(s)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "train.npz"
    np.savez(path, **{k: np.asarray(v) for k, v in rows.items()}, label_names=np.asarray(LABELS),
             extremeness=np.ones(len(rows["label"]), np.float32), fingerprint=np.array(template.fingerprint))
    return path


def tiny_model(folder: Path, steps: int = 20) -> Path:
    """models/ folder with animateme.onnx + animateme.json, trained for `steps` steps (seconds)."""
    from animateme.diffusion.export import export
    from animateme.diffusion.train import TrainConfig, train

    corpus = tiny_corpus(folder / "corpus")
    config = TrainConfig(corpus=str(corpus), template=str(TEMPLATE), run_dir=str(folder / "run"), steps=steps,
                         batch=16, lr=3e-3, warmup=10, ema_decay=0.9, seed=0, device="cpu",
                         channels=(8, 8), spiral_lengths=(6, 6), log_every=10, progress=False,
                         # the shipped model's recipe (x0 head, linear schedule): what the extension runs
                         prediction="x0", global_context=False, snr_shift=1.0)
    checkpoint = train(config)
    models = folder / "models"
    export(checkpoint, TEMPLATE, models / "animateme.onnx")
    return models


def cached_tiny_model(cache: Path) -> Path:
    """One tiny model per test session (training is the slow part)."""
    models = cache / "models"
    if not (models / "animateme.onnx").exists():
        tiny_model(cache)
    return models


def neutral_face(target_vertices: int = 2500, seed: int = 1, scale: float = 0.001, z_up: bool = True,
              identity: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """A neutral face on its own topology (remeshed), in metres and Z-up like a Blender scene."""
    from animateme_blender.core.frames import face_model_to_blender

    vertices, faces = _remeshed_face(target_vertices, seed, identity)
    vertices = vertices * scale
    if z_up:
        vertices = face_model_to_blender(vertices)
    return np.asarray(vertices, np.float64), np.asarray(faces, np.int32)


def _remeshed_face(target_vertices: int, seed: int, identity: float) -> tuple[np.ndarray, np.ndarray]:
    """The remeshed face in face-model millimetres. Remeshing needs meshmonk, whose wheel runs on
    Python 3.11/3.12 only; with a shared folder the 3.11 run keeps each face there for 3.13."""
    shared = shared_dir()
    cached = None
    if shared is not None:
        cached = shared / "faces" / f"neutral-{target_vertices}-{seed}-{identity!r}.npz"
        if cached.exists():
            with np.load(cached) as data:
                return data["vertices"], data["faces"]
    try:
        from animateme.remesh import remesh

        from animateme_blender.core.template import Template

        template = Template.load(TEMPLATE)
        rng = np.random.default_rng(seed)
        weights = identity * rng.normal(0, 1, size=len(template.identity_modes))
        face = template.vertices + np.tensordot(weights, template.identity_modes, axes=1)
        vertices, faces, _ = remesh(face, template.faces, target_vertices)
    except ImportError as error:
        raise RuntimeError(f"cannot remesh a test face on this Python ({error}) and none is cached: run the "
                           f"Python 3.11 suite first with the same {SHARED_ENV} (make test does)") from None
    if cached is not None:
        cached.parent.mkdir(parents=True, exist_ok=True)
        np.savez(cached.with_suffix(".part.npz"), vertices=vertices, faces=faces)
        cached.with_suffix(".part.npz").replace(cached)
    return vertices, faces


def card(models: Path) -> dict:
    return json.loads((models / "animateme.json").read_text())


def copy_models(models: Path, target: Path) -> Path:
    target.mkdir(parents=True, exist_ok=True)
    for name in ("animateme.onnx", "animateme.json"):
        shutil.copy2(models / name, target / name)
    return target


# ------------------------------------------------------------------------------------ Blender side
_session = {}
# A folder the two make-test runs share (Python 3.11 with torch and meshmonk, then 3.13 without):
# the 3.11 run leaves the tiny model and the remeshed test faces there, the 3.13 run reuses them.
SHARED_ENV = "ANIMATEME_TEST_SHARED"


def shared_dir() -> Path | None:
    import os

    value = os.environ.get(SHARED_ENV)
    return Path(value) if value else None


def session_dir() -> Path:
    """One temporary folder per test process for the slow shared things (model, zip)."""
    import tempfile

    if "dir" not in _session:
        _session["dir"] = Path(tempfile.mkdtemp(prefix="animateme-tests-"))
    return _session["dir"]


def import_bpy():
    """bpy, with Blender's user folders (extensions, their wheels, preferences) in a temporary
    folder, so installing the extension in tests never touches ~/.config/blender."""
    import os
    import sys

    if "bpy" not in sys.modules:
        os.environ.setdefault("BLENDER_USER_RESOURCES", str(session_dir() / "blender-user"))
    import bpy

    return bpy


def session_model() -> Path:
    """The tiny model for this test process, or the one in the shared folder (see shared_dir)."""
    shared = shared_dir()
    if shared is None:
        return cached_tiny_model(session_dir())
    models = shared / "models"
    if not (models / "animateme.onnx").exists() and not _torch_available():
        raise RuntimeError(f"no tiny model in {models} and no torch on this Python to train one: run "
                           f"the Python 3.11 suite first with the same {SHARED_ENV} (make test does)")
    return cached_tiny_model(shared)


def _torch_available() -> bool:
    import importlib.util

    return importlib.util.find_spec("torch") is not None


def session_zip() -> Path:
    """The linux-x64 package built once per test process by build_addon.py, tiny model inside."""
    import subprocess
    import sys

    out = session_dir() / "dist"
    found = sorted(out.glob("animateme-*-linux-x64.zip"))
    if found:
        return found[0]
    result = subprocess.run([sys.executable, str(REPO / "build_addon.py"), "--platform", "linux-x64",
                             "--models", str(session_model()), "--out", str(out)],
                            capture_output=True, text=True, cwd=REPO)
    if result.returncode != 0:
        raise RuntimeError(f"build_addon.py failed:\n{result.stdout}\n{result.stderr}")
    return sorted(out.glob("animateme-*-linux-x64.zip"))[0]


PACKAGE_ID = "animateme"
REPO_MODULE = "user_default"


def installed_extension() -> Path:
    """The session zip installed and enabled through Blender's extension system (once per
    process); returns the installed package folder."""
    import sys

    bpy = import_bpy()
    module = f"bl_ext.{REPO_MODULE}.{PACKAGE_ID}"
    if module not in bpy.context.preferences.addons:
        result = bpy.ops.extensions.package_install_files(filepath=str(session_zip()), repo=REPO_MODULE,
                                                          enable_on_install=True)
        if result != {"FINISHED"}:
            raise RuntimeError(f"package_install_files returned {result}")
    return Path(sys.modules[module].__file__).parent


def extension_site_packages() -> Path:
    """Where Blender unpacked the extensions' wheels for this Python (extensions/.local/...)."""
    import sys

    bpy = import_bpy()
    root = Path(bpy.utils.user_resource("EXTENSIONS"))
    return root / ".local" / "lib" / f"python{sys.version_info[0]}.{sys.version_info[1]}" / "site-packages"


def fresh_scene():
    bpy = import_bpy()
    bpy.ops.wm.read_homefile(use_empty=True)
    return bpy.context.scene


def mesh_object(name: str, vertices: np.ndarray, faces: np.ndarray, select: bool = True):
    """A mesh object from arrays, linked to the scene, selected and active."""
    bpy = import_bpy()
    mesh = bpy.data.meshes.new(name)
    mesh.vertices.add(len(vertices))
    mesh.vertices.foreach_set("co", np.asarray(vertices, np.float32).ravel())
    faces = np.asarray(faces, np.int32)
    mesh.loops.add(faces.size)
    mesh.loops.foreach_set("vertex_index", faces.ravel())
    mesh.polygons.add(len(faces))
    mesh.polygons.foreach_set("loop_start", np.arange(0, faces.size, 3, dtype=np.int32))
    mesh.update(calc_edges=True)
    mesh.validate()
    obj = bpy.data.objects.new(name, mesh)
    bpy.context.scene.collection.objects.link(obj)
    if select:
        for other in bpy.context.view_layer.objects:
            other.select_set(False)
        obj.select_set(True)
        bpy.context.view_layer.objects.active = obj
    return obj


def grid(n: int) -> tuple[np.ndarray, np.ndarray]:
    """An n x n vertex plane (not a face): for shape-key tests and the non-face refusal."""
    u, v = np.meshgrid(np.linspace(-0.1, 0.1, n), np.linspace(-0.1, 0.1, n))
    vertices = np.stack([u.ravel(), np.zeros(n * n), v.ravel()], axis=1)
    index = np.arange(n * n).reshape(n, n)
    a, b, c, d = index[:-1, :-1].ravel(), index[:-1, 1:].ravel(), index[1:, :-1].ravel(), index[1:, 1:].ravel()
    faces = np.concatenate([np.stack([a, b, d], 1), np.stack([a, d, c], 1)])
    return vertices, faces.astype(np.int32)


def key_coordinates(block) -> np.ndarray:
    out = np.empty(len(block.data) * 3, np.float32)
    block.points.foreach_get("co", out)
    return out.reshape(-1, 3)


# ------------------------------------------------------- installed extension and composite faces
EXTENSION_PACKAGE = f"bl_ext.{REPO_MODULE}.{PACKAGE_ID}"


def install_extension():
    """The built zip installed and enabled through Blender's extension system (once); its module."""
    import sys

    installed_extension()
    return sys.modules[EXTENSION_PACKAGE]


def ellipsoid(centre, radii, rings: int = 16, segments: int = 24) -> tuple[np.ndarray, np.ndarray]:
    """A closed, welded ellipsoid (a torso or shoulders stand-in), Y up, outward-facing triangles."""
    theta = np.linspace(0, np.pi, rings + 1)[1:-1]
    phi = np.linspace(0, 2 * np.pi, segments, endpoint=False)
    ring = np.stack([np.outer(np.sin(theta), np.cos(phi)), np.outer(np.cos(theta), np.ones_like(phi)),
                     np.outer(np.sin(theta), np.sin(phi))], -1).reshape(-1, 3)
    points = np.vstack([[0, 1, 0], ring, [0, -1, 0]]) * np.asarray(radii, float) + np.asarray(centre, float)
    faces = []
    for s in range(segments):
        n = (s + 1) % segments
        faces.append((0, 1 + n, 1 + s))
        for r in range(rings - 2):
            a, b = 1 + r * segments + s, 1 + r * segments + n
            faces += [(a, b, b + segments), (a, b + segments, a + segments)]
        bottom = 1 + (rings - 2) * segments
        faces.append((bottom + s, bottom + n, len(points) - 1))
    return points, np.asarray(faces, np.int32)


def face_with_torso(target_vertices: int = 1500, seed: int = 1, connected: bool = False):
    """A neutral face (mm, Y up, face-model frame) above a torso far larger than it, the torso a
    separate shell (or, `connected`, joined to the chin by one triangle). Returns (vertices, faces,
    landmarks {name: vertex} of the face (Multi-PIE points of the template, left/right the face's
    own), number of face vertices: the torso's follow)."""
    from animateme_blender.core.template import Template

    # The same identity as neutral_face(seed) (its remeshed surface, its landmark points on the model).
    vertices, faces = neutral_face(target_vertices, seed, scale=1.0, z_up=False)
    template = Template.load(TEMPLATE)
    rng = np.random.default_rng(seed)
    face = template.vertices + np.tensordot(rng.normal(0, 1, size=len(template.identity_modes)),
                                            template.identity_modes, axes=1)
    points = {"nose_tip": 30, "mouth_right": 48, "mouth_left": 54, "eye_outer_right": 36,
              "eye_inner_right": 39, "eye_inner_left": 42, "eye_outer_left": 45, "chin": 8}
    landmarks = {name: int(np.argmin(np.linalg.norm(vertices - face[template.landmarks[i]], axis=1)))
                 for name, i in points.items()}
    torso_v, torso_f = ellipsoid((0.0, -420.0, 20.0), (330.0, 250.0, 170.0))
    all_v = np.concatenate([vertices, torso_v])
    all_f = np.concatenate([faces, torso_f + len(vertices)])
    if connected:
        chin = landmarks["chin"]
        near = len(vertices) + np.argsort(np.linalg.norm(torso_v - vertices[chin], axis=1))[:2]
        all_f = np.concatenate([all_f, [[chin, near[1], near[0]]]])
    return all_v, all_f.astype(np.int32), landmarks, len(vertices)
