#!/usr/bin/env bash
# Regenerate numrnn's benchmark dashboard: run the asv suite, then `asv publish`.
#
#   bash asv_benchmarks/publish.sh                     # the whole suite, saved as HEAD's results
#   bash asv_benchmarks/publish.sh --fast              # one sample per benchmark (rounds=1, repeat=1)
#   bash asv_benchmarks/publish.sh --fast --bench 'LayerSuite.time_train_step|StepSuite|accuracy'
#   bash asv_benchmarks/publish.sh --commits HEAD~3..HEAD   # also build and run recent commits
#   bash asv_benchmarks/publish.sh --publish-only      # rebuild the site from the saved results
#
# What it does, from asv_benchmarks/:
# 1. `asv machine --yes` once per machine (records this machine's description);
# 2. `asv run --python=same --set-commit-hash <HEAD>`: benchmarks the numrnn installed in the
#    running Python (the working tree, for an editable install) and saves the results under the
#    commit at HEAD in asv_benchmarks/results/ (git-ignored).  Uncommitted changes are measured
#    too but recorded as HEAD: run it on a clean tree for a dashboard you publish;
# 3. with --commits RANGE: `asv run RANGE` builds each commit of RANGE (git rev-list syntax) as
#    a wheel in its own virtualenv under asv_benchmarks/env/ and benchmarks it; slow (a build,
#    an install and a cold Numba cache per commit: many minutes each on two cores);
# 4. `asv publish`: writes the static site to asv_benchmarks/html/ (git-ignored), then
#    vendor/localize.py points its pages at the copies of jQuery, flot and bootstrap in vendor/
#    instead of CDNs, so it works offline.  Serve it with `asv preview` in asv_benchmarks/ (or
#    `python -m http.server -d asv_benchmarks/html`) and open the address it prints: the pages
#    read their data with XHR, which browsers refuse for file:// addresses.
#
# Results accumulate: each run adds HEAD's points to the graphs, so the dashboard's history
# grows with every commit it is run on.  Extra arguments after `--` go to every `asv run`.
# Needs the bench extra: pip install -e ".[bench]".
set -euo pipefail
cd "$(dirname "$0")"
self="$(pwd)/$(basename "$0")"

PYTHON=${PYTHON:-python}
fast=()
bench=()
commits=""
run=1
extra=()
while [ $# -gt 0 ]; do
    case "$1" in
        --fast) fast=(-a rounds=1 -a repeat=1 -a warmup_time=0); shift ;;
        --bench) bench+=(--bench "$2"); shift 2 ;;
        --commits) commits="$2"; shift 2 ;;
        --publish-only) run=0; shift ;;
        --) shift; extra=("$@"); break ;;
        -h|--help) sed -n '2,/^set -euo/{/^set -euo/!p}' "$self"; exit 0 ;;
        *) echo "publish.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
    esac
done

start=$(date +%s)
if [ ! -f "${ASV_MACHINE_FILE:-$HOME/.asv-machine.json}" ]; then
    "$PYTHON" -m asv machine --yes
fi
if [ "$run" = 1 ]; then
    head=$(git rev-parse HEAD)
    # asv exits 2 when a benchmark failed; the others' results are still saved and published.
    "$PYTHON" -m asv run --python=same --set-commit-hash "$head" --show-stderr \
        ${fast[@]+"${fast[@]}"} ${bench[@]+"${bench[@]}"} ${extra[@]+"${extra[@]}"} || status=$?
    if [ "${status:-0}" -ne 0 ]; then
        echo "publish.sh: asv run exited with ${status}: some benchmarks failed (see above)" >&2
    fi
    if [ -n "$commits" ]; then
        "$PYTHON" -m asv run "$commits" --show-stderr \
            ${fast[@]+"${fast[@]}"} ${bench[@]+"${bench[@]}"} ${extra[@]+"${extra[@]}"} || true
    fi
fi
"$PYTHON" -m asv publish
# asv's pages load jQuery, flot and bootstrap from CDNs: serve the copies in vendor/ instead.
"$PYTHON" vendor/localize.py html
echo "publish.sh: dashboard written to $(pwd)/html/index.html in $(( $(date +%s) - start )) s"
exit "${status:-0}"
