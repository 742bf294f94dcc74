#!/usr/bin/env bash
# Every evidence comparison of docs/evidence.md, one after another, from scratch (each sweep folder is its own),
# then each one's tables exported to docs/evidence/<name>/ (runs.parquet, history.parquet, verdict.parquet). Wall
# times go to docs/evidence/wall_times.tsv. `make evidence` runs it; one line of it reproduces one table:
#   trials/evidence/run.sh evidence-demon-quadratic-b32      (a name runs only the runs of that name)
set -euo pipefail
cd "$(dirname "$0")/../.."
AUTOACCEL=${AUTOACCEL:-.venv/bin/autoaccel}
OUT=docs/evidence
mkdir -p "$OUT"
ONLY=("$@")

run() {  # run NAME SPEC [--set ...]: one comparison, timed, then its tables exported
  local name=$1 spec=$2
  shift 2
  if ((${#ONLY[@]})) && [[ ! " ${ONLY[*]} " == *" $name "* ]]; then return; fi
  rm -rf "sweeps/$name"
  local start=$SECONDS
  "$AUTOACCEL" compare "$spec" --set name="$name" "$@" --out "reports/$name"
  printf '%s\t%s\t%s\t%s\n' "$(date -u +%FT%TZ)" "$name" "$((SECONDS - start))" "$spec $*" >>"$OUT/wall_times.tsv"
  rm -rf "${OUT:?}/$name"
  "$AUTOACCEL" export --experiment "$name" --out "$OUT/$name"
  cp "reports/$name/verdict.parquet" "$OUT/$name/"
}

A=trials/evidence/anderson.yaml
run evidence-anderson-b40 $A
run evidence-anderson-b4 $A --set budget.batch_size=4
run evidence-anderson-b320 $A --set budget.batch_size=320
# the noisy quadratic: batch noise ∝ 1/batch, none at full batch (512), where AA's gain on a quadratic is known
Q="workload={name: quadratic}"
run evidence-anderson-quadratic-b8 $A --set "$Q" --set budget.epochs=30 --set budget.batch_size=8
run evidence-anderson-quadratic-b64 $A --set "$Q" --set budget.epochs=30 --set budget.batch_size=64
run evidence-anderson-quadratic-b512 $A --set "$Q" --set budget.epochs=30 --set budget.batch_size=512
run evidence-anderson-burgers1d trials/evidence/anderson_burgers.yaml
run evidence-anderson-burgers100d trials/evidence/anderson_burgers.yaml --set workload.dim=100

S=trials/evidence/adascale.yaml
run evidence-adascale-quadratic $S

L=trials/evidence/lookahead.yaml
run evidence-lookahead-admissions $L
run evidence-lookahead-defaults-admissions trials/evidence/lookahead_defaults.yaml \
  --set "workload={name: admissions_mlp}" --set budget.batch_size=40 --set budget.epochs=40
run evidence-lookahead-defaults-digits trials/evidence/lookahead_defaults.yaml

D=trials/evidence/demon.yaml
run evidence-demon-admissions-b40 $D
run evidence-demon-admissions-b8 $D --set budget.batch_size=8
run evidence-demon-quadratic-b32 $D --set "workload={name: quadratic}" --set budget.batch_size=32
run evidence-demon-digits-b128 $D --set "workload={name: image_classification}" --set budget.batch_size=128 \
  --set budget.epochs=10 --set scheduler.grace_period=3

run evidence-adahessian-digits trials/evidence/adahessian.yaml
