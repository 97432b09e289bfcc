"""Shared fixtures: the face model and a template built from it once per test session."""

from __future__ import annotations

import functools
from pathlib import Path

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
# .venv313 (Python 3.13, bpy 5.3.0, numpy 2.x; no torch: the local wheel is cp311; no meshmonk: its
# wheel does not import on 3.13). A test module says what it needs at its top:
# `pytest.importorskip("torch")` (training, export, evaluation) or `pytest.importorskip("meshmonk")`
# (it remeshes its inputs; the fit itself runs on 3.13 in test_pipeline.py and the extension
# tests); where that is missing, the module is reported as skipped. Every other module runs on
# both Pythons and is marked both_pythons, read from its source, so `-m both_pythons` selects the
# 3.13 set on 3.11 too.
THREE_ELEVEN_ONLY = frozenset({"torch", "meshmonk"})


def module_needs(path) -> set[str]:
    """The packages a test module asks for at its top with `pytest.importorskip("name")`."""
    import ast

    needs = set()
    for statement in ast.parse(Path(path).read_text(encoding="utf-8")).body:
        call = statement.value if isinstance(statement, (ast.Expr, ast.Assign)) else None
        if (isinstance(call, ast.Call) and isinstance(call.func, ast.Attribute)
                and call.func.attr == "importorskip" and call.args and isinstance(call.args[0], ast.Constant)):
            needs.add(call.args[0].value)
    return needs


@functools.cache
def runs_on_both_pythons(path) -> bool:
    return not module_needs(path) & THREE_ELEVEN_ONLY


def _has_torch() -> bool:
    import importlib.util

    return importlib.util.find_spec("torch") is not None


def pytest_collection_modifyitems(config, items):
    for item in items:
        if runs_on_both_pythons(item.path):
            item.add_marker(pytest.mark.both_pythons)


def pytest_report_header(config):
    import sys

    import numpy

    return (f"animateme: Python {sys.version_info[0]}.{sys.version_info[1]}, numpy {numpy.__version__}, "
            f"torch {'present' if _has_torch() else 'absent: modules that need it skip'}")
