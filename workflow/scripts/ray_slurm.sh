#!/usr/bin/env bash
# Launch verl (with the scsdpo plugin) for one training job, then export the final policy as an HF directory.
#   ray_slurm.sh ALGORITHM RUN_DIR FINAL_DIR SUMMARY_JSON [hydra overrides...]
# Inside a SLURM allocation with several nodes: Ray head on the first node, one worker per other node, then
# verl's entry point on the head. Outside SLURM (or on one node): verl starts its own local Ray.
set -euo pipefail
algorithm=$1 run_dir=$2 final_dir=$3 summary=$4
shift 4
mkdir -p "$run_dir"
# make a failing plugin import an error instead of a silent DEBUG line in every Ray process
export VERL_USE_EXTERNAL_PLUGINS=scsdpo
scorer=$(python -c "import scsdpo_verl.tasks as t; print(t.__file__)")

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

# resumes from the latest checkpoint in trainer.default_local_dir (verl's resume_mode: auto)
python -m scsdpo_verl.verl_plugin.main --config-name "$algorithm" \
  "reward.custom_reward_function.path=$scorer" reward.custom_reward_function.name=compute_score \
  "$@"

latest=$(ls -d "$run_dir"/global_step_* | sort -t_ -k3 -n | tail -n 1)
python -m verl.model_merger merge --backend fsdp --local_dir "$latest/actor" --target_dir "$final_dir.tmp"
rm -rf "$final_dir" && mv "$final_dir.tmp" "$final_dir"
python - "$run_dir" "$latest" "$summary" <<'PY'
import json, sys, time
run_dir, latest, summary = sys.argv[1:4]
with open(summary, "w") as f:
    json.dump({"run_dir": run_dir, "backend": "verl", "final_checkpoint": latest, "finished_at": time.time()}, f)
PY
