"""The add-on's bpy-free half (imports neither bpy nor the backend), tested without Blender:

    jobs           a job's state machine (Generate, Enhance Render, Texture Selected): `apply(messages) →
                   effects` for the bpy side to carry out
    effects        the effect types (show a preview, build a mesh or an image, paint a texture onto an
                   object or put it back, remove objects, cancel, undo step)
    mesh_arrays    checks, placement and texture encoding of received mesh arrays
    texture_arrays a mesh as a texture request sends it (triangles, per-corner UVs) and the result's
                   way back (per-loop UVs, flipped pixels)
    splat_arrays   preview splats → point positions, colours and radii
    panel_options  the panel's properties and the request options, from protocol/options.py
    image_source   the bytes sent for a Blender image
    launcher       a local backend process
    wire           where the protocol comes from (vendored copy or checkout)

Like Blender's glTF importer splits `io/` from `blender/`: the modules next to this package touch
bpy and only carry out what these decide.
"""
