"""`--workers N`: the batch's heads in N processes at once, each process one head's rows.

Each worker is the batch itself (the same Python or Blender, with `--rows` and its own task
report), so a worker's job runs exactly as in a serial batch or a farm task. A worker prints one
machine-readable line per finished job (`--progress-protocol`); everything else it prints goes to
`OUT/task-reports/rows-<rows>.log`. This module needs no bpy.
"""

from __future__ import annotations

import argparse
import json
import os
import queue
import subprocess
import threading
from pathlib import Path

from .jobs import (REPORT, TASK_REPORTS, Progress, format_rows, head_groups, job_file_identity, merge_reports, summary,
                   task_report_path, write_task_report)

MARK = "@animateme-job "
THREAD_VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")


def progress_line(row: int, describe: str, status: str, seconds: float, detail: str) -> str:
    """What a worker prints when a job ends (the parent turns it into a progress line)."""
    return MARK + json.dumps({"row": row, "describe": describe, "status": status, "seconds": seconds,
                              "detail": detail})


def run_pool(groups: list[list[int]], command, describe: dict[int, str], workers: int, out: Path,
             progress: Progress, identity: dict, env: dict | None = None) -> int:
    """Run every group (a list of rows) as `command(rows, report_path)` with at most `workers` at
    once; returns how many jobs failed. The rows a worker left unfinished (it died) are failed in
    a report of their own beside the worker's, naming its log."""
    tasks: queue.Queue = queue.Queue()
    for rows in sorted(groups, key=len, reverse=True):      # the longest first: less idle time at the end
        tasks.put(rows)
    lock = threading.Lock()
    failures = [0]

    def worker():
        while True:
            try:
                rows = tasks.get_nowait()
            except queue.Empty:
                return
            report = task_report_path(out, rows)
            log_path = report.with_suffix(".log")
            log_path.parent.mkdir(parents=True, exist_ok=True)
            finished = set()
            with lock:
                progress.job_started(rows[0])           # a worker runs its rows in order
            with open(log_path, "w") as log:
                process = subprocess.Popen(command(rows, report), env={**os.environ, **(env or {})}, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                           text=True, bufsize=1, errors="replace")
                for line in process.stdout:
                    if not line.startswith(MARK):
                        log.write(line)
                        continue
                    event = json.loads(line[len(MARK):])
                    finished.add(event["row"])
                    following = [r for r in rows if r not in finished]
                    with lock:
                        failures[0] += event["status"] == "failed"
                        progress.job_done(event["row"], event["describe"], event["status"], event["seconds"],
                                          event["detail"])
                        if following:
                            progress.job_started(following[0])
                code = process.wait()
            lost = []
            for row in rows:
                if row not in finished:
                    reason = (f"its worker (rows {format_rows(rows)}) exited with code {code} before this job "
                              f"ended: see {log_path}")
                    lost.append({"row": row, "job": describe[row], "status": "failed", "error": reason})
                    with lock:
                        failures[0] += 1
                        progress.job_done(row, describe[row], "failed", 0.0, reason)
            if lost:
                write_task_report(report.with_name(report.stem + ".lost.json"), [e["row"] for e in lost],
                                  identity, lost)

    threads = [threading.Thread(target=worker, daemon=True) for _ in range(max(1, min(workers, len(groups))))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return failures[0]


# Options a worker does not inherit: the parent's own, or set per worker.
_PARENT_ONLY = {"help", "workers", "rows", "report", "job_rows", "merge_reports", "progress_protocol", "render_mode"}


def child_arguments(parser: argparse.ArgumentParser, args) -> list[str]:
    """The parent's options (as parsed, abbreviations resolved) for a worker's command line."""
    argv = []
    for action in parser._actions:
        if action.dest in _PARENT_ONLY or not action.option_strings:
            continue
        value = getattr(args, action.dest)
        if value is None or value == action.default:
            continue
        flag = max(action.option_strings, key=len)
        argv += [flag] if isinstance(action, argparse._StoreTrueAction) else [flag, str(value)]
    return argv


def run_workers(parser, args, jobs, rows: list[int], out: Path, start: list[str], env: dict) -> int:
    """--workers N: each head's selected rows in a worker process of their own (`start` + options,
    in `env`), N at a time; one progress line per job; their reports merged into OUT/batch_report.json."""
    selected = set(rows)
    groups = [g for g in ([r for r in group if r in selected] for group in head_groups(jobs)) if g]
    base = start + child_arguments(parser, args) + ["--job-rows", str(len(jobs)), "--progress-protocol"]

    def command(group: list[int], report: Path) -> list[str]:
        return base + ["--rows", format_rows(group), "--report", str(report)]

    workers = min(args.workers, len(groups))
    # N processes share the cores: each one's BLAS threads too (unless the caller chose).
    threads = str(max(1, (os.cpu_count() or 1) // workers))
    env = {**{v: threads for v in THREAD_VARIABLES if v not in os.environ}, **env}
    print(f"{len(rows)} jobs on {len(groups)} heads, {workers} worker processes (logs in "
          f"{out / TASK_REPORTS})", flush=True)
    progress = Progress(rows, workers, log=lambda line: print(line, flush=True), first_rows={g[0] for g in groups})
    failures = run_pool(groups, command, {r: jobs[r].describe() for r in rows}, workers, out, progress,
                        job_file_identity(args.job, len(jobs)), env)
    entries, counts = merge_reports(out)
    print(summary(entries, counts))
    print(f"report in {out / REPORT}")
    return 1 if failures else 0
