#!/bin/sh
# tests/jobs/tool.py's flags in busybox sh: the job the docker runner's tests run in a container.
set -e
infiles=""
outfile=""
prefix=""
code=0
sleep_s=0
while [ $# -gt 0 ]; do
  case "$1" in
    --infile) infiles="$infiles $2"; shift 2 ;;
    --outfile) outfile=$2; shift 2 ;;
    --out-prefix) prefix=$2; shift 2 ;;
    --exit) code=$2; shift 2 ;;
    --sleep) sleep_s=$2; shift 2 ;;
    --symlink) ln -s "$2" "$3"; shift 3 ;;
    --spin) while :; do :; done ;;
    --close-output) exec >&- 2>&-; sleep "$2"; exit 0 ;;
    --write-mb) dd if=/dev/zero of=written.bin bs=1M count="$2" 2>/dev/null; shift 2 ;;
    --allocate) dd if=/dev/zero of=/dev/null bs="$2"M count=1 2>/dev/null; shift 2 ;;
    --progress) echo "$2" >>"$API_WORKER_PROGRESS"; sleep 0.4; shift 2 ;;
    --print-sandbox)
      # who the job runs as, what it may do and see: for the isolation tests
      echo "id=$(id -u):$(id -g)"
      echo "caps=$(grep CapEff /proc/self/status | tr -d '\t' | cut -d: -f2)"
      echo "nonewprivs=$(grep NoNewPrivs /proc/self/status | tr -d '\t' | cut -d: -f2)"
      echo "interfaces=$(ls /sys/class/net | tr '\n' ' ')"
      echo "cwd=$(pwd)"
      echo "home=$HOME"
      shift ;;
    *) echo "tool: unknown flag $1" >&2; exit 64 ;;
  esac
done
tr a-z A-Z
echo "tool ran in $(pwd)" >&2
if [ -n "$outfile" ]; then
  if [ -n "$infiles" ]; then
    # shellcheck disable=SC2086 # test paths hold no spaces
    cat $infiles | tr a-z A-Z >"$outfile"
  else
    echo empty >"$outfile"
  fi
  echo "outfile-owner=$(stat -c %u:%g "$outfile")" >&2
fi
if [ -n "$prefix" ]; then
  echo a >"$prefix.a"
  echo b >"$prefix.b"
fi
sleep "$sleep_s"
exit "$code"
