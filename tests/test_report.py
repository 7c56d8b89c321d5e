"""The sweep report on a fake sweep: 2 tasks x {structured paper, structured clean, magnitude} x 3
seeds of a 6x12 model, written through the results schema."""

import json
import os
import sys
import types
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from lottery.report import NoResultsError, write_report
from lottery.report.__main__ import main
from lottery.report.agreement import STABILITY_COLUMNS
from lottery.report.discover import discover, group_runs
from lottery.report.tables import TABLE_COLUMNS, markdown_tables, summary_table
from lottery.schema import Results, Ticket, write_results

LAYERS, HEADS = 6, 12
SEEDS = (1337, 42, 86)
TASKS = {"stsb": ("pearson_spearman", "pearson", ["pearson", "spearman", "pearson_spearman"]),
         "rte": ("accuracy", "accuracy", ["accuracy"])}
# The structured (paper) stsb good-ticket retrained Pearson, so that one cell can be checked by hand.
STSB_GOOD_RETRAINED = {1337: 0.70, 42: 0.76, 86: 0.82}
VARIANTS = {  # variant -> (mode, protocol, group hash)
    "structured-paper": ("structured", "paper", "aaaa0001"),
    "structured-clean": ("structured", "clean", "aaaa0002"),
    "magnitude-paper": ("magnitude", "paper", "aaaa0003"),
}
STRUCTURED_FIGURES = ["bars", "structured_heatmap", "stability", "super_tickets", "task_overlap"]


def _scores(rng, metrics, level):
    return {m: float(np.clip(level + rng.normal(0, 0.03), -1, 1)) for m in metrics}


def _structured_ticket(rng, keep_rate, metrics, level):
    # layer-dependent survival so the heatmap has structure: deeper layers are pruned more
    head = (rng.random((LAYERS, HEADS)) < keep_rate * np.linspace(1.2, 0.6, LAYERS)[:, None]).astype(int)
    mlp = (rng.random(LAYERS) < keep_rate).astype(int)
    size = float(100 * (head.mean() * 0.4 + mlp.mean() * 0.6))
    return Ticket(size_pct=size, size_pct_all=size * 0.8, mask_file="tickets/good.json", mask_sha256="0" * 64,
                  heads_kept=int(head.sum()), heads_total=LAYERS * HEADS, mlps_kept=int(mlp.sum()), mlps_total=LAYERS,
                  head_mask=head.tolist(), mlp_mask=mlp.tolist(), pruned=_scores(rng, metrics, level),
                  retrained=_scores(rng, metrics, level + 0.05))


def _magnitude_ticket(rng, metrics, level):
    head = np.clip(rng.normal(60, 20, (LAYERS, HEADS)), 0, 100)
    return Ticket(size_pct=float(head.mean()), size_pct_all=float(head.mean()) * 0.8, mask_file="tickets/good.npz",
                  mask_sha256="0" * 64, sparsity=float(1 - head.mean() / 100), head_survival=head.tolist(),
                  mlp_survival=np.clip(rng.normal(45, 10, LAYERS), 0, 100).tolist(),
                  pruned=_scores(rng, metrics, level), retrained=_scores(rng, metrics, level + 0.05))


def _result(rng, task, variant, seed, settings_extra=None):
    mode, protocol, group = VARIANTS[variant]
    metric, table_metric, metrics = TASKS[task]
    full = 0.85 if task == "stsb" else 0.65
    levels = {"good": full * 0.93, "random": full * 0.6, "bad": full * 0.4}
    if mode == "structured":
        tickets = {name: _structured_ticket(rng, 0.7, metrics, levels[name]) for name in levels}
    else:
        tickets = {name: _magnitude_ticket(rng, metrics, levels[name]) for name in levels}
    if variant == "structured-paper" and task == "stsb":
        tickets["good"].retrained["pearson"] = STSB_GOOD_RETRAINED[seed]
    if mode == "magnitude" and task == "rte":
        tickets["random"].pruned = None  # not run: the table shows "-"
    keys = {"accumulate": "running" if protocol == "paper" else "per_batch"} if mode == "structured" else {}
    settings = {"task": task, "seed": seed, "mode": mode, "recipe": {"lr": 5e-5},
                mode: {"search": {"phase_change": "failed" if protocol == "paper" else "passing"},
                       "importance": {"name": "michel", **keys}}, **(settings_extra or {})}
    return Results(
        model="minilm", task=task, seed=seed, mode=mode, variant=variant, group=group, settings=settings,
        protocol={"name": protocol, "preset": protocol, "keys": keys, "differs_from_preset": []},
        unit="structured" if mode == "structured" else "weights", label_prefix=mode[0],
        figures=STRUCTURED_FIGURES if mode == "structured" else ["bars", "magnitude_heatmap"],
        metric=metric, table_metric=table_metric, metrics=metrics, num_layers=LAYERS, num_heads=HEADS,
        full=_scores(rng, metrics, full), majority_baseline={m: (0.0 if task == "stsb" else 0.527) for m in metrics},
        search={"full_score": full}, tickets=tickets,
    )


def _folder(root, task, variant, seed):
    return root / "minilm" / task / f"seed{seed}" / f"{variant}-{VARIANTS[variant][2]}"


@pytest.fixture(scope="module")
def sweep(tmp_path_factory) -> Path:
    """A fake sweep folder; one structured run keeps its good masks only in its mask_file."""
    root = tmp_path_factory.mktemp("sweep")
    rng = np.random.default_rng(0)
    for task in TASKS:
        for variant in VARIANTS:
            for seed in SEEDS:
                folder = _folder(root, task, variant, seed)
                result = _result(rng, task, variant, seed)
                if (task, variant, seed) == ("rte", "structured-paper", 42):
                    good = result.tickets["good"]
                    mask = {"num_layers": LAYERS, "num_heads": HEADS, "head_mask": good.head_mask,
                            "mlp_mask": good.mlp_mask}
                    good.head_mask = good.mlp_mask = None
                    (folder / "tickets").mkdir(parents=True)
                    (folder / "tickets" / "good.json").write_text(json.dumps(mask))
                write_results(folder / "results.json", result)
    return root


@pytest.fixture(scope="module")
def written(sweep) -> list[Path]:
    outcome = write_report(sweep)
    assert outcome.skipped == []
    return outcome.written


def _good_masks(sweep, task, variant="structured-paper", component="head_mask"):
    masks = []
    for seed in SEEDS:
        folder = _folder(sweep, task, variant, seed)
        good = json.loads((folder / "results.json").read_text())["tickets"]["good"]
        mask = good.get(component) or json.loads((folder / good["mask_file"]).read_text())[component]
        masks.append(np.asarray(mask).ravel())
    return np.stack(masks)


def test_every_file_is_written(sweep, written):
    out = sweep / "report"
    expected = [out / name for name in ("table.md", "table.csv", "table.tex", "stability.csv", "stability.md",
                                        "protocol_comparison.csv", "protocol_comparison.md")]
    for task in TASKS:
        for variant, (mode, _, _) in VARIANTS.items():
            kinds = ("bars", "structured_heatmap") if mode == "structured" else ("bars", "magnitude_heatmap")
            for kind in kinds:
                expected += [out / "figures" / f"{kind}_minilm_{variant}_{task}.{ext}" for ext in ("png", "pdf")]
            if mode == "structured":
                expected += [out / "super" / "minilm" / task / variant / f"super_{k}.json"
                             for k in ("good", "random", "bad")]
    expected.append(out / "super" / "summary.csv")
    for variant in ("structured-paper", "structured-clean"):
        name = f"minilm_{variant}"
        for component in ("heads", "mlps"):
            expected += [out / "overlap" / f"counts_{component}_{name}.csv",
                         out / "overlap" / f"counts_{component}_{name}_std.csv"]
            expected += [out / "figures" / f"overlap_{component}_{name}.{ext}" for ext in ("png", "pdf")]
        expected.append(out / "overlap" / f"jaccard_super_heads_{name}.csv")
        expected += [out / "figures" / f"overlap_jaccard_super_heads_{name}.{ext}" for ext in ("png", "pdf")]
    assert sorted(written) == sorted(expected)
    for path in expected:
        assert path.stat().st_size > 0, path
    for png in out.rglob("*.png"):
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000, png
    assert not list(out.rglob("*.tmp")), "temporary files left behind"


def test_table_cell_matches_hand_computation(sweep, written):
    table = pd.read_csv(sweep / "report" / "table.csv")
    cell = table[(table["variant"] == "structured-paper") & (table["task"] == "stsb") & (table["ticket"] == "good")
                 & (table["eval"] == "retrained")]
    assert len(cell) == 1
    # (0.70 + 0.76 + 0.82) / 3 = 0.76; deviations -0.06, 0, 0.06 -> std = sqrt(0.0072 / 2) = 0.06
    assert cell["mean"].item() == pytest.approx(0.76)
    assert cell["std"].item() == pytest.approx(0.06)
    assert cell["n"].item() == 3 and cell["metric"].item() == "pearson"  # the paper's table shows STS-B Pearson
    markdown = (sweep / "report" / "table.md").read_text()
    assert "| s-good re | 0.760 ± 0.060 |" in markdown
    magnitude = markdown.split("## minilm — magnitude-paper")[1]
    assert "| m-random pr |" in magnitude and magnitude.split("m-random pr |")[1].split("|")[1].strip() == "-"
    assert r"0.760 $\pm$ 0.060" in (sweep / "report" / "table.tex").read_text()
    assert "size % (paper) = kept non-embedding parameters / all parameters" in markdown


def test_table_has_paper_rows_and_both_sizes(sweep, written):
    table = pd.read_csv(sweep / "report" / "table.csv")
    assert list(table.columns) == TABLE_COLUMNS
    structured = table[(table["variant"] == "structured-paper") & (table["task"] == "rte")]
    assert set(zip(structured["ticket"], structured["eval"])) == {
        ("full", "dev"), ("majority", "dev"),
        *((t, e) for t in ("good", "random", "bad") for e in ("pruned", "retrained", "size", "size_encoder"))}
    assert set(structured.loc[structured["eval"] == "size", "metric"]) == {"size_pct_all"}
    assert set(structured.loc[structured["eval"] == "size_encoder", "metric"]) == {"size_pct"}
    missing = table[(table["variant"] == "magnitude-paper") & (table["task"] == "rte") & (table["ticket"] == "random")]
    assert set(missing["eval"]) == {"retrained", "size", "size_encoder"}


def test_super_masks_have_good_size(sweep, written):
    for task in TASKS:
        masks = _good_masks(sweep, task)
        good = masks.all(axis=0)
        folder = sweep / "report" / "super" / "minilm" / task / "structured-paper"
        loaded = {k: json.loads((folder / f"super_{k}.json").read_text()) for k in ("good", "random", "bad")}
        for mask in loaded.values():
            assert set(mask) == {"num_layers", "num_heads", "head_mask", "mlp_mask"}
            assert np.asarray(mask["head_mask"]).shape == (LAYERS, HEADS) and len(mask["mlp_mask"]) == LAYERS
            assert np.sum(mask["head_mask"]) == int(good.sum())  # every super ticket has super-good's size
        assert np.array_equal(np.asarray(loaded["good"]["head_mask"]).ravel(), good.astype(int))


def test_stability_table(sweep, written):
    frame = pd.read_csv(sweep / "report" / "stability.csv")
    assert list(frame.columns) == STABILITY_COLUMNS
    assert set(zip(frame["variant"], frame["task"], frame["component"])) == {
        (v, t, c) for v in ("structured-paper", "structured-clean") for t in TASKS for c in ("heads", "mlps")}
    heads = frame[(frame["variant"] == "structured-paper") & (frame["task"] == "stsb") & (frame["component"] == "heads")]
    masks = _good_masks(sweep, "stsb")
    assert heads["n_seeds"].item() == 3 and heads["n_elements"].item() == LAYERS * HEADS
    assert heads["iou"].item() == pytest.approx(masks.all(axis=0).sum() / masks.any(axis=0).sum())


def test_task_overlap_counts_by_hand(sweep, written):
    counts = pd.read_csv(sweep / "report" / "overlap" / "counts_heads_minilm_structured-paper.csv", index_col="task")
    rte, stsb = _good_masks(sweep, "rte"), _good_masks(sweep, "stsb")
    assert counts.loc["rte", "stsb"] == pytest.approx(np.mean([(rte[i] & stsb[i]).sum() for i in range(3)]))
    assert counts.loc["rte", "rte"] == pytest.approx(rte.sum(axis=1).mean())  # the diagonal: heads kept


def test_protocol_comparison_by_hand(sweep, written):
    frame = pd.read_csv(sweep / "report" / "protocol_comparison.csv")
    assert set(frame["first"]) == {"structured-paper"} and set(frame["second"]) == {"structured-clean"}
    row = frame[(frame["task"] == "stsb") & (frame["seed"] == 42)].iloc[0]
    paper, clean = _good_masks(sweep, "stsb")[1], _good_masks(sweep, "stsb", "structured-clean")[1]
    assert row["heads_jaccard"] == pytest.approx((paper & clean).sum() / (paper | clean).sum())
    text = (sweep / "report" / "protocol_comparison.md").read_text()
    assert "## minilm stsb: structured-paper vs structured-clean" in text and "| good retrained |" in text
    assert "nan" not in text  # a single seed's Jaccard is shown without a spread


def test_a_bad_file_is_skipped_and_listed(sweep, written, tmp_path, capsys):
    import shutil

    copy = tmp_path / "sweep"
    shutil.copytree(sweep, copy, ignore=shutil.ignore_patterns("report"))
    broken = _folder(copy, "rte", "magnitude-paper", 42) / "results.json"
    broken.write_text(broken.read_text()[:200])  # truncated
    assert main([str(copy)]) == 0
    err = capsys.readouterr().err
    assert f"{broken}: " in err and "not valid JSON" in err
    assert "rte" in (copy / "report" / "table.md").read_text()  # the readable runs are all there
    assert str(broken) in (copy / "report" / "skipped.md").read_text()
    assert main([str(copy), "--strict"]) == 1


def test_a_read_only_folder_is_reported_elsewhere(sweep, written, tmp_path, capsys, monkeypatch):
    import shutil

    copy = tmp_path / "ro"
    shutil.copytree(sweep, copy, ignore=shutil.ignore_patterns("report"))
    before = {path: path.stat().st_mtime_ns for path in copy.rglob("*")}
    # Read-only as the report sees it (the tests may run as root, whom file modes do not stop).
    real_access = os.access
    monkeypatch.setattr(os, "access", lambda path, mode: False if Path(path).is_relative_to(copy) else real_access(path, mode))
    with pytest.raises(SystemExit) as exit_info:
        main([str(copy)])
    assert exit_info.value.code == 2 and "read-only; pass --out" in capsys.readouterr().err
    assert main([str(copy), "--out", str(tmp_path / "out")]) == 0
    assert (tmp_path / "out" / "table.md").is_file()
    assert {path: path.stat().st_mtime_ns for path in copy.rglob("*")} == before  # nothing written there


def test_report_folder_is_skipped(sweep, written):
    stray = sweep / "report" / "stray" / "results.json"
    stray.parent.mkdir(parents=True, exist_ok=True)
    stray.write_text("not json")  # would be listed as skipped if it were read
    try:
        found = discover(sweep, exclude=sweep / "report")
        assert len(found.runs) == len(TASKS) * len(VARIANTS) * len(SEEDS) and not found.skipped
    finally:
        stray.unlink()


def test_empty_folder_error(tmp_path, capsys):
    with pytest.raises(NoResultsError, match="no results.json found under .*A sweep writes one results.json"):
        discover(tmp_path)
    with pytest.raises(SystemExit) as exit_info:
        main([str(tmp_path)])
    assert exit_info.value.code == 2
    assert str(tmp_path) in capsys.readouterr().err


def test_duplicate_runs_are_skipped(tmp_path):
    rng = np.random.default_rng(1)
    for name in ("a", "b"):
        write_results(tmp_path / name / "results.json", _result(rng, "rte", "magnitude-paper", 1))
    found = discover(tmp_path)
    assert len(found.runs) == 1 and "the same run" in found.skipped[0][1]


def test_variants_with_other_settings_are_never_averaged(tmp_path):
    rng = np.random.default_rng(3)
    for lr, group in ((5e-5, "bbbb0001"), (1e-4, "bbbb0002")):
        for seed in (1, 2):
            result = _result(rng, "rte", "structured-paper", seed)
            result.group, result.settings["recipe"]["lr"] = group, lr
            write_results(tmp_path / group / str(seed) / "results.json", result)
    labels = sorted(key[1] for key in group_runs(discover(tmp_path).runs))
    assert labels == ["structured-paper [recipe.lr=0.0001]", "structured-paper [recipe.lr=5e-05]"]


def test_single_seed_shows_mean_only(tmp_path):
    result = _result(np.random.default_rng(2), "rte", "structured-paper", 7)
    write_results(tmp_path / "run" / "results.json", result)
    groups = group_runs(discover(tmp_path).runs)
    summary = summary_table(groups)
    assert summary["n"].eq(1).all() and summary["std"].isna().all()
    assert f"| full | {result.full['accuracy']:.3f} |" in markdown_tables(summary, groups)
    written = write_report(tmp_path).written  # one seed: no error bars, nan pairwise statistics
    assert (tmp_path / "report" / "figures" / "structured_heatmap_minilm_structured-paper_rte.png") in written
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
    assert main([str(sweep), "--wandb"]) == 0
    assert calls["init"]["job_type"] == "report" and calls["init"]["mode"] == "offline"
    assert calls["finished"] == 1
    assert calls["logged"]["table"] == ("table", len(pd.read_csv(sweep / "report" / "table.csv")))
    assert calls["logged"]["figures/bars_minilm_structured-paper_stsb"][0] == "image"
    out = capsys.readouterr().out
    assert f"under {sweep / 'report'}" in out and "table.md" in out


def _snapshot(folder: Path) -> dict:
    return {path.relative_to(folder): path.read_bytes() for path in sorted(folder.rglob("*")) if path.is_file()}


def test_a_report_killed_half_way_leaves_the_previous_one_byte_identical(sweep, written, tmp_path, monkeypatch):
    import shutil

    from lottery.report import figures

    copy = tmp_path / "sweep"
    shutil.copytree(sweep, copy)
    before = _snapshot(copy / "report")
    assert len(before) == len(written)
    real, calls = figures.write_figure, {"n": 0}

    def killed_at_the_third_figure(figure, stem):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt("killed")
        return real(figure, stem)

    monkeypatch.setattr(figures, "write_figure", killed_at_the_third_figure)
    stale = _folder(copy, "rte", "magnitude-paper", 42) / "results.json"
    stale.write_text(stale.read_text().replace('"accuracy"', '"accuracy" ', 1))  # a new report would differ
    with pytest.raises(KeyboardInterrupt):
        write_report(copy)
    assert calls["n"] == 3
    assert _snapshot(copy / "report") == before
    assert not [p for p in copy.iterdir() if p.name.startswith(".")]  # no half-built report beside it


def _one_run(root: Path) -> Path:
    """A folder with a single structured run (a small report: fast)."""
    write_results(root / "run" / "results.json", _result(np.random.default_rng(2), "rte", "structured-paper", 7))
    return root


def test_skipped_md_only_while_something_is_skipped(tmp_path):
    root = _one_run(tmp_path / "sweep")
    broken = root / "broken" / "results.json"
    broken.parent.mkdir()
    broken.write_text('{"format": ')
    assert main([str(root)]) == 0 and str(broken) in (root / "report" / "skipped.md").read_text()
    broken.unlink()  # the cause is fixed
    assert main([str(root)]) == 0
    assert (root / "report" / "table.md").is_file() and not (root / "report" / "skipped.md").exists()


def test_out_never_replaces_a_folder_of_other_files(tmp_path, capsys):
    root = _one_run(tmp_path / "sweep")
    mine = tmp_path / "paper"
    mine.mkdir()
    (mine / "draft.tex").write_text("my paper")
    with pytest.raises(SystemExit) as exit_info:
        main([str(root), "--out", str(mine)])
    assert exit_info.value.code == 2 and "is not an earlier report" in capsys.readouterr().err
    assert [p.name for p in mine.iterdir()] == ["draft.tex"]
    out = tmp_path / "new"
    assert main([str(root), "--out", str(out)]) == 0
    (out / "stale.csv").write_text("from an older report")
    assert main([str(root), "--out", str(out)]) == 0  # an earlier report is replaced whole
    assert (out / "table.md").is_file() and not (out / "stale.csv").exists()
