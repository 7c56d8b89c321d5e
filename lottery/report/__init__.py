"""The paper's tables and figures from a sweep's results.json files: `python -m lottery.report DIR`.

Every results.json under DIR (any mix of models, tasks, experiments, settings and seeds) is read
and grouped into variants (`discover`), and DIR/report/ (or --out) gets:

- ``table.md``, ``table.csv`` (long format), ``table.tex``: mean ± std (Bessel) over seeds of each
  task's headline metric and both size definitions (`tables`);
- ``figures/``: per group the sections its mode asks for: bar charts, survival heatmaps, ...
  (`sections`, `figures`), as PNG and PDF;
- ``stability.{csv,md}``, ``super/``, ``overlap/``: agreement across seeds, super-survivor masks
  for `experiment=super`, the paper's task x task overlap (`sections`, `agreement`, `super_tickets`);
- ``protocol_comparison.{csv,md}``: runs that differ only in the protocol, side by side;
- ``skipped.md``: files that could not be read, and why (the rest of the report is still written).

Modules: discover (finding and grouping), masks (a run's masks as arrays), tables, figures,
sections (the registry of figures and analyses), agreement, super_tickets, build (write_report),
wandb_push, __main__ (the command line).
"""

from lottery.report.build import REPORT_DIRNAME, ReportOutcome, write_report
from lottery.report.discover import NoResultsError

__all__ = ["REPORT_DIRNAME", "NoResultsError", "ReportOutcome", "write_report"]
