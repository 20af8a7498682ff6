"""The one connection to the backend and the job in flight, driven by a `bpy.app.timers` tick.

Only the main thread touches bpy: the tick (a timer callback, so on the main thread) drains the
client within a 10 ms budget, feeds the job's messages to its state machine (`core.jobs`, which
decides) and hands the resulting effects to `scene` (which carries them out), checks that the
backend is alive and redraws the panel. Operators only start and cancel.
"""

from __future__ import annotations

import atexit
import time
import traceback
from dataclasses import dataclass, replace

import bpy

from . import preview, scene
from .core.effects import LinkStatus
from .core.jobs import (
    START_HINT,
    EnhanceRequest,
    Job,
    JobRequest,
    SceneRequest,
    TextureRequest,
    backend_offers,
    newest_previews_only,
    not_offered,
)
from .core.launcher import BackendProcess, is_listening, is_local, tcp_host_port
from .core.panel_options import split_supported
from .core.wire import Client, ConnectionState, CurveKeys, ProtocolError, RequestKind, protocol

POLL_BUDGET_MS = 10.0
ACTIVE_INTERVAL_S = 0.05   # while a job runs: previews at up to 20 Hz
IDLE_INTERVAL_S = 1.0      # otherwise: keep heartbeats flowing so the status stays true


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
        scene.carry_out(self, job, job.abandon(reason))
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

    def submit(self, request: JobRequest | EnhanceRequest | TextureRequest | SceneRequest) -> Job:
        """Send a Generate, an Enhance, a Texture or a Scene. A kind newer than Generate goes only to a backend whose
        welcome lists it: refused at once when the welcome is here and lacks it; held until the
        welcome arrives (the next ticks) when it is not here yet."""
        if self.busy:
            raise RuntimeError("a job is already running")
        if self.client is None:
            raise ConnectError("not connected", START_HINT)
        job = Job(request)
        welcome = self.client.welcome
        if welcome is not None and not backend_offers(request.kind, welcome.request_kinds):
            raise ConnectError(*not_offered(request.kind, welcome.backend_version))
        if welcome is not None or request.kind == RequestKind.GENERATE:
            self._send(job)
        self.job, self.last_job, self.error, self.job_client = job, None, None, self.client
        return job

    def _send(self, job: Job) -> None:
        """Send the job's request now; raises ConnectError when it cannot be sent."""
        request, welcome = job.request, self.client.welcome
        # A backend older than this add-on does not know every option; it says which it knows.
        options, unknown = split_supported(request.options, welcome.options if welcome is not None else [])
        try:
            if isinstance(request, EnhanceRequest):
                job_id = self.client.enhance(request.image, reference=request.reference, seed=request.seed,
                                             options=options)
            elif isinstance(request, TextureRequest):
                job_id = _send_texture(self.client, request, options)
            elif isinstance(request, SceneRequest):
                job_id = self.client.scene(request.prompt, image=request.image, trajectory=request.trajectory,
                                           poses=request.poses, fov_deg=request.fov_deg, quality=request.quality,
                                           seed=request.seed, options=options)
            else:
                job_id = self.client.submit(request.image, request.prompt, quality=request.quality,
                                            seed=request.seed, options=options)
        except ProtocolError as exc:
            hint = ("Decimate the mesh (or a copy), scale the reference image down, and keep the prompt short."
                    if isinstance(request, TextureRequest) else
                    "Shorten the camera animation (at most 500 poses) and keep the prompt short."
                    if isinstance(request, SceneRequest) else
                    "Scale the image down or save it as JPEG, and keep the prompt short.")
            raise ConnectError(f"the request was refused before sending: {exc}", hint) from exc
        except ConnectionError as exc:
            raise ConnectError(str(exc), START_HINT) from exc
        job.submitted(job_id, welcomed=welcome is not None)
        job.ignored_options = unknown

    def _send_when_welcomed(self, job: Job) -> None:
        """A job held for the welcome: send it once the backend has said what it serves."""
        client = self.client
        if client is None or client is not self.job_client or client.welcome is None:
            return  # still connecting (or the connection changed: liveness fails the job)
        if not backend_offers(job.request.kind, client.welcome.request_kinds):
            job.fail(*not_offered(job.request.kind, client.welcome.backend_version), here=False)
            return
        try:
            self._send(job)
        except ConnectError as exc:
            job.fail(str(exc), exc.hint, here=False)

    def cancel(self) -> None:
        job = self.job
        if job is not None:
            scene.carry_out(self, job, job.request_cancel(time.monotonic()))

    def send_cancel(self, job_id: str) -> None:
        if self.client is None:
            return
        try:
            self.client.cancel(job_id)
        except ConnectionError:
            pass  # an unreachable backend: the job's grace period finishes the cancel locally

    # -- the tick --------------------------------------------------------------------------

    def tick(self) -> float:
        """Timer callback body: returns the delay until the next tick."""
        envelopes = []
        if self.client is not None:
            envelopes = self.client.poll(budget_ms=POLL_BUDGET_MS)
        job = self.job
        if job is not None and job.awaiting_send:
            self._send_when_welcomed(job)
        if job is not None and job.deferred is not None:  # a texture result waiting for Edit Mode to end
            scene.carry_out(self, job, job.take_deferred())
        if job is not None:
            mine = [e.message for e in envelopes if job.id is not None and e.job_id == job.id]
            for message in newest_previews_only(mine):
                scene.carry_out(self, job, job.apply(message))
            scene.carry_out(self, job, job.check_liveness(time.monotonic(), self._link_status(job)))
            if job.finished:
                self._finish(job)
        scene.redraw()
        return ACTIVE_INTERVAL_S if self.job is not None else IDLE_INTERVAL_S

    def _link_status(self, job: Job) -> LinkStatus:
        """What the job's liveness check needs to know about the connection and the local backend."""
        client, backend = self.client, self.backend
        exited = backend.exit_code() if backend is not None else None
        status = LinkStatus(
            same_client=client is not None and client is self.job_client,
            address=client.address if client is not None else "",
            backend_exit=exited,
            backend_log=f"Its log is {backend.log_path}; last lines:\n{backend.log_tail(6)}" if exited is not None else "",
            starting_backend=backend is not None and backend.running,
            uses_keys=self.endpoint is not None and bool(self.endpoint.keys_dir))
        if client is None or client is not self.job_client:
            return status
        if client.welcome is None:
            return replace(status, welcomed=False, connecting_for_s=time.monotonic() - self.connected_at)
        health = client.health()
        return replace(status, lost=job.id in health.lost, silent_s=health.seconds_since_heard,
                       stalled_s=health.stalled.get(job.id))

    def _finish(self, job: Job) -> None:
        """Leave the scene consistent (the job decides how) and keep the job for the panel."""
        scene.carry_out(self, job, job.finish(time.monotonic(), scene.geometry_present(job)))
        self.job, self.last_job = None, job


def _send_texture(client: Client, request: TextureRequest, options: dict) -> str:
    """Send a `texture` request; returns the job id."""
    mesh = request.mesh
    return client.texture(mesh.vertices, mesh.faces, request.prompt, uvs=mesh.uvs, normals=mesh.normals,
                          image=request.image, seed=request.seed, options=options)


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
