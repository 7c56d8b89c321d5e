"""The sweep report on a fake sweep: 2 tasks x {structured paper, structured clean, structured paper
with one protocol key flipped, magnitude} x 3 seeds of a 6x12 model, written through the results
schema; every agreement figure beside its chance level, the table's claims tested across seeds."""

import json
import os
import sys
import types
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from lottery import stability
from lottery.report import NoResultsError, write_report
from lottery.report.__main__ import main
from lottery.report.agreement import STABILITY_COLUMNS, protocol_differences
from lottery.report.discover import discover, group_runs
from lottery.report.tables import DIFFERENCE_COLUMNS, TABLE_COLUMNS, markdown_tables, summary_table
from lottery.schema import Results, Ticket, write_results

LAYERS, HEADS = 6, 12
SEEDS = (1337, 42, 86)
TASKS = {"stsb": ("pearson_spearman", "pearson", ["pearson", "spearman", "pearson_spearman"]),
         "rte": ("accuracy", "accuracy", ["accuracy"])}
# The structured (paper) stsb good-ticket retrained Pearson, so that one cell can be checked by hand.
STSB_GOOD_RETRAINED = {1337: 0.70, 42: 0.76, 86: 0.82}
PAPER_KEYS = {"accumulate": "running", "phase_change": "failed", "sampling": "bernoulli"}
CLEAN_KEYS = {"accumulate": "per_batch", "phase_change": "passing", "sampling": "exact"}
VARIANTS = {  # variant -> (mode, protocol name, group hash, protocol keys)
    "structured-paper": ("structured", "paper", "aaaa0001", PAPER_KEYS),
    "structured-clean": ("structured", "clean", "aaaa0002", CLEAN_KEYS),
    # paper with one key flipped (what +sweep=protocol_keys runs): labelled custom
    "structured-custom": ("structured", "custom", "aaaa0004", {**PAPER_KEYS, "accumulate": "per_batch"}),
    "magnitude-paper": ("magnitude", "paper", "aaaa0003", {"magnitude_exit": "previous"}),
}
STRUCTURED_VARIANTS = [v for v, (mode, *_) in VARIANTS.items() if mode == "structured"]
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
    mode, protocol, group, keys = VARIANTS[variant]
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
    if mode == "structured":  # where the pipeline records each key among the mode's settings
        mode_settings = {"search": {"phase_change": keys["phase_change"], "threshold": 0.9},
                         "importance": {"name": "michel", "accumulate": keys["accumulate"]}, "sampling": keys["sampling"]}
    else:
        mode_settings = {"exit_mask": keys["magnitude_exit"], "fraction": 0.1}
    settings = {"task": task, "seed": seed, "mode": mode, "recipe": {"lr": 5e-5}, mode: mode_settings,
                **(settings_extra or {})}
    preset = "paper" if protocol == "custom" else protocol
    differs = sorted(k for k, v in keys.items() if PAPER_KEYS.get(k, v) != v) if protocol == "custom" else []
    return Results(
        model="minilm", task=task, seed=seed, mode=mode, variant=variant, group=group, settings=settings,
        protocol={"name": protocol, "preset": preset, "keys": keys, "differs_from_preset": differs},
        pruning="structured" if mode == "structured" else "weights", label_prefix=mode[0],
        # (the flipped run draws its stability only: fewer figures keep the test fast)
        figures=(["stability"] if protocol == "custom" else STRUCTURED_FIGURES) if mode == "structured"
        else ["bars", "magnitude_heatmap"],
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
                                        "protocol_comparison.csv", "protocol_comparison.md", "differences.csv",
                                        "differences.md")]
    for task in TASKS:
        for variant, (mode, protocol, _, _) in VARIANTS.items():
            if protocol == "custom":
                continue
            kinds = ("bars", "structured_heatmap") if mode == "structured" else ("bars", "magnitude_heatmap")
            for kind in kinds:
                expected += [out / "figures" / f"{kind}_minilm_{variant}_{task}.{ext}" for ext in ("png", "pdf")]
            if mode == "structured":
                expected += [out / "super" / "minilm" / task / variant / f"super_{k}.json"
                             for k in ("good", "random", "bad")]
    expected += [out / "super" / "summary.csv", out / "super" / "summary.md"]
    for variant in ("structured-paper", "structured-clean"):
        name = f"minilm_{variant}"
        for component in ("heads", "mlps"):
            expected += [out / "overlap" / f"counts_{component}_{name}{suffix}.csv" for suffix in ("", "_std", "_vs_chance")]
            expected += [out / "figures" / f"overlap_{component}_{name}.{ext}" for ext in ("png", "pdf")]
        expected += [out / "overlap" / f"jaccard_super_heads_{name}{suffix}.csv" for suffix in ("", "_vs_chance")]
        expected.append(out / "overlap" / f"overlap_{name}.md")
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
    # 95% t-interval: 0.76 -+ t(0.975, 2) * 0.06 / sqrt(3), t(0.975, 2) = 4.302653
    half = 4.302653 * 0.06 / np.sqrt(3)
    assert (cell["ci_low"].item(), cell["ci_high"].item()) == pytest.approx((0.76 - half, 0.76 + half))
    markdown = (sweep / "report" / "table.md").read_text()
    assert "| s-good re | 0.760 ± 0.060 [0.611, 0.909] |" in markdown
    assert "| majority | 0.000 ± 0.000 |" in markdown  # sizes, costs and the baseline: no interval
    magnitude = markdown.split("## minilm — magnitude-paper")[1]
    assert "| m-random pr |" in magnitude and magnitude.split("m-random pr |")[1].split("|")[1].strip() == "-"
    assert r"0.760 $\pm$ 0.060 [0.611, 0.909]" in (sweep / "report" / "table.tex").read_text()
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
        (v, t, c) for v in STRUCTURED_VARIANTS for t in TASKS for c in ("heads", "mlps")}
    heads = frame[(frame["variant"] == "structured-paper") & (frame["task"] == "stsb") & (frame["component"] == "heads")]
    masks = _good_masks(sweep, "stsb")
    assert heads["n_seeds"].item() == 3 and heads["n_elements"].item() == LAYERS * HEADS
    assert heads["iou"].item() == pytest.approx(masks.all(axis=0).sum() / masks.any(axis=0).sum())
    # every figure beside its chance level: random masks of each seed's size
    sizes = masks.sum(axis=1)
    chance = np.mean([stability.chance_jaccard(sizes[i], sizes[j], LAYERS * HEADS) for i, j in ((0, 1), (0, 2), (1, 2))])
    assert heads["mean_jaccard"].item() == pytest.approx(stability.mean_pairwise_jaccard(masks))
    assert heads["jaccard_chance"].item() == pytest.approx(chance)
    assert heads["jaccard_excess"].item() == pytest.approx(heads["mean_jaccard"].item() - chance)
    assert heads["kept_in_all_chance"].item() == pytest.approx(LAYERS * HEADS * np.prod(sizes / (LAYERS * HEADS)))
    for column in ("jaccard_p", "iou_p", "kept_in_all_p", "alpha_p"):
        assert (frame[column].between(1 / 10_001, 1.0)).all(), column
    text = (sweep / "report" / "stability.md").read_text()
    assert f"{heads['mean_jaccard'].item():.2f} ({chance:.2f}; p " in text and "p/(2-p)" in text


def test_task_overlap_counts_by_hand(sweep, written):
    counts = pd.read_csv(sweep / "report" / "overlap" / "counts_heads_minilm_structured-paper.csv", index_col="task")
    rte, stsb = _good_masks(sweep, "rte"), _good_masks(sweep, "stsb")
    assert counts.loc["rte", "stsb"] == pytest.approx(np.mean([(rte[i] & stsb[i]).sum() for i in range(3)]))
    assert counts.loc["rte", "rte"] == pytest.approx(rte.sum(axis=1).mean())  # the diagonal: heads kept
    vs = pd.read_csv(sweep / "report" / "overlap" / "counts_heads_minilm_structured-paper_vs_chance.csv")
    cell = vs[(vs["task_a"] == "rte") & (vs["task_b"] == "stsb")].iloc[0]
    assert cell["observed"] == pytest.approx(counts.loc["rte", "stsb"])
    # expected shared heads per seed = kept_rte * kept_stsb / n
    assert cell["chance"] == pytest.approx(np.mean(rte.sum(axis=1) * stsb.sum(axis=1) / (LAYERS * HEADS)))
    assert cell["excess"] == pytest.approx(cell["observed"] - cell["chance"]) and 0 < cell["p"] <= 1
    text = (sweep / "report" / "overlap" / "overlap_minilm_structured-paper.md").read_text()
    assert f"{cell['observed']:.1f} ({cell['chance']:.1f}; p " in text
    jaccard = pd.read_csv(sweep / "report" / "overlap" / "jaccard_super_heads_minilm_structured-paper_vs_chance.csv")
    cell = jaccard[(jaccard["task_a"] == "rte") & (jaccard["task_b"] == "stsb")].iloc[0]
    kept = rte.all(axis=0).sum(), stsb.all(axis=0).sum()
    assert cell["chance"] == pytest.approx(stability.chance_jaccard(*kept, LAYERS * HEADS))


def test_super_survivors_beside_chance(sweep, written):
    summary = pd.read_csv(sweep / "report" / "super" / "summary.csv")
    row = summary[(summary["variant"] == "structured-paper") & (summary["task"] == "rte")
                  & (summary["component"] == "heads")].iloc[0]
    masks = _good_masks(sweep, "rte")
    n = LAYERS * HEADS
    assert row["kept_in_all_observed"] == masks.all(axis=0).sum() == row["super_good"]
    assert row["kept_in_all_chance"] == pytest.approx(n * np.prod(masks.sum(axis=1) / n))
    assert row["pruned_in_all_chance"] == pytest.approx(n * np.prod(1 - masks.sum(axis=1) / n))
    assert "n x prod(kept_i / n)" in (sweep / "report" / "super" / "summary.md").read_text()


def _table_values(sweep, task, variant, ticket, evaluation):
    metric = TASKS[task][1]
    return [json.loads((_folder(sweep, task, variant, seed) / "results.json").read_text())["tickets"][ticket][evaluation][metric]
            for seed in SEEDS]


def test_differences_are_paired_by_seed(sweep, written):
    frame = pd.read_csv(sweep / "report" / "differences.csv")
    assert list(frame.columns) == DIFFERENCE_COLUMNS
    assert set(frame["comparison"]) == {"good - random", "good - bad"} and set(frame["eval"]) == {"pruned", "retrained"}
    assert "structured-custom" not in set(frame["variant"])  # it draws no bars
    row = frame[(frame["variant"] == "structured-paper") & (frame["task"] == "stsb") & (frame["eval"] == "retrained")
                & (frame["comparison"] == "good - random")].iloc[0]
    d = np.subtract(_table_values(sweep, "stsb", "structured-paper", "good", "retrained"),
                    _table_values(sweep, "stsb", "structured-paper", "random", "retrained"))
    assert row["mean_diff"] == pytest.approx(d.mean()) and row["std_diff"] == pytest.approx(d.std(ddof=1))
    assert row["seeds_good_higher"] == (d > 0).sum() == 3
    # 3 seeds, good higher in each: 1 of the 8 sign patterns has a sum as large (2 of 8 two-sided)
    assert (row["p_one_sided"], row["p_two_sided"]) == (1 / 8, 2 / 8)
    assert (row["smallest_p_one_sided"], row["smallest_p_two_sided"]) == (1 / 8, 2 / 8)
    rte = frame[(frame["variant"] == "magnitude-paper") & (frame["task"] == "rte")]
    assert set(rte["comparison"] + " " + rte["eval"]) == {"good - bad pruned", "good - random retrained",
                                                         "good - bad retrained"}  # random pruned was not run
    text = (sweep / "report" / "differences.md").read_text()
    assert "2/32 = 0.0625 two-sided: no two-sided test of 5 seeds can reach 0.05" in text
    assert "3 seeds: two-sided 0.25, one-sided 0.125" in text
    assert "- good > random, pruned: not supported at 0.05 one-sided on any task" in text


def test_protocol_comparison_by_hand(sweep, written):
    frame = pd.read_csv(sweep / "report" / "protocol_comparison.csv")
    assert set(frame["first"]) == {"structured-paper"}
    assert set(zip(frame["second"], frame["keys"])) == {("structured-clean", "accumulate,phase_change,sampling"),
                                                       ("structured-custom", "accumulate")}
    row = frame[(frame["task"] == "stsb") & (frame["seed"] == 42) & (frame["second"] == "structured-clean")].iloc[0]
    paper, clean = _good_masks(sweep, "stsb")[1], _good_masks(sweep, "stsb", "structured-clean")[1]
    assert row["heads_jaccard"] == pytest.approx((paper & clean).sum() / (paper | clean).sum())
    assert row["heads_chance"] == pytest.approx(stability.chance_jaccard(paper.sum(), clean.sum(), LAYERS * HEADS))
    assert row["heads_noise_first"] == pytest.approx(stability.mean_pairwise_jaccard(_good_masks(sweep, "stsb")))
    assert row["heads_noise_second"] == pytest.approx(
        stability.mean_pairwise_jaccard(_good_masks(sweep, "stsb", "structured-clean")))
    text = (sweep / "report" / "protocol_comparison.md").read_text()
    single, several = text.split("## One protocol key flipped from a preset")[1].split("## Several keys at once")
    assert "minilm / stsb / structured-paper vs structured-custom / accumulate: running -> per_batch" in single
    assert "structured-clean" not in single and "phase_change: failed -> passing" in several
    custom = frame[(frame["task"] == "rte") & (frame["second"] == "structured-custom")]
    pooled = stability.paired_jaccard_vs_chance(
        list(zip(_good_masks(sweep, "rte"), _good_masks(sweep, "rte", "structured-custom"))), 10_000, 0)
    assert custom["heads_jaccard"].mean() == pytest.approx(pooled["observed"])
    assert f"{pooled['observed']:.2f} (chance {pooled['chance']:.2f}, {pooled['excess']:+.2f}, p " in single
    assert "## minilm stsb: structured-paper vs structured-clean" in text and "| good retrained |" in text
    assert "nan" not in text  # a single seed's Jaccard is shown without a spread


def test_protocol_differences_need_every_other_setting_equal():
    rng = np.random.default_rng(4)
    paper, custom = (_result(rng, "rte", variant, 1) for variant in ("structured-paper", "structured-custom"))
    assert protocol_differences(paper, custom) == ("accumulate",)
    assert protocol_differences(paper, _result(rng, "rte", "structured-paper", 2)) == ()  # another seed only
    custom.settings["recipe"]["lr"] = 1e-4  # another fine-tune: not a protocol comparison
    assert protocol_differences(paper, custom) is None
    custom = _result(rng, "rte", "structured-custom", 1)
    custom.settings["structured"]["search"]["threshold"] = 0.8
    assert protocol_differences(paper, custom) is None
    # a setting that changes like no protocol key does (here: the key's values disagree with the settings)
    custom = _result(rng, "rte", "structured-custom", 1)
    custom.protocol["keys"]["accumulate"] = "something_else"
    assert protocol_differences(paper, custom) is None


def test_text_outputs_are_deterministic(sweep, written, tmp_path):
    from lottery.report.agreement import protocol_comparison
    from lottery.report.sections import write_differences, write_stability

    groups = group_runs(discover(sweep, exclude=sweep / "report").runs)
    summary = summary_table(groups)
    structured = {k: g for k, g in groups.items() if "stability" in g[0].results.figures}
    for out in (tmp_path / "a", tmp_path / "b"):
        write_stability(structured, out, 0)
        write_differences(groups, out, 0)
        (out / "protocol.md").write_text(protocol_comparison(groups, summary)[1])
    for name in ("stability.csv", "stability.md", "differences.csv", "differences.md", "protocol.md"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes(), name
    assert (tmp_path / "a" / "stability.csv").read_bytes() == (sweep / "report" / "stability.csv").read_bytes()


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


def test_heatmaps_hatch_cells_not_above_chance(sweep, written):
    from lottery.report import figures

    def hatched(figure):
        return sum(1 for ax in figure.axes for patch in ax.patches if patch.get_hatch())

    matrix = np.array([[1.0, 0.6, 0.2], [0.6, 1.0, 0.3], [0.2, 0.3, 1.0]])
    p = np.array([[np.nan, 0.001, 0.5], [0.001, np.nan, 0.05], [0.5, 0.05, np.nan]])
    figure = figures.overlap_heatmap("m", "v", ["a", "b", "c"], matrix, np.full((3, 3), 0.3), p)
    assert hatched(figure) == 4  # (a, c), (b, c) and their mirrors; the diagonal has no test
    assert any("not above chance" in text.get_text() for legend in figure.legends for text in legend.get_texts())
    counts = figures.overlap_counts_heatmap("m", "v", "heads", ["a", "b", "c"], matrix * 40, np.zeros((3, 3)),
                                            np.full((3, 3), 10.0), p)
    assert hatched(counts) == 4
    # 3 seeds of ~70% survival: no head survives more often than chance at 0.05, so every cell is hatched
    group = group_runs(discover(sweep, exclude=sweep / "report").runs)[("minilm", "structured-paper", "rte")]
    heatmap = figures.structured_heatmap("minilm", "structured-paper", "rte", group)
    assert hatched(heatmap) == LAYERS * HEADS + LAYERS
