"""The model records: one per role, all in records.py, typed, cheap to import."""

import subprocess
import sys
from pathlib import Path

import pytest

from backend.models import records
from backend.models.captioner import Captioner
from backend.models.catalogue import FullOnly, ModelRecord, TinyBuilder
from backend.models.clip import Clip
from backend.models.depth import DepthEstimator
from backend.models.depth_painter import DepthControlNet
from backend.models.difix import DifixFixer
from backend.models.hub import ModelUnavailableError
from backend.models.inpainting import SceneInpainter
from backend.models.multiview import Zero123PlusPlus
from backend.models.refiners import PromptRefiner, TurboFixer
from backend.models.segmentation import TextSegmenter
from backend.models.zero123 import Zero123

ROOT = Path(__file__).resolve().parents[2]
WRAPPERS = {records.NOVEL_VIEW: Zero123, records.NOVEL_VIEW_STABLE: Zero123, records.MULTIVIEW: Zero123PlusPlus,
            records.DEPTH: DepthEstimator, records.CLIP: Clip, records.SEGMENTER: TextSegmenter,
            records.REFINER: PromptRefiner, records.CONTROLNET_DEPTH: DepthControlNet,
            records.INPAINTER: SceneInpainter, records.DIFIX: DifixFixer,
            records.DIFIX_REF: DifixFixer,
            records.SD_TURBO: TurboFixer, records.CAPTIONER: Captioner, records.CAPTIONER_BLIP2: Captioner}


def test_every_record_is_registered_once_and_covers_the_catalogue():
    assert set(WRAPPERS) == set(records.RECORDS) and len(records.RECORDS) == len(WRAPPERS)
    assert len({r.name for r in records.RECORDS}) == len(records.RECORDS)
    roles = [s.role for r in records.RECORDS for s in r.weights]
    assert len(roles) == len(set(roles)) == len(records.CATALOGUE)
    assert [s.role for s in records.SEGMENTER.weights] == ["clipseg", "sam"]  # one record, two repositories
    assert all(isinstance(getattr(records, r.name.upper()), ModelRecord) for r in records.RECORDS)


def test_every_entry_has_its_facts_and_a_tiny_builder_or_says_why_not():
    for record in records.RECORDS:
        for spec in record.weights:
            assert spec.licence and spec.size_mb > 0 and spec.weights and spec.configs and spec.revision
            if isinstance(spec.tiny, TinyBuilder):
                assert callable(spec.tiny.resolve()), spec.tiny.target
                assert spec.tiny.resolve().__name__.startswith("save_tiny_")
            else:
                assert isinstance(spec.tiny, FullOnly) and spec.tiny.reason
    assert [r.name for r in records.RECORDS if r.full_only] == []


def test_each_loader_declares_the_wrapper_it_returns():
    for record, wrapper in WRAPPERS.items():
        assert record.loader.__annotations__["return"] == wrapper.__name__, record.name


@pytest.mark.parametrize("record", [r for r in WRAPPERS if not r.full_only], ids=lambda r: r.name)
def test_the_registry_returns_the_records_wrapper_type(tiny_registry, record):
    model = tiny_registry.get(record)
    assert type(model) is WRAPPERS[record]
    assert tiny_registry.get(record) is model and record.name in tiny_registry.loaded()


def test_a_full_only_record_says_why_in_the_tiny_preset(tiny_registry):
    """No record is full-only today (Zero123++ got a tiny version); the rule stays for the next."""
    from dataclasses import replace

    spec = replace(records.DEPTH.spec, role="depth_full_only", tiny=FullOnly("its code comes from the Hub"))
    record = ModelRecord("depth_full_only", (spec,), records.DEPTH.loader)
    assert record.full_only == [spec] and not tiny_registry.present(record)
    with pytest.raises(ModelUnavailableError, match="no tiny version \\(its code comes from the Hub\\).*full preset"):
        tiny_registry.get(record)


def test_the_cli_looks_up_records_by_catalogue_role_or_name():
    assert records.record_for("sam") is records.SEGMENTER and records.record_for("clipseg") is records.SEGMENTER
    assert records.record_for("segmenter") is records.SEGMENTER
    assert records.record_for("depth") is records.DEPTH
    with pytest.raises(KeyError, match="teleporter.*known roles"):
        records.record_for("teleporter")
    with pytest.raises(ValueError, match="segmenter"):
        records.SEGMENTER.spec  # noqa: B018  (two repositories: no single spec)


def _loaded_after(statement: str) -> set[str]:
    code = f"import sys; {statement}; print('\\n'.join(sorted(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    return set(out.stdout.split())


@pytest.mark.parametrize("module", ["backend.models.tiny", "backend.models.records", "backend.models.lock"])
def test_records_tiny_and_lock_import_neither_the_registry_nor_the_libraries(module):
    loaded = _loaded_after(f"import {module}")
    assert module in loaded  # the import really happened
    assert "backend.models.registry" not in loaded
    heavy = {name.split(".")[0] for name in loaded} & {"torch", "diffusers", "transformers", "open_clip"}
    assert not heavy, f"{module} imported {sorted(heavy)}"
