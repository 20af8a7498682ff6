"""Ground-truth textured objects for the reconstruction benchmark, built deterministically.

Each texture is painted as a function of the 3D surface point behind every texel, so patterns
are continuous across UV seams and exactly defined in 3D:

- `globe`:   a sphere with smooth latitude/longitude colour bands (convex, low frequency).
- `torus`:   a tilted torus whose hue runs around the ring (non-convex: a see-through hole).
- `checker`: a rotated cube with an 8×8 checkerboard on every face (fine texture detail, sharp edges).

`load_glb(path)` brings any textured GLB in, normalised to the same size.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
import trimesh
from torch import Tensor

from backend.geometry.bake import fill_from_nearest, texel_surface
from backend.geometry.mesh_cleanup import vertex_normals
from backend.geometry.textured_mesh import TexturedMesh
from backend.geometry.uv_atlas import unwrap

OBJECT_RADIUS = 0.5  # every object is scaled to fit this ball (the orbit radius is 2)
TEXTURE_SIZE = 512
CHECKER_SQUARES = 8  # per cube edge: ~10-pixel squares at 256²


def _hsv(h: Tensor, s: float, v: float) -> Tensor:
    k = torch.stack([(5 + h * 6) % 6, (3 + h * 6) % 6, (1 + h * 6) % 6], -1)
    return v - v * s * torch.clamp(torch.minimum(k, 4 - k), 0, 1)


def _globe_colour(p: Tensor) -> Tensor:
    lat = torch.asin((p[:, 2] / p.norm(dim=-1).clamp_min(1e-9)).clamp(-1, 1))
    lon = torch.atan2(p[:, 1], p[:, 0])
    base = _hsv((lon / (2 * math.pi)) % 1.0, 0.6, 0.9)
    bands = 0.75 + 0.25 * torch.cos(4 * lat)[:, None]
    return (base * bands).clamp(0, 1)


def _torus_colour(p: Tensor) -> Tensor:
    angle = torch.atan2(p[:, 1], p[:, 0])
    return _hsv((angle / (2 * math.pi)) % 1.0, 0.8, 0.95)


def _checker_colour(p: Tensor, period: float) -> Tensor:
    cells = torch.floor(p / period).long().sum(-1) % 2
    light, dark = torch.tensor([0.95, 0.85, 0.3]), torch.tensor([0.15, 0.25, 0.6])
    return torch.where(cells[:, None].bool(), light, dark)


def _textured(mesh: trimesh.Trimesh, colour: Callable[[Tensor], Tensor], texture_size: int,
              pose: np.ndarray) -> TexturedMesh:
    """Normalise to OBJECT_RADIUS, unwrap with xatlas, paint texels from their 3D points in the
    object's own frame, then place the object with the rotation `pose` [4,4]."""
    mesh.apply_translation(-mesh.bounding_box.centroid)
    mesh.apply_scale(OBJECT_RADIUS / np.linalg.norm(mesh.vertices, axis=1).max())
    uv_mesh = unwrap(np.asarray(mesh.vertices, np.float32), np.asarray(mesh.faces, np.int64), resolution=texture_size)
    vertices = torch.as_tensor(np.asarray(uv_mesh.vertices), dtype=torch.float32)
    faces = torch.as_tensor(np.asarray(uv_mesh.faces), dtype=torch.int64)
    uvs = torch.as_tensor(np.asarray(uv_mesh.uvs), dtype=torch.float32)
    normals = torch.as_tensor(np.asarray(vertex_normals(vertices.numpy(), faces.numpy())), dtype=torch.float32)
    points, _, inside = texel_surface(vertices, faces, uvs, normals, texture_size)
    texture = torch.zeros(texture_size, texture_size, 3)
    texture[inside] = colour(points[inside])
    rotation = torch.as_tensor(pose[:3, :3], dtype=torch.float32)
    return TexturedMesh(vertices @ rotation.T, faces, uvs, fill_from_nearest(texture, inside), normals @ rotation.T)


def _rotation(axis: tuple[float, float, float], degrees: float) -> np.ndarray:
    return trimesh.transformations.rotation_matrix(math.radians(degrees), axis)


def build_objects(texture_size: int = TEXTURE_SIZE) -> dict[str, TexturedMesh]:
    globe = trimesh.creation.icosphere(subdivisions=4)
    torus = trimesh.creation.torus(0.35, 0.13, major_sections=64, minor_sections=24)
    cube = trimesh.creation.box(extents=(1.0, 1.0, 1.0)).subdivide().subdivide()
    edge = 2 * OBJECT_RADIUS / math.sqrt(3)  # the cube's edge once normalised

    def checker(p: Tensor) -> Tensor:
        # Squares aligned with the cube's faces; the offset keeps cell borders off the cube's edges.
        return _checker_colour(p + edge / 2 + 1e-4, edge / CHECKER_SQUARES)

    return {
        "globe": _textured(globe, _globe_colour, texture_size, np.eye(4)),
        "torus": _textured(torus, _torus_colour, texture_size, _rotation((1, 0, 0), 55) @ _rotation((0, 0, 1), 20)),
        "checker": _textured(cube, checker, texture_size, _rotation((0, 0, 1), 35) @ _rotation((1, 0, 0), 20)),
    }


def load_glb(path: Path, texture_size: int = TEXTURE_SIZE) -> TexturedMesh:
    """A textured GLB/GLTF as ground truth (its own UVs and base-colour texture), normalised in size."""
    scene = trimesh.load(path, force="scene")
    meshes = [g for g in scene.dump() if isinstance(g, trimesh.Trimesh)]
    if len(meshes) != 1:
        raise ValueError(f"{path}: expected one textured mesh, found {len(meshes)} meshes; join them first")
    mesh = meshes[0]
    visual = mesh.visual
    image = getattr(getattr(visual, "material", None), "baseColorTexture", None) or getattr(
        getattr(visual, "material", None), "image", None)
    if getattr(visual, "uv", None) is None or image is None:
        raise ValueError(f"{path}: the mesh has no UVs or no base-colour texture")
    # glTF is +Y up; Lift3D's world is Blender's +Z up.
    mesh.apply_transform(_rotation((1, 0, 0), 90))
    mesh.apply_translation(-mesh.bounding_box.centroid)
    mesh.apply_scale(OBJECT_RADIUS / np.linalg.norm(mesh.vertices, axis=1).max())
    texture = torch.from_numpy(np.asarray(image.convert("RGB").resize((texture_size, texture_size)),
                                          dtype=np.float32) / 255.0)
    vertices = torch.as_tensor(np.asarray(mesh.vertices), dtype=torch.float32)
    faces = torch.as_tensor(np.asarray(mesh.faces), dtype=torch.int64)
    normals = torch.as_tensor(np.asarray(vertex_normals(vertices.numpy(), faces.numpy())), dtype=torch.float32)
    return TexturedMesh(vertices, faces, torch.as_tensor(np.asarray(visual.uv), dtype=torch.float32), texture, normals)
