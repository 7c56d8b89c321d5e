"""The sweep report on a fake sweep: 2 tasks x {structured, magnitude} x 3 seeds of a 6x12 model."""

import json
import sys
import types
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from lottery import report

LAYERS, HEADS = 6, 12
SEEDS = (1337, 42, 86)
TASKS = {"stsb": ("pearson_spearman", ["pearson", "spearman", "pearson_spearman"]), "rte": ("accuracy", ["accuracy"])}
# The structured stsb good-ticket retrained scores, so that one cell can be checked by hand.
STSB_GOOD_RETRAINED = {1337: 0.70, 42: 0.76, 86: 0.82}


def _scores(rng, metrics, level):
    return {m: float(np.clip(level + rng.normal(0, 0.03), -1, 1)) for m in metrics}


def _structured_ticket(rng, keep_rate, metrics, level):
    # layer-dependent survival so the heatmap has structure: deeper layers are pruned more
    head = (rng.random((LAYERS, HEADS)) < keep_rate * np.linspace(1.2, 0.6, LAYERS)[:, None]).astype(int)
    mlp = (rng.random(LAYERS) < keep_rate).astype(int)
    return {
        "size_pct": float(100 * (head.mean() * 0.4 + mlp.mean() * 0.6)),
        "heads_kept": int(head.sum()),
        "heads_total": LAYERS * HEADS,
        "mlps_kept": int(mlp.sum()),
        "mlps_total": LAYERS,
        "head_mask": head.tolist(),
        "mlp_mask": mlp.tolist(),
        "mask_file": "tickets/good.json",
        "pruned": _scores(rng, metrics, level),
        "retrained": _scores(rng, metrics, level + 0.05),
    }


def _magnitude_ticket(rng, metrics, level):
    head = np.clip(rng.normal(60, 20, (LAYERS, HEADS)), 0, 100)
    return {
        "size_pct": float(head.mean()),
        "sparsity": float(1 - head.mean() / 100),
        "head_survival": head.tolist(),
        "mlp_survival": np.clip(rng.normal(45, 10, LAYERS), 0, 100).tolist(),
        "mask_file": "tickets/good.pt",
        "pruned": _scores(rng, metrics, level),
        "retrained": _scores(rng, metrics, level + 0.05),
    }


def _result(rng, task, mode, seed):
    metric, metrics = TASKS[task]
    full = 0.85 if task == "stsb" else 0.65
    levels = {"good": full * 0.93, "random": full * 0.6, "bad": full * 0.4}
    if mode == "structured":
        tickets = {name: _structured_ticket(rng, 0.7, metrics, levels[name]) for name in levels}
    else:
        tickets = {name: _magnitude_ticket(rng, metrics, levels[name]) for name in levels}
    if mode == "structured" and task == "stsb":
        tickets["good"]["retrained"]["pearson_spearman"] = STSB_GOOD_RETRAINED[seed]
    if mode == "magnitude" and task == "rte":
        tickets["random"]["pruned"] = None  # not run: the table shows "-"
    return {
        "model": "minilm",
        "task": task,
        "seed": seed,
        "mode": mode,
        "pruning": "heads_mlps" if mode == "structured" else "magnitude",
        "schedule": "paper",
        "search_split": "dev",
        "metric": metric,
        "metrics": metrics,
        "majority_baseline": {m: (0.0 if task == "stsb" else 0.527) for m in metrics},
        "full": _scores(rng, metrics, full),
        "num_layers": LAYERS,
        "num_heads": HEADS,
        "tickets": tickets,
    }


@pytest.fixture(scope="module")
def sweep(tmp_path_factory) -> Path:
    """A fake sweep folder; one structured run keeps its good masks only in its mask_file."""
    root = tmp_path_factory.mktemp("sweep")
    rng = np.random.default_rng(0)
    for task in TASKS:
        for mode in ("structured", "magnitude"):
            for seed in SEEDS:
                folder = root / "minilm" / task / mode / f"seed{seed}"
                folder.mkdir(parents=True)
                result = _result(rng, task, mode, seed)
                if (task, mode, seed) == ("rte", "structured", 42):
                    good = result["tickets"]["good"]
                    (folder / "tickets").mkdir()
                    mask = {
                        "num_layers": LAYERS,
                        "num_heads": HEADS,
                        "head_mask": good.pop("head_mask"),
                        "mlp_mask": good.pop("mlp_mask"),
                    }
                    (folder / "tickets" / "good.json").write_text(json.dumps(mask))
                (folder / "results.json").write_text(json.dumps(result))
    return root


@pytest.fixture(scope="module")
def written(sweep) -> list[Path]:
    return report.write_report(sweep)


def _good_head_masks(sweep, task):
    masks = []
    for seed in SEEDS:
        folder = sweep / "minilm" / task / "structured" / f"seed{seed}"
        result = json.loads((folder / "results.json").read_text())
        good = result["tickets"]["good"]
        head = good.get("head_mask") or json.loads((folder / good["mask_file"]).read_text())["head_mask"]
        masks.append(np.asarray(head).ravel())
    return np.stack(masks)


def test_every_file_is_written(sweep, written):
    out = sweep / "report"
    expected = [out / name for name in ("table.md", "table.csv", "table.tex", "stability.csv", "stability.md")]
    for task in TASKS:
        for mode in ("structured", "magnitude"):
            for kind in ("bars", "heatmap"):
                expected += [out / "figures" / f"{kind}_minilm_{task}_{mode}.{ext}" for ext in ("png", "pdf")]
        expected += [
            out / "super" / "minilm" / task / "structured" / f"super_{k}.json" for k in ("good", "random", "bad")
        ]
    expected += [out / "overlap" / "overlap_heads_minilm_structured.csv", out / "super" / "summary.csv"]
    expected += [out / "figures" / f"overlap_heads_minilm_structured.{ext}" for ext in ("png", "pdf")]
    assert sorted(written) == sorted(expected)
    for path in expected:
        assert path.stat().st_size > 0, path
    for png in out.rglob("*.png"):
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000, png
    assert not list(out.rglob("*.tmp")), "temporary files left behind"


def test_table_cell_matches_hand_computation(sweep, written):
    table = pd.read_csv(sweep / "report" / "table.csv")
    cell = table[
        (table["mode"] == "structured")
        & (table["task"] == "stsb")
        & (table["ticket"] == "good")
        & (table["eval"] == "retrained")
    ]
    assert len(cell) == 1
    # (0.70 + 0.76 + 0.82) / 3 = 0.76; deviations -0.06, 0, 0.06 -> std = sqrt(0.0072 / 2) = 0.06
    assert cell["mean"].item() == pytest.approx(0.76)
    assert cell["std"].item() == pytest.approx(0.06)
    assert cell["n"].item() == 3 and cell["metric"].item() == "pearson_spearman"
    markdown = (sweep / "report" / "table.md").read_text()
    assert "| s-good re | 0.760 ± 0.060 |" in markdown
    assert (
        "| m-random pr |" in markdown and "| -" in markdown.split("## minilm — magnitude")[1].split("m-random pr |")[1]
    )
    assert r"0.760 $\pm$ 0.060" in (sweep / "report" / "table.tex").read_text()


def test_table_has_paper_rows_and_sizes(sweep, written):
    table = pd.read_csv(sweep / "report" / "table.csv")
    assert list(table.columns) == report.TABLE_COLUMNS
    structured = table[(table["mode"] == "structured") & (table["task"] == "rte")]
    assert set(zip(structured["ticket"], structured["eval"])) == {
        ("full", "dev"),
        ("majority", "dev"),
        *((t, e) for t in report.TICKETS for e in ("pruned", "retrained", "size")),
    }
    assert (structured.loc[structured["eval"] == "size", "metric"] == "size_pct").all()
    missing = table[(table["mode"] == "magnitude") & (table["task"] == "rte") & (table["ticket"] == "random")]
    assert set(missing["eval"]) == {"retrained", "size"}


def test_super_masks_have_the_promised_sizes(sweep, written):
    for task in TASKS:
        masks = _good_head_masks(sweep, task)
        good, never = masks.all(axis=0), ~masks.any(axis=0)
        size = int(good.sum())
        folder = sweep / "report" / "super" / "minilm" / task / "structured"
        loaded = {k: json.loads((folder / f"super_{k}.json").read_text()) for k in ("good", "random", "bad")}
        for mask in loaded.values():
            assert set(mask) == {"num_layers", "num_heads", "head_mask", "mlp_mask"}
            assert np.asarray(mask["head_mask"]).shape == (LAYERS, HEADS) and len(mask["mlp_mask"]) == LAYERS
        assert np.array_equal(np.asarray(loaded["good"]["head_mask"]).ravel(), good.astype(int))
        assert np.sum(loaded["bad"]["head_mask"]) == min(size, int(never.sum()))
        assert np.sum(loaded["random"]["head_mask"]) == min(size, int((~good & ~never).sum()))
        assert not (np.asarray(loaded["bad"]["head_mask"]).ravel().astype(bool) & ~never).any()


def test_stability_table(sweep, written):
    frame = pd.read_csv(sweep / "report" / "stability.csv")
    assert list(frame.columns) == report.STABILITY_COLUMNS
    assert set(zip(frame["task"], frame["component"])) == {(t, c) for t in TASKS for c in ("heads", "mlps")}
    heads = frame[(frame["task"] == "stsb") & (frame["component"] == "heads")].iloc[0]
    masks = _good_head_masks(sweep, "stsb")
    assert heads["n_seeds"] == 3 and heads["n_elements"] == LAYERS * HEADS
    assert heads["iou"] == pytest.approx(masks.all(axis=0).sum() / masks.any(axis=0).sum())
    assert 0 <= heads["mean_jaccard"] <= 1 and 0 <= heads["cochran_p"] <= 1


def test_report_folder_is_skipped(sweep, written):
    stray = sweep / "report" / "stray" / "results.json"
    stray.parent.mkdir(parents=True, exist_ok=True)
    stray.write_text("not json")  # would fail loudly if it were read
    try:
        assert len(report.collect_results(sweep)) == len(TASKS) * 2 * len(SEEDS)
    finally:
        stray.unlink()


def test_empty_folder_error(tmp_path, capsys):
    with pytest.raises(report.NoResultsError, match="no results.json found under .*A sweep writes one results.json"):
        report.collect_results(tmp_path)
    with pytest.raises(SystemExit) as exit_info:
        report.main([str(tmp_path)])
    assert exit_info.value.code == 2
    assert str(tmp_path) in capsys.readouterr().err


def test_duplicate_runs_are_refused(tmp_path):
    rng = np.random.default_rng(1)
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "results.json").write_text(json.dumps(_result(rng, "rte", "magnitude", 1)))
    with pytest.raises(ValueError, match="are both"):
        report.collect_results(tmp_path)


def test_single_seed_shows_mean_only(tmp_path):
    (tmp_path / "run").mkdir()
    result = _result(np.random.default_rng(2), "rte", "structured", 7)
    (tmp_path / "run" / "results.json").write_text(json.dumps(result))
    summary = report.summary_table(report.collect_results(tmp_path))
    assert summary["n"].eq(1).all() and summary["std"].isna().all()
    full = f"{result['full']['accuracy']:.3f}"
    assert f"| full | {full} |" in report.markdown_tables(summary)
    written = report.write_report(tmp_path)  # one seed: no error bars, nan pairwise statistics
    assert (tmp_path / "report" / "figures" / "heatmap_minilm_rte_structured.png") in written
    stability = pd.read_csv(tmp_path / "report" / "stability.csv")
    assert stability["mean_jaccard"].isna().all() and stability["iou"].eq(1.0).all()


def test_main_with_fake_wandb(sweep, written, monkeypatch, capsys):
    calls = {"logged": {}, "finished": 0}
    fake = types.ModuleType("wandb")

    class Run:
        def log(self, data):
            calls["logged"].update(data)

    fake.init = lambda **kwargs: calls.update(init=kwargs) or Run()
    fake.Table = lambda dataframe: ("table", len(dataframe))
    fake.Image = lambda path: ("image", path)
    fake.finish = lambda: calls.update(finished=calls["finished"] + 1)
    monkeypatch.setitem(sys.modules, "wandb", fake)
    monkeypatch.delenv("WANDB_MODE", raising=False)
    monkeypatch.setattr(report, "write_report", lambda directory, seed: written)  # already tested above
    assert report.main([str(sweep), "--wandb"]) == 0
    assert calls["init"]["job_type"] == "report" and calls["init"]["mode"] == "offline"
    assert calls["finished"] == 1
    assert calls["logged"]["table"] == ("table", len(pd.read_csv(sweep / "report" / "table.csv")))
    assert calls["logged"]["figures/bars_minilm_stsb_structured"][0] == "image"
    out = capsys.readouterr().out
    assert f"under {sweep / 'report'}" in out and "table.md" in out


def test_mode_name_keeps_variants_apart():
    base = {"mode": "structured", "pruning": "heads_mlps", "schedule": "paper", "search_split": "dev"}
    assert report.mode_name(base) == "structured"
    assert (
        report.mode_name({**base, "pruning": "heads", "search_split": "train_holdout"})
        == "structured-heads-train_holdout"
    )
    assert report.mode_name({"mode": "magnitude", "pruning": "magnitude", "schedule": "imp"}) == "magnitude-imp"
