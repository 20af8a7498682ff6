"""Ground-truth scenes for the text → scene oracle benchmark, built deterministically.

Each is one textured mesh in Lift3D's world (+Z up, metres, the floor at z = 0), painted as a
function of the 3D point behind every texel (patterns exactly defined in 3D), and subdivided into
small triangles so none crosses the camera's near plane (the CPU rasteriser drops such triangles):

- `room`:    a 6 × 5 × 3 m room seen from its middle: striped and checked walls of four hues, a
             parquet-like floor, a gridded ceiling, and furniture-like boxes (a table on four legs,
             a tall cabinet, a bed, a crate).
- `outdoor`: an open place: a 60 × 60 m ground with a mottled pattern, buildings and tree-like
             columns at 4 to 15 m, and a far backdrop (hills under a sky gradient) on a cylinder of
             radius 25 m with a lid, so every ray ends on a surface.

`load_scene_glb(path)` brings any textured GLB scene in (+Y up glTF turned to +Z up, not rescaled).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import trimesh
from torch import Tensor

from backend.geometry.bake import fill_from_nearest, texel_surface
from backend.geometry.mesh_cleanup import vertex_normals
from backend.geometry.textured_mesh import TexturedMesh
from backend.geometry.uv_atlas import unwrap

from .objects import read_textured_glb

SCENES = ("room", "outdoor")
TEXTURE_SIZE = 2048
EYE_HEIGHT = 1.6

Colour = Callable[[Tensor], Tensor]  # points [N, 3] → rgb [N, 3]


@dataclass(frozen=True)
class Part:
    mesh: trimesh.Trimesh
    colour: Colour
    max_edge: float


def _hsv(h: float, s: float, v: float) -> Tensor:
    k = torch.tensor([(5 + h * 6) % 6, (3 + h * 6) % 6, (1 + h * 6) % 6])
    return v - v * s * torch.clamp(torch.minimum(k, 4 - k), 0, 1)


def _mix(a: Tensor, b: Tensor, t: Tensor) -> Tensor:
    return a * (1 - t[:, None]) + b * t[:, None]


def _stripes(base: Tensor, other: Tensor, axis: Tensor, period: float) -> Colour:
    def colour(p: Tensor) -> Tensor:
        t = (torch.sin(2 * math.pi * (p @ axis) / period) > 0).float()
        return _mix(base, other, t)
    return colour


def _checker(light: Tensor, dark: Tensor, period: float) -> Colour:
    def colour(p: Tensor) -> Tensor:
        cells = torch.floor(p / period).long().sum(-1) % 2
        return torch.where(cells[:, None].bool(), light, dark)
    return colour


def _mottled(a: Tensor, b: Tensor, scale: float) -> Colour:
    def colour(p: Tensor) -> Tensor:
        x, y, z = p[:, 0] / scale, p[:, 1] / scale, p[:, 2] / scale
        n = (torch.sin(x * 1.7 + torch.sin(y * 2.3)) + torch.sin(y * 1.3 + torch.sin(z * 1.9 + x)) +
             0.5 * torch.sin(3.1 * x + 2.7 * y + 1.3 * z)) / 2.5
        return _mix(a, b, (n * 0.5 + 0.5).clamp(0, 1))
    return colour


def _box(extents: tuple[float, float, float], centre: tuple[float, float, float], *, inward: bool = False
         ) -> trimesh.Trimesh:
    mesh = trimesh.creation.box(extents=extents, transform=trimesh.transformations.translation_matrix(centre))
    if inward:
        mesh.invert()
    return mesh


def _parts_mesh(parts: list[Part], texture_size: int) -> TexturedMesh:
    """Unwrap all parts into one atlas, paint each part's texels with its colour, then subdivide
    (UVs carried along linearly)."""
    meshes = [p.mesh for p in parts]
    owner = np.concatenate([np.full(len(m.faces), i) for i, m in enumerate(meshes)])
    joined = trimesh.util.concatenate(meshes)
    uv_mesh = unwrap(np.asarray(joined.vertices, np.float32), np.asarray(joined.faces, np.int64),
                     resolution=texture_size)
    vertices = torch.as_tensor(np.asarray(uv_mesh.vertices), dtype=torch.float32)
    faces = torch.as_tensor(np.asarray(uv_mesh.faces), dtype=torch.int64)
    uvs = torch.as_tensor(np.asarray(uv_mesh.uvs), dtype=torch.float32)
    normals = torch.as_tensor(vertex_normals(vertices.numpy(), faces.numpy()), dtype=torch.float32)
    points, _, inside = texel_surface(vertices, faces, uvs, normals, texture_size)
    # Which part each texel belongs to: the owner of a face using the texel's chart, found through a
    # UV-space raster of face ids.
    from backend.geometry import mesh_raster

    frags = mesh_raster.uv_space_fragments(faces, uvs, texture_size)
    face_ids = frags.triangle_ids[0]
    texture = torch.zeros(texture_size, texture_size, 3)
    face_owner = torch.as_tensor(owner, dtype=torch.int64)  # xatlas keeps the faces' order
    for i, part in enumerate(parts):
        pick = inside & (face_ids >= 0) & (face_owner[face_ids.clamp_min(0)] == i)
        if pick.any():
            texture[pick] = part.colour(points[pick]).float().clamp(0, 1)
    texture = fill_from_nearest(texture, inside)
    vertices, faces, uvs = _subdivide(vertices, faces, uvs, face_owner, [p.max_edge for p in parts])
    normals = torch.as_tensor(vertex_normals(vertices.numpy(), faces.numpy()), dtype=torch.float32)
    return TexturedMesh(vertices, faces, uvs, texture, normals)


def _subdivide(vertices: Tensor, faces: Tensor, uvs: Tensor, owner: Tensor, max_edges: list[float]
               ) -> tuple[Tensor, Tensor, Tensor]:
    """Split each part's triangles until no edge is longer than its `max_edge` (positions and UVs
    split at the same midpoints)."""
    out_v, out_f, out_uv, offset = [], [], [], 0
    for i, max_edge in enumerate(max_edges):
        f = faces[owner == i].numpy()
        if len(f) == 0:
            continue
        used, f = np.unique(f, return_inverse=True)
        f = f.reshape(-1, 3)
        attributes = np.concatenate([vertices.numpy()[used], uvs.numpy()[used] * 1e-6], axis=1).astype(np.float64)
        v, f = trimesh.remesh.subdivide_to_size(attributes, f, max_edge=max_edge, max_iter=20)
        out_v.append(v[:, :3])
        out_uv.append(v[:, 3:] * 1e6)
        out_f.append(f + offset)
        offset += len(v)
    return (torch.as_tensor(np.concatenate(out_v), dtype=torch.float32),
            torch.as_tensor(np.concatenate(out_f), dtype=torch.int64),
            torch.as_tensor(np.concatenate(out_uv), dtype=torch.float32))


def room(texture_size: int = TEXTURE_SIZE) -> TexturedMesh:
    """The room: x ∈ [−3, 3], y ∈ [−2.5, 2.5], z ∈ [0, 3]."""
    width, depth, height = 6.0, 5.0, 3.0
    shell = [  # walls as thin inward-facing boxes, so each has its own pattern
        (_box((width, depth, 0.02), (0, 0, -0.01), inward=False), _checker(torch.tensor([0.72, 0.52, 0.32]),
                                                                            torch.tensor([0.52, 0.34, 0.2]), 0.5)),
        (_box((width, depth, 0.02), (0, 0, height + 0.01)), _checker(torch.tensor([0.92, 0.92, 0.88]),
                                                                      torch.tensor([0.8, 0.8, 0.78]), 1.0)),
        (_box((width, 0.02, height), (0, depth / 2 + 0.01, height / 2)),
         _stripes(_hsv(0.58, 0.45, 0.85), _hsv(0.58, 0.2, 0.98), torch.tensor([1.0, 0.0, 0.0]), 0.6)),
        (_box((width, 0.02, height), (0, -depth / 2 - 0.01, height / 2)),
         _stripes(_hsv(0.08, 0.55, 0.9), _hsv(0.12, 0.2, 0.98), torch.tensor([0.0, 0.0, 1.0]), 0.5)),
        (_box((0.02, depth, height), (width / 2 + 0.01, 0, height / 2)),
         _checker(_hsv(0.33, 0.45, 0.8), _hsv(0.3, 0.15, 0.95), 0.7)),
        (_box((0.02, depth, height), (-width / 2 - 0.01, 0, height / 2)),
         _stripes(_hsv(0.85, 0.4, 0.85), _hsv(0.9, 0.15, 0.97), torch.tensor([0.7, 0.0, 0.7]), 0.5)),
    ]
    wood, dark = torch.tensor([0.55, 0.35, 0.18]), torch.tensor([0.35, 0.2, 0.1])
    furniture = [  # a table on four legs, a tall cabinet, a bed, a crate
        (_box((1.4, 0.8, 0.06), (0.9, 1.2, 0.75)), _stripes(wood, dark, torch.tensor([1.0, 0.0, 0.0]), 0.15)),
        *[(_box((0.06, 0.06, 0.72), (0.9 + x, 1.2 + y, 0.36)), lambda p: dark.expand(len(p), 3))
          for x in (-0.62, 0.62) for y in (-0.32, 0.32)],
        (_box((0.9, 0.45, 1.9), (-2.4, 1.9, 0.95)), _checker(_hsv(0.6, 0.6, 0.5), _hsv(0.6, 0.3, 0.75), 0.3)),
        (_box((1.5, 2.1, 0.5), (-1.9, -1.3, 0.25)), _stripes(_hsv(0.0, 0.5, 0.8), _hsv(0.0, 0.1, 0.95),
                                                           torch.tensor([0.0, 1.0, 0.0]), 0.3)),
        (_box((0.6, 0.6, 0.6), (2.2, -1.6, 0.3)), _checker(_hsv(0.14, 0.7, 0.9), _hsv(0.14, 0.4, 0.5), 0.2)),
    ]
    parts = [Part(m, c, 0.25) for m, c in shell] + [Part(m, c, 0.2) for m, c in furniture]
    return _parts_mesh(parts, texture_size)


def outdoor(texture_size: int = TEXTURE_SIZE) -> TexturedMesh:
    """The open place: ground to ±30 m, a backdrop cylinder of radius 25 m and 18 m height with a lid."""
    ground = trimesh.creation.box(extents=(60.0, 60.0, 0.02), transform=trimesh.transformations.translation_matrix(
        (0, 0, -0.01)))
    grass = _mottled(torch.tensor([0.32, 0.5, 0.2]), torch.tensor([0.55, 0.62, 0.3]), 0.8)
    backdrop = trimesh.creation.cylinder(radius=25.0, height=18.0, sections=48,
                                         transform=trimesh.transformations.translation_matrix((0, 0, 9.0)))
    backdrop.invert()

    def sky(p: Tensor) -> Tensor:
        angle = torch.atan2(p[:, 1], p[:, 0])
        hills = 3.0 + 1.6 * torch.sin(3 * angle) + 0.9 * torch.sin(7 * angle + 1.0) + 0.4 * torch.sin(17 * angle)
        blue = _mix(torch.tensor([0.75, 0.85, 0.95]), torch.tensor([0.35, 0.55, 0.85]), (p[:, 2] / 18).clamp(0, 1))
        hill = _mix(torch.tensor([0.25, 0.38, 0.3]), torch.tensor([0.4, 0.5, 0.4]),
                    (0.5 + 0.5 * torch.sin(5 * angle + p[:, 2])).clamp(0, 1))
        return torch.where((p[:, 2] < hills)[:, None], hill, blue)

    buildings = [
        (_box((4.0, 3.0, 5.0), (-6.0, 12.0, 2.5)), _checker(_hsv(0.05, 0.4, 0.85), _hsv(0.6, 0.3, 0.4), 0.8)),
        (_box((3.0, 5.0, 3.5), (8.0, 6.0, 1.75)), _stripes(_hsv(0.12, 0.5, 0.9), _hsv(0.1, 0.2, 0.6),
                                                          torch.tensor([0.0, 0.0, 1.0]), 0.7)),
        (_box((6.0, 3.0, 7.0), (4.0, -13.0, 3.5)), _checker(_hsv(0.55, 0.2, 0.9), _hsv(0.55, 0.5, 0.5), 1.0)),
        (_box((3.0, 3.0, 4.0), (-10.0, -5.0, 2.0)), _stripes(_hsv(0.95, 0.45, 0.85), _hsv(0.95, 0.15, 0.95),
                                                            torch.tensor([1.0, 1.0, 0.0]), 0.9)),
    ]
    bark = _stripes(torch.tensor([0.4, 0.27, 0.15]), torch.tensor([0.3, 0.2, 0.1]), torch.tensor([0.0, 0.0, 1.0]), 0.4)
    trees = []
    for x, y in ((3.0, 5.0), (-3.5, 6.5), (-5.0, -3.0), (5.5, -4.0), (0.5, -7.0), (10.0, 1.0)):
        trunk = trimesh.creation.cylinder(radius=0.25, height=2.0, sections=12,
                                          transform=trimesh.transformations.translation_matrix((x, y, 1.0)))
        crown = trimesh.creation.cone(radius=1.3, height=3.0, sections=16,
                                      transform=trimesh.transformations.translation_matrix((x, y, 1.8)))
        trees += [(trunk, bark), (crown, _mottled(torch.tensor([0.12, 0.4, 0.15]), torch.tensor([0.3, 0.6, 0.2]),
                                                  0.3))]
    parts = [Part(ground, grass, 1.0), Part(backdrop, sky, 2.0)] + \
        [Part(m, c, 0.6) for m, c in buildings] + [Part(m, c, 0.3) for m, c in trees]
    return _parts_mesh(parts, texture_size)


def build_scene(name: str, texture_size: int = TEXTURE_SIZE) -> TexturedMesh:
    builders = {"room": room, "outdoor": outdoor}
    if name not in builders:
        raise ValueError(f"unknown scene {name!r}; choose from {', '.join(SCENES)}")
    return builders[name](texture_size)


def load_scene_glb(path: Path, texture_size: int = TEXTURE_SIZE) -> TexturedMesh:
    """A textured GLB scene as ground truth: its own UVs and base-colour texture, +Y up turned to
    +Z up, in its own units (metres in glTF), not rescaled; subdivided like the built-in scenes."""
    mesh, image = read_textured_glb(path)
    visual = mesh.visual
    mesh.apply_transform(trimesh.transformations.rotation_matrix(math.pi / 2, (1, 0, 0)))
    texture = torch.from_numpy(np.asarray(image.convert("RGB").resize((texture_size, texture_size)),
                                          dtype=np.float32) / 255.0)
    vertices = torch.as_tensor(np.asarray(mesh.vertices), dtype=torch.float32)
    faces = torch.as_tensor(np.asarray(mesh.faces), dtype=torch.int64)
    uvs = torch.as_tensor(np.asarray(visual.uv), dtype=torch.float32)
    extent = float((vertices.max(0).values - vertices.min(0).values).norm())
    vertices, faces, uvs = _subdivide(vertices, faces, uvs, torch.zeros(len(faces), dtype=torch.int64),
                                      [max(extent / 40, 1e-3)])
    normals = torch.as_tensor(vertex_normals(vertices.numpy(), faces.numpy()), dtype=torch.float32)
    return TexturedMesh(vertices, faces, uvs, texture, normals)


def is_room(mesh: TexturedMesh, eye_height: float = EYE_HEIGHT) -> bool:
    """Whether a scene encloses its centre at eye height: four level views from there (front, left,
    back, right) are each at least 99 % covered."""
    from backend.geometry import mesh_raster
    from backend.scene.trajectory import Trajectory, _yaw_camtoworld

    eye = scene_eye(mesh, eye_height)
    poses = torch.tensor(np.stack([_yaw_camtoworld(eye, yaw) for yaw in (0.0, 90.0, 180.0, 270.0)]),
                         dtype=torch.float32)
    cameras = Trajectory(poses, 60.0).cameras(32)
    with torch.no_grad():
        fragments = mesh_raster.rasterize(mesh.vertices, mesh.faces, cameras.viewmats, cameras.Ks, 32, 32,
                                          backend="torch")
    return bool((fragments.mask.float().mean(dim=(1, 2)) >= 0.99).all())


def scene_eye(mesh: TexturedMesh, eye_height: float = EYE_HEIGHT) -> np.ndarray:
    """The camera's start: the bounding box's centre in x and y, `eye_height` above its floor."""
    v = mesh.vertices.numpy()
    lo, hi = v.min(0), v.max(0)
    return np.array([(lo[0] + hi[0]) / 2, (lo[1] + hi[1]) / 2, lo[2] + eye_height], dtype=np.float64)
