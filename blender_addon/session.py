"""The one connection to the backend and the job in flight, driven by a `bpy.app.timers` tick.

Only the main thread touches bpy: the tick (a timer callback, so on the main thread) drains the
client within a 10 ms budget, routes the job's messages to the preview and the importer, checks
that the backend is alive and redraws the panel. Operators only start and cancel.
"""

from __future__ import annotations

import atexit
import time
import traceback
from dataclasses import dataclass

import bpy
import numpy as np

from . import importer, preview
from .jobs import Job, JobRequest, Phase, object_name
from .launcher import BackendProcess, is_listening, is_local, tcp_host_port
from .wire import Client, ConnectionState, CurveKeys, ProtocolError

POLL_BUDGET_MS = 10.0
ACTIVE_INTERVAL_S = 0.05   # while a job runs: previews at up to 20 Hz
IDLE_INTERVAL_S = 1.0      # otherwise: keep heartbeats flowing so the status stays true
CONNECT_TIMEOUT_S = 10.0   # an already running backend answers at once
STARTUP_TIMEOUT_S = 300.0  # a backend we started may be loading several GB of models
LOST_AFTER_S = 15.0        # silence (no heartbeat) after which a running job is given up
CANCEL_GRACE_S = 5.0       # a cancel the backend never confirms is finished locally

START_HINT = ("Start a backend with 'python -m backend serve' (or './lift3d backend serve' in a Lift3D "
              "checkout), check the address in the add-on preferences, or turn on 'Start a local backend "
              "automatically' and set the backend Python.")


class ConnectError(RuntimeError):
    def __init__(self, message: str, hint: str = "") -> None:
        super().__init__(message)
        self.hint = hint


@dataclass(frozen=True)
class Endpoint:
    address: str
    keys_dir: str = ""
    client_name: str = "client"


class Session:
    def __init__(self) -> None:
        self.client: Client | None = None
        self.endpoint: Endpoint | None = None
        self.backend: BackendProcess | None = None
        self.connected_at = 0.0
        self.job: Job | None = None
        self.last_job: Job | None = None
        """The most recent finished job (its error or result stays on the panel)."""
        self.preview_points = 50_000
        self.error: tuple[str, str] | None = None
        """(message, hint) of the last problem, shown on the panel until the next job starts."""
        self.job_client: Client | None = None
        """The connection the job was sent on: the backend cancels a job whose client goes away."""

    @property
    def busy(self) -> bool:
        """A job is in flight (Generate, Regenerate and Connect wait for it to end)."""
        return self.job is not None and not self.job.finished

    # -- connection ------------------------------------------------------------------------

    def ensure_connected(self, endpoint: Endpoint, *, auto_start: bool = False, python: str = "",
                         models: str = "auto") -> None:
        """Connect (non-blocking); start a local backend first when asked and nothing listens."""
        if self.backend is not None and self.backend.exit_code() is not None:
            self.backend = None  # it has ended (and said so); a fresh Generate looks again
            self.disconnect()
        wanted = (python, models, endpoint.address)
        if self.backend is not None and auto_start and (self.backend.python, self.backend.models,
                                                        self.backend.address) != wanted:
            self.disconnect()  # the preferences changed: replace the backend this session started
            self.backend.stop()
            self.backend = None
        # A connection that went silent (died, restarted, network) is replaced too: a fresh one says
        # hello again, so the status line shows the backend that answers now, and a dead local one
        # is restarted.
        if (self.client is not None and self.endpoint == endpoint
                and self.client.state not in (ConnectionState.CLOSED, ConnectionState.UNRESPONSIVE)):
            return
        self.disconnect()
        local = is_local(endpoint.address)
        if not local and not bpy.app.online_access:
            raise ConnectError(f"{endpoint.address} is on another machine and Blender's online access is off",
                               "Allow it in Preferences > System > Network > Allow Online Access, or use a "
                               "backend on this machine (tcp://127.0.0.1:5571).")
        # Only a TCP address can be probed (and a backend started for it); ipc/inproc are left alone.
        if (auto_start and local and not endpoint.keys_dir and tcp_host_port(endpoint.address)
                and not is_listening(endpoint.address)):
            self._start_backend(endpoint.address, python, models)
        keys = None
        if endpoint.keys_dir:
            try:
                keys = CurveKeys.from_dir(endpoint.keys_dir, endpoint.client_name)
            except (OSError, ValueError) as exc:
                raise ConnectError(f"cannot read the CURVE keys in {endpoint.keys_dir}: {exc}",
                                   "Point 'Key folder' at a folder made by 'python -m backend keys generate' "
                                   "and check the client key name.") from exc
        client = Client(endpoint.address, keys=keys, client_name=f"blender {bpy.app.version_string}")
        try:
            client.connect()
        except ConnectionError as exc:
            raise ConnectError(str(exc), "Fix the backend address in the add-on preferences.") from exc
        self.client, self.endpoint, self.connected_at = client, endpoint, time.monotonic()

    def _start_backend(self, address: str, python: str, models: str) -> None:
        if not python:
            raise ConnectError(f"no backend answers at {address} and no backend Python is set",
                               "Set 'Backend Python' in the add-on preferences (the Python of your Lift3D "
                               "environment, e.g. <checkout>/.venv/bin/python), or start a backend yourself.")
        if self.backend is not None:
            self.backend.stop()  # never leave a second backend of ours holding GPU memory
        backend = BackendProcess(python, address, models=models)
        try:
            backend.start()
        except OSError as exc:
            raise ConnectError(f"cannot start the local backend: {exc}",
                               "Check 'Backend Python' in the add-on preferences.") from exc
        self.backend = backend

    def disconnect(self) -> None:
        if self.client is not None:
            self.client.close()
        self.client = None

    def shutdown(self) -> None:
        """Unregister / Blender exit: cancel the job (removing its objects), close the socket and
        stop the backend this session started."""
        if self.busy:
            self.abandon("the add-on was disabled", clean_scene=True)
        self.disconnect()
        if self.backend is not None:
            self.backend.stop()
            self.backend = None

    def abandon(self, reason: str, *, clean_scene: bool) -> None:
        """Give up the running job at once: ask the backend to stop it and forget it. With
        `clean_scene` its preview and untextured mesh are removed (not when a file is being
        replaced: those objects go with the old file, and the new file must not be touched)."""
        job = self.job
        if job is None:
            return
        if job.id and self.client is not None:
            self._send_cancel(job.id)
        job.phase, job.note = Phase.CANCELLED, reason
        if clean_scene:
            self._finish(job)
        else:
            self.job, self.last_job = None, job

    def status(self) -> tuple[str, str]:
        """(icon, one line) for the panel."""
        client = self.client
        if client is None:
            return "UNLINKED", "Not connected"
        if client.welcome is None:
            if self.backend is not None and self.backend.running:
                return "TIME", "Starting the local backend (loading models)..."
            if self.backend is not None and self.backend.exit_code() is not None:
                return "ERROR", f"The local backend exited (code {self.backend.exit_code()})"
            return "TIME", f"Connecting to {client.address}..."
        if client.state == ConnectionState.UNRESPONSIVE:
            return "ERROR", f"Backend not responding ({client.address})"
        w = client.welcome
        gpu = w.gpu_name or w.device
        if w.gpu_name and w.gpu_memory_mb:
            gpu += f" ({w.gpu_memory_mb / 1024:.0f} GB)"
        models = "tiny models: output is noise" if w.model_preset == "tiny" else f"{w.model_preset} models"
        return "LINKED", f"{gpu} · {models} · v{w.backend_version}"

    # -- jobs ------------------------------------------------------------------------------

    def submit(self, request: JobRequest) -> Job:
        if self.busy:
            raise RuntimeError("a job is already running")
        if self.client is None:
            raise ConnectError("not connected", START_HINT)
        job = Job(request)
        try:
            job.id = self.client.submit(request.image, request.prompt, quality=request.quality, seed=request.seed,
                                        options=request.options)
        except ProtocolError as exc:
            raise ConnectError(f"the request was refused before sending: {exc}",
                               "Scale the image down or save it as JPEG, and keep the prompt short.") from exc
        except ConnectionError as exc:
            raise ConnectError(str(exc), START_HINT) from exc
        job.phase = Phase.CONNECTING if self.client.welcome is None else Phase.QUEUED
        self.job, self.last_job, self.error, self.job_client = job, None, None, self.client
        return job

    def cancel(self) -> None:
        job = self.job
        if job is None or job.finished:
            return
        job.phase, job.cancel_requested_at = Phase.CANCELLING, time.monotonic()
        if job.id is not None and self.client is not None:
            self._send_cancel(job.id)

    def _send_cancel(self, job_id: str) -> None:
        try:
            self.client.cancel(job_id)
        except ConnectionError:
            pass  # an unreachable backend: the grace period below finishes the cancel locally

    # -- the tick --------------------------------------------------------------------------

    def tick(self) -> float:
        """Timer callback body: returns the delay until the next tick."""
        envelopes = []
        if self.client is not None:
            envelopes = self.client.poll(budget_ms=POLL_BUDGET_MS)
        job = self.job
        if job is not None:
            self._route(job, envelopes)
            self._check_liveness(job)
            if job.finished:
                self._finish(job)
        _redraw()
        return ACTIVE_INTERVAL_S if self.job is not None else IDLE_INTERVAL_S

    def _route(self, job: Job, envelopes: list) -> None:
        mine = [e.message for e in envelopes if e.job_id == job.id]
        # Only the newest preview of a tick is worth building; older ones would be overwritten at once.
        last_preview = max((i for i, m in enumerate(mine) if m.TYPE == "preview"), default=-1)
        for index, message in enumerate(mine):
            if job.finished:
                break
            kind = message.TYPE
            if kind == "accepted":
                job.queue_position = message.queue_position
                if job.phase == Phase.CONNECTING:
                    job.phase = Phase.QUEUED
            elif kind == "progress":
                if job.phase in (Phase.CONNECTING, Phase.QUEUED):
                    job.phase = Phase.RUNNING
                job.stage, job.step, job.total = message.stage, message.step, message.total
                job.eta_s, job.note = message.eta_s, message.message
            elif kind == "preview" and index == last_preview and job.phase != Phase.CANCELLING:
                self._show_preview(job, message)
            elif kind == "mesh" and job.phase == Phase.CANCELLING:
                if message.kind == "final":  # finished before the cancel arrived: still nothing is kept
                    job.phase = Phase.CANCELLED
            elif kind == "mesh":
                self._import(job, message)
            elif kind == "failed":
                job.fail(message.message, message.hint)
                if message.code == "out_of_memory" and not message.hint:
                    job.hint = "Try the Draft preset, fewer faces or a smaller texture."
            elif kind == "cancelled":
                job.phase = Phase.CANCELLED

    def _show_preview(self, job: Job, message) -> None:
        ob = preview.update_preview(job.id, message.positions, message.colors, message.opacities, message.scales,
                                    max_points=self.preview_points, location=job.request.location,
                                    collection=_collection(job))
        # Place and size the cloud as the importer will place the mesh (bottom centre at the cursor,
        # largest side = object size), so the mesh replaces it without a jump.
        points = np.asarray(message.positions, np.float32)
        if len(points) and np.isfinite(points).all():
            scale, anchor = importer.placement(points, job.request.target_size)
            ob.scale = (scale, scale, scale)
            ob.location = tuple(np.asarray(job.request.location) - scale * anchor)
        job.previews += 1

    def _import(self, job: Job, message) -> None:
        final = message.kind == "final"
        prompt = str(message.metadata.get("prompt") or job.request.prompt)
        name = object_name(prompt)
        if message.metadata.get("tiny"):
            name += " (tiny models: noise)"  # test-preset output says what it is wherever it shows
        try:
            ob = importer.build_mesh_object(message, name=name, location=job.request.location,
                                            target_size=job.request.target_size,
                                            properties=result_properties(job, message, prompt),
                                            collection=_collection(job))
        except (ValueError, RuntimeError, MemoryError) as exc:
            traceback.print_exc()
            job.fail(f"could not build the {message.kind} mesh in Blender: {exc}",
                     "Try fewer faces or a smaller texture; the backend's own outputs are unaffected.")
            return
        preview.remove_preview(job.id)
        # Found by tag, not by name: the artist may have renamed or deleted it meanwhile.
        previous = _job_object(job.id, "geometry", besides=ob)
        if previous is not None:
            importer.copy_transform(previous, ob)  # the artist may have moved the untextured mesh already
            importer.remove_object(previous)
        if final:
            replaced = _object_by_uid(job.request.replaces)
            if replaced is not None and replaced != ob:
                importer.copy_transform(replaced, ob)
                importer.remove_object(replaced)
            if ob.name != name and name not in bpy.data.objects:
                ob.name = name  # the untextured mesh held the name until it was removed just now
            job.final_object, job.geometry_object, job.phase = ob.name, None, Phase.DONE
            job.metadata = dict(message.metadata)
        else:
            job.geometry_object = ob.name
        _select_only(ob)

    def _check_liveness(self, job: Job) -> None:
        if job.finished:
            return
        now = time.monotonic()
        client = self.client
        if job.phase == Phase.CANCELLING and job.cancel_requested_at and now - job.cancel_requested_at > CANCEL_GRACE_S:
            job.phase = Phase.CANCELLED  # the backend did not confirm (unreachable); nothing more will come
            return
        if self.backend is not None and self.backend.exit_code() is not None:
            job.fail(f"the local backend exited (code {self.backend.exit_code()})",
                     f"Its log is {self.backend.log_path}; last lines:\n{self.backend.log_tail(6)}")
            return
        if client is None or client is not self.job_client:
            job.fail("the connection this job was sent on was closed, so the backend cancelled it",
                     "Press Generate again.")
            return
        if client.welcome is None:
            starting = self.backend is not None and self.backend.running
            limit = STARTUP_TIMEOUT_S if starting else CONNECT_TIMEOUT_S
            if now - self.connected_at > limit:
                hint = START_HINT
                if self.endpoint is not None and self.endpoint.keys_dir:
                    hint = ("Check that the backend runs with --keys and that this client's key is in its "
                            "authorized_clients folder; a backend refuses unknown keys without a reply.")
                job.fail(f"no Lift3D backend answered at {client.address} within {limit:.0f} s", hint)
                self.disconnect()
            return
        health = client.health()
        if job.id in health.lost:
            job.fail("the backend no longer knows this job (it was restarted, or it dropped this client "
                     "because Blender did not read its messages for a long time)", "Press Generate again.")
        elif health.seconds_since_heard is not None and health.seconds_since_heard > LOST_AFTER_S:
            job.fail(f"the backend at {client.address} stopped responding "
                     f"(nothing heard for {health.seconds_since_heard:.0f} s)",
                     "It may have crashed or run out of memory: check its console or log, start it again "
                     "and press Generate.")
            self.disconnect()
        elif job.id in health.stalled:
            job.note = f"no progress for {health.stalled[job.id]:.0f} s"

    def _finish(self, job: Job) -> None:
        """Leave the scene consistent: no preview; no untextured mesh of a cancelled job."""
        if job.id:
            preview.remove_preview(job.id)
        geometry = _job_object(job.id, "geometry") if job.id else None
        if job.phase == Phase.CANCELLED and geometry is not None:
            importer.remove_object(geometry)
        elif job.phase == Phase.FAILED and geometry is not None:
            job.hint = (job.hint + " " if job.hint else "") + "The untextured mesh was kept."
        if job.phase == Phase.FAILED and job.id and self.client is not None:
            self._send_cancel(job.id)  # failed on this side (import, timeout): stop the backend's work too
        if job.phase == Phase.DONE or (job.phase == Phase.FAILED and geometry is not None):
            _undo_push(f"Lift3D: {job.phase} {object_name(job.request.prompt)}")
        if job.phase == Phase.FAILED:
            self.error = (job.error, job.hint)
        job.elapsed_s = time.monotonic() - job.created_at
        self.job, self.last_job = None, job


def result_properties(job: Job, message, prompt: str) -> dict[str, object]:
    """Custom properties of a result object: what Regenerate needs, and what made it."""
    import json

    request = job.request
    return {
        "lift3d_prompt": prompt, "lift3d_seed": request.seed, "lift3d_preset": request.quality,
        "lift3d_job": job.id or "", "lift3d_stage": message.kind,
        "lift3d_image": request.image_name, "lift3d_image_path": request.image_path,
        "lift3d_options": json.dumps(request.options, sort_keys=True),
        "lift3d_models": str(message.metadata.get("models", "")),
    }


def _job_object(job_id: str, stage: str, besides=None):
    """The job's object of that stage (tagged by the importer), whatever it is called now."""
    for ob in bpy.data.objects:
        if ob != besides and ob.get("lift3d_job") == job_id and ob.get("lift3d_stage") == stage:
            return ob
    return None


def _object_by_uid(uid: int | None):
    # session_uid, unlike a name, never points at another object (a new one reusing a freed name,
    # or one of another file opened meanwhile).
    if uid is None:
        return None
    return next((ob for ob in bpy.data.objects if ob.session_uid == uid), None)


def _collection(job: Job):
    """Where the job's objects go: the scene Generate was pressed in, if it still exists."""
    scene = bpy.data.scenes.get(job.request.scene_name) if job.request.scene_name else None
    return (scene or bpy.context.scene).collection


def _select_only(ob) -> None:
    if bpy.context.mode != "OBJECT":
        return  # never pull the artist out of Edit/Sculpt/Paint mode (the active object's mode)
    view_layer = bpy.context.view_layer
    try:
        # Also syncs the view layer with what was just linked and removed (until then its list
        # of selected objects can hold a stale None).
        ob.select_set(True)
    except RuntimeError:  # linked to a collection excluded from this view layer: leave the selection alone
        return
    for other in view_layer.objects.selected:
        if other is not None and other != ob:
            other.select_set(False)
    view_layer.objects.active = ob


def _undo_push(message: str) -> None:
    # Objects built from a timer are not an undo step by themselves; make one so Ctrl+Z removes them.
    if bpy.context.mode != "OBJECT":
        return  # an undo push now would record an edit-mode step; the artist's next step covers it
    try:
        bpy.ops.ed.undo_push(message=message)
    except RuntimeError as exc:  # no undo stack (e.g. undo disabled in the preferences)
        print(f"Lift3D: no undo step recorded: {exc}")


def _redraw() -> None:
    wm = bpy.context.window_manager
    for window in wm.windows if wm else ():
        for area in window.screen.areas:
            if area.type == "VIEW_3D":
                area.tag_redraw()


# -- the process-wide session and its timer ---------------------------------------------------

_session: Session | None = None


def get() -> Session:
    global _session
    if _session is None:
        _session = Session()
    return _session


@bpy.app.handlers.persistent
def _on_load_pre(*_args) -> None:
    # The job's objects belong to the file being closed; the new file must not be touched.
    if _session is not None and _session.job is not None:
        _session.abandon("cancelled: another file was opened", clean_scene=False)


@bpy.app.handlers.persistent
def _on_undo_or_load_post(*_args) -> None:
    # Undo/redo/file load can bring back a preview point cloud captured mid-job: it is never a result.
    current = _session.job.id if _session is not None and _session.job is not None else None
    preview.remove_stale_previews(keep=current)


_HANDLERS = (("load_pre", _on_load_pre), ("load_post", _on_undo_or_load_post),
             ("undo_post", _on_undo_or_load_post), ("redo_post", _on_undo_or_load_post))


def _timer() -> float:
    session = get()
    try:
        return session.tick()
    except Exception as exc:  # noqa: BLE001 - a raising timer is silently dropped by Blender: report, keep ticking
        traceback.print_exc()
        job = session.job
        if session.busy:
            job.fail(f"internal error in the Lift3D add-on: {exc!r}", "Please report it with the console output.")
            session._finish(job)
        return IDLE_INTERVAL_S


def register() -> None:
    if not bpy.app.timers.is_registered(_timer):
        bpy.app.timers.register(_timer, first_interval=IDLE_INTERVAL_S, persistent=True)
    for name, handler in _HANDLERS:
        if handler not in getattr(bpy.app.handlers, name):
            getattr(bpy.app.handlers, name).append(handler)
    atexit.register(_shutdown)


def _shutdown() -> None:
    global _session
    if _session is not None:
        _session.shutdown()
        _session = None


def unregister() -> None:
    if bpy.app.timers.is_registered(_timer):
        bpy.app.timers.unregister(_timer)
    for name, handler in _HANDLERS:
        if handler in getattr(bpy.app.handlers, name):
            getattr(bpy.app.handlers, name).remove(handler)
    atexit.unregister(_shutdown)
    _shutdown()
