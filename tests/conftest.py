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
