"""The mesh stage of generation: Gaussians → a UV-mapped mesh with the texture baked from them,
as the plain arrays that travel in a `mesh` message and are kept in the result cache."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from ..serving.context import PipelineError
from ..geometry.extract import MeshStageConfig, extract_textured_mesh
from ..geometry.gaussians import Gaussians
from ..geometry.textured_mesh import TexturedMesh

STEPS = ("density grid", "fill interior", "marching cubes", "clean", "decimate", "uv atlas", "bake")
"""The named steps `extract_textured_mesh` reports, in order (progress is step i of len(STEPS))."""


@dataclass
class MeshArrays:
    vertices: np.ndarray  # [V, 3] float32, Blender's world (+Z up)
    faces: np.ndarray     # [F, 3] uint32
    uvs: np.ndarray       # [V, 2] float32, origin bottom-left
    normals: np.ndarray   # [V, 3] float32
    texture: np.ndarray   # [T, T, 3] uint8, row 0 at the top

    def cache_payload(self) -> dict[str, np.ndarray]:
        return dict(vars(self))

    @classmethod
    def from_cache(cls, arrays: dict[str, np.ndarray]) -> MeshArrays:
        return cls(**{name: np.array(arrays[name]) for name in ("vertices", "faces", "uvs", "normals", "texture")})

    def with_texture(self, texture: np.ndarray) -> MeshArrays:
        return MeshArrays(self.vertices, self.faces, self.uvs, self.normals, texture)

    def to_textured_mesh(self, device: torch.device | str) -> TexturedMesh:
        """For rendering and texture refinement (texture as float [T, T, 3] in [0, 1])."""
        return TexturedMesh(torch.from_numpy(self.vertices).to(device),
                            torch.from_numpy(self.faces.astype(np.int64)).to(device),
                            torch.from_numpy(self.uvs).to(device),
                            torch.from_numpy(self.texture.astype(np.float32) / 255.0).to(device),
                            torch.from_numpy(self.normals).to(device))


def texture_bytes(texture: torch.Tensor) -> np.ndarray:
    """[T, T, 3] float in [0, 1] → uint8, rounded."""
    return (texture.clamp(0, 1) * 255 + 0.5).to(torch.uint8).cpu().numpy()


def extract_mesh(gaussians: Gaussians, config: MeshStageConfig, *, on_step: Callable[[str], None],
                 check: Callable[[], None]) -> tuple[MeshArrays, dict]:
    """→ (the mesh arrays, what to remember about it: bake coverage and step timings).
    `on_step(name)` after each of STEPS; raise from it or `check` to cancel."""
    try:
        extracted = extract_textured_mesh(gaussians, config, on_step=on_step, check=check)
    except ValueError as exc:
        raise PipelineError(f"no mesh could be extracted from the Gaussians: {exc}",
                            hint="try another seed or the standard preset; check the object mask") from exc
    mesh = extracted.mesh
    arrays = MeshArrays(vertices=mesh.vertices.cpu().numpy().astype(np.float32),
                        faces=mesh.faces.cpu().numpy().astype(np.uint32),
                        uvs=mesh.uvs.cpu().numpy().astype(np.float32),
                        normals=mesh.normals.cpu().numpy().astype(np.float32),
                        texture=texture_bytes(mesh.texture))
    return arrays, {"coverage": extracted.coverage, "timings": extracted.timings}
