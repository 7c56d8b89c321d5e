"""bert-lottery's entry point (the orchestration lives in the top-level `pipeline` package).

One machine, CPU or one GPU:
    python -m lottery task=rte model=minilm seed=1337
    python -m lottery experiment=structured task=stsb model=minilm trainer=gpu
Multi-GPU DDP on one node (all GPUs):
    python -m lottery experiment=structured task=mnli model=bert_base trainer=ddp
Installed (pip install .), `bert-lottery` is the same command, from any folder:
    bert-lottery task=rte model=minilm data.glue_dir=/path/to/glue   # outputs in ./outputs
A sweep (Hydra multirun), locally or on SLURM; `pack`: K experiments at once on each GPU:
    python -m lottery -m task=rte,mrpc seed=1337,42
    python -m lottery -m +sweep=paper trainer=gpu hydra/launcher=pack hydra.launcher.jobs_per_device=6
    python -m lottery -m +sweep=paper hydra/launcher=slurm
    python -m lottery -m +sweep=paper trainer=gpu hydra/launcher=slurm hydra.launcher.jobs_per_device=6 \
        hydra.launcher.gpus_per_node=1
"""

from pipeline.cli import main

if __name__ == "__main__":
    main()
