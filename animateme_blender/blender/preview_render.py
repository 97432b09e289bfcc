"""The batch's preview: a camera on what moves, a light, Cycles frames on the CPU, an MP4 through
Blender's sequencer and a GIF of each frame beside the neutral. Blender's per-frame console lines
are kept out of the output; one progress bar shows the render.
"""

from __future__ import annotations

from pathlib import Path

import bpy
import numpy as np

from ..core.errors import AnimateMeError
from .console import ProgressBar, silenced


def moving_bounds(obj: bpy.types.Object, displacements: np.ndarray) -> list | None:
    """Object-local (min, max) corners of the vertices that visibly move (the face, not the back of
    the head or the shoulders); None when nothing moves."""
    amount = np.linalg.norm(np.asarray(displacements), axis=2).max(0)
    if amount.max() <= 0:
        return None
    coords = np.empty(len(obj.data.vertices) * 3, dtype=np.float32)
    obj.data.vertices.foreach_get("co", coords)
    moving = coords.reshape(-1, 3)[amount > 0.15 * amount.max()]
    return [moving.min(0).tolist(), moving.max(0).tolist()]


def ensure_camera_and_light(obj: bpy.types.Object, focus: list | None = None) -> None:
    """A front camera framing the face (`focus`: object-local bounds of what moves, else the whole
    object) and a key light, only where the scene has none."""
    scene = bpy.context.scene
    matrix = np.array(obj.matrix_world)
    box = np.array(obj.bound_box) if focus is None else np.array(
        [[x, y, z] for x in (focus[0][0], focus[1][0]) for y in (focus[0][1], focus[1][1])
         for z in (focus[0][2], focus[1][2])])
    corners = box @ matrix[:3, :3].T + matrix[:3, 3]
    centre = (corners.min(0) + corners.max(0)) / 2
    size = float((corners.max(0) - corners.min(0)).max())
    if scene.camera is None:
        camera = bpy.data.objects.new("AnimateMe Camera", bpy.data.cameras.new("AnimateMe Camera"))
        camera.data.type = "ORTHO"
        camera.data.ortho_scale = size * (1.15 if focus is None else 1.3)
        camera.data.clip_end = size * 20
        camera.location = (centre[0], centre[1] - size * 3, centre[2])  # the face looks down -Y
        camera.rotation_euler = (np.pi / 2, 0.0, 0.0)
        scene.collection.objects.link(camera)
        scene.camera = camera
    if not any(o.type == "LIGHT" for o in scene.objects):
        light = bpy.data.objects.new("AnimateMe Light", bpy.data.lights.new("AnimateMe Light", "SUN"))
        light.data.energy = 2.5
        light.data.angle = 0.4  # a soft sun: no hard, noisy chin shadow at low sample counts
        light.rotation_euler = (np.radians(60), np.radians(-20), np.radians(-25))
        scene.collection.objects.link(light)
    if scene.world is None:
        world = bpy.data.worlds.new("AnimateMe World")
        if world.node_tree is None:
            world.use_nodes = True  # older Blender; 5.0 worlds always have their node tree
        background = world.node_tree.nodes.get("Background")
        if background is not None:  # the world is the fill light in Cycles
            background.inputs["Color"].default_value = (0.22, 0.22, 0.24, 1.0)
        scene.world = world


def render_frames(folder: Path, resolution: int, samples: int) -> list[Path]:
    """Render the clip with Cycles on the CPU (works headless) into numbered PNGs."""
    scene = bpy.context.scene
    scene.render.engine = "CYCLES"
    scene.cycles.device = "CPU"
    scene.cycles.samples = max(1, int(samples))
    scene.cycles.use_denoising = False
    scene.render.resolution_x = scene.render.resolution_y = int(resolution)
    scene.render.resolution_percentage = 100
    scene.render.image_settings.file_format = "PNG"
    folder.mkdir(parents=True, exist_ok=True)
    scene.render.filepath = str(folder / "frame_")
    count = scene.frame_end - scene.frame_start + 1
    with ProgressBar("render (Cycles, CPU)", count, unit="frame") as bar:
        def rendered(*_args):
            bar.update_to(len(list(folder.glob("frame_*.png"))))

        bpy.app.handlers.render_post.append(rendered)
        try:
            with silenced():
                bpy.ops.render.render(animation=True)
        finally:
            bpy.app.handlers.render_post.remove(rendered)
        bar.update_to(count)
    frames = sorted(folder.glob("frame_*.png"))
    if len(frames) != scene.frame_end - scene.frame_start + 1:
        raise AnimateMeError(f"rendering wrote {len(frames)} frames into {folder}, expected "
                             f"{scene.frame_end - scene.frame_start + 1}")
    return frames


def write_video(frames: list[Path], target: Path, fps: int = 24) -> Path | None:
    """An H.264 MP4 of the rendered frames through Blender's own sequencer (no ffmpeg binary needed)."""
    if not bpy.app.ffmpeg.supported:
        return None
    scene = bpy.data.scenes.new("AnimateMe Preview")
    try:
        edit = scene.sequence_editor_create()
        strips = edit.strips if hasattr(edit, "strips") else edit.sequences
        strip = strips.new_image("frames", str(frames[0]), channel=1, frame_start=1)
        for path in frames[1:]:
            strip.elements.append(path.name)
        scene.frame_start, scene.frame_end = 1, len(frames)
        scene.render.fps = fps
        first = bpy.data.images.load(str(frames[0]))
        scene.render.resolution_x, scene.render.resolution_y = first.size
        bpy.data.images.remove(first)
        scene.render.resolution_percentage = 100
        settings = scene.render.image_settings
        if hasattr(settings, "media_type"):
            settings.media_type = "VIDEO"
        settings.file_format = "FFMPEG"
        scene.render.ffmpeg.format = "MPEG4"
        scene.render.ffmpeg.codec = "H264"
        scene.render.ffmpeg.constant_rate_factor = "HIGH"
        scene.render.filepath = str(target.with_suffix(""))
        scene.render.use_file_extension = True
        with bpy.context.temp_override(scene=scene), silenced():
            bpy.ops.render.render(animation=True, scene=scene.name)
    finally:
        bpy.data.scenes.remove(scene)
    made = sorted(target.parent.glob(target.stem + "*.mp4"))
    if not made:
        return None
    if made[0] != target:
        made[0].replace(target)
    return target


def write_gif(frames: list[Path], target: Path, fps: int = 24, label: str | None = None) -> Path | None:
    """A GIF too, where Pillow is importable (the project's venv; not Blender's own Python): each
    frame beside the first, which is the neutral (progression 0), so the expression reads at a glance."""
    try:
        from PIL import Image, ImageDraw
    except ImportError:
        return None
    neutral = Image.open(frames[0]).convert("RGB")
    images = []
    for path in frames:
        sheet = Image.new("RGB", (2 * neutral.width, neutral.height))
        sheet.paste(neutral, (0, 0))
        sheet.paste(Image.open(path).convert("RGB"), (neutral.width, 0))
        draw = ImageDraw.Draw(sheet)
        draw.text((6, 4), "neutral", fill=(235, 235, 235))
        draw.text((neutral.width + 6, 4), label or target.stem, fill=(235, 235, 235))
        images.append(sheet)
    images[0].save(target, save_all=True, append_images=images[1:], duration=int(1000 / fps), loop=0)
    return target
