"""`python -m backend models {list,download,verify}`."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from .catalogue import ModelSpec
from .hub import ModelUnavailableError, cache_root, cached_snapshot, check_revision, download, lock_snapshot, \
    missing_files, offline, verify_snapshot
from .lock import LockFileError, ModelLock, lock_path
from .records import CATALOGUE, record_for
from .tiny import ensure_tiny, tiny_folder, tiny_root


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="models_command", required=True)
    listing = sub.add_parser("list", help="table of every model: role, id, licence, size, locked revision, cached?")
    _add_lock_argument(listing)
    for name, text in (("download", "fetch the full models into the Hugging Face cache and lock the commits "
                                    "fetched (or build the tiny ones)"),
                       ("verify", "check the downloaded (or tiny) models: locked commit, file hashes, completeness, "
                                  "loading")):
        p = sub.add_parser(name, help=text)
        p.add_argument("--preset", choices=("full", "tiny"), default="full")
        p.add_argument("--role", action="append", choices=sorted(CATALOGUE),
                       help="only this model (repeatable); default: every model the pipeline needs")
        p.add_argument("--all", action="store_true", help="include the optional models (some are non-commercial)")
        _add_lock_argument(p)
        if name == "download":
            p.add_argument("--update", action="store_true",
                           help="ignore the lock: fetch the newest requested revision (e.g. main) and lock that")


def _add_lock_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--lock", type=Path, metavar="PATH",
                        help="models lock file (default: LIFT3D_MODELS_LOCK or ~/.cache/lift3d/models.lock.json)")


def run(args: argparse.Namespace) -> int:
    try:
        lock = ModelLock.load(args.lock)
    except LockFileError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return {"list": _list, "download": _download, "verify": _verify}[args.models_command](args, lock)


def _selected(args: argparse.Namespace) -> list[ModelSpec]:
    if args.role:
        return [CATALOGUE[r] for r in args.role]
    return [s for s in CATALOGUE.values() if args.all or not s.optional]


def _table(rows: list[tuple[str, ...]]) -> str:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def _list(args: argparse.Namespace, lock: ModelLock) -> int:
    rows = [("role", "repository", "licence", "commercial", "size", "revision", "cached", "tiny built")]
    root = tiny_root()
    for s in CATALOGUE.values():
        check = check_revision(s, lock)
        cached = "yes" if check.folder is not None else ("MISMATCH" if check.mismatch else "no")
        tiny = "n/a" if not s.has_tiny else ("yes" if (tiny_folder(s, root) / "lift3d-tiny.json").exists() else "no")
        role = s.role + (" (optional)" if s.optional else "")
        rows.append((role, s.repo_id, s.licence, "yes" if s.commercial else "NO", f"{s.size_mb / 1000:.1f} GB",
                     check.revision, cached, tiny))
    print(_table(rows))
    print(f"\nHugging Face cache: {cache_root()}{' (offline mode)' if offline() else ''}\nlock file: {lock.path}"
          f"{'' if lock.path.exists() else ' (none yet: models download writes it)'}\ntiny models: {root}")
    return 0


def _download(args: argparse.Namespace, lock: ModelLock) -> int:
    failed = 0
    for s in _selected(args):
        start = time.perf_counter()
        try:
            if args.preset == "tiny":
                folder, built = ensure_tiny(s, tiny_root())
                state = "built" if built else "already built"
            else:
                cached = cached_snapshot(s, None if args.update else lock)
                if cached is not None and (offline() or not args.update):
                    folder, state = cached, "already cached"
                    lock_snapshot(s, cached, lock)
                else:
                    folder, state = download(s, lock, update=args.update), "downloaded"
                locked = lock.commit(s.repo_id, s.revision)
                state += f", {s.revision} locked at {locked}" if locked else " (NOT locked: see the warning above)"
        except (ModelUnavailableError, ValueError) as exc:
            print(f"{s.role}: FAILED: {exc}", file=sys.stderr)
            failed += 1
            continue
        print(f"{s.role}: {state} in {time.perf_counter() - start:.1f} s -> {folder}", flush=True)
    if args.preset == "full":
        print(f"lock file: {lock.path} (copy it to another machine to load the same commits there)")
    return 1 if failed else 0


def _verify(args: argparse.Namespace, lock: ModelLock) -> int:
    from .registry import ModelRegistry, ModelSettings

    registry = ModelRegistry(ModelSettings(preset=args.preset, device="cpu", allow_download=False,
                                           lock_file=lock_path(args.lock)))
    rows, failed, loads = [("role", "revision", "files", "loads", "detail")], 0, {}
    for s in _selected(args):
        revision = "- (tiny)"
        if args.preset == "full":
            check = check_revision(s, lock)
            revision = check.revision
            if check.folder is None:
                rows.append((s.role, revision, "BAD" if check.mismatch else "missing", "-", check.problem or ""))
                failed += 1
                continue
        try:
            folder = registry.folder(s)
        except (ModelUnavailableError, ValueError) as exc:
            rows.append((s.role, revision, "missing", "-", str(exc).split(". ")[0]))
            failed += 1
            continue
        bad = [f"{c.name}: {c.detail}" for c in verify_snapshot(folder) if not c.ok]
        bad += [f"missing {m}" for m in missing_files(s, folder)]
        record = record_for(s.role)  # CLIPSeg and SAM load together, as the segmenter
        if record.name not in loads:
            loads[record.name] = _try_load(registry, record)
        load, detail = loads[record.name]
        rows.append((s.role, revision, "ok" if not bad else "BAD", load, detail if not bad else "; ".join(bad)))
        failed += bool(bad) or load != "ok"
    print(_table(rows))
    if args.preset == "full":
        print(f"lock file: {lock.path}")
    return 1 if failed else 0


def _try_load(registry, record) -> tuple[str, str]:
    """Load through the same code the pipeline uses."""
    start = time.perf_counter()
    try:
        registry.get(record)
    except Exception as exc:  # verify reports every failure instead of stopping at the first
        return "FAILED", f"{type(exc).__name__}: {exc}"
    finally:
        registry.free(record)
    return "ok", f"loaded in {time.perf_counter() - start:.1f} s"
