"""Where things live. Each default can be overridden by an environment variable."""

from __future__ import annotations

import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent


def face_model_path(override: str | os.PathLike | None = None) -> Path:
    """The face model: --face-model flag, else $ANIMATEME_FACE_MODEL, else ../shared/data."""
    if override:
        return Path(override)
    env = os.environ.get("ANIMATEME_FACE_MODEL")
    if env:
        return Path(env)
    return REPO_ROOT.parent / "shared" / "data" / "ict-facekit" / "ict_facekit.npz"


def data_dir() -> Path:
    """Derived data built at set-up (template, corpus): ignored by git."""
    return Path(os.environ.get("ANIMATEME_DATA_DIR", REPO_ROOT / "data"))


def template_path() -> Path:
    return data_dir() / "template.npz"


def corpus_dir() -> Path:
    return data_dir() / "corpus"


def models_dir() -> Path:
    return Path(os.environ.get("ANIMATEME_MODELS_DIR", REPO_ROOT / "models"))


def reports_dir() -> Path:
    return Path(os.environ.get("ANIMATEME_REPORTS_DIR", REPO_ROOT / "reports"))
