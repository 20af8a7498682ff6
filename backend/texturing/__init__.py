"""Texturing the artist's own mesh (the `texture` request kind): pure steps, one module each.

    mesh_input   check the mesh arrays (clear errors for meshes that cannot be textured)
    uv_layout    keep the mesh's UVs when they are usable, otherwise unwrap with xatlas
    texels       each texel's surface point and normal; what each view sees of them
    views        the fixed camera set (a ring around the object, top, bottom) and its order
    painting     sequential painting: trimap per view, generation, back-projection into the UVs
    fill         texels no view saw: propagation over the mesh, then pull-push in UV space
    seams        colour jump across UV seams (a quality measure)

The orchestrator is `backend/pipelines/texture.py`; the depth-conditioned generator is
`backend/models/depth_painter.py`.
"""
