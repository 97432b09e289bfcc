"""What a user can do about a refused fit: the one table, in the words of every front end.

The core's `FitRefused.remedies` gives keys of `REMEDIES`, quickest first; each front end words
them its own way from here and nowhere else:
- `words`: the core's own generic words (a `FitRefused`'s message when no front end words it);
- `panel`: the Blender panel's, with `panel_option` naming what must exist for them to be true;
- `command`: `animateme generate` and the batch's, with `command_flag` the argparse flag they name;
- `register`: `animateme register` / `transfer`'s.
Imports nothing of the project, so errors.py and vocabulary.py can both read it; it also holds
the landmark minimum (`MIN_LANDMARKS`), which the landmarks remedy states.
"""

from __future__ import annotations

from dataclasses import dataclass

# The fewest landmarks a fit takes (three points fix a similarity): the rule's one home. The
# remedy that asks for landmarks states it, and every check reads it (vocabulary, landmarks,
# fit_options, the bpy layer's mesh_data).
MIN_LANDMARKS = 3


@dataclass(frozen=True)
class Remedy:
    """One thing the user can do about a refusal, in the words of each front end. `panel_option`
    and `command_flag` name what must exist for the words to be true (checked by the tests)."""
    panel: str
    panel_option: str            # "operator:<idname>" or "property:<scene.animateme property>"
    command: str
    command_flag: str | None     # the argparse flag the command text names, if any
    words: str = ""              # generic: the core's FitRefused message
    register: str = ""           # `animateme register` / `transfer`


# Keys as the core's FitRefused.remedies gives them, quickest first.
REMEDIES = {
    "landmarks": Remedy(f"place {MIN_LANDMARKS} or more landmarks (Edit Mode: select a vertex, AnimateMe ▸ Landmarks ▸ Nose tip, "
                        "Mouth corner (left), ...)",
                        "operator:animateme.set_landmark",
                        f"give {MIN_LANDMARKS} or more landmarks: --landmarks nose_tip=I,mouth_left=J,mouth_right=K", "--landmarks",
                        words="give landmarks (nose tip, mouth corners, eye corners, chin)",
                        register="give --landmarks nose_tip=V,mouth_left=V,mouth_right=V (vertex indices)"),
    "region": Remedy("choose a Face Region vertex group holding only the face (AnimateMe ▸ Fit)",
                     "property:face_region",
                     "fit only the face: --region (the face's vertices)", "--region",
                     words="choose the face region (only the face's vertices)",
                     register="give --region FILE (the face's vertex indices)"),
    "force": Remedy("if the fit preview looks right, press Use Anyway", "operator:animateme.use_anyway",
                    "if the fit looks right, --force uses it anyway", "--force",
                    words="use the fit anyway",
                    register="use --force"),
    "merge_by_distance": Remedy("weld the mesh: Edit Mode ▸ Mesh ▸ Clean Up ▸ Merge by Distance",
                                "operator:mesh.remove_doubles",
                                "weld the mesh (Blender: Mesh ▸ Clean Up ▸ Merge by Distance) and export "
                                "it again", None,
                                words="weld the mesh's duplicate vertices (merge by distance)",
                                register="merge the duplicate vertices (Blender: Merge by Distance)"),
    "remove_nonfinite": Remedy("delete the broken vertices: AnimateMe ▸ Select Broken Vertices (Edit Mode), "
                               "then Delete ▸ Vertices", "operator:animateme.select_broken",
                               "delete the vertices with NaN or infinite coordinates and export the mesh again",
                               None,
                               words="delete the vertices with NaN or infinite coordinates",
                               register="delete the vertices with NaN or infinite coordinates"),
    "add_faces": Remedy("re-export the mesh with its faces, or give it faces (Edit Mode ▸ Face ▸ Fill)",
                        "operator:mesh.fill",
                        "export a surface mesh (with faces), not only points or edges", None,
                        words="give a mesh with faces (a surface, not a point cloud)",
                        register="give a mesh with faces, not a point cloud"),
}


def remedy_words(front_end: str) -> dict[str, str]:
    """{key: words} for one front end ("words", "panel", "command", "register")."""
    return {key: getattr(remedy, front_end) for key, remedy in REMEDIES.items()}
