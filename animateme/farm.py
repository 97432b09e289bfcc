"""The batch as an Open Job Description job: `animateme farm` writes the bundle, `animateme farm
report` merges what its tasks reported.

The bundle: `template.yaml` (specification jobtemplate-2023-09), whose every path is a PATH job
parameter, so a farm's path mapping (Deadline Cloud's storage profiles, `openjd run
--path-mapping-rules`) reaches it, with their values (OpenJD allows no absolute path as a default)
in `parameter_values.yaml` for Deadline Cloud and `run_parameters.yaml` for `openjd run`. Step
`Animate` has one task per head: the head's rows of the job file, run by the headless batch
(`--rows`, `--resume`, its own task report); step `Report` merges the task reports into
OUT/batch_report.json once every task has succeeded (after a failure, `animateme farm report OUT`).

Why a task per head and not per row: a head's first job fits the face (about 18 s for a
2,000-vertex head on this machine; sampling takes a tenth of a second with the test model, about
a second with the bundled one in fast mode), and the head's other expressions reuse the fit in the
same process. Tasks per row (`--per row`) running at once fit each head once per expression; run one
after another they share the fit through OUT/.fits and still cost a process each (4 jobs through
`openjd run`: 50 s per row against 41 s per head, docs/farm.md).
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path

from animateme_blender.core.errors import AnimateMeError
from animateme_blender.core.vocabulary import QUALITIES as QUALITY_CHOICES, names

SPECIFICATION = "jobtemplate-2023-09"
STEP = "Animate"
REPORT_STEP = "Report"
QUALITIES = tuple(names(QUALITY_CHOICES))
RENDER_MODES = ("off", "preview", "frames")
BATCH_MODULE = "animateme_blender.blender.batch"
RUN_PARAMETERS = "run_parameters.yaml"


def _path_parameter(name: str, object_type: str, flow: str, description: str) -> dict:
    """A PATH parameter without a default: OpenJD refuses absolute defaults and relative ones that
    leave the bundle, so the values go to the bundle's parameter files (see write_bundle)."""
    return {"name": name, "type": "PATH", "objectType": object_type, "dataFlow": flow, "description": description}


def _executable(command: str) -> str:
    """An absolute path, links kept (a venv's python is a link to the base interpreter)."""
    if os.sep not in command and shutil.which(command):
        command = shutil.which(command)
    return os.path.abspath(command)


def task_groups(jobs, per: str) -> list[list[int]]:
    from animateme_blender.blender.jobs import head_groups

    if per == "row":
        return [[row] for row in range(len(jobs))]
    if per == "head":
        return head_groups(jobs)
    raise AnimateMeError(f"--per {per!r}: use head or row")


def build_template(job_file: Path, jobs, output_dir: Path, *, per: str = "head", quality: str = "fast",
                   render: str = "preview", python: str | None = None, blender: str | None = None,
                   batch_script: str | None = None, model: str | None = None,
                   template: str | None = None) -> tuple[dict, dict]:
    """(the job template, the values of its PATH parameters), see the module's docstring."""
    from animateme_blender.blender.jobs import format_rows

    if quality not in QUALITIES:
        raise AnimateMeError(f"--quality {quality!r}: use {' or '.join(QUALITIES)}")
    if render not in RENDER_MODES:
        raise AnimateMeError(f"--render {render!r}: use {', '.join(RENDER_MODES)}")
    groups = task_groups(jobs, per)
    values = {"JobFile": str(job_file), "OutDir": str(output_dir)}
    parameters = [
        _path_parameter("JobFile", "FILE", "IN", "The batch's job file (JSON or CSV); mesh paths in it "
                        "are relative to it"),
        _path_parameter("OutDir", "DIRECTORY", "OUT", "Where the .blend files, previews, manifests "
                        "and reports go"),
        {"name": "Quality", "type": "STRING", "allowedValues": list(QUALITIES), "default": quality,
         "description": "Sampler for the rows that do not set their own: fast (DDIM) or paper (DDPM)"},
        {"name": "Render", "type": "STRING", "allowedValues": list(RENDER_MODES), "default": render,
         "description": "off: the .blend only; preview: also an MP4 and a GIF (Cycles); frames: also the "
                        "rendered frames"},
    ]
    if blender:
        script = batch_script or Path(__file__).resolve().parent.parent / "animateme_blender" / "blender" / "batch.py"
        values.update(Blender=_executable(blender), BatchScript=os.path.abspath(script))
        parameters += [
            _path_parameter("Blender", "FILE", "NONE", "The Blender executable on the workers"),
            _path_parameter("BatchScript", "FILE", "NONE", "The extension's blender/batch.py on the "
                            "workers"),
        ]
        command, launch = "{{Param.Blender}}", ["--background", "--python", "{{Param.BatchScript}}", "--"]
    else:
        parameters.append(_path_parameter("Python", "FILE", "NONE",
                                          "A Python with the animateme package and the bpy module"))
        values["Python"] = _executable(python or sys.executable)
        command, launch = "{{Param.Python}}", ["-m", BATCH_MODULE]
    options = []
    for name, value, flag, description in (("Model", model, "--model", "An AnimateMe .onnx model"),
                                           ("Template", template, "--template", "The model's template.npz")):
        if value:
            parameters.append(_path_parameter(name, "FILE", "IN", description))
            values[name] = str(Path(value).resolve())
            options += [flag, f"{{{{Param.{name}}}}}"]
    task_args = launch + ["--job", "{{Param.JobFile}}", "--job-rows", str(len(jobs)), "--rows", "{{Task.Param.Rows}}",
                          "--out", "{{Param.OutDir}}", "--quality", "{{Param.Quality}}",
                          "--render-mode", "{{Param.Render}}", "--resume", *options]
    return {
        "specificationVersion": SPECIFICATION,
        "name": f"AnimateMe batch {job_file.name}"[:128],
        "description": f"{len(jobs)} jobs of {job_file.name} in {len(groups)} tasks (one per {per}), "
                       "then one report. Written by `animateme farm`.",
        "parameterDefinitions": parameters,
        "steps": [
            {"name": STEP,
             "description": "The headless batch on one task's rows of the job file. Rows whose outputs are "
                            "complete (their manifest matches) are skipped; a failed row fails its task.",
             "parameterSpace": {"taskParameterDefinitions": [
                 {"name": "Rows", "type": "STRING", "range": [format_rows(g) for g in groups]}]},
             "script": {"actions": {"onRun": {"command": command, "args": task_args}}}},
            {"name": REPORT_STEP,
             "description": "Merges the tasks' reports into OutDir/batch_report.json.",
             "dependencies": [{"dependsOn": STEP}],
             "script": {"actions": {"onRun": {"command": command,
                                              "args": launch + ["--merge-reports", "--out", "{{Param.OutDir}}"]}}}},
        ],
    }, values


def to_yaml(value, indent: int = 0) -> str:
    """Block YAML for the template's dicts, lists, strings and numbers (strings double-quoted, which
    YAML reads as JSON strings)."""
    pad = " " * indent
    if isinstance(value, dict):
        lines = []
        for key, item in value.items():
            if isinstance(item, (dict, list)) and item:
                lines.append(f"{pad}{key}:\n{to_yaml(item, indent + 2)}")
            else:
                lines.append(f"{pad}{key}: {_scalar(item)}")
        return "\n".join(lines)
    if isinstance(value, list):
        lines = []
        for item in value:
            if isinstance(item, dict) and item:
                body = to_yaml(item, indent + 2)
                lines.append(f"{pad}- {body[indent + 2:]}")
            elif isinstance(item, list) and item:
                lines.append(f"{pad}-\n{to_yaml(item, indent + 2)}")
            else:
                lines.append(f"{pad}- {_scalar(item)}")
        return "\n".join(lines)
    return pad + _scalar(value)


def _scalar(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, (dict, list)):
        return "{}" if isinstance(value, dict) else "[]"
    return json.dumps(str(value), ensure_ascii=False)


def write_bundle(job_file: str | Path, bundle: str | Path, output_dir: str | Path | None = None, **options) -> dict:
    """Reads the job file (as the batch does) and writes BUNDLE/template.yaml, with the PATH
    parameters' values in BUNDLE/parameter_values.yaml (Deadline Cloud's form, which `deadline
    bundle submit` reads) and BUNDLE/run_parameters.yaml (the form `openjd run -p file://...`
    reads). Returns what it wrote."""
    from animateme_blender.blender.jobs import Job, read_job_file

    job_file, bundle = Path(job_file).resolve(), Path(bundle).resolve()
    jobs = read_job_file(job_file, Job())
    output_dir = Path(output_dir).resolve() if output_dir else bundle / "output"
    template, values = build_template(job_file, jobs, output_dir, **options)
    bundle.mkdir(parents=True, exist_ok=True)
    header = f"# Written by `animateme farm` from {job_file}; see docs/farm.md.\n"
    path = bundle / "template.yaml"
    path.write_text(header + to_yaml(template) + "\n")
    (bundle / "parameter_values.yaml").write_text(
        header + "# For `deadline bundle submit` (Deadline Cloud's job bundle form).\n"
        + to_yaml({"parameterValues": [{"name": k, "value": v} for k, v in values.items()]}) + "\n")
    (bundle / RUN_PARAMETERS).write_text(
        header + f"# For `openjd run {path.name} -p file://{RUN_PARAMETERS}`.\n" + to_yaml(values) + "\n")
    tasks = template["steps"][0]["parameterSpace"]["taskParameterDefinitions"][0]["range"]
    # read_job_file joins relative inputs to the job file's folder: the others were absolute in the file
    absolute = sorted({j.input for j in jobs if j.input and not j.input.startswith(str(job_file.parent) + os.sep)})
    return {"template": path, "run_parameters": bundle / RUN_PARAMETERS, "jobs": len(jobs), "tasks": len(tasks),
            "output_dir": output_dir, "outside_job_folder": absolute}
