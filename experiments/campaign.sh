# Shared driver of the experiments' run_arms.sh scripts (sourced, not run). A campaign script sets
#   CAMPAIGN (results/<CAMPAIGN>/<arm>), COMMON (overrides of every arm), ARMS (name -> overrides), ORDER
# and calls `run_campaign "$@"`: arms run one after another, each into its fixed folder; a killed run resumes
# where it stopped when the script is started again (finished arms, with a results.json, are skipped).
# A side job beside a running arm (analysis, a judge) started with `setsid` or `nohup setsid` lands in its own
# scheduler autogroup, and Linux shares the CPU equally between autogroups whatever `nice` says: lower its whole
# session with `echo 19 > /proc/<its pid>/autogroup` or it takes half of a 2-core machine from the arm.
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
PY=${PY:-.venv/bin/python}
export HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
export ESAMP_DATA_DIR=${ESAMP_DATA_DIR:-$(cd .. && pwd)/shared/data}

run_campaign() {
  local order=("${ORDER[@]}") arm dir
  [ $# -gt 0 ] && order=("$@")
  mkdir -p "results/$CAMPAIGN"
  for arm in "${order[@]}"; do
    [ -n "${ARMS[$arm]+x}" ] || { echo "== $arm: unknown arm (known: ${!ARMS[*]})"; exit 2; }
    dir=results/$CAMPAIGN/$arm
    if [ -f "$dir/results.json" ]; then echo "== $arm: done, skipped"; continue; fi
    echo "== $arm: start $(date -Is) commit $(git rev-parse --short HEAD)"
    # shellcheck disable=SC2086
    $PY run.py "${COMMON[@]}" ${ARMS[$arm]} hydra.run.dir="$dir" || { echo "== $arm: FAILED"; exit 1; }
    echo "== $arm: done $(date -Is)"
  done
}
