"""The headless batch: argument parsing, job files, and a real run through the bpy module on two
heads (plus one missing file) with Cycles rendering on the CPU."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from addon_fixture import REPO, TEMPLATE, import_bpy, neutral_face, session_dir, session_model

bpy = import_bpy()
from animateme_blender.blender import batch  # noqa: E402
from animateme_blender.core.errors import AnimateMeError  # noqa: E402


def parse(argv):
    return batch.jobs_from_args(batch.build_parser().parse_args(batch.script_arguments(argv)))


def test_blender_style_arguments_after_double_dash():
    argv = ["blender", "--background", "scene.blend", "--python", "batch.py", "--", "--object", "Head",
            "--expression", "sad", "--mix", "happy:0.25", "--frames", "30", "--seed", "4", "--out", "o"]
    (job,) = parse(argv)
    assert (job.object, job.expression, job.frames, job.seed) == ("Head", "sad", 30, 4)
    request = job.request()
    assert (request.second, request.mix, request.label) == ("happy", 0.25, "sad-happy25")
    assert job.output_name() == "Head_sad-happy25_s4"


def test_mix_parsing_and_errors():
    assert batch.parse_mix("sad:0.3") == ("sad", 0.3)
    assert batch.parse_mix("Surprise") == ("surprise", 0.5)
    with pytest.raises(AnimateMeError, match="LABEL:WEIGHT"):
        batch.parse_mix("sad:lots")
    with pytest.raises(AnimateMeError, match="--input"):
        parse(["--expression", "sad", "--out", "o"])


def test_job_files_json_product_and_csv(tmp_path):
    spec = {"defaults": {"frames": 20, "seed": 2}, "inputs": ["a.obj", "b.obj"],
            "expressions": ["happy", {"expression": "sad", "mix": "fear:0.5"}],
            "jobs": [{"input": "/abs/c.ply", "expression": "angry", "transition": "yes", "mix": "disgust"}]}
    (tmp_path / "jobs.json").write_text(json.dumps(spec))
    jobs = parse(["--job", str(tmp_path / "jobs.json"), "--out", "o"])
    assert len(jobs) == 5
    assert jobs[0].input == "/abs/c.ply" and jobs[0].request().label == "angry-to-disgust"
    assert [j.request().label for j in jobs[1:]] == ["happy", "sad-fear50", "happy", "sad-fear50"]
    assert all(j.frames == 20 and j.seed == 2 for j in jobs)
    assert jobs[1].input == str(tmp_path / "a.obj")           # relative to the job file

    (tmp_path / "jobs.csv").write_text("input,expression,seed,variation\nx.obj,happy,1,0.5\ny.obj,surprise,,\n")
    jobs = parse(["--job", str(tmp_path / "jobs.csv"), "--frames", "12", "--out", "o"])
    assert [(j.expression, j.seed, j.frames) for j in jobs] == [("happy", 1, 12), ("surprise", 0, 12)]
    assert [j.request().variation for j in jobs] == [0.5, None]

    (tmp_path / "bad.csv").write_text("input,colour\nx.obj,red\n")
    with pytest.raises(AnimateMeError, match="unknown job column"):
        parse(["--job", str(tmp_path / "bad.csv"), "--out", "o"])


def test_batch_on_two_heads_through_the_bpy_module(tmp_path):
    from animateme_blender.core.frames import blender_to_face_model
    from animateme.meshio import write_obj

    heads = tmp_path / "heads"
    heads.mkdir()
    for name, seed, count in (("ada", 1, 2000), ("ben", 2, 2600)):
        vertices, faces = neutral_face(count, seed=seed)
        write_obj(heads / f"{name}.obj", blender_to_face_model(vertices), faces)  # OBJ: Y up
    (tmp_path / "jobs.json").write_text(json.dumps(
        {"inputs": ["heads/ada.obj", "heads/missing.obj", "heads/ben.obj"], "expressions": ["happy"]}))
    out = tmp_path / "out"
    env = {**os.environ, "BLENDER_USER_RESOURCES": str(session_dir() / "blender-user-batch")}
    result = subprocess.run(
        [sys.executable, "-m", "animateme_blender.blender.batch", "--job", str(tmp_path / "jobs.json"),
         "--frames", "8", "--out", str(out), "--render", "--resolution", "64", "--samples", "2",
         "--model", str(session_model() / "animateme.onnx"), "--template", str(TEMPLATE)],
        capture_output=True, text=True, cwd=REPO, env=env, timeout=600)
    errors = [line for line in result.stderr.splitlines() if line.startswith("animateme batch: error")]
    assert result.returncode == 1, result.stdout[-2000:] + result.stderr[-2000:]
    assert len(errors) == 1 and "missing.obj" in errors[0] and "not found" in errors[0]
    report = json.loads((out / "batch_report.json").read_text())
    assert [("error" in r) for r in report] == [False, True, False]

    for name in ("ada_happy_s0", "ben_happy_s0"):
        assert (out / f"{name}.blend").stat().st_size > 0
        assert (out / f"{name}.mp4").stat().st_size > 0 and (out / f"{name}.gif").stat().st_size > 0
        frames = sorted((out / f"{name}_frames").glob("frame_*.png"))
        assert len(frames) == 8
        from PIL import Image

        images = np.stack([np.asarray(Image.open(p).convert("L"), dtype=np.float32) for p in frames])
        assert images.std() > 10                               # a lit face, not a blank frame
        background = np.median(images[0][:4, :4])
        assert (np.abs(images[0] - background) > 20).mean() > 0.1   # the face fills part of it

    bpy.ops.wm.open_mainfile(filepath=str(out / "ada_happy_s0.blend"))
    meshes = [o for o in bpy.data.objects if o.type == "MESH"]
    assert len(meshes) == 1
    keys = [k.name for k in meshes[0].data.shape_keys.key_blocks]
    assert keys == ["Basis"] + [f"AM_happy_f{f:03d}" for f in range(1, 9)]
    assert (bpy.context.scene.frame_start, bpy.context.scene.frame_end) == (1, 8)
    bpy.ops.wm.read_homefile(use_empty=True)
