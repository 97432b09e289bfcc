"""The registration benchmark's reports (`animateme bench-register`): the table per category, the
real meshes' landmarks one by one, and the contact sheet of the worst cases. The cases and their
scoring are in bench_registration.py."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .bench_registration import CATEGORIES, STAGES, Case

STAGE_NAMES = tuple(dict.fromkeys(STAGES.values()))


def summarise(rows: list[dict]) -> list[dict]:
    table = []
    for category in list(CATEGORIES) + ["all faces"]:
        if category == "all faces":
            group = [r for r in rows if r["category"] != "non_face"]
        else:
            group = [r for r in rows if r["category"] == category]
        if not group:
            continue
        errors = np.array([r["error_mm"] for r in group if r["accepted"] and np.isfinite(r["error_mm"])])
        count = lambda outcome: sum(r["outcome"] == outcome for r in group)   # noqa: E731
        table.append({
            "category": category, "cases": len(group), "success": count("success"), "refused": count("refused"),
            "inaccurate": count("inaccurate"), "silent": count("SILENT FAILURE"),
            "mean_mm": float(errors.mean()) if len(errors) else float("nan"),
            "p95_mm": float(np.percentile(errors, 95)) if len(errors) else float("nan"),
            "seconds": float(np.median([r["seconds"] for r in group])),
            "cpu_seconds": float(np.median([r["cpu_seconds"] for r in group])),
            "max_seconds": float(max(r["seconds"] for r in group)),
            "stage_seconds": {stage: float(np.median([r["stage_seconds"][stage] for r in group if "stage_seconds" in r]))
                              for stage in STAGE_NAMES} if any("stage_seconds" in r for r in group) else {},
        })
    return table


def markdown_table(table: list[dict]) -> str:
    lines = ["| category | cases | success | refused | inaccurate (1-3 mm) | SILENT FAILURE | mean mm (accepted) "
             "| p95 mm (accepted) | median s (wall / CPU) | max s | median s: " + " / ".join(STAGE_NAMES) + " |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for t in table:
        lines.append(f"| {t['category']} | {t['cases']} | {t['success']} ({100 * t['success'] / t['cases']:.0f}%) "
                     f"| {t['refused']} | {t['inaccurate']} | {t['silent']} | {t['mean_mm']:.2f} | {t['p95_mm']:.2f} "
                     f"| {t['seconds']:.1f} / {t['cpu_seconds']:.1f} | {t['max_seconds']:.1f} | {_stages(t)} |")
    return "\n".join(lines)


def _stages(summary: dict) -> str:
    """The fit's median seconds per stage (pose search / model fit / polish), '-' where not timed."""
    stages = summary.get("stage_seconds") or {}
    return " / ".join(f"{stages[name]:.1f}" if name in stages else "-" for name in STAGE_NAMES)


def landmark_table(rows: list[dict]) -> str:
    """Real meshes, landmark by landmark: the error to the given vertex beside the error to the
    surface that vertex stands for (its cell; what success is judged on)."""
    real = [r for r in rows if r.get("landmark_errors_mm")]
    if not real:
        return ""
    names = list(real[0]["landmark_errors_mm"])
    lines = ["| case | outcome | " + " | ".join(f"{n}: vertex / its cell (mm)" for n in names) + " |",
             "|---|---|" + "---|" * len(names)]
    for r in real:
        cell = r.get("landmark_cell_mm", {})
        lines.append(f"| {r['name']} | {r['outcome']} | " + " | ".join(
            f"{r['landmark_errors_mm'][n]:.2f} / {cell.get(n, float('nan')):.2f}" for n in names) + " |")
    return "\n".join(lines)


def contact_sheet(rows: list[dict], cases: list[Case], path: Path, count: int = 12) -> Path:
    """The worst cases (silent failures, then refusals and inaccurate fits, by error), each the
    input (grey) with the fitted template (orange) drawn over it, seen from the fitted face's front."""
    from animateme.render import BACKGROUND, label, render_mesh, save_png, strip
    from animateme_blender.core.geometry import vertex_normals

    rank = {"SILENT FAILURE": 0, "inaccurate": 1, "refused": 2, "success": 3}
    order = sorted(range(len(rows)), key=lambda k: (rank[rows[k]["outcome"]], -np.nan_to_num(rows[k]["error_mm"])))
    images = []
    for k in order[:count]:
        row, case = rows[k], cases[k]
        fit = row.get("fit")
        if fit is None:
            continue
        user = fit.transform.inverse(np.asarray(case.vertices, dtype=np.float64))
        shape = np.asarray(fit.template_space, dtype=np.float64)
        tfaces = np.asarray(fit.template_faces)
        lifted = shape + 0.8 * vertex_normals(shape, tfaces)
        near = np.linalg.norm(user - shape.mean(0), axis=1) < 1.2 * np.ptp(shape, axis=0).max()
        user_v, user_f = user, np.asarray(case.faces)
        user_f = user_f[near[user_f].all(1)]
        both = np.concatenate([user_v, lifted])
        both_f = np.concatenate([user_f, tfaces + len(user_v)])
        colors = np.concatenate([np.full((len(user_v), 3), 0.8), np.tile([[1.0, 0.55, 0.15]], (len(shape), 1))])
        frame = (shape.mean(0), float(np.ptp(shape, axis=0).max()) * 0.65)
        picture = np.concatenate([render_mesh(both, both_f, colors, view=v, size=(220, 220), frame=frame)
                                  for v in ("front", "side")], axis=1)
        text = f"{row['outcome']} {row['error_mm']:.1f}mm {row['category']}: {row['name']}"
        images.append(label(picture, text[:70]))
    sheet = strip(images, columns=3)
    banner = np.full((18, sheet.shape[1], 3), BACKGROUND, dtype=np.uint8)
    sheet = np.concatenate([label(banner, "worst registration cases: input grey, fitted template orange "
                                          "(views in the fitted face's frame)"), sheet])
    return save_png(sheet, path)
