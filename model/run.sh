#!/usr/bin/env bash
# Model-check model/mpmc.pml with SPIN: every configuration (make model), or
# every mutant, each of which must be rejected (make model-mutants).
#
#   model/run.sh             the configurations; prints MODEL OK / MODEL FAILED
#   model/run.sh mutants     the mutants; prints which were caught
#   model/run.sh long        the 2-producer, 2-consumer crash runs (not in make model)
#   model/run.sh one NAME    one configuration or mutant by name
#
# Each run: spin -a (generate pan.c), gcc, ./pan. Safety runs are compiled
# with -DSAFETY (assertions, invalid end states = deadlocks, which in the
# configurations without idle timeouts are lost wake-ups); liveness runs
# (LIVE) search for acceptance cycles of the never claim of `ltl live`
# under weak fairness (-a -f). Bitstate runs (mode bitstate: -DBITSTATE,
# supertrace) are NOT exhaustive: a hash collision may hide a state; their
# lines are labelled so in the output. Exit status: 0 when every verdict is
# as expected.
set -u
here=$(cd "$(dirname "$0")" && pwd)
pml=$here/mpmc.pml
work=${MODEL_WORK:-$(mktemp -d /tmp/mpmc-model.XXXXXX)}
mkdir -p "$work"
MEMLIM=${MEMLIM:-6144}   # MiB per pan run (the 2p2c runs need about 4.5 GB)
JOBS=${JOBS:-2}

command -v spin >/dev/null || { echo "spin not found (make model installs it)"; exit 2; }

# name | spin -D flags | mode (safety|live|bitstate)
configs() {
cat <<'EOF'
wake-crash-2p2c-victim1|-DM=1 -DMAXCRASH=1 -DVICTIM=1|safety:O2
wake-crash-2p2c-victim0|-DM=1 -DMAXCRASH=1 -DVICTIM=0|safety:O2
wake-crash-2p2c-victim3|-DM=1 -DMAXCRASH=1 -DVICTIM=3|safety:O2
hold-shutdown-crash-2p1c|-DM=1 -DONECONS -DRESERVE -DTAKE -DABORT -DSHUTDOWN -DIDLETIMEOUT -DMAXCRASH=1|safety:O2
wake-crash-2p2c-victim2|-DM=1 -DMAXCRASH=1 -DVICTIM=2|safety:O2
shutdown-crash-1p2c|-DM=1 -DONEPROD -DSHUTDOWN -DIDLETIMEOUT -DMAXCRASH=1|safety:O2
shutdown-crash-2p1c|-DM=1 -DONECONS -DSHUTDOWN -DIDLETIMEOUT -DMAXCRASH=1|safety:O2
batch-crash-1p2c|-DM=2 -DONEPROD -DBATCH -DMAXCRASH=1|safety:O2
redeliver-crash-1p2c|-DM=1 -DONEPROD -DREDELIVER -DMAXCRASH=1 -DJOIN|safety
live-wake-crash-2p1c|-DM=1 -DONECONS -DMAXCRASH=1 -DLIVE|live
wake-crash-join-2p1c|-DM=1 -DONECONS -DMAXCRASH=1 -DJOIN|safety
wake-crash-1p2c|-DM=1 -DONEPROD -DMAXCRASH=1|safety
hold-redeliver-crash-1p2c|-DM=1 -DONEPROD -DRESERVE -DTAKE -DREDELIVER -DMAXCRASH=1 -DJOIN|safety
live-hold-crash-2p1c|-DM=1 -DONECONS -DRESERVE -DTAKE -DMAXCRASH=1 -DLIVE|live
hold-crash-2p1c|-DM=1 -DONECONS -DRESERVE -DTAKE -DABORT -DMAXCRASH=1|safety
holdwake-reserve-2p1c|-DM=1 -DONECONS -DRESERVEALL -DHOLDWAKE -DMAXCRASH=0|safety
wrap-shut-1p1c-3laps|-DM=6 -DONEPROD -DONECONS -DSHUTDOWN -DIDLETIMEOUT -DMAXCRASH=0|safety
wrap-1p1c-3laps|-DM=6 -DONEPROD -DONECONS -DMAXCRASH=0|safety
live-shutdown-crash-1p1c|-DM=2 -DONEPROD -DONECONS -DSHUTDOWN -DIDLETIMEOUT -DMAXCRASH=1 -DJOIN -DLIVE|live
EOF
}

# Too big for make model: the producers' side of HOLDWAKE (3 messages, 2
# consumers that Take) passed 7.6e7 states without finishing in 4 GB.
# model/run.sh long (MEMLIM=12000 or more).
long() {
cat <<'EOF'
holdwake-take-1p2c-3|-DM=3 -DONEPROD -DTAKEALL -DHOLDWAKE -DMAXCRASH=0|safety:O2
EOF
}

# name | flags | mode | what the mutant breaks
mutants() {
cat <<'EOF'
m1-E1-after-E2|-DM=1 -DONECONS -DMAXCRASH=0 -DMUT_E1_AFTER_E2|safety|record written after the claim CAS
m2-S1-after-retry|-DM=1 -DONECONS -DMAXCRASH=0 -DMUT_S1_AFTER_RETRY -DMUT_NO_CLAIMBEFORE|safety|announce after the re-check, claimBefore not consulted
m2b-no-claimbefore|-DM=1 -DONECONS -DMAXCRASH=0 -DMUT_NO_CLAIMBEFORE|safety|sleeper ignores a claim made before its announcement
m3-no-wake|-DM=1 -DONECONS -DMAXCRASH=0 -DMUT_NO_WAKE|safety|claimant does not wake on the asleep bit
m4-no-livecheck|-DM=1 -DONECONS -DMAXCRASH=0 -DMUT_NO_LIVECHECK|safety|recovery without the liveness check
m5-shutdown-after|-DM=1 -DONECONS -DSHUTDOWN -DIDLETIMEOUT -DMAXCRASH=0 -DMUT_SHUT_AFTER|safety|consumer reads the shutdown flag after looking
m6-join-noclear|-DM=1 -DONECONS -DMAXCRASH=1 -DJOIN -DMUT_JOIN_NOCLEAR -DLIVE|live|join does not clear the records
m7-finish-nofence-commit|-DM=1 -DONECONS -DRESERVEALL -DHOLDWAKE -DMAXCRASH=0 -DMUT_FINISH_NOFENCE|safety|Commit's finish() load passes its stores (no barrier)
m7b-finish-nofence-release|-DM=3 -DONEPROD -DTAKEALL -DHOLDWAKE -DMAXCRASH=0 -DMUT_FINISH_NOFENCE|safety|Release's finish() load passes its stores (no barrier)
EOF
}

# run NAME FLAGS MODE: prints "NAME errors states depth seconds" to $work/NAME.res
run() {
	local name=$1 flags=$2 mode=$3 d=$work/$1
	mkdir -p "$d"
	(
		cd "$d" || exit 1
		# shellcheck disable=SC2086
		spin $flags -a "$pml" >spin.out 2>&1 || { echo "$name ERR 0 0 0 spin" >"$work/$name.res"; exit 0; }
		# mode:O2 compiles pan with -O2 (about 40 s of gcc, a faster
		# search), the others with -O0 (7 s of gcc, a search 2-3 times
		# slower): for the small runs the compile is most of the cost
		local opt=-O0
		case $mode in *:O2) opt=-O2 mode=${mode%:O2} ;; esac
		local cflags="$opt -DCOLLAPSE -DMEMLIM=$MEMLIM -DVECTORSZ=1024"
		local pflags="-m10000000 -w26"
		if [ "$mode" = safety ]; then
			cflags="$cflags -DSAFETY"
		elif [ "$mode" = bitstate ]; then
			cflags="$opt -DBITSTATE -DSAFETY -DMEMLIM=$MEMLIM -DVECTORSZ=1024"
			pflags="-m10000000 -w${BITW:-32} -k3"
		else
			cflags="$cflags -DNFAIR=4"
			pflags="$pflags -a -f"
		fi
		# shellcheck disable=SC2086
		gcc $cflags -o pan pan.c >cc.out 2>&1 || { echo "$name ERR 0 0 0 gcc" >"$work/$name.res"; exit 0; }
		# shellcheck disable=SC2086
		./pan $pflags >pan.out 2>&1
		local errors states depth secs note=""
		errors=$(sed -n 's/.*errors: \([0-9]*\).*/\1/p' pan.out | tail -1)
		states=$(awk '/states, stored/ {print $1; exit}' pan.out)
		depth=$(sed -n 's/.*depth reached \([0-9]*\).*/\1/p' pan.out | tail -1)
		secs=$(sed -n 's/.*elapsed time \([0-9.e+]*\).*/\1/p' pan.out | tail -1)
		grep -q "max search depth too small" pan.out && note="depth-limit"
		grep -q "out of memory\|ran out of memory" pan.out && note="memory"
		[ -n "$errors" ] || { errors=ERR; note="${note:-incomplete}"; }
		[ -n "$note" ] && [ "$errors" = 0 ] && errors=ERR
		echo "$name ${errors} ${states:-0} ${depth:-0} ${secs:-0} ${note:--} $(grep -m1 '^pan:1:' pan.out | cut -c8-60 | tr ' ' '_')" >"$work/$name.res"
	)
}

# run the lines of a table ($1), JOBS at a time (a new one as soon as one
# ends: the table lists the long runs first)
runall() {
	local name flags m rest
	while IFS='|' read -r name flags m rest; do
		while [ "$(jobs -rp | wc -l)" -ge "$JOBS" ]; do wait -n; done
		run "$name" "$flags" "$m" &
	done < <($1)
	wait
}

mode=${1:-configs}
t0=$(date +%s)
case $mode in
configs | long)
	runall "$mode"
	fail=0 total=0 maxd=0
	while IFS='|' read -r name flags m; do
		read -r _ errors states depth secs note _ <"$work/$name.res"
		label=${m%:O2}
		[ "$m" = bitstate ] && label="bitstate (NOT exhaustive)"
		printf '%-26s %-6s errors=%-4s states=%-10s depth=%-7s time=%ss %s\n' "$name" "$label" "$errors" "$states" "$depth" "$secs" "${note#-}"
		[ "$errors" = 0 ] || { fail=1; echo "  see $work/$name/pan.out"; }
		total=$((total + states))
		[ "$depth" -gt "$maxd" ] && maxd=$depth
	done < <($mode)
	t=$(($(date +%s) - t0))
	if [ $fail = 0 ]; then
		echo "MODEL OK: $total states, depth $maxd, ${t} s"
	else
		echo "MODEL FAILED (work dir $work)"
		exit 1
	fi
	;;
mutants)
	runall mutants
	fail=0
	while IFS='|' read -r name flags m what; do
		read -r _ errors states depth secs note why <"$work/$name.res"
		if [ "$errors" != 0 ] && [ "$errors" != ERR ]; then
			printf 'CAUGHT   %-20s (%s): %s, %s states, %ss\n' "$name" "$what" "${why:-error}" "$states" "$secs"
		else
			printf 'ACCEPTED %-20s (%s): errors=%s %s\n' "$name" "$what" "$errors" "${note#-}"
			fail=1
		fi
	done < <(mutants)
	t=$(($(date +%s) - t0))
	if [ $fail = 0 ]; then echo "MUTANTS OK: every mutant rejected, ${t} s"; else echo "MUTANTS FAILED: a mutant was accepted"; exit 1; fi
	;;
one)
	line=$( (configs; long; mutants) | grep "^$2|")
	IFS='|' read -r name flags m _ <<<"$line"
	run "$name" "$flags" "$m"
	cat "$work/$name.res"; echo "output: $work/$name/pan.out"
	;;
esac
