"""Ground-truth textured objects for the reconstruction benchmark, built deterministically.

Each texture is painted as a function of the 3D surface point behind every texel, so patterns
are continuous across UV seams and exactly defined in 3D:

- `globe`:   a sphere with smooth latitude/longitude colour bands (convex, low frequency).
- `torus`:   a tilted torus whose hue runs around the ring (non-convex: a see-through hole).
- `checker`: a rotated cube with an 8×8 checkerboard on every face (fine texture detail, sharp edges).
- `cup`:     an open cup with a handle, upright (a cavity whose inside and floor the views above see;
             a thin handle that must stay attached).
- `bowl`:    a thin open bowl (a shallow cavity with a thin rim).
- `chair`:   a seat, a back and four thin legs (thin parts that must stay attached).

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


def _tube_arc(centre: np.ndarray, radius: float, start_deg: float, end_deg: float, thickness: float,
              sections: int = 24, sides: int = 12) -> trimesh.Trimesh:
    """A round tube of radius `thickness` along an arc in the XZ plane around `centre`, from
    `start_deg` to `end_deg` (0° = +X), with flat end caps: a closed, watertight handle."""
    angles = np.radians(np.linspace(start_deg, end_deg, sections + 1))
    around = np.linspace(0, 2 * np.pi, sides, endpoint=False)
    rings = []
    for a in angles:
        direction = np.array([math.cos(a), 0.0, math.sin(a)])
        spine = centre + radius * direction
        # The tube's cross-section: in the plane spanned by the radial direction and the Y axis.
        rings.append(spine + thickness * (np.cos(around)[:, None] * direction + np.sin(around)[:, None] * [0, 1, 0]))
    vertices = np.concatenate(rings + [[centre + radius * np.array([math.cos(angles[0]), 0, math.sin(angles[0])])],
                                       [centre + radius * np.array([math.cos(angles[-1]), 0, math.sin(angles[-1])])]])
    faces = []
    for i in range(sections):
        for j in range(sides):
            a0, a1 = i * sides + j, i * sides + (j + 1) % sides
            b0, b1 = a0 + sides, a1 + sides
            faces += [[a0, b0, a1], [a1, b0, b1]]
    first, last = len(vertices) - 2, len(vertices) - 1
    for j in range(sides):
        faces.append([first, (j + 1) % sides, j])
        faces.append([last, sections * sides + j, sections * sides + (j + 1) % sides])
    mesh = trimesh.Trimesh(vertices, np.array(faces), process=True)
    trimesh.repair.fix_normals(mesh)
    return mesh


# Cup proportions (before normalisation): outer radius, wall, floor, height.
CUP_RADIUS, CUP_WALL, CUP_FLOOR, CUP_HEIGHT = 0.32, 0.04, 0.06, 0.8


def cup_mesh() -> trimesh.Trimesh:
    """An open cup (revolved wall + floor, watertight) and a C-shaped handle whose ends sink into
    the wall: two watertight components, like a modelled mug."""
    r, w, f, h = CUP_RADIUS, CUP_WALL, CUP_FLOOR, CUP_HEIGHT
    profile = np.array([[0, 0], [r, 0], [r, h], [r - w, h], [r - w, f], [0, f]])
    body = trimesh.creation.revolve(profile, sections=64)
    # The arc's ends sit inside the wall (x between r − w and r), so the handle is attached
    # without poking into the cup.
    handle = _tube_arc(np.array([r, 0.0, h / 2]), 0.2, -92, 92, 0.028)
    return trimesh.util.concatenate([body, handle])


def bowl_mesh() -> trimesh.Trimesh:
    """A thin open bowl: a revolved spherical shell cut at its rim, with a flat foot."""
    outer, wall = 0.5, 0.03
    angles = np.radians(np.linspace(-90, -10, 24))
    outside = np.stack([outer * np.cos(angles), outer * np.sin(angles)], 1)
    inside = np.stack([(outer - wall) * np.cos(angles[::-1]), (outer - wall) * np.sin(angles[::-1])], 1)
    profile = np.concatenate([[[0, -outer]], outside[1:], inside[:-1], [[0, -outer + wall]]])
    return trimesh.creation.revolve(profile, sections=64)


CHAIR_LEG = 0.045  # the legs' side: thin against the object's size (≈ 1)


def chair_mesh() -> trimesh.Trimesh:
    """A seat, a back and four thin legs, each a box overlapping the seat: six watertight parts."""
    seat = trimesh.creation.box(extents=(0.6, 0.6, 0.06), transform=trimesh.transformations.translation_matrix(
        (0, 0, 0.45)))
    back = trimesh.creation.box(extents=(0.6, 0.06, 0.55), transform=trimesh.transformations.translation_matrix(
        (0, 0.27, 0.75)))
    legs = [trimesh.creation.box(extents=(CHAIR_LEG, CHAIR_LEG, 0.47),
                                 transform=trimesh.transformations.translation_matrix((x, y, 0.22)))
            for x in (-0.26, 0.26) for y in (-0.26, 0.26)]
    return trimesh.util.concatenate([seat, back, *legs])


def _cup_colour(axis: tuple[float, float], inner_radius: float, floor: float) -> Callable[[Tensor], Tensor]:
    """Glazed stripes by height outside and on the handle, a lighter plain glaze on the inner wall
    and floor (the cavity is told apart). `axis` (x, y), `inner_radius` and `floor` (the inner
    floor's height) are in the normalised frame the colour is painted in."""
    centre = torch.tensor(axis)

    def colour(p: Tensor) -> Tensor:
        radial = (p[:, :2] - centre).norm(dim=-1)
        stripes = 0.5 + 0.5 * torch.cos(p[:, 2] * 40)[:, None]
        outside = _hsv(torch.full_like(radial, 0.02), 0.7, 0.85) * (0.7 + 0.3 * stripes)
        inside = torch.tensor([0.92, 0.88, 0.75]).expand(len(p), 3)
        # Half a wall's slack: texel points lie on the surface only up to the texel size.
        is_inside = (radial < inner_radius * 1.07) & (p[:, 2] > floor - 0.01)
        return torch.where(is_inside[:, None], inside, outside).clamp(0, 1)

    return colour


def _cup() -> tuple[trimesh.Trimesh, Callable[[Tensor], Tensor]]:
    """The cup and its colour function, the axis placed where `_textured`'s normalisation puts it."""
    mesh = cup_mesh()
    centre = mesh.bounding_box.centroid
    scale = OBJECT_RADIUS / np.linalg.norm(mesh.vertices - centre, axis=1).max()
    axis = (float(-centre[0] * scale), float(-centre[1] * scale))
    floor = float((CUP_FLOOR - centre[2]) * scale)
    return mesh, _cup_colour(axis, (CUP_RADIUS - CUP_WALL) * scale, floor)


def _bowl_colour(p: Tensor) -> Tensor:
    angle = torch.atan2(p[:, 1], p[:, 0])
    return _hsv((angle / (2 * math.pi) * 3) % 1.0, 0.5, 0.9)


def _chair_colour(p: Tensor) -> Tensor:
    grain = 0.75 + 0.25 * torch.sin(p[:, 0] * 60 + 8 * torch.sin(p[:, 2] * 9))[:, None]
    return (torch.tensor([0.62, 0.40, 0.22]) * grain).clamp(0, 1)


def _rotation(axis: tuple[float, float, float], degrees: float) -> np.ndarray:
    return trimesh.transformations.rotation_matrix(math.radians(degrees), axis)


OBJECT_NAMES = ("globe", "torus", "checker", "cup", "bowl", "chair")


def build_objects(texture_size: int = TEXTURE_SIZE, names: tuple[str, ...] | list[str] | None = None
                  ) -> dict[str, TexturedMesh]:
    """The built-in objects (all of them, or those `names`), in OBJECT_NAMES's order."""
    wanted = OBJECT_NAMES if names is None else tuple(names)
    unknown = sorted(set(wanted) - set(OBJECT_NAMES))
    if unknown:
        raise ValueError(f"unknown objects {unknown}; built-in: {', '.join(OBJECT_NAMES)}")
    builders = _builders(texture_size)
    return {name: builders[name]() for name in OBJECT_NAMES if name in wanted}


def _builders(texture_size: int) -> dict[str, Callable[[], TexturedMesh]]:
    globe = trimesh.creation.icosphere(subdivisions=4)
    torus = trimesh.creation.torus(0.35, 0.13, major_sections=64, minor_sections=24)
    cube = trimesh.creation.box(extents=(1.0, 1.0, 1.0)).subdivide().subdivide()
    edge = 2 * OBJECT_RADIUS / math.sqrt(3)  # the cube's edge once normalised

    def checker(p: Tensor) -> Tensor:
        # Squares aligned with the cube's faces; the offset keeps cell borders off the cube's edges.
        return _checker_colour(p + edge / 2 + 1e-4, edge / CHECKER_SQUARES)

    # The handle and the chair's back face the views from the side (azimuth 90°), not head-on.
    return {
        "globe": lambda: _textured(globe, _globe_colour, texture_size, np.eye(4)),
        "torus": lambda: _textured(torus, _torus_colour, texture_size,
                                   _rotation((1, 0, 0), 55) @ _rotation((0, 0, 1), 20)),
        "checker": lambda: _textured(cube, checker, texture_size,
                                     _rotation((0, 0, 1), 35) @ _rotation((1, 0, 0), 20)),
        "cup": lambda: _textured(*_cup(), texture_size, _rotation((0, 0, 1), 60)),
        "bowl": lambda: _textured(bowl_mesh(), _bowl_colour, texture_size, np.eye(4)),
        "chair": lambda: _textured(chair_mesh(), _chair_colour, texture_size, _rotation((0, 0, 1), 150)),
    }


def read_textured_glb(path: Path):
    """A GLB/GLTF holding one textured mesh → (the trimesh mesh, still +Y up, its base-colour image);
    ValueError naming what is missing."""
    scene = trimesh.load(path, force="scene")
    meshes = [g for g in scene.dump() if isinstance(g, trimesh.Trimesh)]
    if len(meshes) != 1:
        raise ValueError(f"{path}: expected one textured mesh, found {len(meshes)} meshes; join them first")
    mesh = meshes[0]
    material = getattr(mesh.visual, "material", None)
    image = getattr(material, "baseColorTexture", None) or getattr(material, "image", None)
    if getattr(mesh.visual, "uv", None) is None or image is None:
        raise ValueError(f"{path}: the mesh has no UVs or no base-colour texture")
    return mesh, image


def load_glb(path: Path, texture_size: int = TEXTURE_SIZE) -> TexturedMesh:
    """A textured GLB/GLTF as ground truth (its own UVs and base-colour texture), normalised in size."""
    mesh, image = read_textured_glb(path)
    visual = mesh.visual
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
