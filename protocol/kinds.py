"""Request kinds and the stages each one reports, defined once for both sides.

The backend reports progress with these stage names (`StageContext.report(Stage.GEOMETRY, ...)`),
the add-on turns them into one progress bar with the spans below, and the panel shows their
labels. A newer backend may report a stage this side does not know (a minor protocol addition):
the progress bar then holds still and the raw name is shown.
"""

from __future__ import annotations

from enum import StrEnum


class RequestKind(StrEnum):
    """What a job makes: `generate` (image + prompt → textured mesh), `enhance` (since protocol
    2.1: the single-step fixer on one rendered image) and `texture` (since 2.2: a UV texture
    painted onto the artist's mesh) and `scene` (since 2.5: a prompt, and optionally a first image,
    grown into a 3D scene along a camera path)."""

    GENERATE = "generate"
    ENHANCE = "enhance"
    TEXTURE = "texture"
    SCENE = "scene"


class Stage(StrEnum):
    PREPROCESS = "preprocess"
    PSEUDO_VIEWS = "pseudo views"
    GEOMETRY = "geometry"
    MESH = "mesh"
    TEXTURE = "texture"
    ENHANCE = "enhance"
    UV = "uv"
    PAINT = "paint"
    KEYFRAMES = "keyframes"

    @property
    def label(self) -> str:
        return "UVs" if self is Stage.UV else self.value.capitalize()


# Each kind's stages in the order it runs them, with the share of the job's wall time each takes
# (geometry optimisation dominates on every preset); the shares of a kind sum to 1.
STAGE_SHARES: dict[RequestKind, tuple[tuple[Stage, float], ...]] = {
    RequestKind.GENERATE: ((Stage.PREPROCESS, 0.05), (Stage.PSEUDO_VIEWS, 0.10), (Stage.GEOMETRY, 0.60),
                           (Stage.MESH, 0.05), (Stage.TEXTURE, 0.20)),
    # One stage: decode, load the fixer (first time only), fix, encode; its steps say which.
    RequestKind.ENHANCE: ((Stage.ENHANCE, 1.0),),
    # Check and unwrap the mesh (or keep its UVs) and find each texel's surface point; paint view
    # after view (the diffusion model's share); fill what no view saw, dilate the gutters.
    RequestKind.TEXTURE: ((Stage.UV, 0.1), (Stage.PAINT, 0.8), (Stage.TEXTURE, 0.1)),
    # Load the models; make the first keyframe and grow the scene keyframe by keyframe (inpainting,
    # depth, replay optimisation); fuse the keyframes' depth into a mesh.
    RequestKind.SCENE: ((Stage.PREPROCESS, 0.05), (Stage.KEYFRAMES, 0.9), (Stage.MESH, 0.05)),
}


def progress_spans(kind: RequestKind) -> dict[Stage, tuple[float, float]]:
    """stage → (start, end) of its part of a 0..1 progress bar."""
    spans, start = {}, 0.0
    for stage, share in STAGE_SHARES[kind]:
        spans[stage] = (round(start, 6), round(start + share, 6))
        start += share
    return spans


def stage_of(name: str) -> Stage | None:
    """The Stage for a name received on the wire, None for one this side does not know."""
    try:
        return Stage(name)
    except ValueError:
        return None
