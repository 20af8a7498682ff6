"""Scene mode's camera maths, bpy-free: the field of view sent for a camera (the backend's keyframes
are square)."""

from __future__ import annotations

import math
from typing import Any

from .wire import protocol

MAX_POSES = protocol.limits.MAX_SCENE_POSES
"""The most poses a path may send."""


def square_fov_deg(camera_data: Any, width: int, height: int) -> float:
    """The vertical field of view, in degrees, of the largest centred square the camera renders: the
    backend's keyframes are square, so the narrower of the two angles (sensor fit and render aspect
    applied as Blender does)."""
    lens, sensor_w, sensor_h = camera_data.lens, camera_data.sensor_width, camera_data.sensor_height
    fit = camera_data.sensor_fit
    if fit == "AUTO":
        fit = "HORIZONTAL" if width >= height else "VERTICAL"
        sensor_h = sensor_w  # AUTO measures the sensor by its width on either side
    if fit == "HORIZONTAL":
        half_x = sensor_w / (2 * lens)
        half_y = half_x * height / width
    else:
        half_y = sensor_h / (2 * lens)
        half_x = half_y * width / height
    return math.degrees(2 * math.atan(min(half_x, half_y)))
