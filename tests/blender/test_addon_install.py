"""The built zip as Blender installs it on this Python (3.11 as in Blender 4.2 - 5.0, or 3.13 as in
5.1 - 5.3): the wheels for this Python and only those are unpacked, and they run beside Blender's own
numpy with nothing else on the path (the test venv's own scipy and onnxruntime can hide a missing or
wrong wheel from the in-process tests)."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import numpy as np

from addon_fixture import PACKAGE_ID, extension_site_packages, installed_extension

THIS_PYTHON = f"{sys.version_info[0]}.{sys.version_info[1]}"
THIS_TAG = f"cp3{sys.version_info[1]}"


def manifest_wheels(installed: Path) -> list[str]:
    with open(installed / "blender_manifest.toml", "rb") as handle:
        return [Path(w).name for w in tomllib.load(handle)["wheels"]]


def test_one_zip_carries_both_pythons_and_blender_unpacks_this_ones():
    installed = installed_extension()
    wheels = manifest_wheels(installed)
    tags = {name.split("-")[-3] for name in wheels}
    assert {"cp311", "cp313"} <= tags                       # the same zip on 3.11 and on 3.13
    site = extension_site_packages()
    unpacked = dict(p.name.removesuffix(".dist-info").split("-") for p in site.glob("*.dist-info"))
    pinned = {name.split("-")[0]: name.split("-")[1] for name in wheels if THIS_TAG in name}
    assert set(pinned) >= {"onnxruntime", "scipy"}
    for name, version in pinned.items():
        assert unpacked.get(name) == version, (name, unpacked)
    assert "numpy" not in unpacked and "meshmonk" not in unpacked
    binaries = [p.name for p in site.rglob("*.so")] + [p.name for p in site.rglob("*.pyd")]
    built_for = {m.group(1) for name in binaries if (m := re.search(r"cpython-(3\d+)", name))}
    assert binaries and built_for == {f"3{sys.version_info[1]}"}, built_for


ISOLATED_PROBE = r"""
import importlib, json, sys
from pathlib import Path
numpy_dir, site, repo_dir, package = sys.argv[1:5]
sys.path[:0] = [numpy_dir, site, repo_dir]
import numpy as np
core = package + ".core"
for name in ("errors", "frames", "pipeline", "request", "sample.progression", "fit.registration",
             "sample.runtime", "sample.sampler", "sample.schedule", "template", "carry.transfer",
             "rig.build"):
    importlib.import_module(core + "." + name)
runtime_module = importlib.import_module(core + ".sample.runtime")
template_module = importlib.import_module(core + ".template")
installed = Path(repo_dir) / package
template = template_module.Template.load(installed / "data" / "template.npz")
runtime = runtime_module.load_runtime(installed / "models" / "animateme.onnx", template, device="cpu")
batch, vertices = 2, runtime.num_vertices
rng = np.random.default_rng(0)
x_t = rng.normal(size=(batch, vertices, 3)).astype(np.float32)
signal = np.eye(len(runtime.labels), dtype=np.float32)[:batch]
neutral = runtime_module.neutral_feature(np.repeat(template.vertices[None], batch, 0))
eps, x0 = runtime.denoise(x_t, np.ones(batch, np.int64), signal, neutral)
import onnxruntime, scipy
print(json.dumps({
    "numpy": np.__file__, "onnxruntime": onnxruntime.__file__, "scipy": scipy.__file__,
    "onnxruntime_version": onnxruntime.__version__, "provider": runtime.provider,
    "shape": list(eps.shape), "vertices": vertices, "finite": bool(np.isfinite(eps).all() and np.isfinite(x0).all()),
}))
"""


def numpy_only_folder(target: Path) -> Path:
    """A folder that holds this venv's numpy and nothing else: what Blender's Python offers."""
    source = Path(np.__file__).parent.parent
    target.mkdir()
    for entry in source.iterdir():
        if entry.name == "numpy" or entry.name.startswith(("numpy.", "numpy-")):
            (target / entry.name).symlink_to(entry)
    return target


def test_bundled_wheels_run_the_core_beside_numpy_alone(tmp_path):
    installed = installed_extension()
    site = extension_site_packages()
    numpy_dir = numpy_only_folder(tmp_path / "blender-python")
    # -I -S: no venv site-packages, no user site, no PYTHONPATH; only the standard library.
    result = subprocess.run([sys.executable, "-I", "-S", "-c", ISOLATED_PROBE, str(numpy_dir), str(site),
                             str(installed.parent), installed.name],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert Path(report["numpy"]).is_relative_to(numpy_dir)
    assert Path(report["onnxruntime"]).is_relative_to(site) and Path(report["scipy"]).is_relative_to(site)
    assert report["provider"] == "CPUExecutionProvider" and report["finite"]
    assert report["shape"] == [2, report["vertices"], 3]
    assert installed.name == PACKAGE_ID
