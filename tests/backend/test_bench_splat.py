"""Smoke test of the splat benchmark at toy sizes (real figures: `./lift3d bench splat`)."""

from backend.bench.splat import format_table, run_splat_benchmark


def test_splat_benchmark_times_both_renderers():
    rows = run_splat_benchmark([200], 32, 1)
    assert [r.renderer for r in rows] == ["torch", "torch-untiled"]
    assert all(r.forward_s > 0 and r.forward_backward_s > 0 for r in rows)
    assert rows[0].ratio_vs_tiled == 1.0
    assert "torch-untiled" in format_table(rows)
