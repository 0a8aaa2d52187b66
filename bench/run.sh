#!/usr/bin/env bash
# Reproducible benchmarks (issue 7, Performance); BENCHMARKS.md is written from what this prints.
#
#   bench/run.sh                       # everything (≈ 25 min on 2 cores once the release build exists)
#   bench/run.sh process ort           # only some sections, in this order:
#       machine build criterion process big multi ort check profile report
#
# Environment: CARGO_TARGET_DIR (default ~/.cache/postmerge-release), POSTMERGE_MODELS and
# POSTMERGE_REF (default ../shared/models and ../shared/ref), OUT (results folder, default a new
# /tmp/postmerge-bench.XXXXXX; reuse one to add sections to it), RUNS (whole-process runs per
# command, default 7), MULTI_RUNS (runs of the 37-size commands, default 5), ORT_RUNS (onnxruntime
# runs per model, default 50).
#
# Needs: cargo, python3 with numpy and onnxruntime (tests/oracle/requirements.txt), coreutils;
# `perf` (Debian: linux-perf) for the profile section (skipped when absent).
# Every timed command runs once untimed first and then round-robin with the other commands of its
# group, so load from other jobs on a shared machine falls on all of them alike; the load average is
# recorded with every sample. Results: $OUT/results.md (the table) and the raw *.jsonl / criterion
# estimates next to it.
# shellcheck disable=SC2129  # one >> per line reads better here
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/postmerge-release}"
MODELS="$(realpath "${POSTMERGE_MODELS:-$ROOT/../shared/models}")"
REF="$(realpath "${POSTMERGE_REF:-$ROOT/../shared/ref}")"
RUNS="${RUNS:-7}"
MULTI_RUNS="${MULTI_RUNS:-5}"
ORT_RUNS="${ORT_RUNS:-50}"
OUT="${OUT:-$(mktemp -d /tmp/postmerge-bench.XXXXXX)}"
mkdir -p "$OUT"
OUT="$(realpath "$OUT")"
BIN="$CARGO_TARGET_DIR/release/postmerge"
W="$OUT/work"            # outputs of the timed commands (same filesystem as $OUT)
mkdir -p "$W"
SECTIONS=("$@")
[ ${#SECTIONS[@]} -eq 0 ] && SECTIONS=(machine build criterion process big multi ort check profile report)

YOLOX="$MODELS/yolox_nano_80c_640x640_op11.onnx"
GOLD="$MODELS/gold_yolo_n_80c_640x640_op13.onnx"
LARGEST="$MODELS/gold_yolo_n_80c_640x640_op13_e2e_ort.onnx"
SHAPES="$MODELS/yolox_nano_3c_640x640_op11_shapes.onnx"
SIZES=$(sed -n '/^[0-9]/s/^/--size /p' bench/pinto_sizes.txt | tr '\n' ' ')
NSIZES=$(grep -c '^[0-9]' bench/pinto_sizes.txt)

say() { echo; echo "== $* (load average: $(cut -d' ' -f1-3 /proc/loadavg))"; }
has_quant_prep() { [ -x "$BIN" ] && "$BIN" --help 2>/dev/null | grep -qE '^\s+quant-prep\b'; }

machine() {
  say machine
  {
    echo "date: $(date -u '+%Y-%m-%d %H:%M UTC')"
    echo "commit: $(git rev-parse --short HEAD)$(git diff --quiet HEAD -- src Cargo.toml Cargo.lock || echo ' + uncommitted changes in src/')"
    echo "nproc: $(nproc)"
    echo "cpu: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//') ($(grep -m1 'cpu MHz' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//') MHz; flags: $(grep -m1 '^flags' /proc/cpuinfo | grep -oE '\b(avx2|avx512f|fma)\b' | sort -u | tr '\n' ' '))"
    echo "ram: $(awk '/MemTotal/ {printf "%.1f GiB", $2/1048576}' /proc/meminfo)"
    echo "kernel: $(uname -sr)"
    echo "filesystem of outputs: $(df -T "$OUT" | awk 'NR==2 {print $2" on "$1}')"
    echo "rustc: $(rustc -V)"
    echo "python: $(python3 -c 'import sys, numpy, onnxruntime; print(sys.version.split()[0], "numpy", numpy.__version__, "onnxruntime", onnxruntime.__version__)')"
    echo "load average at start: $(cut -d' ' -f1-3 /proc/loadavg)"
  } | tee "$OUT/machine.txt"
}

build() {
  say "build (release)"
  nice -n 10 cargo build --release --locked
  ls -l "$BIN"
}

criterion() {
  say "criterion (in-process library calls)"
  mkdir -p "$W/criterion-tmp"
  CRITERION_HOME="$OUT/criterion" POSTMERGE_MODELS="$MODELS" POSTMERGE_BENCH_TMP="$W/criterion-tmp" \
    cargo bench --locked --bench transform 2>&1 | grep -vE '^\s*$|Warming up|Collecting|Analyzing|Gnuplot|Found [0-9]+ outliers|^\s+[0-9]+ \((low|high) (mild|severe)\)' | tee "$OUT/criterion.log"
}

# A group of commands for proc_bench.py: lines `label<TAB>files<TAB>command<TAB>pre`.
spec() { printf '%s\t%s\t%s\t%s\n' "$@"; }

process() {
  say "whole process: load+save vs cp (a), passes vs load+save (b)"
  local s="$W/io.tsv"
  : > "$s"
  for m in yolox_nano:"$YOLOX" gold_yolo_n:"$GOLD" gold_yolo_n_e2e:"$LARGEST"; do
    local name=${m%%:*} in=${m#*:}; local o="$W/$name.out.onnx"
    spec "$name: cp" 0 "cp $in $o" "rm -f $o" >> "$s"
    spec "$name: cp + fsync" 0 "sh -c 'cp $in $o && sync $o'" "rm -f $o" >> "$s"
    spec "$name: convert (load+save)" 0 "$BIN convert $in -o $o" "rm -f $o" >> "$s"
  done
  python3 bench/proc_bench.py --runs "$RUNS" --group io --out "$OUT/process.jsonl" "$s"
  # file sizes, for the peak-RSS ratio in the report
  for m in yolox_nano:"$YOLOX" gold_yolo_n:"$GOLD" gold_yolo_n_e2e:"$LARGEST"; do
    printf '%s\t%s\n' "${m%%:*}" "$(stat -c %s "${m#*:}")" >> "$OUT/sizes.tsv"
  done

  s="$W/passes.tsv"
  : > "$s"
  for m in yolox_nano:"$YOLOX" gold_yolo_n:"$GOLD"; do
    local name=${m%%:*} in=${m#*:}; local o="$W/$name.out.onnx"
    spec "$name: convert (load+save)" 0 "$BIN convert $in -o $o" "rm -f $o" >> "$s"
    spec "$name: merge" 0 "$BIN merge $in -o $o" "rm -f $o" >> "$s"
    spec "$name: resize 128x160" 0 "$BIN resize $in -o $o --size 128x160" "rm -f $o" >> "$s"
    spec "$name: merge --size 128x160" 0 "$BIN merge $in -o $o --size 128x160" "rm -f $o" >> "$s"
    if has_quant_prep; then
      spec "$name: quant-prep" 0 "$BIN quant-prep $in -o $o" "rm -f $o" >> "$s"
    fi
  done
  python3 bench/proc_bench.py --runs "$RUNS" --group passes --out "$OUT/process.jsonl" "$s"
  has_quant_prep || echo "  quant-prep: not yet implemented in this build (no such subcommand)" | tee "$OUT/quant_prep.txt"
}

big() {
  say "whole process on a 220 MB model: peak RSS vs file size (a, b)"
  local big="$W/gold_yolo_n_big.onnx" o="$W/gold_yolo_n_big.out.onnx" s="$W/big.tsv"
  [ -f "$big" ] || python3 bench/make_big.py "$GOLD" "$big" "${BIG_MB:-200}"
  printf '%s\t%s\n' gold_yolo_n_big "$(stat -c %s "$big")" >> "$OUT/sizes.tsv"
  : > "$s"
  spec "gold_yolo_n_big: cp" 0 "cp $big $o" "rm -f $o" >> "$s"
  spec "gold_yolo_n_big: cp + fsync" 0 "sh -c 'cp $big $o && sync $o'" "rm -f $o" >> "$s"
  spec "gold_yolo_n_big: convert (load+save)" 0 "$BIN convert $big -o $o" "rm -f $o" >> "$s"
  spec "gold_yolo_n_big: merge" 0 "$BIN merge $big -o $o" "rm -f $o" >> "$s"
  spec "gold_yolo_n_big: resize 128x160" 0 "$BIN resize $big -o $o --size 128x160" "rm -f $o" >> "$s"
  spec "gold_yolo_n_big: quant-prep" 0 "$BIN quant-prep $big -o $o" "rm -f $o ${o%.onnx}.nodes_to_exclude.json" >> "$s"
  python3 bench/proc_bench.py --runs "$RUNS" --group big --out "$OUT/process.jsonl" "$s"
  rm -f "$big"
}

multi() {
  say "$NSIZES PINTO sizes in one call (c)"
  local s="$W/multi.tsv"
  : > "$s"
  for m in yolox_nano:"$YOLOX" gold_yolo_n:"$GOLD"; do
    local name=${m%%:*} in=${m#*:}; local d="$W/multi_$name"
    spec "$name: $NSIZES plain copies (cp loop)" "$NSIZES" "sh -c 'for i in \$(seq $NSIZES); do cp $in $d/copy_\$i.onnx; done'" "rm -rf $d && mkdir -p $d" >> "$s"
    spec "$name: resize x$NSIZES" "$NSIZES:$d/*.onnx" "$BIN resize $in $SIZES -o $d/{stem}_{h}x{w}.onnx" "rm -rf $d && mkdir -p $d" >> "$s"
    spec "$name: merge --size x$NSIZES" "$NSIZES:$d/*.onnx" "$BIN merge $in $SIZES -o $d/{stem}_{h}x{w}.onnx" "rm -rf $d && mkdir -p $d" >> "$s"
  done
  python3 bench/proc_bench.py --runs "$MULTI_RUNS" --group multi --out "$OUT/process.jsonl" "$s"
  rm -rf "$W"/multi_*
}

ort() {
  say "onnxruntime latency, 1 thread: bare + numpy post-process vs merged (d)"
  local M="$W/ort"
  mkdir -p "$M"
  python3 bench/ort_latency.py --selfcheck "$REF/yolox_nano_80c_640x640_op11/raw.npy" "$REF/yolox_nano_80c_640x640_op11/dets.json" 640 640
  local cases=()
  for m in yolox_nano_80c:yolox:"$YOLOX":yolox_nano_80c_%s_op11 gold_yolo_n_80c:goldyolo:"$GOLD":gold_yolo_n_80c_%s_op13 yolox_nano_3c_shapes:yolox:"$SHAPES":yolox_nano_3c_%s_op11_shapes; do
    IFS=: read -r name fam in refpat <<< "$m"
    "$BIN" merge "$in" -o "$M/${name}_640x640_merged.onnx" > /dev/null
    "$BIN" resize "$in" -o "$M/${name}_128x160.onnx" --size 128x160 > /dev/null
    "$BIN" merge "$M/${name}_128x160.onnx" -o "$M/${name}_128x160_merged.onnx" > /dev/null
    # shellcheck disable=SC2059
    cases+=(--case "$name" "$fam" "$in" "$M/${name}_640x640_merged.onnx" "$REF/$(printf "$refpat" 640x640)/input.npy")
    # shellcheck disable=SC2059
    cases+=(--case "$name" "$fam" "$M/${name}_128x160.onnx" "$M/${name}_128x160_merged.onnx" "$REF/$(printf "$refpat" 128x160)/input.npy")
  done
  python3 bench/ort_latency.py --runs "$ORT_RUNS" --out "$OUT/ort.jsonl" "${cases[@]}"
}

check() {
  say "postmerge check ORIGINAL MERGED (e)"
  local s="$W/check.tsv"
  : > "$s"
  for m in yolox_nano:"$YOLOX":yolox_nano_80c_640x640_op11 gold_yolo_n:"$GOLD":gold_yolo_n_80c_640x640_op13; do
    IFS=: read -r name in ref <<< "$m"
    "$BIN" merge "$in" -o "$W/$name.merged.onnx" > /dev/null
    spec "$name: check 640x640" 0 "$BIN check $in $W/$name.merged.onnx --input $REF/$ref/input.npy" "" >> "$s"
  done
  python3 bench/proc_bench.py --runs "$(( RUNS < 5 ? RUNS : 5 ))" --group check --out "$OUT/process.jsonl" "$s"
}

profile() {
  say "profiles (perf)"
  if ! command -v perf > /dev/null || ! perf stat -e task-clock true > /dev/null 2>&1; then
    echo "  perf not available (apt-get install -y linux-perf); skipped" | tee "$OUT/profile.txt"
    return
  fi
  local d="$W/multi_prof"
  : > "$OUT/profile.txt"
  prof() {  # label, command...: perf stat, then the hottest functions (self) and call paths (inclusive)
    local label=$1; shift
    rm -rf "$d" && mkdir -p "$d"
    {
      echo "### $label"
      echo '```'
      echo "\$ ${*//$W/\$W}" | sed "s|$MODELS|\$MODELS|g; s|$CARGO_TARGET_DIR|\$CARGO_TARGET_DIR|g; s|$REF|\$REF|g"
    } >> "$OUT/profile.txt"
    perf stat -e task-clock,context-switches,cpu-migrations,page-faults -o "$W/perf.stat" "$@" > /dev/null 2>&1 || echo "(exit $?)" >> "$OUT/profile.txt"
    grep -E 'task-clock|page-faults|context|elapsed|user|sys' "$W/perf.stat" | sed 's/^ *//' >> "$OUT/profile.txt" || true
    rm -rf "$d" && mkdir -p "$d"
    perf record -q -F 499 --call-graph dwarf,8192 -o "$W/perf.data" "$@" > /dev/null 2>&1 || true
    echo "-- self time (top functions):" >> "$OUT/profile.txt"
    perf report -q -i "$W/perf.data" --no-children --stdio --percent-limit 2 --sort dso,symbol -g none 2>/dev/null \
      | sed 's/[[:space:]-]*$//' | grep -v '^$' | head -15 >> "$OUT/profile.txt" || true
    echo "-- inclusive time of postmerge functions (callers included):" >> "$OUT/profile.txt"
    perf report -q -i "$W/perf.data" --children --stdio --percent-limit 4 --dsos postmerge --sort symbol -g none 2>/dev/null \
      | sed 's/[[:space:]-]*$//' | grep -v '^$' | grep -vE 'std::|core::ops|__rust_begin|lang_start|[[:space:]]main$|thread_start' | head -20 >> "$OUT/profile.txt" || true
    echo '```' >> "$OUT/profile.txt"
  }
  share() {  # label, command...: CPU time this command got vs every other task on the machine meanwhile
    local label=$1; shift
    rm -rf "$d" && mkdir -p "$d"
    {
      echo "### CPU share: $label"
      echo '```'
      echo "perf sched latency: runtime of each task (grouped by name) while it ran; 'Avg delay' = time runnable but waiting for a CPU"
    } >> "$OUT/profile.txt"
    perf sched record -q -o "$W/sched.data" -- "$@" > /dev/null 2>&1 || true
    perf sched latency -i "$W/sched.data" --sort runtime 2>/dev/null | grep -E '^\s+\S.*\|' | head -8 | cut -c1-100 >> "$OUT/profile.txt" || true
    rm -f "$W/sched.data"
    echo '```' >> "$OUT/profile.txt"
  }
  prof "convert of the largest model (22.6 MB)" "$BIN" convert "$LARGEST" -o "$d/out.onnx"
  # shellcheck disable=SC2086  # $SIZES is a list of words
  prof "resize of Gold-YOLO-n to $NSIZES sizes" "$BIN" resize "$GOLD" $SIZES -o "$d/{stem}_{h}x{w}.onnx"
  # shellcheck disable=SC2086
  prof "resize of YOLOX-nano to $NSIZES sizes" "$BIN" resize "$YOLOX" $SIZES -o "$d/{stem}_{h}x{w}.onnx"
  # shellcheck disable=SC2086
  share "resize of Gold-YOLO-n to $NSIZES sizes" "$BIN" resize "$GOLD" $SIZES -o "$d/{stem}_{h}x{w}.onnx"
  [ -f "$W/gold_yolo_n.merged.onnx" ] || "$BIN" merge "$GOLD" -o "$W/gold_yolo_n.merged.onnx" > /dev/null
  prof "check of Gold-YOLO-n 640x640" "$BIN" check "$GOLD" "$W/gold_yolo_n.merged.onnx" --input "$REF/gold_yolo_n_80c_640x640_op13/input.npy"
  rm -rf "$d" "$W/perf.data" "$W/perf.stat"
  cat "$OUT/profile.txt"
}

report() {
  say report
  python3 bench/report.py "$OUT" | tee "$OUT/results.md"
  echo
  echo "results: $OUT/results.md"
}

for s in "${SECTIONS[@]}"; do
  case "$s" in
    machine|build|criterion|process|big|multi|ort|check|profile|report) "$s" ;;
    *) echo "unknown section $s (machine build criterion process big multi ort check profile report)" >&2; exit 2 ;;
  esac
done
