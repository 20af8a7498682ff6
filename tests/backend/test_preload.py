"""Jobs wait for the server's model preload (importing diffusers from two threads at once can
fail half-way: seen as `cannot import name 'AutoencoderKL'` when a cached job reached the
texture stage during the preload), and the wait can be cancelled."""

from __future__ import annotations

import threading
import time

import pytest

from backend.pipelines.cache import ResultCache
from backend.serving.context import JobCancelled, StageContext
from protocol import Stage
from backend.pipelines.generate import GenerationPipeline


class SlowRegistry:
    def __init__(self, release: threading.Event) -> None:
        self.release, self.loaded = release, []

    def get(self, record):
        self.release.wait(10)
        self.loaded.append(record.name)


def test_a_job_waits_for_the_preload_and_can_be_cancelled_meanwhile(tmp_path):
    release = threading.Event()
    registry = SlowRegistry(release)
    pipeline = GenerationPipeline(registry, ResultCache(tmp_path))
    thread = pipeline.preloader.start()
    messages, cancel = [], threading.Event()
    ctx = StageContext(messages.append, cancel)

    waiter = threading.Thread(target=pipeline.preloader.wait, args=(ctx, Stage.PREPROCESS))
    waiter.start()
    time.sleep(0.3)
    assert waiter.is_alive() and messages[0].message == "waiting for the models to load"
    release.set()
    waiter.join(5)
    thread.join(5)
    assert not waiter.is_alive() and registry.loaded == ["novel_view", "depth", "clip", "segmenter", "refiner"]

    release.clear()
    pipeline.preloader.start()
    cancel.set()
    with pytest.raises(JobCancelled):
        pipeline.preloader.wait(ctx, Stage.PREPROCESS)
    release.set()
