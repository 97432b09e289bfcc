"""`animateme generate` and the batch job files take the panel's fit controls: --landmarks,
--region, --force (and job columns landmarks, region, force), with refusals that name them."""

from __future__ import annotations

import json

import numpy as np
import pytest

from addon_fixture import TEMPLATE, face_with_torso, grid, import_bpy, session_model
from animateme.cli import main
from animateme.meshio import write_obj


def generate(tmp_path, name, *extra):
    return main(["generate", "--input", str(tmp_path / f"{name}.obj"), "--frames", "6", "--no-preview",
                 "--model", str(session_model() / "animateme.onnx"), "--template", str(TEMPLATE),
                 "--out", str(tmp_path / "out"), *extra])


@pytest.mark.slow
def test_generate_with_landmarks_region_and_force(tmp_path, capsys):
    vertices, faces, landmarks, face_count = face_with_torso()
    write_obj(tmp_path / "bust.obj", vertices, faces)
    assert generate(tmp_path, "bust") == 2                       # alone: refused, with what to do
    said = capsys.readouterr().err
    assert "--landmarks" in said and "--force" in said and "Use Anyway" not in said
    marks = ",".join(f"{k}={landmarks[k]}" for k in ("nose_tip", "mouth_left", "mouth_right"))
    assert generate(tmp_path, "bust", "--landmarks", marks, "--region", f"0-{face_count - 1}") == 0
    with np.load(tmp_path / "out" / "bust_happy_s0.npz") as data:
        moved = np.linalg.norm(data["displacements"], axis=2)
        assert (moved[:, face_count:] == 0).all() and moved[:, landmarks["mouth_left"]].max() > 0.1
        assert not bool(data["forced"])

    plane_v, plane_f = grid(30)
    write_obj(tmp_path / "plane.obj", plane_v * 1000, plane_f)
    assert generate(tmp_path, "plane", "--force") == 0
    assert "used anyway" in capsys.readouterr().out
    with np.load(tmp_path / "out" / "plane_happy_s0.npz") as data:
        assert bool(data["forced"])
    assert generate(tmp_path, "plane", "--landmarks", "nose_tip=1,mouth_left=2") == 2
    assert "at least 3" in capsys.readouterr().err


def test_job_files_carry_landmarks_region_and_force(tmp_path):
    import_bpy()
    from animateme_blender.blender import batch

    spec = {"defaults": {"force": "yes"},
            "jobs": [{"input": "a.obj", "landmarks": {"nose_tip": 1, "mouth_left": 2, "mouth_right": 3},
                      "region": "Face"},
                     {"input": "b.obj", "landmarks": "groups", "force": False}]}
    (tmp_path / "jobs.json").write_text(json.dumps(spec))
    args = batch.build_parser().parse_args(["--job", str(tmp_path / "jobs.json"), "--out", "o"])
    first, second = batch.jobs_from_args(args)
    assert first.force is True and first.region == "Face" and first.landmarks["mouth_right"] == 3
    assert second.force is False and second.landmarks == "groups"
    (tmp_path / "jobs.csv").write_text('input,landmarks,region,force\nc.obj,"nose_tip=4,mouth_left=5,chin=6",0-99,1\n')
    (job,) = batch.jobs_from_args(batch.build_parser().parse_args(["--job", str(tmp_path / "jobs.csv"),
                                                                   "--out", "o"]))
    assert (job.landmarks, job.region, job.force) == ("nose_tip=4,mouth_left=5,chin=6", "0-99", True)
    args = batch.build_parser().parse_args(["--input", "x.obj", "--landmarks", "nose_tip=1,chin=2,mouth_left=3",
                                            "--region", "Face", "--force", "--out", "o"])
    (job,) = batch.jobs_from_args(args)
    assert (job.landmarks, job.region, job.force) == ("nose_tip=1,chin=2,mouth_left=3", "Face", True)
    with pytest.raises(SystemExit):
        batch.build_parser().parse_args(["--input", "x.obj", "--quality", "best", "--out", "o"])
