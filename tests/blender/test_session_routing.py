"""The session's routing and clean-up rules, with a scripted client standing in for the backend
(exact message orders that a real backend only produces by chance: a final mesh racing a
cancel, an artist deleting the untextured mesh mid-job, a file opened mid-job...)."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

pytestmark = pytest.mark.blender
bpy = pytest.importorskip("bpy")

from protocol import Mesh, MeshMetadata, Preview, Welcome  # noqa: E402
from protocol.client import ConnectionState, Health  # noqa: E402
from protocol.codec import Envelope  # noqa: E402

ADDON = "blender_addon"


class ScriptedClient:
    """Looks like protocol.client.Client to the session; messages are pushed by the test."""

    address = "tcp://scripted:1"

    def __init__(self) -> None:
        self.state = ConnectionState.READY
        self.welcome = Welcome(protocol="2.0", backend_version="0", device="cpu", gpu_name=None,
                               gpu_memory_mb=None, model_preset="tiny", quality_presets=["draft"],
                               heartbeat_interval_s=1.0)
        self.inbox: list[Envelope] = []
        self.cancelled: list[str] = []
        self.jobs = 0

    def submit(self, *args, **kwargs) -> str:
        self.sent_options = kwargs.get("options")
        self.jobs += 1
        return f"job-{self.jobs}"

    def cancel(self, job_id: str) -> None:
        self.cancelled.append(job_id)

    def poll(self, budget_ms: float = 10.0, wait: bool = False) -> list[Envelope]:
        out, self.inbox = self.inbox, []
        return out

    def health(self) -> Health:
        return Health(self.state, 0.1)

    def close(self) -> None:
        self.state = ConnectionState.CLOSED

    def push(self, job_id: str, message) -> None:
        self.inbox.append(Envelope(message=message, msg_id="m", job_id=job_id))


def tetra(kind: str, faces=None) -> Mesh:
    vertices = np.array([[0, 0, 0], [1, 0, 0], [0, 1, 0], [0, 0, 1]], np.float32)
    faces = np.array([[0, 1, 2], [0, 1, 3], [0, 2, 3], [1, 2, 3]], np.uint32) if faces is None else faces
    return Mesh(kind=kind, vertices=vertices, faces=faces, metadata=MeshMetadata(prompt="a red chair"))


def splats(n: int = 50) -> Preview:
    rng = np.random.default_rng(0)
    return Preview(step=1, positions=rng.random((n, 3), np.float32), colors=np.full((n, 3), 128, np.uint8),
                   opacities=np.full(n, 200, np.uint8), scales=np.full((n, 3), 0.01, np.float32),
                   rotations=np.tile(np.array([1, 0, 0, 0], np.float32), (n, 1)))


@pytest.fixture
def sess(empty_scene):
    import addon_utils

    from blender_addon import session

    addon_utils.enable(ADDON, default_set=True)
    s = session.get()
    s.client = ScriptedClient()
    yield s
    s.client = None
    addon_utils.disable(ADDON, default_set=True)


def start(sess, replaces=None):
    from blender_addon.core.jobs import JobRequest

    request = JobRequest(image=b"x", prompt="a red chair", quality="draft", seed=0, options={}, replaces=replaces,
                         scene_name=bpy.context.scene.name)
    return sess.submit(request)


def tagged():
    return sorted((ob.name, ob.get("lift3d_stage") or "preview") for ob in bpy.data.objects
                  if "lift3d_job" in ob or "lift3d_preview" in ob)


def test_the_final_mesh_survives_the_untextured_one_being_deleted_or_renamed(sess):
    for edit in ("delete", "rename"):
        job = start(sess)
        sess.client.push(job.id, tetra("geometry"))
        sess.tick()
        geometry = bpy.data.objects[job.geometry_object]
        if edit == "delete":
            bpy.data.objects.remove(geometry)
        else:
            geometry.name = "My chair"
        sess.client.push(job.id, tetra("final"))
        sess.tick()
        assert sess.last_job.phase == "done"
        assert tagged() == [(sess.last_job.final_object, "final")]
        bpy.data.objects.remove(bpy.data.objects[sess.last_job.final_object])


def test_a_final_mesh_racing_a_cancel_is_not_kept_and_the_regenerated_object_stays(sess):
    original = bpy.data.objects.new("Original", bpy.data.meshes.new("Original"))
    bpy.context.scene.collection.objects.link(original)
    job = start(sess, replaces=original.session_uid)
    sess.client.push(job.id, splats())
    sess.client.push(job.id, tetra("geometry"))
    sess.tick()
    sess.cancel()
    assert sess.client.cancelled == [job.id]
    sess.client.push(job.id, tetra("final"))  # the backend finished before it saw the cancel
    sess.tick()
    assert sess.last_job.phase == "cancelled" and tagged() == []
    assert "Original" in bpy.data.objects


def test_a_failure_on_the_blender_side_cancels_the_backend_job(sess):
    job = start(sess)
    sess.client.push(job.id, tetra("geometry", faces=np.array([[0, 1, 9]], np.uint32)))  # index out of range
    sess.tick()
    assert sess.last_job.phase == "failed" and "could not build the geometry mesh" in sess.error[0]
    assert sess.client.cancelled == [job.id] and tagged() == []


def test_opening_another_file_mid_job_leaves_the_new_file_alone(sess):
    job = start(sess)
    sess.client.push(job.id, tetra("geometry"))
    sess.tick()
    bpy.ops.wm.read_homefile(use_empty=True)  # runs load_pre/load_post like File > New
    assert sess.job is None and sess.client.cancelled == [job.id]
    chair = bpy.data.objects.new("Red chair", bpy.data.meshes.new("Red chair"))
    bpy.context.scene.collection.objects.link(chair)
    sess.client.push(job.id, tetra("final"))
    sess.tick()
    assert list(bpy.data.objects) == [chair]


def test_edit_mode_is_left_alone_when_a_mesh_arrives(sess):
    cube = bpy.data.objects.new("Cube", bpy.data.meshes.new("Cube"))
    bpy.context.scene.collection.objects.link(cube)
    bpy.context.view_layer.objects.active = cube
    bpy.ops.object.mode_set(mode="EDIT")
    job = start(sess)
    sess.client.push(job.id, tetra("geometry"))
    sess.tick()
    assert bpy.context.mode == "EDIT_MESH" and bpy.context.view_layer.objects.active == cube
    bpy.ops.object.mode_set(mode="OBJECT")


def test_disabling_the_addon_mid_job_and_undo_leave_no_preview(sess):
    from blender_addon import preview, session

    job = start(sess)
    sess.client.push(job.id, splats())
    sess.tick()
    assert preview.find_preview(job.id) is not None
    # A preview brought back by undo (simulated: one whose job is gone) is removed by the handler.
    preview.update_preview("old-job", *(getattr(splats(), k) for k in ("positions", "colors", "opacities", "scales")))
    session._on_undo_or_load_post()
    assert preview.find_preview("old-job") is None and preview.find_preview(job.id) is not None

    client = sess.client
    session.unregister()  # as when the add-on is disabled
    assert client.cancelled == [job.id] and tagged() == []
    session.register()


def test_options_an_older_backend_does_not_list_are_left_out_and_shown(sess):
    from blender_addon.core.jobs import JobRequest

    sess.client.welcome = replace(sess.client.welcome, options=["faces", "segmentation"])
    job = sess.submit(JobRequest(image=b"x", prompt="a red chair", quality="draft", seed=0,
                                 options={"faces": 900, "fixer": True}, scene_name=bpy.context.scene.name))
    assert sess.client.sent_options == {"faces": 900} and job.ignored_options == ["fixer"]
    sess.cancel()
