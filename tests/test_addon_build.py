"""build_addon.py: the zip's layout, its per-platform manifest and wheels, Blender's validator."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
import tomllib
import zipfile

import pytest

from addon_fixture import REPO, session_zip

spec = importlib.util.spec_from_file_location("build_addon", REPO / "build_addon.py")
build_addon = importlib.util.module_from_spec(spec)
sys.modules["build_addon"] = build_addon   # dataclasses look their module up while it loads
spec.loader.exec_module(build_addon)


def test_linux_zip_layout_and_manifest():
    archive = session_zip()
    assert archive.name == "animateme-0.1.0-linux-x64.zip"
    with zipfile.ZipFile(archive) as handle:
        names = set(handle.namelist())
        manifest = tomllib.loads(handle.read("blender_manifest.toml").decode())
    for needed in ("__init__.py", "blender/__init__.py", "blender/operators.py", "blender/batch.py",
                   "core/pipeline.py", "core/sampler.py", "models/animateme.onnx", "models/animateme.json",
                   "data/template.npz"):
        assert needed in names, needed
    assert not any("__pycache__" in n or n.endswith(".pyc") for n in names)
    assert manifest["id"] == "animateme" and manifest["platforms"] == ["linux-x64"]
    assert manifest["schema_version"] == "1.0.0" and manifest["blender_version_min"] == "4.2.0"
    assert set(manifest["permissions"]) == {"files"}
    wheels = {w.split("/")[-1] for w in manifest["wheels"]}
    assert {w.split("-")[0] for w in wheels} >= {"onnxruntime", "meshmonk", "typing_extensions"}
    assert all("win_amd64" not in w and "macosx" not in w for w in wheels)
    assert {f"wheels/{w}" for w in wheels} <= names                  # every listed wheel is inside


def test_blender_validator_accepts_the_zip_and_rejects_a_broken_one(tmp_path):
    command = build_addon.blender_validator()
    assert command is not None, "neither blender nor the bpy module's extension tooling was found"
    ok = subprocess.run([*command, str(session_zip())], capture_output=True, text=True)
    assert ok.returncode == 0 and "error" not in (ok.stdout + ok.stderr).lower()
    broken = tmp_path / "broken.zip"
    with zipfile.ZipFile(session_zip()) as source, zipfile.ZipFile(broken, "w") as target:
        manifest = source.read("blender_manifest.toml").decode().replace('id = "animateme"', 'id = "anim me"')
        target.writestr("blender_manifest.toml", manifest)
        target.writestr("__init__.py", source.read("__init__.py"))
    with pytest.raises(build_addon.BuildError, match="rejected"):
        build_addon.validate(broken)


def test_wheels_per_platform_and_gpu_swap():
    manifest = build_addon.read_manifest()
    for platform in build_addon.PLATFORM_TAGS:
        wheels = build_addon.wheels_for(manifest, platform, gpu=False)
        names = [w.name for w in wheels]
        assert names.count("onnxruntime") == 1 and names.count("meshmonk") == 1, platform
        assert all(platform in w.platforms() for w in wheels)
    scipy_needed = build_addon.core_needs("scipy")
    assert ("scipy" in [w.name for w in build_addon.wheels_for(manifest, "linux-x64", False)]) == scipy_needed
    gpu_linux = [w.name for w in build_addon.wheels_for(manifest, "linux-x64", gpu=True)]
    assert "onnxruntime_gpu" in gpu_linux and "onnxruntime" not in gpu_linux
    gpu_mac = [w.name for w in build_addon.wheels_for(manifest, "macos-arm64", gpu=True)]
    assert "onnxruntime" in gpu_mac                      # no GPU build exists there: CPU stays


def test_manifest_and_pyproject_versions_agree():
    assert build_addon.check_version(build_addon.read_manifest()) == "0.1.0"


def test_missing_model_is_a_one_line_error(tmp_path):
    result = subprocess.run([sys.executable, str(REPO / "build_addon.py"), "--platform", "linux-x64",
                             "--models", str(tmp_path), "--out", str(tmp_path / "dist")],
                            capture_output=True, text=True)
    assert result.returncode == 2
    assert "animateme.onnx" in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "dist").exists()
