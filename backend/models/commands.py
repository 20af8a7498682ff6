"""`python -m backend models {list,download,verify}`."""

from __future__ import annotations

import argparse
import sys
import time

from .catalogue import CATALOGUE, ModelSpec
from .hub import ModelUnavailableError, cache_root, cached_snapshot, download, missing_files, offline, verify_snapshot
from .tiny import ensure_tiny, tiny_folder, tiny_root


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="models_command", required=True)
    sub.add_parser("list", help="table of every model: role, id, licence, size, cached?")
    for name, text in (("download", "fetch the full models into the Hugging Face cache (or build the tiny ones)"),
                       ("verify", "check the downloaded (or tiny) models: file hashes, completeness, loading")):
        p = sub.add_parser(name, help=text)
        p.add_argument("--preset", choices=("full", "tiny"), default="full")
        p.add_argument("--role", action="append", choices=sorted(CATALOGUE),
                       help="only this model (repeatable); default: every model the pipeline needs")
        p.add_argument("--all", action="store_true", help="include the optional models (some are non-commercial)")


def run(args: argparse.Namespace) -> int:
    return {"list": _list, "download": _download, "verify": _verify}[args.models_command](args)


def _selected(args: argparse.Namespace) -> list[ModelSpec]:
    if args.role:
        return [CATALOGUE[r] for r in args.role]
    return [s for s in CATALOGUE.values() if args.all or not s.optional]


def _table(rows: list[tuple[str, ...]]) -> str:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def _list(args: argparse.Namespace) -> int:
    rows = [("role", "repository", "licence", "commercial", "size", "cached", "tiny built")]
    root = tiny_root()
    for s in CATALOGUE.values():
        cached = "yes" if cached_snapshot(s) is not None else "no"
        tiny = "n/a" if not s.has_tiny else ("yes" if (tiny_folder(s, root) / "lift3d-tiny.json").exists() else "no")
        role = s.role + (" (optional)" if s.optional else "")
        rows.append((role, s.repo_id, s.licence, "yes" if s.commercial else "NO", f"{s.size_mb / 1000:.1f} GB",
                     cached, tiny))
    print(_table(rows))
    print(f"\nHugging Face cache: {cache_root()}{' (offline mode)' if offline() else ''}\ntiny models: {root}")
    return 0


def _download(args: argparse.Namespace) -> int:
    failed = 0
    for s in _selected(args):
        start = time.perf_counter()
        try:
            if args.preset == "tiny":
                folder, built = ensure_tiny(s, tiny_root())
                state = "built" if built else "already built"
            else:
                cached = cached_snapshot(s)
                folder, state = (cached, "already cached") if cached else (download(s), "downloaded")
        except (ModelUnavailableError, ValueError) as exc:
            print(f"{s.role}: FAILED: {exc}", file=sys.stderr)
            failed += 1
            continue
        print(f"{s.role}: {state} in {time.perf_counter() - start:.1f} s -> {folder}", flush=True)
    return 1 if failed else 0


def _verify(args: argparse.Namespace) -> int:
    from .registry import ModelRegistry, ModelSettings

    registry = ModelRegistry(ModelSettings(preset=args.preset, device="cpu", allow_download=False))
    rows, failed = [("role", "files", "loads", "detail")], 0
    for s in _selected(args):
        try:
            folder = registry.folder(s.role)
        except (ModelUnavailableError, ValueError) as exc:
            rows.append((s.role, "missing", "-", str(exc).split(". ")[0]))
            failed += 1
            continue
        bad = [f"{c.name}: {c.detail}" for c in verify_snapshot(folder) if not c.ok]
        bad += [f"missing {m}" for m in missing_files(s, folder)]
        load, detail = _try_load(registry, s.role)
        rows.append((s.role, "ok" if not bad else "BAD", load, detail if not bad else "; ".join(bad)))
        failed += bool(bad) or load != "ok"
    print(_table(rows))
    return 1 if failed else 0


def _try_load(registry, role: str) -> tuple[str, str]:
    """Load through the same code the pipeline uses (CLIPSeg and SAM load as the segmenter)."""
    name = "segmenter" if role in ("clipseg", "sam") else role
    start = time.perf_counter()
    try:
        registry.get(name)
    except Exception as exc:  # verify reports every failure instead of stopping at the first
        return "FAILED", f"{type(exc).__name__}: {exc}"
    finally:
        registry.free(name)
    return "ok", f"loaded in {time.perf_counter() - start:.1f} s"
