"""Shared fixtures: the face model and a template built from it once per test session."""

from __future__ import annotations

import pytest

from animateme import paths


@pytest.fixture(scope="session")
def face_model():
    from animateme.facemodel import load_face_model

    if not paths.face_model_path().exists():
        pytest.fail(f"face model missing at {paths.face_model_path()}: set ANIMATEME_FACE_MODEL")
    return load_face_model()


@pytest.fixture(scope="session")
def template(face_model):
    from animateme.template_build import build_template

    return build_template(face_model, num_vertices=600, show_progress=False)


# ------------------------------------------------------------------------- which Python runs what
# make test runs the suite twice: in .venv (Python 3.11, bpy 5.0.1, numpy 1.26, torch) and in
# .venv313 (Python 3.13, bpy 5.3.0, numpy 2.x, no torch). These files run in both: the extension
# through Blender's extension system and the bpy-free core it carries. Every test_addon_*.py file
# counts too. The rest (training, evaluation, data preparation) needs torch or only matters where
# training runs, and is reported as skipped where torch is missing. test_registration*.py stay on
# 3.11: they remesh their inputs with meshmonk, whose wheel does not import on 3.13 (the fit itself
# runs on 3.13 in test_pipeline.py and the extension tests).
BOTH_PYTHONS = frozenset({
    "test_docs_links.py",
    "test_import_cycles.py",
    "test_batch.py",
    "test_meshio.py",
    "test_pipeline.py",
    "test_progression.py",
    "test_rig.py",
    "test_schedule.py",
    "test_smooth_carry.py",
    "test_smoothing.py",
    "test_spirals.py",
    "test_template.py",
    "test_transfer.py",
    "test_unfold.py",
})


def runs_on_both_pythons(path) -> bool:
    return path.name in BOTH_PYTHONS or path.name.startswith("test_addon_")


def _has_torch() -> bool:
    import importlib.util

    return importlib.util.find_spec("torch") is not None


class _ThreeElevenOnly(pytest.Module):
    def collect(self):
        pytest.skip(f"{self.path.name}: Python 3.11 only (training side, torch); BOTH_PYTHONS in "
                    "tests/conftest.py lists the files that also run on 3.13")


def pytest_pycollect_makemodule(module_path, parent):
    if not runs_on_both_pythons(module_path) and not _has_torch():
        return _ThreeElevenOnly.from_parent(parent, path=module_path)
    return None


def pytest_collection_modifyitems(config, items):
    for item in items:
        if runs_on_both_pythons(item.path):
            item.add_marker(pytest.mark.both_pythons)


def pytest_report_header(config):
    import sys

    import numpy

    return (f"animateme: Python {sys.version_info[0]}.{sys.version_info[1]}, numpy {numpy.__version__}, "
            f"torch {'present' if _has_torch() else 'absent: only both-Python files run'}")
