# lib.sh: helpers shared by the benchmarks of scripts/bench.sh (sourced, not run).
#
# A benchmark calls bench_begin NAME, records what it measured with bench_figure (a figure, optionally with a
# target such as "<3000" or ">=2000"), bench_baseline (a figure measured in the same run to compare against),
# bench_samples (the raw samples behind a figure) and bench_note, then bench_finish, which prints the table on
# stdout and writes bench-results/NAME-TIMESTAMP.json and bench-results/NAME-latest.json. JSON and statistics
# are done by python3 (no jq). Progress goes to stderr so that stdout holds only the tables.

BENCH_RESULTS=${BENCH_RESULTS:-$BENCH_ROOT/bench-results}

BENCH_T0=$(date +%s%3N)
bench_log() { printf 'bench: [%5.1fs] %s\n' "$(( $(date +%s%3N) - BENCH_T0 ))e-3" "$*" >&2; }
bench_die() { printf 'bench: error: %s\n' "$*" >&2; exit 1; }

# bench_now_ms: wall-clock milliseconds since the epoch.
bench_now_ms() { date +%s%3N; }

# bench_cpu_ticks: the machine's CPU time so far as "busy total" (jiffies of all CPUs, from /proc/stat);
# bench_cpu_busy BEFORE AFTER: the share of the CPUs' time that was busy between two such readings, in %.
bench_cpu_ticks() { awk '/^cpu / {t = 0; for (i = 2; i <= NF; i++) t += $i; print t - $5 - $6, t}' /proc/stat; }
bench_cpu_busy() { python3 -c "import sys; b0, t0, b1, t1 = map(int, sys.argv[1:]); print(round(100 * (b1 - b0) / max(1, t1 - t0), 1))" $1 $2; }

# bench_on_exit CMD...: runs CMD at exit (the EXIT trap of bench.sh runs them, last registered first).
BENCH_EXIT_HOOKS=()
bench_on_exit() { BENCH_EXIT_HOOKS+=("$*"); }
bench_run_exit_hooks() {
	local i
	for ((i = ${#BENCH_EXIT_HOOKS[@]} - 1; i >= 0; i--)); do
		eval "${BENCH_EXIT_HOOKS[$i]}" || bench_log "cleanup step failed: ${BENCH_EXIT_HOOKS[$i]}"
	done
	BENCH_EXIT_HOOKS=()
}

# bench_wait SECONDS WHAT CMD...: runs CMD every 0.2 s until it succeeds; fails naming WHAT after SECONDS.
# CMD's stdout of the successful try is printed.
bench_wait() {
	local secs=$1 what=$2 deadline out
	shift 2
	deadline=$(($(bench_now_ms) + secs * 1000))
	while :; do
		if out=$("$@" 2>/dev/null); then
			[ -z "$out" ] || printf '%s\n' "$out"
			return 0
		fi
		[ "$(bench_now_ms)" -lt "$deadline" ] || { bench_log "timed out after ${secs}s waiting for $what"; return 1; }
		sleep 0.2
	done
}

# bench_stat min|median|max|p90|mean VALUE...: one statistic of the values (nearest-rank percentiles).
bench_stat() {
	python3 - "$@" <<'PY'
import math, statistics, sys
kind, vals = sys.argv[1], sorted(float(v) for v in sys.argv[2:])
if not vals:
    sys.exit("bench_stat: no values")
rank = lambda p: vals[max(0, math.ceil(p / 100 * len(vals)) - 1)]
out = {"min": vals[0], "max": vals[-1], "median": statistics.median(vals), "p90": rank(90),
       "mean": statistics.fmean(vals)}[kind]
print(int(out) if out == int(out) else round(out, 3))
PY
}

# bench_begin NAME: starts collecting the figures of benchmark NAME.
bench_begin() {
	BENCH_NAME=$1
	BENCH_REC=$BENCH_TMP/$1.records
	: >"$BENCH_REC"
	BENCH_STARTED=$(date -u +%Y-%m-%dT%H:%M:%SZ)
}

# bench_figure KEY LABEL VALUE UNIT [TARGET]: a measured figure; TARGET is OP NUMBER (<, <=, >, >=), e.g. "<3000".
bench_figure() { printf 'figure\t%s\t%s\t%s\t%s\t%s\n' "$1" "$2" "$3" "$4" "${5:-}" >>"$BENCH_REC"; }

# bench_baseline KEY LABEL VALUE UNIT: a figure measured in the same run to compare the others with.
bench_baseline() { printf 'baseline\t%s\t%s\t%s\t%s\t\n' "$1" "$2" "$3" "$4" >>"$BENCH_REC"; }

# bench_samples KEY UNIT VALUE...: the raw samples behind a figure.
bench_samples() {
	local key=$1 unit=$2
	shift 2
	printf 'samples\t%s\t%s\t%s\t%s\t\n' "$key" "" "$*" "$unit" >>"$BENCH_REC"
}

# bench_note TEXT: a line of context (how something was measured, what went wrong).
bench_note() { printf 'note\t\t\t%s\t\t\n' "$*" >>"$BENCH_REC"; }

# bench_machine: the machine as JSON (nproc, memory, kernel, criu version, go version).
bench_machine_json() {
	local criu_v go_v
	criu_v=$(criu --version 2>/dev/null | sed -n 's/^Version: *//p' | head -n1)
	go_v=$(go version 2>/dev/null | awk '{print $3}')
	python3 - "$(nproc)" "$(($(awk '/^MemTotal:/ {print $2}' /proc/meminfo) * 1024))" "$(uname -r)" "${criu_v:-missing}" \
		"${go_v:-missing}" "$(grep -m1 '^model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')" <<'PY'
import json, sys
n, mem, kernel, criu, go, cpu = sys.argv[1:]
print(json.dumps({"nproc": int(n), "memory_bytes": int(mem), "kernel": kernel, "criu_version": criu,
                  "go_version": go, "cpu": cpu.strip()}))
PY
}

# bench_finish: prints the table of the figures and writes the JSON files.
bench_finish() {
	mkdir -p "$BENCH_RESULTS"
	local stamp out
	stamp=$(date -u +%Y%m%dT%H%M%SZ)
	out=$BENCH_RESULTS/$BENCH_NAME-$stamp.json
	BENCH_MISSED=$(python3 - "$BENCH_REC" "$BENCH_NAME" "$BENCH_STARTED" "$(bench_machine_json)" "$out" \
		"$(cd "$BENCH_ROOT" && git rev-parse --short HEAD 2>/dev/null || echo unknown)" <<'PY'
import json, operator, sys
rec, name, started, machine, out, commit = sys.argv[1:]
ops = {"<=": operator.le, ">=": operator.ge, "<": operator.lt, ">": operator.gt}
def num(v):
    try:
        f = float(v)
    except ValueError:
        return None
    return int(f) if f == int(f) else f
figures, baseline, samples, notes, targets = [], [], {}, [], []
for line in open(rec):
    kind, key, label, value, unit, target = line.rstrip("\n").split("\t")
    if kind == "note":
        notes.append(value)
    elif kind == "samples":
        samples[key] = {"unit": unit, "values": [num(v) for v in value.split()]}
    else:
        f = {"key": key, "label": label, "value": num(value) if num(value) is not None else value, "unit": unit}
        if kind == "baseline":
            baseline.append(f)
            continue
        if target:
            op = next(o for o in ("<=", ">=", "<", ">") if target.startswith(o))
            goal = float(target[len(op):])
            met = isinstance(f["value"], (int, float)) and ops[op](f["value"], goal)
            f["target"] = {"op": op, "value": num(target[len(op):]), "met": met}
            targets.append({"key": key, "label": label, "target": f"{op} {target[len(op):]} {unit}",
                            "value": f["value"], "met": met})
        figures.append(f)
doc = {"benchmark": name, "date": started, "commit": commit, "machine": json.loads(machine),
       "figures": figures, "targets": targets, "all_targets_met": all(t["met"] for t in targets),
       "baseline": baseline, "samples": samples, "notes": notes}
with open(out, "w") as fh:
    json.dump(doc, fh, indent=2)
    fh.write("\n")

def fmt(v):
    if isinstance(v, float):
        return f"{v:,.1f}" if abs(v) < 100 else f"{v:,.0f}"
    if isinstance(v, int):
        return f"{v:,}"
    return str(v)
rows = [("FIGURE", "VALUE", "UNIT", "TARGET", "MET")]
for f in figures:
    t = f.get("target")
    rows.append((f["label"], fmt(f["value"]), f["unit"], f"{t['op']} {fmt(t['value'])}" if t else "",
                 ("yes" if t["met"] else "NO") if t else ""))
for f in baseline:
    rows.append(("baseline: " + f["label"], fmt(f["value"]), f["unit"], "", ""))
w = [max(len(r[i]) for r in rows) for i in range(5)]
m = json.loads(machine)
lines = [f"== {name}  ({started}, {m['nproc']} CPUs, {m['memory_bytes'] >> 20} MiB, kernel {m['kernel']}, criu {m['criu_version']})"]
for r in rows:
    lines.append("  ".join([r[0].ljust(w[0]), r[1].rjust(w[1]), r[2].ljust(w[2]), r[3].ljust(w[3]), r[4]]).rstrip())
for n in notes:
    lines.append("  note: " + n)
with open(out + ".table", "w") as fh:
    fh.write("\n".join(lines) + "\n")
print(" ".join(t["key"] for t in targets if not t["met"]))
PY
	) || bench_die "could not write $out"
	cat "$out.table" && rm -f "$out.table"
	cp "$out" "$BENCH_RESULTS/$BENCH_NAME-latest.json"
	bench_log "wrote $out (and $BENCH_NAME-latest.json)"
	[ -z "$BENCH_MISSED" ] || bench_log "$BENCH_NAME: targets missed: $BENCH_MISSED"
}

# bench_memload: builds cmd/memload (static) once into $BENCH_TMP and prints its path.
bench_memload() {
	local out=$BENCH_TMP/memload
	[ -x "$out" ] || (cd "$BENCH_ROOT" && CGO_ENABLED=0 go build -o "$out" ./cmd/memload) >&2 || bench_die "building memload failed"
	echo "$out"
}

# bench_hwm_kib PID: the process's peak resident set (VmHWM) in KiB.
bench_hwm_kib() { awk '/^VmHWM:/ {print $2; f = 1} END {exit !f}' "/proc/$1/status"; }

# bench_hwm_reset PID: restarts the process's VmHWM from its current RSS (writing 5 to clear_refs).
bench_hwm_reset() { echo 5 >"/proc/$1/clear_refs"; }

# bench_mib KIB: KiB as MiB with one decimal.
bench_mib() { python3 -c "print(round($1 / 1024, 1))"; }
