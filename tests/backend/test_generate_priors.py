"""Make-It-3D's additions to stage 1 inside the generate pipeline (tiny models, in process): the
`text_prior` and `captioner` options and the CLIP loss each reach the config and change what runs
(which models are called, which loss terms are logged), and the prompt is part of the geometry
cache key exactly when the text prior is on."""

from __future__ import annotations

import dataclasses
import io
import threading

import numpy as np
import pytest
from PIL import Image

from backend.models import records
from backend.models.captioner import Captioner
from backend.models.hub import ModelUnavailableError
from backend.models.registry import ModelRegistry, ModelSettings
from backend.models.text_prior import TextPrior
from backend.pipelines.cache import ResultCache
from backend.pipelines.generate import GenerationPipeline
from backend.pipelines.generate_request import inputs_from
from backend.serving.context import StageContext
from protocol import Generate, Progress
from tests.backend.test_pipeline_e2e import photo

SHORT = {"geometry_steps": 4, "texture_steps": 0}
NO_PSEUDO_VIEWS = {"multiview_weight": 0.0}  # they cost time here and have nothing to do with these terms


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory):
    registry = ModelRegistry(ModelSettings(preset="tiny", device="cpu"))
    return GenerationPipeline(registry, ResultCache(tmp_path_factory.mktemp("results")))


@pytest.fixture
def calls(monkeypatch):
    """Counts the text prior's SDS calls and which captioner wrote each caption."""
    seen = {"text sds": 0, "captions": []}
    sds, caption = TextPrior.sds, Captioner.caption

    def counting_sds(self, *args, **kwargs):
        seen["text sds"] += 1
        return sds(self, *args, **kwargs)

    def naming_caption(self, *args, **kwargs):
        seen["captions"].append(type(self.model).__name__)
        return caption(self, *args, **kwargs)

    monkeypatch.setattr(TextPrior, "sds", counting_sds)
    monkeypatch.setattr(Captioner, "caption", naming_caption)
    return seen


def disc(green: int) -> bytes:
    """The e2e tests' disc photo with another green (captions are cached by the cut-out, and the
    cut-out is recentred, so only the colour makes a new one)."""
    rgba = np.array(Image.open(io.BytesIO(photo())))
    rgba[rgba[..., 3] > 0, 1] = green
    buffer = io.BytesIO()
    Image.fromarray(rgba).save(buffer, "PNG")
    return buffer.getvalue()


def run(pipeline, prompt="a red disc", seed=0, geometry=None, green=40, **options):
    messages = []
    inputs = inputs_from(Generate(image=disc(green), prompt=prompt, quality="draft", seed=seed,
                                  options={**SHORT, **options}))
    config = inputs.config
    inputs = dataclasses.replace(inputs, config=dataclasses.replace(
        config, geometry=dataclasses.replace(config.geometry, **{**NO_PSEUDO_VIEWS, **(geometry or {})})))
    pipeline.run(inputs, StageContext(messages.append, threading.Event()))
    return messages


def notes(messages, stage):
    return [m.message for m in messages if isinstance(m, Progress) and m.stage == stage]


def test_the_text_prior_runs_stable_diffusion_sds_at_every_step(pipeline, calls):
    messages = run(pipeline, seed=1, text_prior=True)
    losses = pipeline.last_report.losses["geometry"]
    assert calls["text sds"] == 4 and len(losses["text sds"]) == 4 and all(v > 0 for v in losses["text sds"])
    assert "loading the text prior (Stable Diffusion 1.5)" in notes(messages, "geometry")
    assert records.REFINER.name in pipeline.registry.loaded()


def test_the_prompt_keys_the_geometry_only_with_the_text_prior(pipeline, calls):
    run(pipeline, seed=3, prompt="a red disc")  # the draft preset leaves the text prior off
    assert calls["text sds"] == 0 and "text sds" not in pipeline.last_report.losses["geometry"]
    run(pipeline, seed=3, prompt="a blue disc")  # so the Gaussians are reused
    assert pipeline.last_report.cache["geometry"] == "hit"
    run(pipeline, seed=3, prompt="a red disc", text_prior=True)
    assert pipeline.last_report.cache["geometry"] == "miss"
    run(pipeline, seed=3, prompt="a blue disc", text_prior=True)  # a new prompt shapes new Gaussians
    assert pipeline.last_report.cache["geometry"] == "miss"
    run(pipeline, seed=3, prompt="a blue disc", text_prior=True)
    assert pipeline.last_report.cache["geometry"] == "hit" and calls["text sds"] == 8


def test_the_stage1_clip_loss_runs_when_its_weight_is_set(pipeline, calls):
    run(pipeline, seed=4, geometry={"clip_weight": 2.0})
    losses = pipeline.last_report.losses["geometry"]
    assert len(losses["clip"]) == 4 and all(0 <= v <= 4.0 for v in losses["clip"]) and calls["text sds"] == 0
    run(pipeline, seed=4)
    assert "clip" not in pipeline.last_report.losses["geometry"]


def test_the_captioner_option_picks_the_model_and_keys_the_caption(pipeline, calls):
    run(pipeline, prompt="", seed=5, captioner="blip")
    assert calls["captions"] == ["BlipForConditionalGeneration"] and pipeline.last_report.captioned
    messages = run(pipeline, prompt="", seed=5, captioner="blip2")
    assert calls["captions"][-1] == "Blip2ForConditionalGeneration"
    assert pipeline.last_report.cache["caption"] == "miss" and records.CAPTIONER_BLIP2.name in pipeline.registry.loaded()
    assert any("Salesforce/blip2-opt-2.7b" in m for m in notes(messages, "preprocess"))
    run(pipeline, prompt="", seed=5, captioner="blip2")
    assert pipeline.last_report.cache["caption"] == "hit" and len(calls["captions"]) == 2


def test_a_missing_blip2_falls_back_to_blip_with_a_warning_and_is_not_cached(pipeline, calls, monkeypatch):
    real_get = pipeline.registry.get

    def get(record):
        if record is records.CAPTIONER_BLIP2:
            raise ModelUnavailableError("captioner_blip2 is not downloaded; run `./lift3d backend models download`")
        return real_get(record)

    monkeypatch.setattr(pipeline.registry, "get", get)
    for _ in range(2):
        messages = run(pipeline, prompt="", seed=6, captioner="blip2", green=90)
        assert pipeline.last_report.cache["caption"] == "miss" and pipeline.last_report.captioned
    assert calls["captions"] == ["BlipForConditionalGeneration"] * 2
    warning = [m for m in notes(messages, "preprocess") if m.startswith("warning: BLIP-2 is not available")]
    assert warning and "models download" in warning[0]


def test_the_text_prior_without_any_text_warns_and_follows_the_image(pipeline, calls, monkeypatch):
    monkeypatch.setattr(Captioner, "caption", lambda self, image, **kwargs: "")
    messages = run(pipeline, prompt="", seed=7, text_prior=True, green=140)
    assert calls["text sds"] == 0 and "text sds" not in pipeline.last_report.losses["geometry"]
    assert any("the text prior needs a prompt" in m for m in notes(messages, "geometry"))
    assert any("the text prior needs a prompt" in w for w in pipeline.last_report.warnings)


WITH_PSEUDO_VIEWS = {"multiview_weight": 1000.0, "multiview_samples": 2}


def test_the_multiview_option_picks_the_generator_of_the_pseudo_views(pipeline, monkeypatch):
    from backend.models.multiview import Zero123MultiView, Zero123PlusPlus

    made = []
    for cls in (Zero123PlusPlus, Zero123MultiView):
        real = cls.generate
        monkeypatch.setattr(cls, "generate", lambda self, *a, _real=real, _cls=cls, **k: made.append(_cls.__name__)
                            or _real(self, *a, **k))
    messages = run(pipeline, seed=8, multiview="zero123pp", geometry=WITH_PSEUDO_VIEWS)
    assert made == ["Zero123PlusPlus"] and records.MULTIVIEW.name in pipeline.registry.loaded()
    assert "six views from Zero123++" in notes(messages, "pseudo views")
    assert len(pipeline.last_report.losses["geometry"]["multiview"]) == 4
    run(pipeline, seed=8, multiview="zero123", geometry=WITH_PSEUDO_VIEWS)
    assert made[-1] == "Zero123MultiView" and pipeline.last_report.cache["geometry"] == "miss"
    run(pipeline, seed=8, multiview="off", geometry=WITH_PSEUDO_VIEWS)
    assert len(made) == 2 and "multiview" not in pipeline.last_report.losses["geometry"]


def test_without_zero123pp_downloaded_the_views_come_from_zero123_and_the_job_says_so(pipeline, monkeypatch):
    monkeypatch.setattr(pipeline.registry, "present", lambda record: record is not records.MULTIVIEW)
    messages = run(pipeline, seed=9, multiview="zero123pp", geometry=WITH_PSEUDO_VIEWS)
    note = [m for m in notes(messages, "pseudo views") if m.startswith("note: Zero123++")]
    assert note and "--role multiview" in note[0] and "non-commercial" in note[0]
    report = pipeline.last_report
    assert report.config["geometry"]["multiview_generator"] == "zero123" and any("Zero123++" in w for w in report.warnings)
    # The geometry is cached under the generator that ran: asking for Zero123 hits it.
    run(pipeline, seed=9, multiview="zero123", geometry=WITH_PSEUDO_VIEWS)
    assert pipeline.last_report.cache["geometry"] == "hit"


def test_the_novel_view_option_picks_stable_zero123_everywhere(pipeline, monkeypatch):
    from backend.models.zero123 import Zero123

    stable = []
    real = Zero123.sds
    monkeypatch.setattr(Zero123, "sds", lambda self, *a, **k: stable.append(self.stable) or real(self, *a, **k))
    run(pipeline, seed=10, novel_view="stable-zero123", texture_steps=1)
    assert stable == [True] * 4 and records.NOVEL_VIEW_STABLE.name in pipeline.registry.loaded()
    run(pipeline, seed=10)
    assert stable[4:] == [False] * 4 and pipeline.last_report.cache["geometry"] == "miss"
