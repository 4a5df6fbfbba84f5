#!/bin/bash
# GRPO across several GPU nodes on Slurm: one torchrun per node, one training process per GPU.
#
#   sbatch scripts/slurm_train.sh                   # from the project folder: the full run, every GPU of the job
#   sbatch --nodes=4 scripts/slurm_train.sh --max_steps=500
#
# Arguments go to train_grpo.py as --name=value knobs. Prepare the nodes first (README, "Offline
# boxes and clusters"): the model and datasets in a shared HF_HOME, and this folder's venv.
#SBATCH --job-name=grpo
#SBATCH --nodes=2
#SBATCH --ntasks-per-node=1
#SBATCH --gpus-per-node=8
#SBATCH --cpus-per-task=32
#SBATCH --time=24:00:00
#SBATCH --output=%x-%j.log
set -euo pipefail

export HF_HOME="${HF_HOME:-$PWD/.hf}"  # shared by the nodes, filled before the job
export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1  # compute nodes often have no internet: never try it
export NCCL_DEBUG="${NCCL_DEBUG:-WARN}"
# export NCCL_SOCKET_IFNAME=ib0  # the network interface the nodes reach each other on
# export NCCL_IB_DISABLE=1       # no InfiniBand between the nodes

head_node=$(scontrol show hostnames "$SLURM_JOB_NODELIST" | sed -n 1p)  # sed reads on: no SIGPIPE under pipefail
gpus_per_node="${SLURM_GPUS_ON_NODE:-8}"

srun --kill-on-bad-exit=1 torchrun \
  --nnodes="$SLURM_JOB_NUM_NODES" \
  --nproc_per_node="$gpus_per_node" \
  --rdzv_id="$SLURM_JOB_ID" \
  --rdzv_backend=c10d \
  --rdzv_endpoint="$head_node:29500" \
  train_grpo.py "$@"
