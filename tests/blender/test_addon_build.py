"""build_addon.py: the zip's layout, its per-platform manifest and wheels for Python 3.11 and 3.13,
the Blender range each build declares, and Blender's validator on every platform's zip."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
import tomllib
import zipfile

import pytest

from addon_fixture import REPO, session_model, session_zip

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
                   "core/pipeline.py", "core/request.py", "core/fit/__init__.py", "core/fit/registration.py",
                   "core/sample/__init__.py", "core/sample/sampler.py", "core/carry/__init__.py",
                   "core/carry/transfer.py", "core/rig/__init__.py", "core/rig/build.py",
                   "models/animateme.onnx", "models/animateme.json", "data/template.npz"):
        assert needed in names, needed
    assert not any("__pycache__" in n or n.endswith(".pyc") for n in names)
    # What only the command line and training run stays out (OBJ/PLY reading, spiral building,
    # the headless rig's glTF writer), wherever it would sit.
    assert not [n for n in names if n.rsplit("/", 1)[-1] in ("meshio.py", "spirals.py", "gltf.py")]
    assert all(n.count("/") == 1 for n in names if n.startswith("models/"))   # no models/candidate/
    assert manifest["id"] == "animateme" and manifest["platforms"] == ["linux-x64"]
    # Both Pythons' wheels: Blender 4.2.0 would unpack both, 4.2.13 on picks its own.
    assert manifest["schema_version"] == "1.0.0" and manifest["blender_version_min"] == "4.2.13"
    assert "blender_version_max" not in manifest
    assert set(manifest["permissions"]) == {"files"}
    wheels = {w.split("/")[-1] for w in manifest["wheels"]}
    needed = {"onnxruntime"} | ({"scipy"} if build_addon.core_needs("scipy") else set())
    assert {(w.split("-")[0], w.split("-")[-3]) for w in wheels} == {(n, t) for n in needed for t in ("cp311", "cp313")}
    assert all("win_amd64" not in w and "macosx" not in w for w in wheels)
    assert {f"wheels/{w}" for w in wheels} == {n for n in names if n.startswith("wheels/")}  # listed = inside


@pytest.fixture(scope="module")
def every_platform_zip(tmp_path_factory):
    """The three platforms' zips, built once (with the tiny model) from the cached wheels."""
    out = tmp_path_factory.mktemp("all-platforms")
    result = subprocess.run([sys.executable, str(REPO / "build_addon.py"), "--models",
                             str(session_model()), "--out", str(out), "--no-validate"],
                            capture_output=True, text=True, cwd=REPO)
    assert result.returncode == 0, result.stderr
    return {p.name: p for p in out.glob("*.zip")}


def test_blender_validator_accepts_every_platform_zip_and_rejects_a_broken_one(tmp_path, every_platform_zip):
    command = build_addon.blender_validator()
    assert command is not None, "neither blender nor the bpy module's extension tooling was found"
    assert sorted(every_platform_zip) == [f"animateme-0.1.0-{p}.zip" for p in ("linux-x64", "macos-arm64", "windows-x64")]
    for archive in every_platform_zip.values():
        ok = subprocess.run([*command, str(archive)], capture_output=True, text=True)
        assert ok.returncode == 0 and "error" not in (ok.stdout + ok.stderr).lower(), (archive.name, ok.stdout, ok.stderr)
        with zipfile.ZipFile(archive) as handle:
            manifest = tomllib.loads(handle.read("blender_manifest.toml").decode())
        platform = archive.stem.split("-", 2)[2]
        assert manifest["platforms"] == [platform]
        assert {w.split("-")[-3] for w in manifest["wheels"]} == {"cp311", "cp313"}
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
        assert names.count("onnxruntime") == 2, platform                 # one per Python
        assert "meshmonk" not in names and "numpy" not in names, platform
        assert all(platform in w.platforms() for w in wheels)
        assert {w.python_version() for w in wheels} == {"3.11", "3.13"}
    scipy_needed = build_addon.core_needs("scipy")
    assert ("scipy" in [w.name for w in build_addon.wheels_for(manifest, "linux-x64", False)]) == scipy_needed
    gpu_linux = build_addon.wheels_for(manifest, "linux-x64", gpu=True)
    assert {w.python_tag for w in gpu_linux if w.name == "onnxruntime_gpu"} == {"cp311", "cp313"}
    assert "onnxruntime" not in [w.name for w in gpu_linux]
    gpu_mac = [w.name for w in build_addon.wheels_for(manifest, "macos-arm64", gpu=True)]
    assert "onnxruntime" in gpu_mac                      # no GPU build exists there: CPU stays


def test_one_python_builds_declare_their_blender_range():
    manifest = build_addon.read_manifest()
    only_313 = build_addon.wheels_for(manifest, "windows-x64", gpu=False, pythons=("3.13",))
    assert {w.python_tag for w in only_313} == {"cp313"}
    text = build_addon.MANIFEST.read_text()
    ranges = {}
    for pythons in (("3.11",), ("3.13",), ("3.11", "3.13")):
        parsed = tomllib.loads(build_addon.platform_manifest(text, "linux-x64", [], pythons))
        ranges[pythons] = (parsed["blender_version_min"], parsed.get("blender_version_max"))
    # 3.11 alone: Blender 4.2.0 up to (not including) 5.1, whose Python is 3.13; 3.13 alone: 5.1 on.
    assert ranges == {("3.11",): ("4.2.0", "5.1.0"), ("3.13",): ("5.1.0", None), ("3.11", "3.13"): ("4.2.13", None)}
    assert build_addon.archive_name("0.1.0", "linux-x64", False, ("3.13",)) == "animateme-0.1.0-linux-x64-py313.zip"
    assert build_addon.archive_name("0.1.0", "linux-x64", False, ("3.11", "3.13")) == "animateme-0.1.0-linux-x64.zip"


def test_a_binary_wheel_missing_for_one_python_is_refused():
    manifest = {"wheels": ["./wheels/onnxruntime-1.31.1-cp311-cp311-win_amd64.whl",
                           "./wheels/onnxruntime-1.31.1-cp313-cp313-win_amd64.whl",
                           "./wheels/scipy-1.17.1-cp311-cp311-win_amd64.whl"]}
    needs_scipy = build_addon.core_needs("scipy")
    if needs_scipy:
        with pytest.raises(build_addon.BuildError, match="no scipy wheel for Python 3.13 on windows-x64"):
            build_addon.wheels_for(manifest, "windows-x64", gpu=False)
    only_311 = build_addon.wheels_for(manifest, "windows-x64", gpu=False, pythons=("3.11",))
    assert {w.python_tag for w in only_311} == {"cp311"} and "onnxruntime" in [w.name for w in only_311]


def test_manifest_and_pyproject_versions_agree():
    assert build_addon.check_version(build_addon.read_manifest()) == "0.1.0"


def test_missing_model_is_a_one_line_error(tmp_path):
    result = subprocess.run([sys.executable, str(REPO / "build_addon.py"), "--platform", "linux-x64",
                             "--models", str(tmp_path), "--out", str(tmp_path / "dist")],
                            capture_output=True, text=True)
    assert result.returncode == 2
    assert "animateme.onnx" in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "dist").exists()
