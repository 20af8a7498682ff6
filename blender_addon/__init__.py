"""Lift3D Blender extension (Blender 4.2 LTS and newer).

The panel, operators, live splat preview and mesh importer are built by the Blender issue;
this package currently registers nothing. It talks to the backend only through the vendored
`protocol` package and its bpy-free `protocol.client.Client`.
"""

MODULES: tuple = ()  # bpy modules, registered in this order and unregistered in reverse


def register() -> None:
    for module in MODULES:
        module.register()


def unregister() -> None:
    for module in reversed(MODULES):
        module.unregister()
