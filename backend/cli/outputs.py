"""Writing a generation's results to a folder: model.glb, splats.ply, turntable.png, report.json
(and turntable_raw.png when the fixer enhanced the turntable: Difix3D+'s post-render step).

Files are written into a hidden staging folder next to the destination and moved into place
only when all of them exist, so a failed or cancelled run leaves nothing partial behind.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image, ImageDraw

from ..geometry.cameras import orbit_cameras
from ..geometry.export import export_glb
from ..geometry.textured_mesh import TexturedMesh, render_mesh

TURNTABLE_AZIMUTHS = tuple(range(0, 360, 45))


Enhancer = Callable[[torch.Tensor], torch.Tensor]
"""Renders [B, 3, H, W] in [0, 1] → fixed renders of the same shape (the pipeline's fixer)."""


def turntable(mesh: dict[str, np.ndarray], *, size: int = 256, elevation_deg: float = 15.0,
              label: str = "", enhance: Enhancer | None = None) -> np.ndarray:
    """Eight views of the textured mesh around its vertical axis in a 4 × 2 sheet → uint8
    [2·size (+ label strip), 4·size, 3]; each view passed through `enhance` when given."""
    # as_tensor copies the arrays that arrive read-only (decoded straight from message frames).
    textured = TexturedMesh(torch.as_tensor(np.array(mesh["vertices"], np.float32)),
                            torch.from_numpy(mesh["faces"].astype(np.int64)),
                            torch.as_tensor(np.array(mesh["uvs"], np.float32)),
                            torch.from_numpy(mesh["texture"][..., :3].astype(np.float32) / 255.0))
    cameras = orbit_cameras([elevation_deg] * len(TURNTABLE_AZIMUTHS), list(map(float, TURNTABLE_AZIMUTHS)), 2.0,
                            fovy_deg=49.1, width=size, height=size)
    with torch.no_grad():
        rgb = render_mesh(textured, cameras, backgrounds=torch.ones(3)).rgb  # [8, S, S, 3]
        if enhance is not None:
            rgb = enhance(rgb.permute(0, 3, 1, 2).contiguous()).permute(0, 2, 3, 1).cpu()
    tiles = (rgb.clamp(0, 1) * 255 + 0.5).to(torch.uint8).numpy()
    sheet = np.concatenate([np.concatenate(list(tiles[r * 4:(r + 1) * 4]), axis=1) for r in range(2)], axis=0)
    return with_label(sheet, label)


def with_label(image: np.ndarray, label: str) -> np.ndarray:
    """[H, W, 3] uint8 with a red strip holding `label` on top (unchanged when label is empty):
    how tiny-preset pictures say that they show noise."""
    if not label:
        return image
    strip = Image.new("RGB", (image.shape[1], 24), (200, 30, 30))
    ImageDraw.Draw(strip).text((8, 6), label, fill=(255, 255, 255))
    return np.concatenate([np.asarray(strip), image[..., :3]], axis=0)


@contextmanager
def staged(destination: Path) -> Iterator[Path]:
    """A hidden staging folder next to `destination`: write files into it; when the block ends
    without an error they are moved into `destination` (created), otherwise nothing is left."""
    destination = Path(destination)
    destination.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{destination.name}.", dir=destination.parent))
    try:
        yield staging
        destination.mkdir(exist_ok=True)
        for file in sorted(staging.iterdir()):
            file.replace(destination / file.name)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def write_outputs(destination: Path, *, mesh: dict[str, np.ndarray], report: dict[str, Any],
                  gaussians=None, label: str = "", enhance: Enhancer | None = None) -> dict[str, Path]:
    """Write everything into `destination` (created; existing files of the same names replaced)
    → the paths written."""
    destination = Path(destination)
    with staged(destination) as staging:
        texture = mesh["texture"]
        export_glb(staging / "model.glb", mesh["vertices"], mesh["faces"], mesh["uvs"], texture, mesh.get("normals"))
        if gaussians is not None:
            from ..geometry.gaussians import save_ply

            save_ply(gaussians, staging / "splats.ply")
        if enhance is not None:
            Image.fromarray(turntable(mesh, label=label, enhance=enhance)).save(staging / "turntable.png")
            Image.fromarray(turntable(mesh, label=label)).save(staging / "turntable_raw.png")
        else:
            Image.fromarray(turntable(mesh, label=label)).save(staging / "turntable.png")
        (staging / "report.json").write_text(json.dumps(report, indent=2, default=str))
        names = sorted(file.name for file in staging.iterdir())
    return {Path(name).stem: destination / name for name in names}
