"""Smoke test of the transport benchmark at toy sizes (the real figures come from `./lift3d bench`)."""

from backend.bench.transport import format_table, run_transport_benchmark


def test_transport_benchmark_measures_every_path_for_both_payloads():
    rows = run_transport_benchmark(preview_splats=64, mesh_vertices=64, messages=3, rounds=1, texture_side=8)
    assert [(r.payload.split()[0], r.path) for r in rows] == [
        (kind, path) for kind in ("preview", "mesh") for path in ("raw pyzmq", "lift3d codec", "lift3d server")]
    assert all(r.messages_per_s > 0 and r.mb_per_s > 0 for r in rows)
    assert [r.ratio_vs_raw for r in rows if r.path == "raw pyzmq"] == [1.0, 1.0]
    table = format_table(rows)
    assert "lift3d server" in table and "vs raw" in table
