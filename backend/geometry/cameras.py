"""Cameras for both renderers, the orbit/reference/six-view sets, relative poses, and conversions.

Conventions (one set, used everywhere in `backend/geometry`):

* **World**: Blender's, right-handed, +Z up, and the input view looks at the object from −Y
  (Blender's "front" view). The final mesh therefore lands upright in the scene without a
  conversion; `Z_UP_TO_Y_UP` turns it into glTF's +Y-up frame for export.
* **Camera**: OpenCV, as gsplat wants it: x right, y down, z forward. `viewmats` are
  world→camera 4×4, `Ks` pixel intrinsics with u = fx·x/z + cx, v = fy·y/z + cy; pixel (row i,
  col j) has its centre at (u, v) = (j + 0.5, i + 0.5); row 0 is the top of the image.
* **Orbits**: elevation is the angle above the XY plane, azimuth turns the camera
  counter-clockwise seen from +Z (from the front view towards +X, i.e. to the camera's right),
  radius is the distance to the target. Azimuth 0 / elevation 0 is the front view.

OpenGL and Blender cameras look down −Z with +Y up; `opencv_to_opengl` and `blender_*` convert.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

# Camera-frame flip between OpenCV (y down, z forward) and OpenGL/Blender (y up, looking down −z).
_CV_GL_FLIP = (1.0, -1.0, -1.0, 1.0)

# Zero123 renders Objaverse at this field of view; the reference camera defaults to it.
ZERO123_FOVY_DEG = 49.1
DEFAULT_RADIUS = 2.0

# The fixed six-view set of multi-view diffusion (Zero123++ v1.2): azimuths relative to the input
# view, absolute elevations.
SIX_VIEW_AZIMUTHS_DEG = (30.0, 90.0, 150.0, 210.0, 270.0, 330.0)
SIX_VIEW_ELEVATIONS_DEG = (20.0, -10.0, 20.0, -10.0, 20.0, -10.0)

# Rotation taking Blender's +Z-up world to glTF's +Y-up world (−90° about X): (x, y, z) → (x, z, −y).
Z_UP_TO_Y_UP = torch.tensor([[1.0, 0.0, 0.0], [0.0, 0.0, 1.0], [0.0, -1.0, 0.0]])


@dataclass(frozen=True)
class Cameras:
    """A batch of pinhole cameras sharing one image size."""

    viewmats: Tensor  # [C, 4, 4] world→camera, OpenCV
    Ks: Tensor  # [C, 3, 3] pixel intrinsics
    width: int
    height: int

    def __post_init__(self) -> None:
        if self.viewmats.ndim != 3 or self.viewmats.shape[1:] != (4, 4):
            raise ValueError(f"viewmats must be [C, 4, 4], got {tuple(self.viewmats.shape)}")
        if self.Ks.shape != (self.viewmats.shape[0], 3, 3):
            raise ValueError(f"Ks must be [{self.viewmats.shape[0]}, 3, 3], got {tuple(self.Ks.shape)}")
        if self.width <= 0 or self.height <= 0:
            raise ValueError(f"image size must be positive, got {self.width}x{self.height}")

    def __len__(self) -> int:
        return self.viewmats.shape[0]

    def __getitem__(self, index: int | slice | Tensor) -> Cameras:
        if isinstance(index, int):
            index = slice(index, index + 1 if index != -1 else None)
        return Cameras(self.viewmats[index], self.Ks[index], self.width, self.height)

    def to(self, device: torch.device | str) -> Cameras:
        return Cameras(self.viewmats.to(device), self.Ks.to(device), self.width, self.height)

    @property
    def camtoworlds(self) -> Tensor:  # [C, 4, 4] camera→world, OpenCV
        return torch.linalg.inv(self.viewmats)

    @property
    def centers(self) -> Tensor:  # [C, 3] camera positions in the world
        return self.camtoworlds[:, :3, 3]

    def resized(self, width: int, height: int) -> Cameras:
        """The same views at another resolution (intrinsics scaled, so the field of view is kept)."""
        scale = torch.tensor([width / self.width, height / self.height, 1.0], dtype=self.Ks.dtype,
                             device=self.Ks.device)
        return Cameras(self.viewmats, self.Ks * scale[None, :, None], width, height)

    @staticmethod
    def cat(cameras: list[Cameras]) -> Cameras:
        sizes = {(c.width, c.height) for c in cameras}
        if len(sizes) != 1:
            raise ValueError(f"cannot concatenate cameras of different image sizes {sorted(sizes)}")
        return Cameras(torch.cat([c.viewmats for c in cameras]), torch.cat([c.Ks for c in cameras]),
                       cameras[0].width, cameras[0].height)


def intrinsics_from_fov(fovy_deg: float, width: int, height: int) -> Tensor:  # [3, 3]
    """Square-pixel intrinsics with the principal point at the image centre."""
    if not 0.0 < fovy_deg < 180.0:
        raise ValueError(f"field of view must be in (0, 180) degrees, got {fovy_deg}")
    focal = 0.5 * height / math.tan(math.radians(fovy_deg) / 2)
    return torch.tensor([[focal, 0.0, width / 2], [0.0, focal, height / 2], [0.0, 0.0, 1.0]])


def look_at(eye: Tensor, target: Tensor, up: Tensor | None = None) -> Tensor:
    """OpenCV camera→world matrices for cameras at `eye` [C, 3] looking at `target` [C, 3] or [3].

    `up` is the world direction that appears upwards in the image (default +Z). A camera looking
    straight along `up` uses +Y as the reference instead, so poles never give NaNs.
    """
    eye = torch.as_tensor(eye, dtype=torch.float32)
    target = torch.as_tensor(target, dtype=eye.dtype, device=eye.device).expand_as(eye)
    up = torch.tensor([0.0, 0.0, 1.0]) if up is None else torch.as_tensor(up, dtype=eye.dtype)
    up = up.to(eye.device).expand_as(eye)
    forward = torch.nn.functional.normalize(target - eye, dim=-1)
    right = torch.linalg.cross(forward, up)
    degenerate = right.norm(dim=-1) < 1e-6
    if degenerate.any():
        alt = torch.tensor([0.0, 1.0, 0.0], dtype=eye.dtype, device=eye.device).expand_as(eye)
        right = torch.where(degenerate[:, None], torch.linalg.cross(forward, alt), right)
    right = torch.nn.functional.normalize(right, dim=-1)
    down = torch.linalg.cross(forward, right)  # OpenCV y points down the image
    c2w = torch.eye(4, dtype=eye.dtype, device=eye.device).repeat(eye.shape[0], 1, 1)
    c2w[:, :3, 0], c2w[:, :3, 1], c2w[:, :3, 2], c2w[:, :3, 3] = right, down, forward, eye
    return c2w


def orbit_positions(elevation_deg: Tensor, azimuth_deg: Tensor, radius: Tensor | float) -> Tensor:  # [C, 3]
    """World positions on the orbit (see the module docstring for the angle conventions)."""
    elev = torch.deg2rad(torch.as_tensor(elevation_deg, dtype=torch.float32))
    azim = torch.deg2rad(torch.as_tensor(azimuth_deg, dtype=torch.float32))
    radius = torch.as_tensor(radius, dtype=torch.float32)
    return torch.stack([radius * torch.cos(elev) * torch.sin(azim),
                        -radius * torch.cos(elev) * torch.cos(azim),
                        radius * torch.sin(elev)], dim=-1).reshape(-1, 3)


def orbit_cameras(elevation_deg: Tensor | list[float], azimuth_deg: Tensor | list[float],
                  radius: Tensor | float = DEFAULT_RADIUS, *, fovy_deg: float = ZERO123_FOVY_DEG,
                  width: int = 256, height: int = 256, target: Tensor | None = None) -> Cameras:
    """Cameras on a sphere around `target` (default the origin), all looking at it."""
    elevation = torch.as_tensor(elevation_deg, dtype=torch.float32).reshape(-1)
    azimuth = torch.as_tensor(azimuth_deg, dtype=torch.float32).reshape(-1)
    if elevation.shape != azimuth.shape:
        raise ValueError(f"{elevation.numel()} elevations for {azimuth.numel()} azimuths")
    if (elevation.abs() > 90).any():
        raise ValueError("elevations must lie in [-90, 90] degrees")
    radius_t = torch.as_tensor(radius, dtype=torch.float32).expand_as(elevation)
    if (radius_t <= 0).any():
        raise ValueError("orbit radius must be positive")
    centre = torch.zeros(3) if target is None else torch.as_tensor(target, dtype=torch.float32)
    eye = orbit_positions(elevation, azimuth, radius_t) + centre
    viewmats = torch.linalg.inv(look_at(eye, centre))
    K = intrinsics_from_fov(fovy_deg, width, height)
    return Cameras(viewmats, K.expand(len(eye), 3, 3).clone(), width, height)


def reference_camera(elevation_deg: float = 0.0, radius: float = DEFAULT_RADIUS, *,
                     fovy_deg: float = ZERO123_FOVY_DEG, width: int = 256, height: int = 256) -> Cameras:
    """The camera the input image was taken from: azimuth 0, at the user-given elevation."""
    return orbit_cameras([elevation_deg], [0.0], radius, fovy_deg=fovy_deg, width=width, height=height)


@dataclass(frozen=True)
class OrbitPose:
    """Orbit parameters of a batch of views (degrees, degrees, world units)."""

    elevation_deg: Tensor  # [C]
    azimuth_deg: Tensor  # [C]
    radius: Tensor  # [C]


def six_view_poses(reference_azimuth_deg: float = 0.0, radius: float = DEFAULT_RADIUS) -> OrbitPose:
    """The fixed multi-view set: azimuths relative to the input, elevations absolute (+20/−10)."""
    azimuth = torch.tensor(SIX_VIEW_AZIMUTHS_DEG) + reference_azimuth_deg
    return OrbitPose(torch.tensor(SIX_VIEW_ELEVATIONS_DEG), azimuth, torch.full((6,), float(radius)))


def six_view_cameras(radius: float = DEFAULT_RADIUS, *, fovy_deg: float = ZERO123_FOVY_DEG,
                     width: int = 256, height: int = 256) -> Cameras:
    pose = six_view_poses(radius=radius)
    return orbit_cameras(pose.elevation_deg, pose.azimuth_deg, pose.radius, fovy_deg=fovy_deg,
                         width=width, height=height)


def relative_pose(reference: OrbitPose, target: OrbitPose) -> OrbitPose:
    """Target views relative to the reference view, as novel-view diffusion conditions on them:
    Δelevation, Δazimuth wrapped to [−180, 180), Δradius (see `zero123_pose_encoding`)."""
    d_azimuth = torch.remainder(target.azimuth_deg - reference.azimuth_deg + 180.0, 360.0) - 180.0
    return OrbitPose(target.elevation_deg - reference.elevation_deg, d_azimuth,
                     target.radius - reference.radius)


def zero123_pose_encoding(relative: OrbitPose) -> Tensor:  # → [C, 4]
    """Zero123 / Zero123-XL camera conditioning: [Δpolar (rad), sin Δazimuth, cos Δazimuth, Δradius].

    Zero123 measures the polar angle from the up axis, so a camera moving up has a negative
    Δpolar: Δpolar = −Δelevation. Azimuth turns the same way as Lift3D's (towards the object's
    side at +X), the convention DreamGaussian feeds the public diffusers weights."""
    d_azimuth = torch.deg2rad(relative.azimuth_deg)
    return torch.stack([torch.deg2rad(-relative.elevation_deg), torch.sin(d_azimuth), torch.cos(d_azimuth),
                        relative.radius], dim=-1)


def stable_zero123_pose_encoding(relative: OrbitPose, reference_elevation_deg: float) -> Tensor:  # → [C, 4]
    """Stable Zero123's variant: the 4th entry is the reference view's absolute polar angle (rad)
    instead of Δradius."""
    encoding = zero123_pose_encoding(relative)
    encoding[:, 3] = math.radians(90.0 - reference_elevation_deg)
    return encoding


def random_orbit_poses(count: int, *, elevation_range_deg: tuple[float, float] = (-30.0, 30.0),
                       radius: float = DEFAULT_RADIUS, generator: torch.Generator | None = None) -> OrbitPose:
    """Uniform azimuths and elevations (the novel views SDS samples each step)."""
    u = torch.rand(2, count, generator=generator)
    lo, hi = elevation_range_deg
    return OrbitPose(lo + (hi - lo) * u[0], -180.0 + 360.0 * u[1], torch.full((count,), float(radius)))


def cameras_from_poses(pose: OrbitPose, *, fovy_deg: float = ZERO123_FOVY_DEG, width: int = 256,
                       height: int = 256) -> Cameras:
    return orbit_cameras(pose.elevation_deg, pose.azimuth_deg, pose.radius, fovy_deg=fovy_deg,
                         width=width, height=height)


# --- conventions ---------------------------------------------------------------------------------

def opencv_to_opengl(camtoworld: Tensor) -> Tensor:  # [..., 4, 4] → [..., 4, 4]
    """Camera→world in OpenCV axes → the same camera in OpenGL axes (and back: it is an involution)."""
    return camtoworld * torch.tensor(_CV_GL_FLIP, dtype=camtoworld.dtype, device=camtoworld.device)


opengl_to_opencv = opencv_to_opengl


def opengl_projection(Ks: Tensor, width: int, height: int, near: float, far: float) -> Tensor:  # [C, 4, 4]
    """OpenGL projection for OpenGL camera coordinates that reproduces the pixel grid of `Ks`, with
    NDC y = +1 at the top row. Used to check conventions and to drive OpenGL-style rasterisers."""
    fx, fy, cx, cy = Ks[:, 0, 0], Ks[:, 1, 1], Ks[:, 0, 2], Ks[:, 1, 2]
    proj = torch.zeros(len(Ks), 4, 4, dtype=Ks.dtype, device=Ks.device)
    proj[:, 0, 0] = 2 * fx / width
    proj[:, 0, 2] = 1 - 2 * cx / width
    proj[:, 1, 1] = 2 * fy / height
    proj[:, 1, 2] = 2 * cy / height - 1
    proj[:, 2, 2] = -(far + near) / (far - near)
    proj[:, 2, 3] = -2 * far * near / (far - near)
    proj[:, 3, 2] = -1.0
    return proj


def blender_to_opencv_viewmat(matrix_world: Tensor) -> Tensor:  # [..., 4, 4] → [..., 4, 4]
    """A Blender camera object's `matrix_world` (OpenGL axes, Blender world) → OpenCV world→camera.
    Lift3D's world is Blender's, so only the camera axes change. Scale in `matrix_world` is removed."""
    m = torch.as_tensor(matrix_world, dtype=torch.float64).clone()
    m[..., :3, :3] = m[..., :3, :3] / m[..., :3, :3].norm(dim=-2, keepdim=True)
    return torch.linalg.inv(opengl_to_opencv(m))


def opencv_viewmat_to_blender(viewmat: Tensor) -> Tensor:  # [..., 4, 4] → [..., 4, 4]
    """OpenCV world→camera → the `matrix_world` a Blender camera object needs to see the same view."""
    return opencv_to_opengl(torch.linalg.inv(torch.as_tensor(viewmat, dtype=torch.float64)))


def blender_intrinsics(lens_mm: float, sensor_width_mm: float, sensor_height_mm: float, sensor_fit: str,
                       width: int, height: int, shift_x: float = 0.0, shift_y: float = 0.0,
                       pixel_aspect_x: float = 1.0, pixel_aspect_y: float = 1.0) -> Tensor:  # [3, 3]
    """Pixel intrinsics of a Blender perspective camera (`camera.data` fields and render size).

    Follows Blender's sensor-fit rules: AUTO fits the larger image side to the sensor width;
    shifts are in units of the fitted image side, and +shift_y moves the image content down.
    """
    aspect = (width * pixel_aspect_x) / (height * pixel_aspect_y)
    fit = sensor_fit if sensor_fit != "AUTO" else ("HORIZONTAL" if aspect >= 1 else "VERTICAL")
    if fit not in ("HORIZONTAL", "VERTICAL"):
        raise ValueError(f"sensor_fit must be AUTO, HORIZONTAL or VERTICAL, got {sensor_fit!r}")
    if fit == "HORIZONTAL":
        fx = lens_mm / sensor_width_mm * width
        fy = fx * pixel_aspect_x / pixel_aspect_y
    else:
        # AUTO's vertical fit still measures the sensor by its width (Blender's rule).
        sensor = sensor_height_mm if sensor_fit == "VERTICAL" else sensor_width_mm
        fy = lens_mm / sensor * height
        fx = fy * pixel_aspect_y / pixel_aspect_x
    # Shifts are in units of the fitted image side (Blender's `viewfac`), measured in x pixels.
    ycor = pixel_aspect_y / pixel_aspect_x
    side_x = width if fit == "HORIZONTAL" else height * ycor
    return torch.tensor([[fx, 0.0, width / 2 - shift_x * side_x],
                         [0.0, fy, height / 2 + shift_y * side_x / ycor],
                         [0.0, 0.0, 1.0]], dtype=torch.float64)


def project_points(points: Tensor, cameras: Cameras) -> tuple[Tensor, Tensor]:
    """World points [P, 3] → pixel coordinates [C, P, 2] and camera depths [C, P]."""
    homogeneous = torch.cat([points, torch.ones_like(points[:, :1])], dim=-1)
    cam = torch.einsum("cij,pj->cpi", cameras.viewmats.to(points.dtype), homogeneous)[..., :3]
    pix = torch.einsum("cij,cpj->cpi", cameras.Ks.to(points.dtype), cam)
    return pix[..., :2] / pix[..., 2:3], cam[..., 2]
