"""The artist steers the fit, in the extension as installed through Blender's extension system:
landmark vertex groups placed in Edit Mode, a face-region group, the fit preview, Use Anyway, and
every refusal message naming only options that exist. Plus the defects an artist hit: absolute
shape keys, a Mirror modifier, broken meshes, the neutral first/last frame, custom timing on a
short clip, Clear giving the frame range back."""

from __future__ import annotations

import re
import sys

import numpy as np
import pytest

from addon_fixture import (EXTENSION_PACKAGE, face_with_torso, fresh_scene, grid, import_bpy, install_extension,
                           key_coordinates, mesh_object, neutral_face)

bpy = import_bpy()
MM = 0.001     # the scene is in metres


def module(name: str):
    return sys.modules[f"{EXTENSION_PACKAGE}.{name}"]


@pytest.fixture(scope="module")
def addon():
    yield install_extension()
    fresh_scene()          # the next module starts from Blender's defaults, not these settings


def blender_object(name, vertices_mm, faces):
    from animateme_blender.core.frames import face_model_to_blender

    return mesh_object(name, face_model_to_blender(np.asarray(vertices_mm) * MM), faces)


def motion(obj) -> np.ndarray:
    """(K,N) how far each vertex moves in each generated key, metres."""
    key = obj.data.shape_keys
    base = key_coordinates(key.key_blocks["Basis"])
    names = module("blender.shape_keys").generated_keys(obj)
    return np.stack([np.linalg.norm(key_coordinates(key.key_blocks[n]) - base, axis=1) for n in names])


def select_only_vertex(obj, index: int) -> None:
    """Edit Mode with exactly one vertex selected, as an artist clicks it."""
    import bmesh

    if obj.mode != "EDIT":
        bpy.ops.object.mode_set(mode="EDIT")
    bm = bmesh.from_edit_mesh(obj.data)
    for element in (*bm.faces, *bm.edges, *bm.verts):
        element.select = False
    bm.verts.ensure_lookup_table()
    bm.verts[index].select = True
    bm.select_flush(False)
    bmesh.update_edit_mesh(obj.data)


def place_landmarks(obj, landmarks: dict) -> None:
    for name, index in landmarks.items():
        select_only_vertex(obj, index)
        assert bpy.ops.animateme.set_landmark(name=name) == {"FINISHED"}
    bpy.ops.object.mode_set(mode="OBJECT")


def refused_message(**kwargs) -> str:
    with pytest.raises(RuntimeError) as caught:
        bpy.ops.animateme.generate(**kwargs)
    return str(caught.value)


@pytest.mark.slow
def test_landmark_groups_steer_the_fit_on_a_face_with_shoulders(addon, tmp_path):
    fresh_scene()
    vertices, faces, landmarks, face_count = face_with_torso()
    obj = blender_object("Scan", vertices, faces)
    settings = bpy.context.scene.animateme
    settings.frames, settings.expression, settings.face_region = 12, "happy", ""

    # Alone, the fit looks at the torso (far larger than the face) and refuses it, naming landmarks.
    from animateme_blender.core.vocabulary import REMEDIES

    message = refused_message()
    assert REMEDIES["landmarks"].panel in message

    chosen = {k: landmarks[k] for k in ("nose_tip", "mouth_left", "mouth_right")}
    place_landmarks(obj, chosen)
    groups = {g.name for g in obj.vertex_groups}
    assert groups == {f"AM_landmark_{k}" for k in chosen}
    assert module("blender.mesh_data").placed_landmarks(obj) == chosen
    markers = [o for o in bpy.data.objects if o.name.startswith("AM Landmark")]
    assert len(markers) == 3 and all(m.parent == obj and m.parent_type == "VERTEX" for m in markers)

    assert bpy.ops.animateme.generate() == {"FINISHED"}
    moved = motion(obj)
    mouth = moved[:, [landmarks["mouth_left"], landmarks["mouth_right"]]].max()
    shoulders = moved[:, face_count:].max()
    assert mouth > 1e-4                          # the smile moves the mouth corners (> 0.1 mm)
    assert shoulders < 0.01 * mouth              # the torso stays put
    assert moved[0].max() == 0.0 and moved[-1].max() == 0.0   # the clip starts and ends on the neutral

    # Landmarks survive save and reload (vertex groups); the markers are never saved.
    path = tmp_path / "scan.blend"
    bpy.ops.wm.save_as_mainfile(filepath=str(path))
    bpy.ops.wm.open_mainfile(filepath=str(path))
    obj = bpy.data.objects["Scan"]
    assert {g.name for g in obj.vertex_groups} == groups
    assert not [o for o in bpy.data.objects if o.name.startswith("AM ")]


@pytest.mark.slow
def test_face_region_group_alone_is_fitted_and_animated(addon):
    fresh_scene()
    vertices, faces, landmarks, face_count = face_with_torso(connected=True)
    obj = blender_object("Bust", vertices, faces)
    # The region: the face without its top rows (forehead): those stay exactly still too.
    top = vertices[:face_count, 1] > np.quantile(vertices[:face_count, 1], 0.9)
    region = np.flatnonzero(~top)
    group = obj.vertex_groups.new(name="Face")
    group.add(region.tolist(), 1.0, "REPLACE")
    settings = bpy.context.scene.animateme
    settings.frames, settings.face_region = 12, "Face"
    try:
        assert bpy.ops.animateme.generate() == {"FINISHED"}
    finally:
        settings.face_region = ""
    moved = motion(obj)
    outside = np.ones(len(vertices), dtype=bool)
    outside[region] = False
    assert moved[:, outside].max() == 0.0        # exactly still: torso and forehead
    assert moved[:, [landmarks["mouth_left"], landmarks["mouth_right"]]].max() > 1e-4

    settings.face_region = "Nope"
    try:
        assert "no vertex group 'Nope'" in refused_message()
    finally:
        settings.face_region = ""


@pytest.mark.slow
def test_fit_preview_then_generate_reuses_the_fit(addon, tmp_path):
    fresh_scene()
    obj = mesh_object("Face", *neutral_face(1500))
    assert bpy.ops.animateme.fit() == {"FINISHED"}
    preview = [o for o in bpy.data.objects if o.name.startswith("AM Fit Preview")]
    assert len(preview) == 1 and preview[0].parent == obj and preview[0].display_type == "WIRE"
    assert preview[0].users_collection[0].name == "AnimateMe Overlay"
    report = module("blender.fit_preview").fit_reports["Face"]
    assert report["accepted"] and report["verdict"].startswith("Good fit") and len(report["lines"]) >= 2
    # The preview lies on the face: its vertices within the face's bounding box (+2 mm).
    corners = np.array(obj.bound_box)
    wire = np.array([v.co for v in preview[0].data.vertices])
    assert (wire >= corners.min(0) - 0.002).all() and (wire <= corners.max(0) + 0.002).all()

    settings = bpy.context.scene.animateme
    settings.frames = 10
    assert bpy.ops.animateme.generate() == {"FINISHED"}
    operators = module("blender.operators")
    assert operators.last_run["fit_cached"] is True          # the preview's fit, not a new one
    assert not [o for o in bpy.data.objects if o.name.startswith("AM Fit Preview")]   # gone on generation
    settings.expression = "sad"
    assert bpy.ops.animateme.generate() == {"FINISHED"}
    assert operators.last_run["fit_cached"] is True          # a second expression does not refit

    assert bpy.ops.animateme.fit() == {"FINISHED"}
    assert bpy.ops.animateme.hide_fit_preview() == {"FINISHED"}   # one click removes it
    assert "AnimateMe Overlay" not in bpy.data.collections
    settings.expression = "happy"


@pytest.mark.slow
def test_use_anyway_after_a_refusal_is_recorded(addon):
    fresh_scene()
    obj = mesh_object("Plane", *grid(30))
    settings = bpy.context.scene.animateme
    settings.frames = 8
    message = refused_message()
    assert "Use Anyway" in message
    refusals = module("blender.refusals")
    assert refusals.can_use_anyway("Plane")
    assert bpy.ops.animateme.use_anyway() == {"FINISHED"}
    assert "refused fit used anyway" in obj["animateme_fit_forced"]
    assert len(module("blender.shape_keys").generated_keys(obj)) == 8
    assert not refusals.can_use_anyway("Plane")
    with pytest.raises(RuntimeError, match="refused"):      # greyed out again until the next refusal
        bpy.ops.animateme.use_anyway()
    assert bpy.ops.animateme.clear() == {"FINISHED"}
    assert "animateme_fit_forced" not in obj


def _broken_meshes():
    """(name, build) for every refusal of a mesh the panel can show."""
    def nan_face():
        obj = mesh_object("Broken", *neutral_face(800))   # (validate() would zero NaNs: set them after)
        for vertex in list(obj.data.vertices)[:5]:
            vertex.co = (float("nan"), 0.0, float("inf"))
        return obj

    def point_cloud():
        v, _ = neutral_face(800)
        return mesh_object("Points", v, np.zeros((0, 3), np.int32))

    def unwelded():
        v, f = neutral_face(800)
        soup = v[f.ravel()]
        return mesh_object("Soup", soup, np.arange(len(soup)).reshape(-1, 3))

    def absolute_keys():
        obj = mesh_object("Absolute", *neutral_face(800))
        obj.shape_key_add(name="Basis")
        obj.shape_key_add(name="Key 1")
        obj.data.shape_keys.use_relative = False
        return obj

    def mirrored():                     # a whole face under a Mirror: remove it
        v, f = neutral_face(800)
        obj = mesh_object("Whole", v, f)
        obj.modifiers.new("Mirror", "MIRROR")
        return obj

    def half_mirrored():                # half a face (all on one side) under a Mirror: apply it
        v, f = neutral_face(800)
        v = v.copy()
        v[:, 0] = np.abs(v[:, 0])
        obj = mesh_object("Half", v, f)
        obj.modifiers.new("Mirror", "MIRROR")
        return obj

    return {"nonfinite": nan_face, "no faces": point_cloud, "unwelded": unwelded,
            "absolute": absolute_keys, "mirror": mirrored, "half mirror": half_mirrored, "not a face": lambda: mesh_object("Plane", *grid(30))}


def named_options_exist(message: str) -> list[str]:
    """Every remedy the message names must exist: its operator or property is registered, and the
    words the panel shows are that option's own label. Returns the remedy keys found."""
    from animateme_blender.core.vocabulary import REMEDIES

    found = []
    for key, remedy in REMEDIES.items():
        if remedy.panel not in message:
            continue
        found.append(key)
        kind, name = remedy.panel_option.split(":")
        if kind == "operator":
            category, operator = name.split(".")
            rna = getattr(getattr(bpy.ops, category), operator).get_rna_type()
            # The operator's label, or (a button per enum item) one of its items' names.
            labels = [rna.name] + [item.name for prop in rna.properties if prop.type == "ENUM"
                                   for item in prop.enum_items]
        else:
            labels = [bpy.context.scene.animateme.bl_rna.properties[name].name]
        assert any(label in remedy.panel for label in labels), \
            f"{key}: the message says {remedy.panel!r}, the option is {labels}"
    return found


@pytest.mark.slow
def test_every_refusal_names_only_options_that_exist(addon):
    from animateme_blender.core.vocabulary import REMEDIES, explain_error

    # Each remedy the core may give, worded for the panel.
    refused = module("core.errors").FitRefused
    assert set(REMEDIES) == set(module("core.errors").REMEDY_WORDS)        # every key the core gives is worded
    for key in REMEDIES:
        error = refused("the fit does not look like a face", (key,))
        assert named_options_exist(explain_error(error, "panel")) == [key]
    with pytest.raises(ValueError, match="unknown remedies"):               # the core names no other
        refused("problem", ("a_remedy_nobody_has", "force"))

    expected = {"nonfinite": ["remove_nonfinite"], "no faces": ["add_faces"], "unwelded": ["merge_by_distance"],
                "absolute": [], "mirror": [], "half mirror": [], "not a face": ["landmarks", "region", "force"]}
    for name, build in _broken_meshes().items():
        fresh_scene()
        obj = build()
        before = {k.name for k in obj.data.shape_keys.key_blocks} if obj.data.shape_keys else set()
        message = refused_message()
        assert sorted(named_options_exist(message)) == sorted(expected[name]), (name, message)
        assert "give landmarks" not in message and "residual" not in message and "Clean Up ▸ Delete" not in message
        after = {k.name for k in obj.data.shape_keys.key_blocks} if obj.data.shape_keys else set()
        assert before == after                   # refused untouched
        if name == "not a face":                 # quickest first: the order the core gave
            positions = [message.index(REMEDIES[k].panel) for k in ("landmarks", "region", "force")]
            assert positions == sorted(positions)
        if name == "mirror":
            assert "remove 'Mirror'" in message and "apply" not in message
        if name == "half mirror":
            assert "apply 'Mirror' first" in message
        if name == "absolute":
            assert "Relative" in message

    # Greyed-out buttons say why (poll_message_set).
    fresh_scene()
    empty = bpy.data.objects.new("Empty", None)
    bpy.context.scene.collection.objects.link(empty)
    empty.select_set(True)
    bpy.context.view_layer.objects.active = empty
    assert "is an empty, not a mesh" in refused_message()
    with pytest.raises(RuntimeError, match="Edit Mode"):
        bpy.ops.animateme.set_landmark(name="chin")


def test_command_line_refusals_name_existing_flags(addon):
    import argparse

    from animateme.commands import generate
    from animateme_blender.core.vocabulary import REMEDIES

    commands = argparse.ArgumentParser().add_subparsers()
    generate.add_commands(commands)
    from animateme_blender.blender import batch

    parsers = {"batch": batch.build_parser(), "generate": commands.choices["generate"]}
    for key, remedy in REMEDIES.items():
        for flag in re.findall(r"--[a-z-]+", remedy.command):
            for name, parser in parsers.items():
                assert flag in parser._option_string_actions, f"{key}: {name} has no {flag}"
    # The headless batch does not import the operators (nor the panel): it runs without the UI.
    import ast

    imported = {node.module for node in ast.walk(ast.parse(open(batch.__file__).read()))
                if isinstance(node, ast.ImportFrom) and node.module}
    assert not imported & {"operators", "worker", "panel", "fit_preview", "landmarks"}


def test_neutral_frames_custom_timing_and_clear_restores_the_frame_range(addon):
    fresh_scene()
    obj = mesh_object("Face", *neutral_face(1500))
    scene = bpy.context.scene
    scene.frame_start, scene.frame_end = 10, 250
    settings = bpy.context.scene.animateme
    settings.frames, settings.intensity = 20, 1.0
    settings.timing = "CUSTOM"                           # its frames fit the 20-frame clip
    assert settings.end_frame <= 19
    settings.to_request()
    settings.end_frame = 25
    with pytest.raises(Exception, match="End 25"):
        settings.to_request()
    settings.timing = "DEFAULT"

    assert bpy.ops.animateme.generate() == {"FINISHED"}
    assert (scene.frame_start, scene.frame_end) == (1, 20)
    moved = motion(obj)
    assert moved[0].max() == 0.0 and moved[-1].max() == 0.0 and moved.max() > 1e-4
    settings.intensity = 0.0
    assert bpy.ops.animateme.generate() == {"FINISHED"}
    assert motion(obj).max() == 0.0                      # intensity 0: the neutral, exactly
    settings.intensity = 1.0
    assert bpy.ops.animateme.clear() == {"FINISHED"}
    assert (scene.frame_start, scene.frame_end) == (10, 250)


class RecordingLayout:
    """Stands in for a panel's UILayout outside a window: records what the panel would show,
    and checks each property and operator it names exists."""

    def __init__(self, shown):
        self.shown, self.active, self.enabled, self.alert, self.scale_y = shown, True, True, False, 1.0

    def _nested(self, *args, **kwargs):
        return RecordingLayout(self.shown)

    box = row = column = grid_flow = _nested

    def separator(self, *args, **kwargs):
        pass

    def label(self, text="", icon="NONE"):
        self.shown.append(("label", text))

    def prop(self, data, name, **kwargs):
        assert name in data.bl_rna.properties, name
        self.shown.append(("prop", data.bl_rna.properties[name].name))

    def prop_search(self, data, name, search_data, search_name, text=""):
        assert name in data.bl_rna.properties and hasattr(search_data, search_name)
        self.shown.append(("prop", text or data.bl_rna.properties[name].name))

    def operator(self, idname, text="", icon="NONE"):
        category, name = idname.split(".")
        rna = getattr(getattr(bpy.ops, category), name).get_rna_type()
        self.shown.append(("operator", text or rna.name))

        class Properties:
            def __setattr__(self, key, value):
                assert key in rna.properties, key
        return Properties()


def panel_shows(context_override=None) -> list:
    shown = []
    panel = bpy.types.VIEW3D_PT_animateme
    fake = type("Panel", (), {"layout": RecordingLayout(shown)})()
    panel.draw(fake, bpy.context)
    return shown


@pytest.mark.slow
def test_the_panel_offers_every_option_its_messages_name(addon):
    from animateme_blender.core.vocabulary import REMEDIES

    fresh_scene()
    mesh_object("Plane", *grid(30))
    bpy.context.scene.animateme.frames = 8
    refused = refused_message()
    shown = panel_shows()
    words = " ".join(text for _, text in shown)
    for key in ("landmarks", "region", "force"):             # the fit refusal's remedies
        assert REMEDIES[key].panel in refused
    assert ("prop", "Face Region") in shown and ("operator", "Use Anyway") in shown
    assert ("operator", "Nose tip") in shown and ("operator", "Mouth corner (left)") in shown
    assert ("operator", "Fit") in shown
    assert "Use Anyway" in words or ("operator", "Use Anyway") in shown
