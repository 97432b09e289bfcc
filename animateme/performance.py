"""The one performance table (reports/performance.md), filled in by the benchmarks themselves.

`animateme bench --record`, `bench-generate --record` and `bench-register --record` each write
their own section into reports/performance.json (what ran, when, on what, under what load) and
the markdown is drawn again from all sections, so a figure quoted anywhere else links here instead
of being copied. A section holds only what its command measured in that run.
"""

from __future__ import annotations

import datetime
import json
import os
import platform
import shlex
import sys
from pathlib import Path

from animateme import paths

SECTIONS = {
    "generation": ("Click to keys in Blender (`animateme bench-generate`)",
                   "The operator as an artist clicks it (bpy module, fast mode, 40 frames): the first click "
                   "fits the face, the second reuses the cached fit."),
    "sampler": ("The sampler alone (`animateme bench`)",
                "40 frames on the template through ONNX Runtime (best of the repeats), and PyTorch eager."),
    "registration": ("The fit by stage (`animateme bench-register`)",
                     "Median seconds per case and kind of input, each fit timed in its stages: the pose "
                     "search (rigid starts and quick model fits), the full model fit, the polish and refine."),
}


def record(section: str, columns: list[str], rows: list[list], notes: str = "", folder: Path | None = None) -> Path:
    """Write `section`'s table (column names, rows of cells) with the command line, date, machine
    and load; returns the markdown's path."""
    if section not in SECTIONS:
        raise ValueError(f"unknown performance section {section!r}")
    folder = Path(folder or paths.reports_dir())
    folder.mkdir(parents=True, exist_ok=True)
    store = folder / "performance.json"
    data = json.loads(store.read_text()) if store.exists() else {}
    data[section] = {"columns": list(columns), "rows": [[_cell(c) for c in row] for row in rows], "notes": notes,
                     "command": "animateme " + " ".join(shlex.quote(a) for a in sys.argv[1:]),
                     "date": datetime.date.today().isoformat(), "machine": machine(),
                     "load_average": round(os.getloadavg()[0], 1)}
    store.write_text(json.dumps(data, indent=1) + "\n")
    path = folder / "performance.md"
    path.write_text(markdown(data))
    return path


def machine() -> str:
    return f"{platform.machine()}, {os.cpu_count()} logical CPUs, Python {platform.python_version()}"


def markdown(data: dict) -> str:
    lines = ["# Performance", "",
             "Written by the benchmarks (`--record`), one section each; timings move with the machine's load, "
             "given with each section.", ""]
    for name, (title, about) in SECTIONS.items():
        entry = data.get(name)
        if not entry:
            continue
        lines += [f"## {title}", "", about, "",
                  f"`{entry['command']}` — {entry['date']}, {entry['machine']}, load average {entry['load_average']}.", "",
                  "| " + " | ".join(entry["columns"]) + " |", "|" + "---|" * len(entry["columns"])]
        lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in entry["rows"]]
        if entry.get("notes"):
            lines += ["", entry["notes"]]
        lines.append("")
    return "\n".join(lines)


def _cell(value):
    """Seconds and sizes rounded for reading; text as it is."""
    if isinstance(value, float):
        return f"{value:.2f}" if value < 10 else f"{value:.1f}"
    return value
