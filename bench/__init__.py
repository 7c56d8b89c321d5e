"""Speed benchmarks of bert-lottery: `python -m bench` (or `make bench`).

Everything is measured on the CPU with 2 threads, on MiniLM-L6 (`--quick`: the random tiny BERT)
at batch 32 x 128 random tokens. Ratios are taken between workloads run INTERLEAVED in one
process (one step of each per round, the order rotated every round), as the median of the
per-round ratios, so that load from other processes affects both sides alike.

Results go to `bench/results/bench.json` and `bench/results/bench.md` (or `--out DIR`).
See `bench.measurements` for what is measured and `bench.flops` for the FLOPs formula.
"""
