"""`python -m backend models ...` as a user runs it (in-process, with a private tiny folder and an
empty, offline Hugging Face cache)."""

import pytest

from backend.__main__ import main
from backend.models.records import CATALOGUE


@pytest.fixture
def env(tmp_path, monkeypatch):
    from huggingface_hub import constants

    monkeypatch.setenv("LIFT3D_TINY_MODELS", str(tmp_path / "tiny"))
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setenv("LIFT3D_MODELS_LOCK", str(tmp_path / "models.lock.json"))
    return tmp_path


def test_list_shows_every_model_with_its_licence(env, capsys):
    assert main(["models", "list"]) == 0
    out = capsys.readouterr().out
    for model in CATALOGUE.values():
        assert model.repo_id in out and model.licence in out
    assert "offline mode" in out and str(env / "tiny") in out
    assert str(env / "models.lock.json") in out and out.count("(not locked)") == len(CATALOGUE)


def test_tiny_download_builds_once_then_verify_loads(env, capsys):
    assert main(["models", "download", "--preset", "tiny", "--role", "clip"]) == 0
    assert "clip: built" in capsys.readouterr().out
    assert main(["models", "download", "--preset", "tiny", "--role", "clip"]) == 0
    assert "clip: already built" in capsys.readouterr().out
    assert main(["models", "verify", "--preset", "tiny", "--role", "clip"]) == 0
    out = capsys.readouterr().out
    assert "clip" in out and "loaded in" in out


def test_full_download_offline_fails_clearly(env, capsys):
    assert main(["models", "download", "--role", "depth"]) == 1
    err = capsys.readouterr().err
    assert "depth: FAILED" in err and "offline" in err


def test_full_verify_reports_missing_models(env, capsys):
    assert main(["models", "verify", "--role", "depth", "--role", "clip"]) == 1
    out = capsys.readouterr().out
    assert out.count("missing") >= 2
