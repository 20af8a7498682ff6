"""Progressive fixing inside the generate pipeline's geometry stage (tiny models, in process): the
fix rounds report under the geometry stage, train the Gaussians, can be cancelled between two
views, and only a progressive fixer changes the geometry cache key."""

from __future__ import annotations

import threading
import time

import pytest

from backend.models.registry import ModelRegistry, ModelSettings
from backend.pipelines import generate as generate_module
from backend.pipelines.cache import ResultCache
from backend.pipelines.generate import GenerationPipeline
from backend.pipelines.generate_request import inputs_from
from backend.serving.context import JobCancelled, StageContext
from protocol import Generate, Progress
from tests.backend.test_pipeline_e2e import photo

SHORT = {"geometry_steps": 12, "texture_steps": 0}


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory):
    registry = ModelRegistry(ModelSettings(preset="tiny", device="cpu"))
    return GenerationPipeline(registry, ResultCache(tmp_path_factory.mktemp("results")))


def run(pipeline, cancel: threading.Event | None = None, seed: int = 0, **options):
    messages = []
    request = Generate(image=photo(seed=2), prompt="a red disc", quality="draft", seed=seed,
                       options={**SHORT, **options})
    ctx = StageContext(messages.append, cancel or threading.Event())
    pipeline.run(inputs_from(request), ctx)
    return messages


def geometry_progress(messages):
    return [m for m in messages if isinstance(m, Progress) and m.stage == "geometry"]


def test_fix_rounds_report_under_geometry_and_train_on_fixed_views(pipeline):
    messages = run(pipeline, fixer="difix-ref", progressive_fix=True)
    progress = geometry_progress(messages)
    fixing = [m.message for m in progress if m.message.startswith("fixing novel views")]
    # draft schedule over 12 steps: rounds before steps 4, 6, 8 and 11, four views each
    assert fixing[:2] == ["fixing novel views, round 1/4: view 1/4", "fixing novel views, round 1/4: view 2/4"]
    assert sum("views fixed in" in m for m in fixing) == 4 and len(fixing) == 4 * 5
    assert [m.step for m in progress if m.message == "fixing novel views, round 1/4: view 1/4"] == [4]
    assert "loading the fixer (difix-ref)" in [m.message for m in progress]
    report = pipeline.last_report
    assert report.cache["geometry"] == "miss" and "fixed view" in report.losses["geometry"]


def test_only_a_progressive_fixer_changes_the_geometry_cache_key(pipeline):
    run(pipeline, seed=7)  # fixer off
    run(pipeline, seed=7, fixer="sd-turbo")  # a fixer that is not progressive: same Gaussians
    assert pipeline.last_report.cache["geometry"] == "hit"
    run(pipeline, seed=7, fixer="difix", progressive_fix=True)
    assert pipeline.last_report.cache["geometry"] == "miss"
    run(pipeline, seed=7, fixer="difix-ref", progressive_fix=True)  # another progressive fixer: new Gaussians
    assert pipeline.last_report.cache["geometry"] == "miss"
    run(pipeline, seed=7, progressive_fix=True)  # progressive without a fixer is off
    assert pipeline.last_report.cache["geometry"] == "hit"


def test_cancelling_during_a_fix_round_stops_within_a_second(pipeline, monkeypatch):
    cancel = threading.Event()
    requested = []
    real = generate_module.load_fixer

    class SlowFixer:
        """The tiny Difix, then 0.3 s more per call; cancels during the first fixed view."""

        def __init__(self, inner):
            self.inner, self.uses_reference = inner, inner.uses_reference

        def fix(self, images, references=None, *, generator=None):
            out = self.inner.fix(images, references, generator=generator)
            cancel.set()
            requested.append(time.perf_counter())
            time.sleep(0.3)
            return out

    monkeypatch.setattr(generate_module, "load_fixer", lambda registry, name: SlowFixer(real(registry, name)))
    with pytest.raises(JobCancelled):
        run(pipeline, cancel=cancel, seed=11, fixer="difix", progressive_fix=True)
    assert len(requested) == 1 and time.perf_counter() - requested[0] < 1.0
