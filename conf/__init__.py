"""bert-lottery's Hydra configs. This file makes them a package: an installed bert-lottery carries
them as `lottery.conf` (pyproject.toml maps it to this folder) and Hydra finds them there as
`pkg://lottery.conf`; in a checkout, the folder itself is used (pipeline/config.py)."""
