#!/usr/bin/env python3
"""Assemble the installable Blender extension: dist/animateme-<version>-<platform>.zip.

Each zip holds, at its root: the add-on code (the contents of `animateme_blender/`), a manifest
that lists only that platform's wheels, `models/` (the ONNX denoiser and its card), the template
built from the face-model data at `data/template.npz`, and the wheels under `wheels/`. Wheels are
pinned by the file names in `blender_manifest.toml` and downloaded once with
`pip download --only-binary=:all:` into an ignored cache (`.whl/`). Every zip is then checked by
Blender's own extension validator (`blender --command extension validate`, or the same script
that ships inside the `bpy` module).

One zip per platform carries the binary wheels for both Pythons Blender bundles: 3.11 (Blender
4.2 LTS - 5.0) and 3.13 (Blender 5.1 - 5.3). Blender installs only the wheels whose Python tag
matches its own; `--python` builds a smaller zip for one of them.

    python build_addon.py                       # all three platforms, Python 3.11 and 3.13
    python build_addon.py --platform linux-x64  # one
    python build_addon.py --python 3.13         # only Blender 5.1+ (half the size)
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
# The CPython versions official Blender builds bundle: 3.11 in 4.2 LTS - 5.0, 3.13 in 5.1 - 5.3.
PYTHON_VERSIONS = ("3.11", "3.13")
# The oldest Blender each bundle runs on. Blender 4.2.0 installs every wheel of a package whatever
# its Python tag (its bl_pkg wheel filter says "TODO: Match Python & ABI tags"), so a zip with both
# cp311 and cp313 wheels needs a 4.2 LTS update that picks wheels by Python tag; 4.2.13 does (read
# in bl_pkg/bl_extension_ops.py of bpy 4.2.0 and 4.2.13 from the package index; 4.2.1 - 4.2.12
# are not published there, so the first fixed release is not known more precisely).
BLENDER_MIN_FOR_PYTHONS = {("3.11",): "4.2.0", ("3.13",): "5.1.0", ("3.11", "3.13"): "4.2.13"}
# A 3.11-only zip stops at 5.1 (Python 3.13); Blender's manifest maximum is exclusive.
BLENDER_MAX_FOR_PYTHONS = {("3.11",): "5.1.0"}

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
    python_tag: str = "py3"

    @classmethod
    def parse(cls, filename: str) -> "Wheel":
        parts = filename[:-len(".whl")].split("-")
        if not filename.endswith(".whl") or len(parts) not in (5, 6):
            raise BuildError(f"{filename!r} is not a wheel file name")
        return cls(filename, parts[0].lower().replace("-", "_"), parts[1], parts[-1], parts[-3])

    def python_version(self) -> str | None:
        """"3.13" for a cp313 wheel; None for a wheel that runs on any Python 3 (py3)."""
        match = re.fullmatch(r"cp3(\d+)", self.python_tag)
        return f"3.{match.group(1)}" if match else None

    def for_pythons(self, pythons: tuple[str, ...]) -> bool:
        return self.python_version() in (None, *pythons)

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


def wheels_for(manifest: dict, platform: str, gpu: bool,
               pythons: tuple[str, ...] = PYTHON_VERSIONS) -> list[Wheel]:
    """The manifest's pinned wheels for one platform and the given Pythons, swapped for the GPU
    runtime if asked. Refuses a set where a binary distribution lacks one of the Pythons."""
    chosen = []
    for entry in manifest.get("wheels", []):
        wheel = Wheel.parse(Path(entry).name)
        if platform not in wheel.platforms() or wheel.name in NEVER_BUNDLED:
            continue
        if not wheel.for_pythons(pythons):
            continue
        if wheel.name == "scipy" and not core_needs("scipy"):
            continue
        chosen.append(wheel)
    check_every_python(chosen, platform, pythons)
    if gpu and platform in GPU_PLATFORMS:
        chosen = [Wheel(w.filename, "onnxruntime_gpu", w.version, w.platform_tag, w.python_tag)
                  if w.name == "onnxruntime" else w for w in chosen]
    return chosen


def check_every_python(wheels: list[Wheel], platform: str, pythons: tuple[str, ...]) -> None:
    """Each binary distribution must have a wheel for every Python: Blender on the missing one
    would enable the add-on and fail at its first import."""
    binary = {w.name for w in wheels if w.python_version()}
    have = {(w.name, w.python_version()) for w in wheels}
    for name in sorted(binary):
        for python in pythons:
            if (name, python) not in have:
                raise BuildError(f"blender_manifest.toml has no {name} wheel for Python {python} "
                                 f"on {platform}: add one (pip download --only-binary=:all: "
                                 f"--python-version {python})")


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
               "--only-binary=:all:", "--python-version", wheel.python_version() or PYTHON_VERSIONS[0],
               "--dest", str(cache),
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
        found = Wheel.parse(path.name)
        if platform in found.platforms() and found.python_tag == wheel.python_tag:
            return path
    return None


def platform_manifest(manifest_text: str, platform: str, wheels: list[Path],
                      pythons: tuple[str, ...] = PYTHON_VERSIONS) -> str:
    """The manifest text for one platform: its own `platforms` and `wheels` lists, and the Blender
    versions whose Python the bundled wheels serve."""
    listed = "".join(f'  "./wheels/{w.name}",\n' for w in wheels)
    text = re.sub(r"^platforms = \[.*?\]", f'platforms = ["{platform}"]', manifest_text,
                  count=1, flags=re.MULTILINE | re.DOTALL)
    text, count = re.subn(r'^blender_version_min = ".*?"$',
                          f'blender_version_min = "{BLENDER_MIN_FOR_PYTHONS[pythons]}"', text,
                          count=1, flags=re.MULTILINE)
    if count != 1:
        raise BuildError("blender_manifest.toml has no `blender_version_min = \"...\"` line")
    if pythons in BLENDER_MAX_FOR_PYTHONS:
        text = text.replace(f'blender_version_min = "{BLENDER_MIN_FOR_PYTHONS[pythons]}"',
                            f'blender_version_min = "{BLENDER_MIN_FOR_PYTHONS[pythons]}"\n'
                            f'blender_version_max = "{BLENDER_MAX_FOR_PYTHONS[pythons]}"', 1)
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


def archive_name(version: str, platform: str, gpu: bool, pythons: tuple[str, ...]) -> str:
    suffix = "-gpu" if gpu and platform in GPU_PLATFORMS else ""
    if pythons != PYTHON_VERSIONS:
        suffix += "-" + "-".join("py" + p.replace(".", "") for p in pythons)
    return f"animateme-{version}-{platform}{suffix}.zip"


def build_platform(platform: str, *, manifest: dict, version: str, out: Path, cache: Path,
                   template: Path, models: Path, gpu: bool, offline: bool,
                   pythons: tuple[str, ...] = PYTHON_VERSIONS) -> Path:
    wheel_paths = [fetch_wheel(w, platform, cache, offline)
                   for w in wheels_for(manifest, platform, gpu, pythons)]
    target = out / archive_name(version, platform, gpu, pythons)
    out.mkdir(parents=True, exist_ok=True)
    partial = target.with_suffix(".zip.part")
    with zipfile.ZipFile(partial, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("blender_manifest.toml",
                         platform_manifest(MANIFEST.read_text(encoding="utf-8"), platform,
                                           wheel_paths, pythons))
        add_tree(archive, PACKAGE_DIR, "")
        # The shipped model and its card only: other folders under models/ (trial runs) stay home.
        for path in sorted(p for p in models.iterdir() if p.is_file() and not ARCHIVE_EXCLUDE.search(p.name)):
            archive.write(path, f"models/{path.name}")
        archive.write(template, "data/template.npz")
        for path in wheel_paths:
            # Wheels are zips already: storing them again costs time and saves nothing.
            archive.write(path, f"wheels/{path.name}", compress_type=zipfile.ZIP_STORED)
    partial.replace(target)
    return target


def size_report(archive: Path) -> str:
    """Total size and what the wheels take, per distribution (the part that grows)."""
    by_name: dict[str, int] = {}
    with zipfile.ZipFile(archive) as handle:
        for info in handle.infolist():
            if info.filename.startswith("wheels/"):
                name = Wheel.parse(info.filename.split("/")[-1]).name
                by_name[name] = by_name.get(name, 0) + info.compress_size
    wheels = ", ".join(f"{name} {size / 1e6:.1f}" for name, size in sorted(by_name.items()))
    return f"{archive.stat().st_size / 1e6:.1f} MB; wheels, MB: {wheels or 'none'}"


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
    parser.add_argument("--python", action="append", choices=PYTHON_VERSIONS,
                        help="Python whose wheels to bundle (repeatable; default: both, so one "
                             "zip serves Blender 4.2.13 - 5.3)")
    parser.add_argument("--gpu", action="store_true",
                        help="bundle onnxruntime-gpu instead of onnxruntime where it exists")
    parser.add_argument("--out", type=Path, default=REPO / "dist")
    parser.add_argument("--cache", type=Path, default=REPO / ".whl", help="wheel download cache")
    parser.add_argument("--template", type=Path, default=REPO / "data" / "template.npz")
    parser.add_argument("--models", type=Path, default=REPO / "models")
    parser.add_argument("--offline", action="store_true", help="use cached wheels only")
    parser.add_argument("--no-validate", action="store_true")
    parser.add_argument("--fetch-only", action="store_true",
                        help="download the pinned wheels into the cache and stop (make test's set-up)")
    args = parser.parse_args(argv)
    try:
        manifest = read_manifest()
        pythons = tuple(p for p in PYTHON_VERSIONS if p in (args.python or PYTHON_VERSIONS))
        if args.fetch_only:
            for platform in args.platform or sorted(PLATFORM_TAGS):
                for wheel in wheels_for(manifest, platform, args.gpu, pythons):
                    fetch_wheel(wheel, platform, args.cache, args.offline)
            print(f"wheels for {', '.join(args.platform or sorted(PLATFORM_TAGS))} in {args.cache}")
            return 0
        check_inputs(args.template, args.models)
        version = check_version(manifest)
        for platform in args.platform or sorted(PLATFORM_TAGS):
            print(f"building {platform} for Python {', '.join(pythons)}", flush=True)
            archive = build_platform(platform, manifest=manifest, version=version, out=args.out,
                                     cache=args.cache, template=args.template,
                                     models=args.models, gpu=args.gpu, offline=args.offline,
                                     pythons=pythons)
            print(f"  wrote {archive} ({size_report(archive)})", flush=True)
            if not args.no_validate:
                validate(archive)
    except BuildError as error:
        print(f"build_addon: error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
