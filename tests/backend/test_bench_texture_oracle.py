"""`bench texture-oracle` on a small setting: it writes results labelled as oracle evidence, an
exact oracle gives the texture back, an inconsistent one costs quality but not coverage."""

from __future__ import annotations

import json

from PIL import Image

from backend.bench.__main__ import main


def test_the_texture_oracle_bench_writes_labelled_results_and_a_contact_sheet(tmp_path, capsys):
    out = tmp_path / "bench"
    assert main(["texture-oracle", "--objects", "globe", "--texture-size", "256", "--views", "6",
                 "--render-size", "128", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert printed.startswith("ORACLE EVIDENCE") and "targets (exact oracle, 256²)" in printed
    results = json.loads((out / "results.json").read_text())
    assert results["oracle_evidence"] is True
    rows = {row["variant"]: row for row in results["rows"]}
    assert set(rows) == {"exact", "inconsistent"}
    exact, inconsistent = rows["exact"], rows["inconsistent"]
    assert exact["uvs_kept"] and exact["uvs_bit_exact"]
    assert exact["psnr_db"] > 35 and exact["coverage"] > 0.99
    assert inconsistent["psnr_db"] < exact["psnr_db"] and inconsistent["coverage"] == exact["coverage"]
    assert exact["seam_error"] <= exact["truth_seam_error"] + 0.5 / 255
    sheet = Image.open(out / "contact.png")
    assert sheet.size == (4 * 128, 2 * 2 * 128)  # per variant: truth over result, four held-out views
