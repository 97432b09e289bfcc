"""The batch's job files, and what makes a batch resumable and splittable, without bpy.

- Job files (JSON or CSV) read into `Job`s; rows are numbered from 0 in file order, and
  `parse_rows` / `format_rows` speak "0-3,7".
- `head_groups`: rows of the same head together (a farm task or a worker runs one group, so the
  head is fitted once and its expressions reuse the fit).
- Manifests (`OUT/manifests/<name>.json`): what a finished job wrote (size and sha256 of every file)
  and with which settings. A job is skipped on `--resume` only when its manifest matches both.
- Task reports (`OUT/task-reports/rows-<rows>.json`): one per farm task or worker, merged by
  `merge_reports` into `OUT/batch_report.json`, with every row that failed (and why) or never ran.
- `Progress`: one line per finished job, with the time left.

Nothing here uses bpy: `animateme farm` reads job files with it, and the batch runs it inside
Blender or the bpy module.
"""

from __future__ import annotations

import csv
import itertools
import json
import os
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

from ..core.errors import AnimateMeError
from ..core.fit.fit_options import FitOptions
from ..core.request import Request, request_from_options
from ..core.sample.runtime import file_sha256
from ..core.vocabulary import parse_indices, parse_landmarks

JOB_FIELDS = ("input", "object", "expression", "mix", "transition", "intensity", "timing", "frames",
              "start_frame", "seed", "quality", "variation", "device", "name", "landmarks", "region", "force", "output")
MANIFESTS = "manifests"
TASK_REPORTS = "task-reports"
REPORT = "batch_report.json"
MANIFEST_VERSION = 1


@dataclass
class Job:
    input: str | None = None
    object: str | None = None
    expression: str = "happy"
    mix: str | None = None           # "sad:0.3"
    transition: bool = False
    intensity: float = 1.0
    timing: str = "default"
    frames: int = 40
    start_frame: int = 1
    seed: int = 0
    quality: str = "fast"
    variation: float | None = None   # sampling temperature; None: the quality's default
    device: str = "auto"
    name: str | None = None
    landmarks: object = None         # "nose_tip=12,..." or {name: index}, or "groups"; None: the groups if any
    region: object = None            # a vertex group name, or vertex indices ("0-4999", a list, a file)
    force: bool = False              # use a refused fit anyway
    output: str = "frames"           # frames: a shape key per frame; rig: the ARKit rig and an Action

    def request(self) -> Request:
        return request_from_options(self)

    def fit_options(self, obj) -> FitOptions:
        """Landmarks and region for this job's object: given ones, else its landmark groups."""
        from .mesh_data import placed_landmarks, region_vertices

        given = None if self.landmarks in (None, "", "groups") else parse_landmarks(self.landmarks)
        region = None
        if self.region not in (None, "", []):
            if isinstance(self.region, str) and obj.vertex_groups.get(self.region) is not None:
                region = region_vertices(obj, self.region)
            else:
                region = parse_indices(self.region)
        landmarks = given if given is not None else placed_landmarks(obj)
        return FitOptions.make(landmarks, region, bool(self.force)).check(len(obj.data.vertices))

    def head(self) -> str:
        if self.input:
            return Path(self.input).stem
        return self.object or "scene"

    def head_key(self) -> str:
        """What makes two jobs the same head: the mesh file, or the object in the opened scene."""
        return f"file:{self.input}" if self.input else f"object:{self.object}"

    def output_name(self) -> str:
        return self.name or f"{self.head()}_{self.request().label}_s{self.seed}"

    def describe(self) -> str:
        return f"{self.head()}, {self.request().label if self._valid() else self.expression}"

    def _valid(self) -> bool:
        try:
            self.request()
            return True
        except AnimateMeError:
            return False


def _bool(value) -> bool:
    if isinstance(value, bool):
        return value
    return str(value).strip().lower() in ("1", "true", "yes", "y")


def job_from_mapping(row: dict, defaults: Job) -> Job:
    unknown = sorted(k for k in row if k not in JOB_FIELDS and row[k] not in (None, ""))
    if unknown:
        raise AnimateMeError(f"unknown job column(s) {', '.join(unknown)}: use {', '.join(JOB_FIELDS)}")
    values = {}
    for key in JOB_FIELDS:
        value = row.get(key)
        if value in (None, ""):
            continue
        if key in ("frames", "start_frame", "seed"):
            value = int(value)
        elif key in ("intensity", "variation"):
            value = float(value)
        elif key in ("transition", "force"):
            value = _bool(value)
        values[key] = value
    return replace(defaults, **values)


def read_job_file(path: str | Path, defaults: Job) -> list[Job]:
    """JSON: a list of jobs, {"jobs": [...]}, or {"inputs": [...], "expressions": [...]} (every head
    x every expression), each with optional "defaults". CSV: one job per row, columns as JSON keys."""
    path = Path(path)
    if not path.is_file():
        raise AnimateMeError(f"job file {path} not found")
    try:
        if path.suffix.lower() == ".csv":
            with open(path, newline="") as handle:
                rows = list(csv.DictReader(handle))
            jobs = [job_from_mapping(row, defaults) for row in rows]
            data = None
        else:
            data = json.loads(path.read_text())
    except (OSError, ValueError, csv.Error) as error:
        raise AnimateMeError(f"cannot read job file {path} ({error}): write JSON or CSV") from None
    if data is not None:
        if isinstance(data, list):
            data = {"jobs": data}
        if not isinstance(data, dict):
            raise AnimateMeError(f"{path}: expected a JSON list of jobs or an object with 'jobs'")
        base = job_from_mapping(data.get("defaults", {}), defaults)
        jobs = [job_from_mapping(row, base) for row in data.get("jobs", [])]
        heads, expressions = data.get("inputs", []), data.get("expressions", [])
        for head, expression in itertools.product(heads, expressions):
            row = expression if isinstance(expression, dict) else {"expression": expression}
            jobs.append(job_from_mapping({"input": head, **row}, base))
    if not jobs:
        raise AnimateMeError(f"{path} lists no jobs: give 'jobs', or 'inputs' and 'expressions'")
    base_dir = path.parent
    for job in jobs:  # inputs relative to the job file
        if job.input and not Path(job.input).is_absolute():
            job.input = str(base_dir / job.input)
    return jobs


# ----------------------------------------------------------------------------------- rows, heads
def parse_rows(spec: str, count: int) -> list[int]:
    """"0-3,7" -> [0, 1, 2, 3, 7]: rows of a job file of `count` jobs, numbered from 0."""
    rows = []
    for part in str(spec).replace(" ", "").split(","):
        if not part:
            continue
        try:
            first, _, last = part.partition("-")
            first, last = int(first), int(last) if last else int(first)
        except ValueError:
            raise AnimateMeError(f"--rows {spec!r}: give row numbers from 0, e.g. 0-3,7") from None
        if first > last or first < 0 or last >= count:
            raise AnimateMeError(f"--rows {spec!r}: the job file has rows 0-{count - 1}")
        rows.extend(r for r in range(first, last + 1) if r not in rows)
    if not rows:
        raise AnimateMeError(f"--rows {spec!r} names no rows: give row numbers from 0, e.g. 0-3,7")
    return rows


def format_rows(rows: list[int]) -> str:
    """[0, 1, 2, 3, 7] -> "0-3,7"."""
    parts, rows = [], sorted(set(rows))
    start = previous = None
    for row in rows + [None]:
        if row is not None and previous is not None and row == previous + 1:
            previous = row
            continue
        if start is not None:
            parts.append(str(start) if start == previous else f"{start}-{previous}")
        start = previous = row
    return ",".join(parts)


def head_groups(jobs: list[Job]) -> list[list[int]]:
    """Row numbers by head, heads in the order they first appear."""
    groups: dict[str, list[int]] = {}
    for row, job in enumerate(jobs):
        groups.setdefault(job.head_key(), []).append(row)
    return list(groups.values())


# -------------------------------------------------------------------------------------- manifests
def job_settings(job: Job, common: dict) -> dict:
    """Everything a job's outputs depend on, portable across machines: the input by its content
    (a farm maps paths), the job's options, and the batch's (render, model, template)."""
    settings = {k: v for k, v in asdict(job).items() if k != "input"}
    if job.input:
        source = Path(job.input)
        settings["input"] = {"name": source.name, "sha256": _input_sha256(source)}
    return json.loads(json.dumps({**settings, **common}, default=str, sort_keys=True))


_input_hashes: dict[tuple, str] = {}


def _input_sha256(path: Path) -> str | None:
    """A mesh's sha256, hashed once per process while its size and time stay (a head's expressions)."""
    try:
        stat = path.stat()
    except OSError:
        return None
    key = (str(path), stat.st_size, stat.st_mtime_ns)
    if key not in _input_hashes:
        _input_hashes[key] = file_sha256(path)
    return _input_hashes[key]


def manifest_path(out: Path, name: str) -> Path:
    return Path(out) / MANIFESTS / f"{name}.json"


def _listed(out: Path, outputs: dict) -> list[Path]:
    files = []
    for value in outputs.values():
        path = Path(value)
        files.extend(sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path])
    return files


def write_manifest(out: Path, name: str, settings: dict, outputs: dict) -> Path:
    """After a job wrote everything: its files (relative to OUT, so a mapped OUT still matches),
    their sizes and hashes, and its settings. Written last and atomically: no manifest, not done."""
    out = Path(out)
    files = [{"path": p.relative_to(out).as_posix(), "bytes": p.stat().st_size, "sha256": file_sha256(p)}
             for p in _listed(out, outputs)]
    outputs = {k: Path(v).relative_to(out).as_posix() for k, v in outputs.items()}
    manifest = {"version": MANIFEST_VERSION, "job": name, "settings": settings, "outputs": outputs, "files": files,
                "written": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    return write_json(manifest_path(out, name), manifest)


def drop_manifest(out: Path, name: str) -> None:
    manifest_path(out, name).unlink(missing_ok=True)


def check_manifest(out: Path, name: str, settings: dict) -> tuple[dict | None, str]:
    """(manifest, "") when the job's outputs are complete and were made with these settings, else
    (None, why not)."""
    out, path = Path(out), manifest_path(out, name)
    try:
        manifest = json.loads(path.read_text())
    except FileNotFoundError:
        return None, "no manifest"
    except (OSError, ValueError) as error:
        return None, f"unreadable manifest ({error})"
    if manifest.get("version") != MANIFEST_VERSION or not manifest.get("files"):
        return None, "manifest of another version"
    if manifest.get("settings") != settings:
        changed = sorted(k for k in set(settings) | set(manifest.get("settings", {}))
                         if settings.get(k) != manifest.get("settings", {}).get(k))
        return None, f"settings changed ({', '.join(changed)})"
    for entry in manifest["files"]:
        file = out / entry["path"]
        if not file.is_file():
            return None, f"{entry['path']} is missing"
        if file.stat().st_size != entry["bytes"] or file_sha256(file) != entry["sha256"]:
            return None, f"{entry['path']} changed since it was written"
    return manifest, ""


# ---------------------------------------------------------------------------------- task reports
def task_report_path(out: Path, rows: list[int]) -> Path:
    return Path(out) / TASK_REPORTS / f"rows-{format_rows(rows).replace(',', '_')}.json"


def job_file_identity(path: str | Path, rows_total: int) -> dict:
    """Which job file a task report belongs to: reports of another (or an edited) job file in the
    same OUT are not merged with it."""
    return {"job_file": Path(path).name, "job_file_sha256": file_sha256(path), "rows_total": rows_total}


def write_task_report(path: Path, rows: list[int], identity: dict, results: list[dict]) -> Path:
    return write_json(Path(path), {**identity, "rows": list(rows), "results": results, "finished": time.time()})


def merge_reports(out: Path) -> tuple[list[dict], dict]:
    """OUT/task-reports/*.json -> one entry per row of the job file the newest report ran (each
    row's newest entry), rows without any marked missing; writes OUT/batch_report.json. Returns
    (entries, counts by status)."""
    out = Path(out)
    reports = []
    for path in sorted((out / TASK_REPORTS).glob("*.json")):
        try:
            reports.append(json.loads(path.read_text()))
        except (OSError, ValueError) as error:
            raise AnimateMeError(f"cannot read task report {path} ({error}): run that task again, "
                                 f"or delete the file") from None
    if not reports:
        raise AnimateMeError(f"no task reports in {out / TASK_REPORTS}: run the tasks first (openjd run "
                             f"BUNDLE/template.yaml, or the batch with --workers)")
    reports.sort(key=lambda r: r.get("finished", 0))
    newest = reports[-1]
    total = newest["rows_total"]
    by_row = {}
    for report in reports:                       # oldest first: a later run of a row wins
        if report.get("job_file_sha256") != newest.get("job_file_sha256"):
            continue                             # another job file's rows (the bundle was rewritten)
        for entry in report["results"]:
            by_row[entry["row"]] = entry
    entries = []
    for row in range(total):
        entries.append(by_row.get(row) or {
            "row": row, "status": "missing",
            "error": "no task report for this row: its task has not run, or died before writing one "
                     "(see that task's log), then run it again"})
    counts = {}
    for entry in entries:
        counts[entry["status"]] = counts.get(entry["status"], 0) + 1
    write_json(out / REPORT, entries)
    return entries, counts


def summary(entries: list[dict], counts: dict) -> str:
    done = counts.get("done", 0) + counts.get("skipped", 0)
    lines = [f"{done} of {len(entries)} jobs done ({counts.get('skipped', 0)} of them skipped: complete "
             f"from an earlier run)"]
    for entry in entries:
        if entry["status"] in ("failed", "missing"):
            lines.append(f"  row {entry['row']} ({entry.get('job', '?')}): {entry['status']}: {entry['error']}")
    return "\n".join(lines)


def write_json(path: Path, data) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.{os.getpid()}.partial")
    partial.write_text(json.dumps(data, indent=1, default=float) + "\n")
    partial.replace(path)
    return path


# -------------------------------------------------------------------------------------- progress
def _duration(seconds: float) -> str:
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds} s"
    minutes, seconds = divmod(seconds, 60)
    return f"{minutes} min {seconds:02d} s" if minutes < 60 else f"{minutes // 60} h {minutes % 60:02d} min"


class Progress:
    """One line per finished job: its number, what it was, how it ended, the time so far and left.

    A head's first job fits the face and its others reuse the fit (seconds against a tenth of one
    with the test model), so the time left counts the heads still to start at the mean time of the
    first jobs so far and the other jobs at theirs (either mean standing in for the other until it
    has one; skipped jobs take none), less what the jobs running now (`job_started`) have already
    run, shared among the workers."""

    def __init__(self, rows: list[int], workers: int = 1, log=print, first_rows=()):
        self.total, self.workers, self.log = len(rows), max(1, workers), log
        self.left, self.first_rows = set(rows), set(first_rows)
        self.started, self.finished = time.perf_counter(), 0
        self.timed: dict[bool, list[float]] = {True: [], False: []}
        self.running: dict[int, float] = {}

    def job_started(self, row: int) -> None:
        self.running[row] = time.perf_counter()

    def job_done(self, row: int, describe: str, status: str, seconds: float, detail: str = "") -> str:
        self.finished += 1
        self.left.discard(row)
        self.running.pop(row, None)
        if status != "skipped":
            self.timed[row in self.first_rows].append(seconds)
        what = {"done": f"done in {seconds:.1f} s", "skipped": "skipped (complete, manifest matches)",
                "failed": f"FAILED after {seconds:.1f} s"}[status]
        line = (f"[{self.finished}/{self.total}] row {row} {describe}: {what}{': ' + detail if detail else ''}"
                f" | {_duration(time.perf_counter() - self.started)} elapsed, {self._eta()}")
        self.log(line)
        return line

    def _eta(self) -> str:
        if not self.left:
            return "all done"
        means = {first: sum(t) / len(t) for first, t in self.timed.items() if t}
        if not means:
            return "ETA ?"
        def estimate(row):
            return means.get(row in self.first_rows, means.get(row not in self.first_rows, 0.0))

        now = time.perf_counter()
        work = sum(estimate(row) for row in self.left)
        work -= sum(min(now - since, estimate(row)) for row, since in self.running.items() if row in self.left)
        return f"ETA {_duration(work / min(self.workers, len(self.left)))}"
