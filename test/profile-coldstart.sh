#!/usr/bin/env bash
# Profiles BenchmarkColdStart5000 while its daemons allocate: perf over the
# whole machine (every process, kernel included) and a pprof CPU profile of
# the lab's kube-apiserver. Run as root, one lab at a time; needs perf
# (apt install linux-perf). Writes to ${OUT:-/tmp/l2lb-profile}.
set -euo pipefail
cd "$(dirname "$0")/.."
out=${OUT:-/tmp/l2lb-profile}
mkdir -p "$out"
command -v perf >/dev/null || { echo "profile-coldstart.sh: needs perf (apt install linux-perf)" >&2; exit 1; }

L2LB_LAB_PROFILING=1 go test -run '^$' -bench BenchmarkColdStart5000 -benchtime=1x -timeout 40m ./test/e2e >"$out/bench.txt" 2>&1 &
bench=$!
# The daemons start after the Services and the reference writes: wait for
# them, at most 15 minutes.
for _ in $(seq 4500); do pgrep -x l2lbd >/dev/null && break; sleep 0.2; done
pgrep -x l2lbd >/dev/null || { echo "profile-coldstart.sh: no l2lbd started" >&2; kill "$bench"; exit 1; }
api=$(pgrep -x kube-apiserver)
lab=$(dirname "$(tr '\0' '\n' </proc/"$api"/cmdline | sed -n '/^--cert-dir$/{n;p}')")
kubectl=$(test/kubebin/build.sh)/kubectl
perf record -a -g -F 299 -o "$out/perf.data" -- sleep 18 >/dev/null 2>&1 &
"$kubectl" --kubeconfig "$lab/admin.kubeconfig" get --raw '/debug/pprof/profile?seconds=14' >"$out/apiserver.pprof"
wait

grep '^BenchmarkColdStart' "$out/bench.txt"
echo "== CPU by process (perf)"
perf report -i "$out/perf.data" --no-children --sort comm --stdio -g none 2>/dev/null | grep -v '^#' | grep -v '^$' | head -6
echo "== l2lbd, inclusive, relative to its own CPU (perf)"
perf report -i "$out/perf.data" --children --comm l2lbd --percentage relative --sort sym --stdio -g none 2>/dev/null |
	grep -E 'netio\.\(\*loop\)\.(announce|reconcile)$|gcBgMarkWorker$|runtime\.sysmon$|placer\)\.run$|serveFrames$' | head
echo "== kube-apiserver, inclusive (pprof)"
go tool pprof -top -cum "$out/apiserver.pprof" 2>/dev/null |
	grep -E 'finishRequest.func1$|validating\.\(\*Plugin\)\.Validate$|cel\.newActivation$|gcBgMarkWorker$|writeFrameAsync$|FieldManager\)\.UpdateNoErrors$' | head
