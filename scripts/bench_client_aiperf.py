#!/usr/bin/env python3
"""AIPerf (PyPI `aiperf`, NVIDIA's successor of GenAI-Perf) as a peer in scripts/bench-client:
runs `aiperf profile` with N concurrent streaming chat requests against the mock SSE server and
measures it from outside, because AIPerf is many processes and reports no per-event send times.

- CPU: user + system time of the whole AIPerf process tree (from /proc), over a window that
  starts once its load is steady (three equal 1 s event rates), so start-up (imports, tokenizer
  load, process spawn, dataset) is not charged.
- Events: the mock server's own count of chunks written (`GET /stats`), over the same window.
- Lag: not available (AIPerf does not expose when each chunk was received); printed as null.

Usage: bench_client_aiperf.py URL STREAMS SECONDS TOKENIZER_DIR
Prints one JSON line like the other clients.
"""

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request

TICK = os.sysconf("SC_CLK_TCK")


def mock_events(url):
    with urllib.request.urlopen(url + "/stats", timeout=5) as r:
        return json.load(r)["events"]


def tree_cpu_seconds(root):
    """utime + stime of `root` and every live descendant."""
    stats = {}
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open(f"/proc/{pid}/stat") as f:
                text = f.read()
        except OSError:
            continue
        fields = text[text.rfind(")") + 2 :].split()
        stats[int(pid)] = (int(fields[1]), int(fields[11]) + int(fields[12]))
    children = {}
    for pid, (ppid, _) in stats.items():
        children.setdefault(ppid, []).append(pid)
    total, todo = 0, [root]
    while todo:
        pid = todo.pop()
        if pid in stats:
            total += stats[pid][1]
        todo.extend(children.get(pid, []))
    return total / TICK


def steady(url, proc, offered):
    """Wait until AIPerf's own load runs (it first probes the model with one request, then
    spends a while spawning workers and building its dataset): three 1 s event rates in a row
    within 20 % of each other and above 10 % of the offered rate."""
    rates, last, deadline = [], mock_events(url), time.monotonic() + 300
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            sys.exit(f"aiperf exited ({proc.returncode}) before its load was steady: {proc.stderr.read()[-2000:]}")
        time.sleep(1.0)
        now = mock_events(url)
        rates = (rates + [now - last])[-3:]
        last = now
        if len(rates) == 3 and min(rates) > 0.1 * offered and max(rates) <= 1.2 * min(rates):
            return
    sys.exit("aiperf's load did not become steady within 300 s")


def main(url, streams, seconds, tokenizer):
    aiperf = shutil.which("aiperf") or os.path.join(os.path.dirname(sys.executable), "aiperf")
    artifacts = tempfile.mkdtemp(prefix="bench-aiperf-")
    cmd = [
        aiperf, "profile",
        "--url", url,
        "--model", "mock",
        "--tokenizer", tokenizer,
        "--endpoint-type", "chat",
        "--streaming",
        "--concurrency", str(streams),
        # Longer than needed: it is stopped once the window is measured.
        "--benchmark-duration", "900",
        "--synthetic-input-tokens-mean", "16",
        "--artifact-dir", artifacts,
        "--ui-type", "none",
    ]
    # Its own session, so that the whole tree (services, workers) can be stopped at the end.
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        steady(url, proc, offered=streams * 100)
        cpu0, ev0, t0 = tree_cpu_seconds(proc.pid), mock_events(url), time.monotonic()
        time.sleep(seconds)
        cpu1, ev1, t1 = tree_cpu_seconds(proc.pid), mock_events(url), time.monotonic()
        if proc.poll() is not None:
            sys.exit(f"aiperf ended inside the measuring window ({proc.returncode}): {proc.stderr.read()[-2000:]}")
    finally:
        if proc.poll() is None:
            # SIGINT first: AIPerf stops and reaps its services; SIGKILL the rest after 30 s.
            os.killpg(proc.pid, signal.SIGINT)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                pass
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            proc.wait()
        shutil.rmtree(artifacts, ignore_errors=True)
    events, wall, cpu = ev1 - ev0, t1 - t0, cpu1 - cpu0
    print(json.dumps({
        "client": "aiperf (python)",
        "streams": streams,
        "events": events,
        "seconds": wall,
        "events_per_s": events / wall,
        "cpu_us_per_event": cpu * 1e6 / max(events, 1),
        "lag_p50_ms": None,
        "lag_p99_ms": None,
    }))


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), sys.argv[4])
