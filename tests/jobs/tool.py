"""A small command the tests run as a job: each flag exercises one thing the worker does."""

import argparse
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

parser = argparse.ArgumentParser()
parser.add_argument("--infile", action="append", default=[])
parser.add_argument("--outfile")
parser.add_argument("--out-prefix", help="write PREFIX.a and PREFIX.b")
parser.add_argument("--started", help="create this file once running")
parser.add_argument("--sleep", type=float, default=0)
parser.add_argument("--exit", type=int, default=0)
parser.add_argument("--print-env", action="store_true")
parser.add_argument("--symlink", nargs=2, metavar=("TARGET", "LINK"))
parser.add_argument("--child-allocate", type=int, metavar="MB", help="start a child that holds MB of memory")
parser.add_argument("--record-run", metavar="FILE", help="append a line to FILE, to count runs")
parser.add_argument("--spawn-sleeper", metavar="PIDFILE", help="start a long-sleeping child, write its pid")
parser.add_argument("--kill-parent-once", metavar="MARKER", help="unless MARKER exists: create it, kill the pool child")
parser.add_argument("--progress", action="append", default=[], help="append a line to the progress file")
parser.add_argument("--progress-pause", type=float, default=0, help="seconds to wait after each --progress line")
parser.add_argument("--service-name", help="print service-name=NAME (the service's command line says which)")
parser.add_argument("--write-mb", type=int, default=0, help="write this many MB into the job directory, then --sleep")
parser.add_argument("--progress-flood", type=int, default=0, help="append this many progress lines at once")
parser.add_argument("--print-bytes", type=int, default=0, help="print this many bytes ('x') to stdout")
parser.add_argument("--tamper-infile", action="store_true", help="make the --infile files writable; append to them")
options = parser.parse_args()


def write_whole(path: str, text: str) -> None:
    """Readers waiting for the file see it only once it holds all of `text`."""
    Path(path + ".partial").write_text(text)
    os.replace(path + ".partial", path)


data = sys.stdin.read()
sys.stdout.write(data.upper())
sys.stderr.write(f"tool ran in {os.getcwd()}\n")
contents = "".join(Path(name).read_text() for name in options.infile)
for name in options.infile if options.tamper_infile else []:
    os.chmod(name, 0o644)
    with open(name, "a") as tampered:
        tampered.write("tampered")
if options.outfile:
    Path(options.outfile).write_text(contents.upper() or "empty\n")
if options.out_prefix:
    Path(options.out_prefix + ".a").write_text("a\n")
    Path(options.out_prefix + ".b").write_text("b\n")
if options.symlink:
    os.symlink(options.symlink[0], options.symlink[1])
if options.write_mb:
    with open("written.bin", "wb") as written:
        for _ in range(options.write_mb):
            written.write(os.urandom(1024 * 1024))
            written.flush()
if options.service_name:
    print(f"service-name={options.service_name}")
if options.print_bytes:
    sys.stdout.write("x" * options.print_bytes)
if options.print_env:
    for name in sorted(os.environ):
        print(f"{name}={os.environ[name]}")
if options.child_allocate:
    code = f"import time; b = bytearray({options.child_allocate} * 1024 * 1024); time.sleep(60)"
    subprocess.Popen([sys.executable, "-c", code])
if options.spawn_sleeper:
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    write_whole(options.spawn_sleeper, str(sleeper.pid))
if options.record_run:
    with open(options.record_run, "a") as runs:
        runs.write(f"{os.getpid()}\n")
if options.kill_parent_once and not os.path.exists(options.kill_parent_once):
    Path(options.kill_parent_once).write_text("killed")
    os.kill(os.getppid(), signal.SIGKILL)
    time.sleep(60)
if options.progress or options.progress_flood:
    with open(os.environ["API_WORKER_PROGRESS"], "a") as progress:
        for line in options.progress:
            progress.write(line + "\n")
            progress.flush()
            time.sleep(options.progress_pause)
        for index in range(options.progress_flood):
            progress.write(f"{index * 100 // options.progress_flood} line {index}\n")
if options.started:
    write_whole(options.started, str(os.getpid()))
time.sleep(options.sleep)
sys.exit(options.exit)
