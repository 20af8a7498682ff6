"""The sidebar panels draw in every state without errors, calling only layout functions and
parameters that this Blender's UILayout really has (panels cannot be drawn without a window, so
a recording layout checks each call against the RNA signature)."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

pytestmark = pytest.mark.blender
bpy = pytest.importorskip("bpy")

ADDON = "blender_addon"


class RecordingLayout:
    """Stands in for UILayout: checks names and keyword arguments against the RNA definition."""

    FUNCTIONS = bpy.types.UILayout.bl_rna.functions

    def __init__(self, calls: list) -> None:
        self.calls = calls

    def __getattr__(self, name):
        if name not in self.FUNCTIONS:
            raise AttributeError(f"UILayout has no function {name!r}")
        allowed = set(self.FUNCTIONS[name].parameters.keys())

        def call(*args, **kwargs):
            unknown = set(kwargs) - allowed
            assert not unknown, f"UILayout.{name} has no parameter(s) {sorted(unknown)}"
            self.calls.append((name, args, kwargs))
            return RecordingLayout(self.calls)

        return call

    def __setattr__(self, name, value):
        if name != "calls" and name not in bpy.types.UILayout.bl_rna.properties:
            raise AttributeError(f"UILayout has no property {name!r}")
        object.__setattr__(self, name, value)


def draw(panel_cls, context) -> list:
    calls: list = []
    panel_cls.draw(SimpleNamespace(layout=RecordingLayout(calls)), context)  # draw only uses self.layout
    return calls


def texts(calls) -> str:
    return " | ".join(str(kw.get("text", "")) for _, _, kw in calls)


@pytest.fixture
def addon(empty_scene):
    import addon_utils

    addon_utils.enable(ADDON, default_set=True)
    yield
    addon_utils.disable(ADDON, default_set=True)


def test_panels_draw_in_every_state(addon, monkeypatch):
    from blender_addon import panels, session
    from blender_addon.core.jobs import Job, JobRequest, Phase

    context = bpy.context
    idle = texts(draw(panels.LIFT3D_PT_main, context))
    assert "Not connected" in idle and "Choose an image first" in idle

    context.scene.lift3d.image = bpy.data.images.new("photo", 64, 64)
    sess = session.get()
    sess.job = Job(JobRequest(image=b"", prompt="a chair", quality="draft", seed=0, options={}),
                   id="j", phase=Phase.RUNNING, stage="geometry", step=50, total=100, eta_s=30)
    calls = draw(panels.LIFT3D_PT_main, context)
    progress = [kw for name, _, kw in calls if name == "progress"]
    assert progress and progress[0]["text"] == "Geometry 50/100 · ETA 30 s"
    assert 0.15 < progress[0]["factor"] < 0.75
    assert any(name == "operator" and args[0] == "lift3d.cancel" for name, args, _ in calls)

    sess.job, sess.error = None, ("no Lift3D backend answered at tcp://127.0.0.1:1", "Start a backend")
    failed = texts(draw(panels.LIFT3D_PT_main, context))
    assert "No Lift3D backend answered" in failed and "Start a backend" in failed

    draw(panels.LIFT3D_PT_advanced, context)
    ob = bpy.data.objects.new("result", bpy.data.meshes.new("result"))
    context.scene.collection.objects.link(ob)
    ob["lift3d_prompt"], ob["lift3d_seed"], ob["lift3d_preset"] = "a chair", 3, "draft"
    ob.select_set(True)
    context.view_layer.objects.active = ob
    assert panels.LIFT3D_PT_result.poll(context)
    result = draw(panels.LIFT3D_PT_result, context)
    assert "Prompt: a chair" in texts(result) and any(args[:1] == ("lift3d.regenerate",) for _, args, _ in result)
    sess.error = None


def test_every_option_walks_from_the_panel_property_to_the_pipeline_config(addon):
    """Real Blender properties, generated from protocol/options.py: each option set in the panel
    arrives in the request, passes the server's check and (where the backend is importable, i.e.
    not in the light per-version environments) lands in the pipeline's config."""
    import importlib.util

    from blender_addon.core.panel_options import enum_id, panel_properties
    from protocol import Generate, RequestKind, decode, encode
    from protocol.options import validate_options

    settings = bpy.context.scene.lift3d
    assert settings.options() == {}  # untouched: the preset and defaults decide
    has_backend = importlib.util.find_spec("torch") is not None
    for prop in panel_properties(RequestKind.GENERATE):
        spec = prop.option
        # A value other than the default: the panel sends only what differs from it.
        value = (not spec.default if spec.kind == "bool"
                 else next(v for v in spec.values if v != spec.default) if spec.kind == "choice"
                 else int(spec.minimum) if spec.kind == "int" else float(spec.maximum))
        setattr(settings, prop.attr, enum_id(value) if spec.kind == "choice" else value)
        if prop.toggle:
            assert settings.options() == {}  # not sent until the override is ticked
            setattr(settings, prop.toggle, True)
        options = settings.options()
        assert options == {spec.name: value}, spec.name
        request = decode(encode(Generate(image=b"\x89PNG\r\n\x1a\n", prompt="", quality="draft", seed=0,
                                         options=options))).message
        assert validate_options(RequestKind.GENERATE, request.options) == options
        if has_backend:
            from backend.pipelines.generate_request import OPTION_FIELDS, field_at, inputs_from

            assert field_at(inputs_from(request).config, OPTION_FIELDS[spec.name]) == value
        settings.property_unset(prop.attr)
        if prop.toggle:
            settings.property_unset(prop.toggle)
    # Blender itself keeps values inside the table's range.
    settings.faces = 1
    assert settings.faces == 500


def test_the_advanced_panel_draws_every_option_with_its_override(addon):
    from blender_addon import panels
    from blender_addon.core.panel_options import panel_properties
    from protocol import RequestKind

    calls = draw(panels.LIFT3D_PT_advanced, bpy.context) + draw(panels.LIFT3D_PT_main, bpy.context)
    drawn = {args[1] for name, args, _ in calls if name == "prop"}
    for prop in panel_properties(RequestKind.GENERATE):
        assert prop.attr in drawn and (prop.toggle is None or prop.toggle in drawn)
