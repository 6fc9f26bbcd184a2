#!/usr/bin/env bash
# Launch verl (with the scsdpo plugin) for one training job, then export the final policy as an HF directory.
#   ray_slurm.sh ALGORITHM RUN_DIR FINAL_DIR SUMMARY_JSON [hydra overrides...]
# Inside a SLURM allocation with several nodes: Ray head on the first node, one worker per other node, then
# verl's entry point on the head. Outside SLURM (or on one node): verl starts its own local Ray.
set -euo pipefail
PYTHON=${PYTHON:-python}
algorithm=$1 run_dir=$2 final_dir=$3 summary=$4
shift 4
mkdir -p "$run_dir"
# make a failing plugin import an error instead of a silent DEBUG line in every Ray process
export VERL_USE_EXTERNAL_PLUGINS=scsdpo
# verl's TensorBoard logger (trainer.logger with tensorboard) writes its event files into the run directory
export TENSORBOARD_DIR="$run_dir/tensorboard"
scorer=$("$PYTHON" -c "import scsdpo_verl.tasks as t; print(t.__file__)")

if [ -n "${SLURM_JOB_NODELIST:-}" ] && [ "${SLURM_JOB_NUM_NODES:-1}" -gt 1 ]; then
  # one array element per node (nodes=$(...) would give a one-element array holding every name)
  mapfile -t nodes < <(scontrol show hostnames "$SLURM_JOB_NODELIST")
  head_node=${nodes[0]}
  head_ip=$(srun --nodes=1 --ntasks=1 -w "$head_node" hostname --ip-address | awk '{print $1}')
  port=${RAY_PORT:-6379}
  gpus=${SLURM_GPUS_ON_NODE:-0}
  srun --nodes=1 --ntasks=1 -w "$head_node" \
    ray start --head --node-ip-address="$head_ip" --port="$port" --num-gpus="$gpus" --block &
  sleep 15
  for node in "${nodes[@]:1}"; do
    srun --nodes=1 --ntasks=1 -w "$node" ray start --address="$head_ip:$port" --num-gpus="$gpus" --block &
  done
  sleep 15
  export RAY_ADDRESS="$head_ip:$port"
fi

# verl's file logger truncates its file when it opens it: one file per launch, merged into metrics.jsonl below
export VERL_FILE_LOGGER_PATH="$run_dir/verl_metrics.$(date +%s%N).jsonl"
# resumes from the latest checkpoint in trainer.default_local_dir (verl's resume_mode: auto), teacher included
"$PYTHON" -m scsdpo_verl.verl_plugin.main --config-name "$algorithm" \
  "reward.custom_reward_function.path=$scorer" reward.custom_reward_function.name=compute_score \
  "trainer.logger=[console,file]" "$@"

# the last checkpoint's actor as an HF directory (verl's model merger), metrics.jsonl, config.yaml, summary.json
"$PYTHON" -m scsdpo_verl.pipeline finish-verl-run "$run_dir" "$final_dir" "$summary"
