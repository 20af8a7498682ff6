"""The support database: every keyframe the scene has grown from, kept for replay.

3D-SceneDreamer optimises one unified representation on all views generated so far (Text2NeRF's
"support set"), so adding a new view does not make the scene forget the old ones. An entry holds
the keyframe's camera, its completed image, its depth in the scene's scale (rendered where the
scene already explained it, aligned monocular depth where it was inpainted) and which pixels it
added.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import Tensor

from ..geometry.cameras import Cameras


@dataclass(frozen=True)
class SupportEntry:
    path_index: int
    """The keyframe's index on the trajectory."""
    camera: Cameras  # one camera
    image: Tensor  # [H, W, 3] in [0, 1]
    depth: Tensor  # [H, W] camera-space z in the scene's scale (> 0 where valid)
    added: Tensor  # [H, W] bool: pixels this keyframe inpainted and added Gaussians for

    @property
    def valid(self) -> Tensor:  # [H, W] bool
        return self.depth > 0


@dataclass
class SupportDatabase:
    entries: list[SupportEntry] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.entries)

    def add(self, entry: SupportEntry) -> None:
        if self.entries and (entry.camera.width, entry.camera.height) != (self.entries[0].camera.width,
                                                                          self.entries[0].camera.height):
            raise ValueError("every keyframe of a scene must have the same size")
        self.entries.append(entry)

    @property
    def cameras(self) -> Cameras:
        return Cameras.cat([e.camera for e in self.entries])

    @property
    def images(self) -> Tensor:  # [K, H, W, 3]
        return torch.stack([e.image for e in self.entries])

    @property
    def depths(self) -> Tensor:  # [K, H, W]
        return torch.stack([e.depth for e in self.entries])

    def sample(self, count: int, newest_share: float, generator: torch.Generator) -> list[int]:
        """`count` distinct entry indices for one replay step: the newest keyframe with probability
        `newest_share` (what was just added needs the most fitting), the rest uniformly from all."""
        count = min(count, len(self.entries))
        chosen: list[int] = []
        if torch.rand((), generator=generator).item() < newest_share:
            chosen.append(len(self.entries) - 1)
        order = torch.randperm(len(self.entries), generator=generator).tolist()
        chosen += [i for i in order if i not in chosen][: count - len(chosen)]
        return chosen
