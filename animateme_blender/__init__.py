"""AnimateMe for Blender: animate a still face with a mesh-space diffusion model.

The package is two layers. `core/` is bpy-free and torch-free (numpy, scipy, onnxruntime): it is
what the training side imports and what the tests exercise without Blender. `blender/` converts
Blender data to arrays and back. This file only forwards Blender's register/unregister, importing
bpy lazily so that `import animateme_blender.core` works outside Blender.

Inside this package every import is relative: once installed as an extension the package is
renamed (bl_ext.<repo>.animateme), so absolute imports of `animateme_blender` would break.
"""


def register():
    from .blender import register as register_blender

    register_blender()


def unregister():
    from .blender import unregister as unregister_blender

    unregister_blender()
