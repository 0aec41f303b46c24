#!/usr/bin/env bash
# GPU check of RefSR-Bench in one device call (issue 16). Two steps:
#
# 1. Here, on the development machine, once (needs ../shared and PyPI):
#        bash bench/commands/gpu_check.sh prepare
#    copies the fixtures and the CARN-M checkpoint into .gpu_carry/shared (../shared does not travel to the
#    device machine) and builds wheels of the pure-Python packages its image lacks (fvcore and its needs)
#    into .gpu_carry/whl. .gpu_carry/ is git-ignored; about 22 MB.
#
# 2. The device call (the `run` tool), ONE command, about 8 minutes on an H100:
#        run(command="bash bench/commands/gpu_check.sh device", carry=[".gpu_carry"], timeout_s=600)
#    It installs the wheels into /tmp/site, then runs
#        python3 -m bench gpu-check --device cuda --sizes paper --out $OUT
#    whose files come back under files_at/gpu-check-<gpu>-pt<torch>/ (cost.csv, checks.csv, run.json,
#    summary.md). Commit that folder as reports/results/cost/gpu-check-<gpu>-pt<torch>/ and paste summary.md
#    into the issue note. Extra arguments after `device` go to gpu-check (e.g. -m masa_rec ttsr_rec).
set -euo pipefail
cd "$(dirname "$0")/../.."  # the checkout: bench/commands/gpu_check.sh
CARRY=.gpu_carry

case "${1:-}" in
prepare)
    SHARED="${REFSR_SHARED:-../shared}"
    test -d "$SHARED/fixtures" || { echo "no $SHARED/fixtures: set REFSR_SHARED" >&2; exit 2; }
    rm -rf "$CARRY"
    mkdir -p "$CARRY/shared/weights" "$CARRY/whl"
    cp -r "$SHARED/fixtures" "$CARRY/shared/fixtures"
    cp "$SHARED/weights/carn_m.pth" "$CARRY/shared/weights/"
    cp "$SHARED/README.md" "$CARRY/shared/" 2>/dev/null || touch "$CARRY/shared/README.md"
    # the device copy has no git history: record which commit (and whether the tree was clean) was sent
    echo "$(git rev-parse HEAD)$(test -z "$(git status --porcelain)" || echo ' +uncommitted changes')" > "$CARRY/git_sha"
    # fvcore (sdist only on PyPI) and the needs the device image lacks, as pure-Python wheels
    python3 -m pip wheel --quiet --no-deps -w "$CARRY/whl" \
        fvcore==0.1.5.post20221221 iopath==0.1.10 yacs==0.1.8 termcolor==2.4.0
    du -sh "$CARRY"
    ;;
device)
    shift
    test -d "$CARRY/shared/fixtures" || { echo "no $CARRY: run 'bash bench/commands/gpu_check.sh prepare' first" >&2; exit 2; }
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site \
        "$CARRY"/whl/*.whl
    export PYTHONPATH="$PWD:/tmp/site${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
    nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader || true
    set -o pipefail
    python3 -m bench gpu-check --device cuda --sizes paper --shared "$CARRY/shared" --out "${OUT:-runs/gpu-check}" \
        "$@" 2>&1 | tee "${OUT:-/tmp}/gpu_check.log"
    ;;
*)
    echo "usage: bash bench/commands/gpu_check.sh prepare | device [gpu-check options]" >&2
    exit 2
    ;;
esac
