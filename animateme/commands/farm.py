"""`animateme farm`: the batch's job file as an Open Job Description bundle for a render farm (or
`openjd run` here); `animateme farm report OUT`: its tasks' reports merged into one.

    animateme farm --job jobs.json --out BUNDLE [--output-dir DIR] [--per head|row] [--quality fast|paper]
        [--render off|preview|frames] [--python PY | --blender BLENDER [--batch-script batch.py]]
        [--model M.onnx] [--template T.npz]
    openjd check BUNDLE/template.yaml && openjd run BUNDLE/template.yaml -p file://BUNDLE/run_parameters.yaml
    animateme farm report DIR
"""

from __future__ import annotations

from animateme_blender.core.errors import AnimateMeError


def add_commands(subparsers) -> None:
    parser = subparsers.add_parser("farm", help="write the batch's job file as an Open Job Description job "
                                                "bundle (render farm, or openjd run here)",
                                   description=__doc__.split("\n\n")[0])
    parser.add_argument("--job", help="the batch's job file (JSON or CSV, the same columns)")
    parser.add_argument("--out", help="bundle folder to write (template.yaml and the parameters' values)")
    parser.add_argument("--output-dir", help="the job's output folder, the OutDir parameter's default "
                                             "(default: BUNDLE/output)")
    parser.add_argument("--per", choices=("head", "row"), default="head",
                        help="one task per head and its expressions (default: the head is fitted once), "
                             "or one per job row")
    parser.add_argument("--quality", choices=("fast", "paper"), default="fast",
                        help="the Quality parameter's default (for rows without their own)")
    parser.add_argument("--render", choices=("off", "preview", "frames"), default="preview",
                        help="the Render parameter's default: off (.blend only), preview (also MP4 and "
                             "GIF), frames (also the frames)")
    runner = parser.add_mutually_exclusive_group()
    runner.add_argument("--python", help="Python with animateme and bpy on the workers (default: this one)")
    runner.add_argument("--blender", help="run the tasks in this Blender executable (--background) instead")
    parser.add_argument("--batch-script", help="with --blender: the extension's blender/batch.py on the workers "
                                               "(default: this package's)")
    parser.add_argument("--model", help="an AnimateMe .onnx (default: the bundled one)")
    parser.add_argument("--template", help="template.npz (default: the bundled one)")
    parser.set_defaults(func=run_farm)
    actions = parser.add_subparsers(dest="farm_action", metavar="report")
    report = actions.add_parser("report", help="merge OUT/task-reports/*.json into OUT/batch_report.json",
                                description="Merge the farm tasks' reports into OUT/batch_report.json: one entry "
                                            "per job row, with what failed and why, and the rows no task reported.")
    report.add_argument("output_dir", metavar="OUT", help="the job's output folder (its OutDir)")
    report.set_defaults(func=run_report)


def run_farm(args) -> int:
    from animateme.farm import write_bundle

    if not args.job or not args.out:
        raise AnimateMeError("give --job JOBS and --out BUNDLE (or `animateme farm report OUT` to merge reports)")
    if args.batch_script and not args.blender:
        raise AnimateMeError("--batch-script goes with --blender BLENDER")
    wrote = write_bundle(args.job, args.out, args.output_dir, per=args.per, quality=args.quality,
                         render=args.render, python=args.python, blender=args.blender,
                         batch_script=args.batch_script, model=args.model, template=args.template)
    template = wrote["template"]
    print(f"wrote {template}: {wrote['jobs']} jobs in {wrote['tasks']} tasks (one per {args.per}), "
          f"output to {wrote['output_dir']}")
    if wrote["outside_job_folder"]:
        print(f"note: {len(wrote['outside_job_folder'])} mesh path(s) are absolute in the job file (e.g. "
              f"{wrote['outside_job_folder'][0]}): a farm's path mapping does not reach them; write them "
              "relative to the job file")
    print(f"check:       openjd check {template}\n"
          f"run here:    openjd run {template} -p file://{wrote['run_parameters']}    (--step Animate "
          f"--task-param Rows=... for one task)\n"
          f"farm:        deadline bundle submit {template.parent}    (not tested here)\n"
          f"after a failure: animateme farm report {wrote['output_dir']}")
    return 0


def run_report(args) -> int:
    from pathlib import Path

    from animateme_blender.blender.jobs import REPORT, merge_reports, summary

    entries, counts = merge_reports(Path(args.output_dir))
    print(summary(entries, counts))
    print(f"report in {Path(args.output_dir) / REPORT}")
    return 1 if counts.get("failed") or counts.get("missing") else 0
