"""Hydra launchers that pack many experiments onto each GPU: `hydra/launcher=pack` (this machine)
and `hydra/launcher=slurm_pack` (one SLURM job per group of experiments).

Each experiment runs in its own process (its own CUDA context, thread settings and fate), pinned
to one GPU with `CUDA_VISIBLE_DEVICES`, K of them at once per GPU, under CUDA MPS when it starts.
Hydra finds this package as a plugin because it lies in the `hydra_plugins` namespace package.
"""
