"""The paper's tables and figures from a sweep's results.json files: `python -m lottery.report DIR`.

Every results.json under DIR (any mix of models, tasks, experiments, settings and seeds) is read
and grouped into variants (`discover`), and DIR/report/ (or --out) gets:

- ``table.md``, ``table.csv`` (long format, with ci_low/ci_high), ``table.tex``: mean ± std (Bessel)
  over seeds of each task's headline metric and both size definitions, with the 95% t-interval of
  each score's mean (`tables`);
- ``differences.{csv,md}``: good against random and bad tickets, pruned and retrained, paired by
  seed (exact sign-flip test, two-sided and one-sided), and in words which differences the seeds
  support (`tables`, `lottery.seed_stats`);
- ``figures/``: per group the sections its mode asks for: bar charts, survival heatmaps, ...
  (`sections`, `figures`), as PNG and PDF; agreement figures hatch what is not above chance;
- ``stability.{csv,md}``, ``super/`` (masks, ``summary.{csv,md}``), ``overlap/`` (counts, Jaccard,
  ``*_vs_chance.csv``, ``overlap_*.md``): agreement across seeds, super-survivor masks for
  `experiment=super`, the paper's task x task overlap, each figure beside the level that random
  masks of the same sizes give (observed, chance, excess, permutation p; `lottery.stability`);
- ``protocol_comparison.{csv,md}``: runs on the same fine-tuned models that differ only in protocol
  keys, per key flipped from a preset: mask Jaccard beside chance and the seed-to-seed noise floor;
- ``patterns/shares_*.{csv,md}``: attention-pattern types of surviving against pruned heads, against
  random masks of the same size (`patterns_section`, `lottery.patterns_stats`);
- ``skipped.md``: files that could not be read, and why (the rest of the report is still written).

Modules: discover (finding and grouping), masks (a run's masks as arrays), tables, figures,
sections (the registry of figures and analyses), agreement, super_tickets, patterns_section,
build (write_report), wandb_push, __main__ (the command line).
"""

from lottery.report.build import REPORT_DIRNAME, ReportOutcome, write_report
from lottery.report.discover import NoResultsError

__all__ = ["REPORT_DIRNAME", "NoResultsError", "ReportOutcome", "write_report"]
