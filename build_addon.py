#!/usr/bin/env python3
"""Assemble the installable Blender extension: dist/animateme-<version>-<platform>.zip.

Each zip holds, at its root: the add-on code (the contents of `animateme_blender/`), a manifest
that lists only that platform's wheels, `models/` (the ONNX denoiser and its card), the template
built from the face-model data at `data/template.npz`, and the wheels under `wheels/`. Wheels are
pinned by the file names in `blender_manifest.toml` and downloaded once with
`pip download --only-binary=:all:` into an ignored cache (`.whl/`). Every zip is then checked by
Blender's own extension validator (`blender --command extension validate`, or the same script
that ships inside the `bpy` module).

    python build_addon.py                       # all three platforms
    python build_addon.py --platform linux-x64  # one
    python build_addon.py --gpu                 # onnxruntime-gpu where it exists
"""

from __future__ import annotations

import argparse
import importlib.util
import re
import shutil
import subprocess
import sys
import tomllib
import zipfile
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent
PACKAGE_DIR = REPO / "animateme_blender"
MANIFEST = REPO / "blender_manifest.toml"
PYTHON_VERSION = "3.11"  # the Python that Blender 4.2 - 5.x bundles

# Blender platform -> the wheel platform tags pip may pick for it, newest first.
PLATFORM_TAGS: dict[str, tuple[str, ...]] = {
    "linux-x64": ("manylinux_2_28_x86_64", "manylinux_2_27_x86_64", "manylinux_2_17_x86_64",
                  "manylinux2014_x86_64"),
    "windows-x64": ("win_amd64",),
    "macos-arm64": ("macosx_14_0_arm64", "macosx_13_0_arm64", "macosx_12_0_arm64",
                    "macosx_11_0_arm64"),
}
# onnxruntime-gpu is published for these only; elsewhere a --gpu build keeps the CPU runtime.
GPU_PLATFORMS = ("linux-x64", "windows-x64")
# Never bundled: Blender ships numpy, and a second copy would shadow its own.
NEVER_BUNDLED = ("numpy",)
ARCHIVE_EXCLUDE = re.compile(r"(__pycache__|\.pyc$|\.pyo$|/\.|^\.)")


class BuildError(Exception):
    """Something the person building must fix; the message says what."""


@dataclass(frozen=True)
class Wheel:
    filename: str
    name: str        # normalised distribution name (onnxruntime_gpu, typing_extensions)
    version: str
    platform_tag: str

    @classmethod
    def parse(cls, filename: str) -> "Wheel":
        parts = filename[:-len(".whl")].split("-")
        if not filename.endswith(".whl") or len(parts) not in (5, 6):
            raise BuildError(f"{filename!r} is not a wheel file name")
        return cls(filename, parts[0].lower().replace("-", "_"), parts[1], parts[-1])

    def platforms(self) -> set[str]:
        """The Blender platforms this wheel runs on (all of them for a pure wheel)."""
        if self.platform_tag == "any":
            return set(PLATFORM_TAGS)
        tags = set(self.platform_tag.split("."))
        return {p for p, accepted in PLATFORM_TAGS.items() if tags & set(accepted)
                or any(_same_family(t, a) for t in tags for a in accepted)}


def _same_family(tag: str, accepted: str) -> bool:
    # manylinux_2_31_x86_64 and macosx_15_0_arm64 are still their platform's family.
    for prefix, suffix in (("manylinux", "x86_64"), ("macosx", "arm64")):
        if tag.startswith(prefix) and tag.endswith(suffix) and accepted.startswith(prefix) \
                and accepted.endswith(suffix):
            return True
    return False


def read_manifest(path: Path = MANIFEST) -> dict:
    with open(path, "rb") as handle:
        return tomllib.load(handle)


def check_version(manifest: dict) -> str:
    """The manifest and pyproject.toml must agree, or the zip's name would lie."""
    with open(REPO / "pyproject.toml", "rb") as handle:
        project_version = tomllib.load(handle)["project"]["version"]
    if manifest["version"] != project_version:
        raise BuildError(f"blender_manifest.toml says version {manifest['version']} but "
                         f"pyproject.toml says {project_version}: make them the same")
    return project_version


def core_needs(module: str) -> bool:
    """Whether the bpy-free core imports `module` (scipy is bundled only if it does)."""
    pattern = re.compile(rf"^\s*(import|from)\s+{module}\b", re.MULTILINE)
    return any(pattern.search(p.read_text(encoding="utf-8"))
               for p in (PACKAGE_DIR / "core").rglob("*.py"))


def wheels_for(manifest: dict, platform: str, gpu: bool) -> list[Wheel]:
    """The manifest's pinned wheels for one platform, swapped for the GPU runtime if asked."""
    chosen = []
    for entry in manifest.get("wheels", []):
        wheel = Wheel.parse(Path(entry).name)
        if platform not in wheel.platforms() or wheel.name in NEVER_BUNDLED:
            continue
        if wheel.name == "scipy" and not core_needs("scipy"):
            continue
        chosen.append(wheel)
    if gpu and platform in GPU_PLATFORMS:
        chosen = [Wheel(w.filename, "onnxruntime_gpu", w.version, w.platform_tag)
                  if w.name == "onnxruntime" else w for w in chosen]
    return chosen


def fetch_wheel(wheel: Wheel, platform: str, cache: Path, offline: bool) -> Path:
    """The cached wheel file, downloading it with pip when it is not there yet."""
    cache.mkdir(parents=True, exist_ok=True)
    pinned = cache / wheel.filename
    if wheel.name != "onnxruntime_gpu" and pinned.exists():
        return pinned
    found = _find_cached(wheel, platform, cache)
    if found:
        return found
    if offline:
        raise BuildError(f"{wheel.filename} is not in {cache} and --offline was given: "
                         "build once with network access")
    dist_name = wheel.name.replace("_", "-")
    command = [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps",
               "--only-binary=:all:", "--python-version", PYTHON_VERSION, "--dest", str(cache),
               f"{dist_name}=={wheel.version}"]
    for tag in PLATFORM_TAGS[platform]:
        command += ["--platform", tag]
    print(f"  downloading {dist_name}=={wheel.version} for {platform}", flush=True)
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0:
        reason = (result.stderr.strip().splitlines() or ["pip failed"])[-1]
        raise BuildError(f"could not download {dist_name}=={wheel.version} for {platform}: "
                         f"{reason}")
    found = _find_cached(wheel, platform, cache)
    if not found:
        raise BuildError(f"pip did not produce {wheel.filename}: update the wheels list in "
                         "blender_manifest.toml to the file pip downloads")
    return found


def _find_cached(wheel: Wheel, platform: str, cache: Path) -> Path | None:
    if wheel.name != "onnxruntime_gpu":
        path = cache / wheel.filename
        return path if path.exists() else None
    for path in sorted(cache.glob(f"onnxruntime_gpu-{wheel.version}-*.whl")):
        if platform in Wheel.parse(path.name).platforms():
            return path
    return None


def platform_manifest(manifest_text: str, platform: str, wheels: list[Path]) -> str:
    """The manifest text for one platform: its own `platforms` and `wheels` lists."""
    listed = "".join(f'  "./wheels/{w.name}",\n' for w in wheels)
    text = re.sub(r"^platforms = \[.*?\]", f'platforms = ["{platform}"]', manifest_text,
                  count=1, flags=re.MULTILINE | re.DOTALL)
    text, count = re.subn(r"^wheels = \[.*?\]", f"wheels = [\n{listed}]", text, count=1,
                          flags=re.MULTILINE | re.DOTALL)
    if count != 1:
        raise BuildError("blender_manifest.toml has no `wheels = [...]` list")
    if not wheels:
        text = re.sub(r"^wheels = \[\n\]\n", "", text, flags=re.MULTILINE)
    return text


def add_tree(archive: zipfile.ZipFile, source: Path, prefix: str) -> int:
    count = 0
    for path in sorted(source.rglob("*")):
        relative = path.relative_to(source).as_posix()
        if path.is_file() and not ARCHIVE_EXCLUDE.search(relative):
            archive.write(path, f"{prefix}{relative}")
            count += 1
    return count


def build_platform(platform: str, *, manifest: dict, version: str, out: Path, cache: Path,
                   template: Path, models: Path, gpu: bool, offline: bool) -> Path:
    wheel_paths = [fetch_wheel(w, platform, cache, offline)
                   for w in wheels_for(manifest, platform, gpu)]
    suffix = "-gpu" if gpu and platform in GPU_PLATFORMS else ""
    target = out / f"animateme-{version}-{platform}{suffix}.zip"
    out.mkdir(parents=True, exist_ok=True)
    partial = target.with_suffix(".zip.part")
    with zipfile.ZipFile(partial, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("blender_manifest.toml",
                         platform_manifest(MANIFEST.read_text(encoding="utf-8"), platform,
                                           wheel_paths))
        add_tree(archive, PACKAGE_DIR, "")
        add_tree(archive, models, "models/")
        archive.write(template, "data/template.npz")
        for path in wheel_paths:
            # Wheels are zips already: storing them again costs time and saves nothing.
            archive.write(path, f"wheels/{path.name}", compress_type=zipfile.ZIP_STORED)
    partial.replace(target)
    return target


def blender_validator() -> list[str] | None:
    """A command that runs Blender's extension validator, or None if none is reachable."""
    blender = shutil.which("blender")
    if blender:
        return [blender, "--factory-startup", "--command", "extension", "validate"]
    spec = importlib.util.find_spec("bpy")
    if spec and spec.origin:
        root = Path(spec.origin).parent
        scripts = sorted(root.glob("*/scripts/addons_core/bl_pkg/cli/blender_ext.py"))
        if scripts:
            return [sys.executable, str(scripts[-1]), "validate"]
    return None


def validate(archive: Path) -> None:
    command = blender_validator()
    if command is None:
        print("  warning: no Blender or bpy module found, the package was not validated")
        return
    result = subprocess.run([*command, str(archive)], capture_output=True, text=True)
    output = (result.stdout + result.stderr).strip()
    if result.returncode != 0 or "error" in output.lower():
        raise BuildError(f"Blender's validator rejected {archive.name}: {output}")
    print(f"  validated by Blender's extension tooling: {output.splitlines()[-1] if output else 'ok'}")


def check_inputs(template: Path, models: Path) -> None:
    if not template.is_file():
        raise BuildError(f"{template} is missing: build it with `animateme data template`")
    if not (models / "animateme.onnx").is_file() or not (models / "animateme.json").is_file():
        raise BuildError(f"{models} has no animateme.onnx + animateme.json: train and export "
                         "the model first (or pass --models DIR)")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--platform", action="append", choices=sorted(PLATFORM_TAGS),
                        help="platform to build (repeatable; default: all)")
    parser.add_argument("--gpu", action="store_true",
                        help="bundle onnxruntime-gpu instead of onnxruntime where it exists")
    parser.add_argument("--out", type=Path, default=REPO / "dist")
    parser.add_argument("--cache", type=Path, default=REPO / ".whl", help="wheel download cache")
    parser.add_argument("--template", type=Path, default=REPO / "data" / "template.npz")
    parser.add_argument("--models", type=Path, default=REPO / "models")
    parser.add_argument("--offline", action="store_true", help="use cached wheels only")
    parser.add_argument("--no-validate", action="store_true")
    args = parser.parse_args(argv)
    try:
        check_inputs(args.template, args.models)
        manifest = read_manifest()
        version = check_version(manifest)
        for platform in args.platform or sorted(PLATFORM_TAGS):
            print(f"building {platform}", flush=True)
            archive = build_platform(platform, manifest=manifest, version=version, out=args.out,
                                     cache=args.cache, template=args.template,
                                     models=args.models, gpu=args.gpu, offline=args.offline)
            size_mb = archive.stat().st_size / 2**20
            print(f"  wrote {archive} ({size_mb:.1f} MB)", flush=True)
            if not args.no_validate:
                validate(archive)
    except BuildError as error:
        print(f"build_addon: error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
