"""`animateme data ...` from the command line: one-line errors, exit code 2, nothing half-written."""

from __future__ import annotations

import numpy as np

from animateme.cli import main


def test_missing_face_model_is_one_line_and_exit_2(tmp_path, capsys):
    code = main(["data", "template", "--face-model", str(tmp_path / "missing.npz"), "--out", str(tmp_path / "t.npz")])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and "ANIMATEME_FACE_MODEL" in err
    assert not (tmp_path / "t.npz").exists()


def test_corrupt_face_model_leaves_no_template_behind(tmp_path, capsys):
    broken = tmp_path / "ict_facekit.npz"
    broken.write_bytes(b"\x00" * 100)
    code = main(["data", "template", "--face-model", str(broken), "--out", str(tmp_path / "t.npz")])
    assert code == 2 and "corrupt" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == [broken]


def test_preview_without_a_corpus_says_to_build_it(tmp_path, capsys):
    code = main(["data", "preview", "--corpus", str(tmp_path)])
    assert code == 2 and "animateme data build" in capsys.readouterr().err


def test_build_refuses_zero_subjects(capsys):
    code = main(["data", "build", "--quick", "--test-subjects", "0"])
    assert code == 2 and "--test-subjects must be at least 1" in capsys.readouterr().err


def test_template_command_writes_a_loadable_template(tmp_path, capsys):
    from animateme_blender.core.template import Template

    out = tmp_path / "template.npz"
    assert main(["data", "template", "--vertices", "300", "--out", str(out)]) == 0
    template = Template.load(out)
    assert template.num_vertices == 300 and np.isfinite(template.vertices).all()
    assert template.fingerprint in capsys.readouterr().out
