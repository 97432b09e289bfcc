"""The batch as a farm job: rows, manifests and merged reports (no Blender), the bundle through the
real `openjd` CLI (check, then run with path mapping, a re-run that skips, a changed output that
runs again, a broken head whose task fails alone), and `--workers` on the same heads."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from addon_fixture import REPO, TEMPLATE, import_bpy, neutral_face, session_dir, session_model

import_bpy()
from animateme_blender.blender import jobs as batch_jobs  # noqa: E402
from animateme_blender.blender.workers import MARK, run_pool  # noqa: E402
from animateme_blender.core.errors import AnimateMeError  # noqa: E402

OPENJD = Path(sys.executable).parent / "openjd"
ANIMATEME = Path(sys.executable).parent / "animateme"


# ------------------------------------------------------------------------------------- no Blender
def test_rows_round_trip_and_heads_group_their_expressions(tmp_path):
    assert batch_jobs.parse_rows("0-2, 5,2", 6) == [0, 1, 2, 5]
    assert batch_jobs.format_rows([5, 0, 2, 1]) == "0-2,5"
    assert batch_jobs.format_rows([3]) == "3"
    for bad, message in (("6", "rows 0-5"), ("2-1", "rows 0-5"), ("a", "row numbers from 0"), (",", "names no rows")):
        with pytest.raises(AnimateMeError, match=message):
            batch_jobs.parse_rows(bad, 6)
    (tmp_path / "jobs.json").write_text(json.dumps({"inputs": ["a.obj", "b.obj"], "expressions": ["happy", "sad"],
                                                    "jobs": [{"input": "b.obj", "expression": "fear"}]}))
    jobs = batch_jobs.read_job_file(tmp_path / "jobs.json", batch_jobs.Job())
    assert [j.describe() for j in jobs] == ["b, fear", "a, happy", "a, sad", "b, happy", "b, sad"]
    assert batch_jobs.head_groups(jobs) == [[0, 3, 4], [1, 2]]


def test_a_manifest_holds_only_while_files_and_settings_match(tmp_path):
    (tmp_path / "face_happy_s0.blend").write_bytes(b"blend" * 100)
    frames = tmp_path / "face_happy_s0_frames"
    frames.mkdir()
    (frames / "frame_001.png").write_bytes(b"png")
    outputs = {"blend": str(tmp_path / "face_happy_s0.blend"), "frames": str(frames)}
    settings = {"seed": 0, "render": "frames"}
    assert batch_jobs.check_manifest(tmp_path, "face_happy_s0", settings) == (None, "no manifest")
    batch_jobs.write_manifest(tmp_path, "face_happy_s0", settings, outputs)
    manifest, why = batch_jobs.check_manifest(tmp_path, "face_happy_s0", settings)
    assert why == "" and [f["path"] for f in manifest["files"]] == ["face_happy_s0.blend",
                                                                    "face_happy_s0_frames/frame_001.png"]
    assert batch_jobs.check_manifest(tmp_path, "face_happy_s0", {**settings, "seed": 1})[1] == "settings changed (seed)"
    (frames / "frame_001.png").write_bytes(b"PNG")                     # same size, other bytes
    assert "frame_001.png changed" in batch_jobs.check_manifest(tmp_path, "face_happy_s0", settings)[1]
    (frames / "frame_001.png").write_bytes(b"png")
    assert batch_jobs.check_manifest(tmp_path, "face_happy_s0", settings)[1] == ""
    (tmp_path / "face_happy_s0.blend").unlink()
    assert batch_jobs.check_manifest(tmp_path, "face_happy_s0", settings)[1] == "face_happy_s0.blend is missing"


def test_merged_report_takes_each_rows_newest_entry_and_names_missing_rows(tmp_path):
    (tmp_path / "jobs.json").write_text("[]")
    identity = batch_jobs.job_file_identity(tmp_path / "jobs.json", 4)
    reports = tmp_path / batch_jobs.TASK_REPORTS
    batch_jobs.write_task_report(reports / "rows-0-1.json", [0, 1], identity, [
        {"row": 0, "status": "done", "job": "a_happy_s0"},
        {"row": 1, "status": "failed", "job": "a, sad", "error": "disk full"}])
    time.sleep(0.01)
    batch_jobs.write_task_report(reports / "rows-1.json", [1], identity, [{"row": 1, "status": "done", "job": "a_sad_s0"}])
    other = {**identity, "job_file_sha256": "another job file"}
    batch_jobs.write_task_report(reports / "rows-2.json", [2], other, [{"row": 2, "status": "done", "job": "x"}])
    batch_jobs.write_task_report(reports / "rows-3.json", [3], identity, [
        {"row": 3, "status": "failed", "job": "b, sad", "error": "'b' has no faces"}])
    entries, counts = batch_jobs.merge_reports(tmp_path)
    assert [e["status"] for e in entries] == ["done", "done", "missing", "failed"]
    assert counts == {"done": 2, "missing": 1, "failed": 1}
    assert json.loads((tmp_path / "batch_report.json").read_text()) == entries
    text = batch_jobs.summary(entries, counts)
    assert "2 of 4 jobs done" in text and "row 3 (b, sad): failed: 'b' has no faces" in text
    assert "row 2 (?): missing: no task report" in text
    with pytest.raises(AnimateMeError, match="run the tasks first"):
        batch_jobs.merge_reports(tmp_path / "empty")


def test_progress_lines_count_jobs_and_share_the_time_left_among_workers():
    lines = []
    progress = batch_jobs.Progress(list(range(7)), workers=2, log=lines.append, first_rows={0, 3, 5})
    progress.job_done(6, "c, sad", "skipped", 0.0)
    progress.job_done(0, "a, happy", "done", 10.0, "wrote a_happy_s0.blend")   # a head's first job: its fit
    progress.job_done(1, "a, sad", "failed", 2.0, "disk full")
    progress.job_done(2, "a, fear", "skipped", 0.0)
    assert lines[0].startswith("[1/7] row 6 c, sad: skipped (complete") and lines[0].endswith("ETA ?")
    assert "done in 10.0 s: wrote a_happy_s0.blend" in lines[1]
    assert lines[1].endswith("ETA 25 s")              # rows 1-5 left, all at the only mean (10 s), 2 workers
    assert "FAILED after 2.0 s: disk full" in lines[2]
    assert lines[2].endswith("ETA 12 s")              # 2 first jobs x 10 s + 2 others x 2 s, 2 workers
    assert lines[3].endswith("ETA 11 s")              # 2 x 10 s + 1 x 2 s
    progress.job_started(3)
    progress.running[3] -= 8.0                        # row 3 (a first job, 10 s) started 8 s ago
    progress.job_started(4)
    assert progress.job_done(5, "c, happy", "done", 10.0).endswith("ETA 2 s")   # (10 - 8 + 2) s / 2 workers
    progress.job_done(3, "b, happy", "done", 10.0)
    assert progress.job_done(4, "b, sad", "done", 2.0).endswith("all done")


def test_a_task_refuses_a_job_file_that_changed_since_its_bundle(tmp_path, capsys):
    from animateme_blender.blender import batch

    (tmp_path / "jobs.json").write_text(json.dumps({"inputs": ["a.obj"], "expressions": ["happy", "sad"]}))
    out = str(tmp_path / "out")
    assert batch.main(["--job", str(tmp_path / "jobs.json"), "--job-rows", "3", "--rows", "0", "--out", out]) == 2
    assert "now lists 2 jobs, the farm bundle was written for 3: write the bundle again" in capsys.readouterr().err
    assert batch.main(["--job", str(tmp_path / "jobs.json"), "--rows", "2", "--out", out]) == 2
    assert "--rows '2': the job file has rows 0-1" in capsys.readouterr().err
    assert batch.main(["--input", "a.obj", "--workers", "2", "--out", out]) == 2
    assert "work on a job file: give --job FILE" in capsys.readouterr().err


def test_a_worker_that_dies_fails_the_rows_it_left(tmp_path):
    """Real worker processes (a stand-in script, not the batch): one finishes its rows, one dies
    after its first."""
    script = ("import json, sys; rows = [int(r) for r in sys.argv[1].split(',')]; "
              f"print({MARK!r} + json.dumps({{'row': rows[0], 'describe': 'x', 'status': 'done', 'seconds': 0.1, "
              "'detail': ''}), flush=True); print('some log line'); "
              "sys.exit(0 if len(rows) == 1 else 3)")
    lines = []
    failures = run_pool([[0], [1, 2]], lambda rows, report: [sys.executable, "-c", script, ",".join(map(str, rows))],
                        {0: "a, happy", 1: "b, happy", 2: "b, sad"}, 2, tmp_path, batch_jobs.Progress([0, 1, 2], 2, lines.append),
                        {"job_file_sha256": "x", "rows_total": 3})
    assert failures == 1 and len(lines) == 3
    assert any("row 2 b, sad: FAILED" in line and "exited with code 3" in line for line in lines)
    lost = json.loads((tmp_path / batch_jobs.TASK_REPORTS / "rows-1-2.lost.json").read_text())
    assert [e["row"] for e in lost["results"]] == [2]
    assert "some log line" in (tmp_path / batch_jobs.TASK_REPORTS / "rows-1-2.log").read_text()


def test_bundle_for_blender_and_per_row_passes_openjd_check(tmp_path):
    (tmp_path / "jobs.csv").write_text("input,expression\nheads/a.obj,happy\nheads/a.obj,sad\n/abs/b.obj,happy\n")
    result = subprocess.run([str(ANIMATEME), "farm", "--job", str(tmp_path / "jobs.csv"), "--out", str(tmp_path / "b"),
                             "--per", "row", "--blender", "/opt/blender/blender", "--render", "frames"],
                            capture_output=True, text=True, cwd=REPO)
    assert result.returncode == 0, result.stderr
    assert "3 jobs in 3 tasks (one per row)" in result.stdout and "note: 1 mesh path(s) are absolute" in result.stdout
    template = (tmp_path / "b" / "template.yaml").read_text()
    assert '"{{Param.Blender}}"' in template and '"--background"' in template and '"Python"' not in template
    values = (tmp_path / "b" / "parameter_values.yaml").read_text()
    assert '- name: "Blender"\n    value: "/opt/blender/blender"' in values
    check = subprocess.run([str(OPENJD), "check", str(tmp_path / "b" / "template.yaml")], capture_output=True, text=True)
    assert check.returncode == 0 and "passes validation" in check.stdout, check.stdout + check.stderr


# ---------------------------------------------------------------------------- the farm, end to end
def _heads(folder: Path) -> None:
    from animateme_blender.core.frames import blender_to_face_model
    from animateme.meshio import write_obj

    folder.mkdir(parents=True)
    for name, seed, count in (("ada", 1, 2000), ("ben", 2, 2600)):   # test_batch's heads: remeshed once
        vertices, faces = neutral_face(count, seed=seed)
        write_obj(folder / f"{name}.obj", blender_to_face_model(vertices), faces)
    # A scan exported without its faces: a point cloud that the batch refuses.
    (folder / "broken.obj").write_text("".join(f"v {i * 0.01} {i % 7 * 0.01} 0\n" for i in range(50)))


def _openjd_run(bundle: Path, *extra: str) -> tuple[subprocess.CompletedProcess, float]:
    started = time.perf_counter()
    result = subprocess.run([str(OPENJD), "run", str(bundle / "template.yaml"), "-p",
                             f"file://{bundle / 'run_parameters.yaml'}", *extra],
                            capture_output=True, text=True, cwd=bundle, timeout=300, env=_env())
    return result, time.perf_counter() - started


def _env() -> dict:
    # One OpenBLAS thread per process: on the shared 2-core machine the fit takes half the time
    # (docs/farm.md, figures); what the test checks does not depend on it.
    return {**os.environ, "BLENDER_USER_RESOURCES": str(session_dir() / "blender-user-farm"),
            "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1"}


def _report(out: Path) -> dict[int, dict]:
    return {e["row"]: e for e in json.loads((out / "batch_report.json").read_text())}


def test_openjd_runs_the_bundle_resumes_and_a_broken_head_fails_alone(tmp_path):
    _heads(tmp_path / "heads")
    model = session_model() / "animateme.onnx"
    (tmp_path / "jobs.json").write_text(json.dumps({"defaults": {"frames": 6}, "inputs": ["heads/ada.obj", "heads/ben.obj"],
                                                    "expressions": ["happy", "sad"]}))
    bundle, out = tmp_path / "bundle", tmp_path / "out"
    farm = subprocess.run([str(ANIMATEME), "farm", "--job", str(tmp_path / "jobs.json"), "--out", str(bundle),
                           "--output-dir", str(out), "--render", "off", "--model", str(model), "--template", str(TEMPLATE)],
                          capture_output=True, text=True, cwd=REPO)
    assert farm.returncode == 0, farm.stderr
    assert "4 jobs in 2 tasks (one per head)" in farm.stdout and "note:" not in farm.stdout
    check = subprocess.run([str(OPENJD), "check", str(bundle / "template.yaml")], capture_output=True, text=True)
    assert check.returncode == 0 and "passes validation" in check.stdout, check.stdout + check.stderr

    # Every step, the paths given as on the farm's storage and mapped to this machine's.
    rules = {"version": "pathmapping-1.0", "path_mapping_rules": [
        {"source_path_format": "POSIX", "source_path": "/studio/project", "destination_path": str(tmp_path)}]}
    first, first_s = _openjd_run(bundle, "-p", "JobFile=/studio/project/jobs.json", "-p", "OutDir=/studio/project/out",
                                 "--path-mapping-rules", json.dumps(rules))
    assert first.returncode == 0 and "Session ended successfully" in first.stdout, first.stdout[-3000:]
    names = ["ada_happy_s0", "ada_sad_s0", "ben_happy_s0", "ben_sad_s0"]
    assert [e["status"] for e in _report(out).values()] == ["done"] * 4
    assert sorted(p.stem for p in out.glob("*.blend")) == names and not list(out.glob("*.mp4"))   # Render off
    for name in names:
        manifest = json.loads((out / "manifests" / f"{name}.json").read_text())
        assert manifest["files"][0]["bytes"] == (out / f"{name}.blend").stat().st_size > 0
    stamps = {name: (out / f"{name}.blend").stat().st_mtime_ns for name in names}

    # Again: every task finds its outputs complete and writes nothing.
    again, again_s = _openjd_run(bundle, "--step", "Animate")
    assert again.returncode == 0, again.stdout[-3000:]
    assert again.stdout.count("skipped (complete, manifest matches)") == 4
    assert {name: (out / f"{name}.blend").stat().st_mtime_ns for name in names} == stamps

    # A .blend changed since (same file, other bytes): only that job runs again, in its head's task.
    with open(out / "ada_sad_s0.blend", "r+b") as handle:
        handle.seek(100)
        byte = handle.read(1)
        handle.seek(100)
        handle.write(bytes([byte[0] ^ 0xFF]))
    redo, _ = _openjd_run(bundle, "--step", "Animate", "--task-param", "Rows=0-1")
    assert redo.returncode == 0, redo.stdout[-3000:]
    assert "row 0 ada, happy: skipped" in redo.stdout
    assert "row 1 ada, sad: done" in redo.stdout and "ada_sad_s0.blend changed since it was written" in redo.stdout
    print(f"\nopenjd run, 4 jobs: {first_s:.1f} s; again (all skipped): {again_s:.1f} s")

    # A broken head among them: its task fails with the reason in its log; the others run (here,
    # skip) in tasks of their own, as on a farm; the report says which rows failed and why.
    (tmp_path / "jobs.json").write_text(json.dumps({"defaults": {"frames": 6}, "expressions": ["happy", "sad"],
                                                    "inputs": ["heads/ada.obj", "heads/broken.obj", "heads/ben.obj"]}))
    farm = subprocess.run([str(ANIMATEME), "farm", "--job", str(tmp_path / "jobs.json"), "--out", str(bundle),
                           "--output-dir", str(out), "--render", "off", "--model", str(model), "--template", str(TEMPLATE)],
                          capture_output=True, text=True, cwd=REPO)
    assert "6 jobs in 3 tasks" in farm.stdout, farm.stdout + farm.stderr
    codes = {}
    for rows in ("2-3", "0-1", "4-5"):
        task, _ = _openjd_run(bundle, "--step", "Animate", "--task-param", f"Rows={rows}")
        codes[rows] = task.returncode
        if rows == "2-3":
            assert "Session ended with errors" in task.stdout
            assert "animateme batch: error: row 2 (broken, happy): 'broken' has no faces" in task.stdout
    assert codes == {"2-3": 1, "0-1": 0, "4-5": 0}
    report = subprocess.run([str(ANIMATEME), "farm", "report", str(out)], capture_output=True, text=True, cwd=REPO)
    assert report.returncode == 1, report.stdout + report.stderr
    assert "4 of 6 jobs done (4 of them skipped" in report.stdout
    merged = _report(out)
    assert [merged[r]["status"] for r in range(6)] == ["skipped", "skipped", "failed", "failed", "skipped", "skipped"]
    assert "has no faces" in merged[3]["error"] and merged[3]["job"] == "broken, sad"

    # The plain batch on the same job file with two workers (the heads' fits are cached in OUT/.fits):
    # one progress line per job, the broken head's two failing, the others written again.
    started = time.perf_counter()
    workers = subprocess.run([sys.executable, "-m", "animateme_blender.blender.batch", "--job", str(tmp_path / "jobs.json"),
                              "--out", str(out), "--no-preview", "--workers", "2", "--model", str(model),
                              "--template", str(TEMPLATE)], capture_output=True, text=True, cwd=REPO, env=_env(),
                             timeout=300)
    print(f"--workers 2, 6 jobs (fits cached): {time.perf_counter() - started:.1f} s")
    progress = [line for line in workers.stdout.splitlines() if line.startswith("[")]
    assert workers.returncode == 1, workers.stdout[-3000:] + workers.stderr[-3000:]
    assert "6 jobs on 3 heads, 2 worker processes" in workers.stdout
    assert sorted(line.split("]")[0] for line in progress) == [f"[{k}/6" for k in range(1, 7)]
    assert sum(": done in " in line for line in progress) == 4 and sum("FAILED" in line for line in progress) == 2
    assert progress[-1].endswith("all done") and all("ETA" in line for line in progress[:-1])
    assert [e["status"] for e in _report(out).values()] == ["done", "done", "failed", "failed", "done", "done"]
