"""The bpy-free, torch-free core of the extension."""
