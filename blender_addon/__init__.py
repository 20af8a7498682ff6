"""Lift3D Blender extension (Blender 4.2 LTS and newer): image + prompt -> textured 3D asset,
Enhance Render (a render cleaned by the backend's single-step fixer) and Texture Selected (a
texture painted onto the artist's own mesh from a prompt).

The panel lives in the 3D Viewport sidebar ("Lift3D" tab). Generation runs in a separate
backend process (local or remote) reached over ZeroMQ; a timer drains its messages, so Blender
never blocks. Modules, in registration order:

    preferences  backend address, local backend start, keys, preview density
    properties   per-scene settings (image, prompt, preset, seed; request options generated from
                 the protocol's options table)
    operators    Generate / Regenerate / Enhance Render / Texture Selected / Regenerate Texture / Cancel /
                 Connect / image choice
    panels       the sidebar UI (with the Enhance Render and Texture Selected sections)
    session      the connection, the job in flight and the timer tick
Without registration: scene (carries out a job's effects), preview (splat preview object),
importer (mesh from arrays, packed images), enhance (Enhance Render's source and result image),
texture (Texture Selected: the mesh sent, the texture painted onto the object or taken off again),
headless (driving the add-on without a window). The bpy-free half,
tested without Blender, is the `core` package (job state machine, array checks and encoding,
panel options, image bytes, launcher, protocol import).
"""



def _modules() -> tuple:
    # Imported here, not at the top, so the bpy-free `core` package can be imported and tested
    # without Blender.
    from . import operators, panels, preferences, properties, session

    return (preferences, properties, operators, panels, session)


def register() -> None:
    registered = []
    try:
        for module in _modules():
            module.register()
            registered.append(module)
    except Exception:
        # Leave Blender as it was: a half-registered add-on cannot be enabled again without a restart.
        for module in reversed(registered):
            module.unregister()
        raise


def unregister() -> None:
    for module in reversed(_modules()):
        module.unregister()
