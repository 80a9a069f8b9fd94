#!/usr/bin/env python3
"""How much of the agent's own executable is resident, over time (docs/benchmarks.md, "Idle RSS
and the executable's read-ahead").

    python3 benches/code_residency.py BINARY SECONDS[,SECONDS...] [--symbols]

Starts `BINARY run --sink stdout --metrics-addr off` with a fresh state directory (as the
footprint harness does; set EDGEGUARD_CONFIG_JSON for other timers), and at each of the given
times since start prints VmRSS, RssAnon and RssFile from /proc/<pid>/status, the number of
mappings of the executable, and the resident KiB of its mappings by permission, read from
/proc/<pid>/pagemap (the present bit of each page; needs root). With --symbols, also counts the
functions (by crate) in the resident code pages at the last time, which needs a binary with a
symbol table (`CARGO_PROFILE_RELEASE_STRIP=none`).

Measure a binary that was written back to disk (`sync` after building or copying): the kernel
cannot drop pages that are still dirty, and the agent then retries its release later.
"""
import bisect
import collections
import os
import struct
import subprocess
import sys
import tempfile
import time


def resident_pages(pid, exe):
    """{(perms, file offset of the mapping): set of resident file offsets}."""
    pages = {}
    with open(f"/proc/{pid}/maps") as maps, open(f"/proc/{pid}/pagemap", "rb") as pagemap:
        for line in maps:
            fields = line.split()
            if len(fields) < 6 or fields[5] != exe:
                continue
            start, end = (int(x, 16) for x in fields[0].split("-"))
            offset = int(fields[2], 16)
            pagemap.seek(start // 4096 * 8)
            entries = pagemap.read((end - start) // 4096 * 8)
            present = set()
            for i in range(len(entries) // 8):
                if struct.unpack_from("<Q", entries, i * 8)[0] >> 63:
                    present.add(offset + i * 4096)
            pages[(fields[1], offset)] = present
    return pages


def status(pid):
    wanted = ("VmRSS", "RssAnon", "RssFile")
    with open(f"/proc/{pid}/status") as f:
        return {k: v.split()[0] for k, v in (l.split(":", 1) for l in f) if k in wanted}


def crates_in(binary, offsets):
    """Functions starting in or running into each resident page, counted by crate."""
    syms = []
    nm = subprocess.run(["nm", "-n", "-C", "--defined-only", binary], capture_output=True, text=True)
    for line in nm.stdout.splitlines():
        parts = line.split(" ", 2)
        if len(parts) == 3 and parts[1] in "tTwW":
            syms.append((int(parts[0], 16), parts[2]))
    addrs = [a for a, _ in syms]
    counts = collections.Counter()
    for page in offsets:  # static PIE: virtual address == file offset for the code segment
        first = max(0, bisect.bisect_left(addrs, page) - 1)
        for i in range(first, bisect.bisect_left(addrs, page + 4096)):
            name = syms[i][1].lstrip("<")
            counts[name.split("::")[0] if "::" in name else name[:24]] += 1
    return counts.most_common(25)


def main():
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    binary, times = sys.argv[1], [float(t) for t in sys.argv[2].split(",")]
    exe = os.path.realpath(binary)
    state = tempfile.mkdtemp(prefix="code-residency-")
    agent = subprocess.Popen(
        [binary, "run", "--sink", "stdout", "--metrics-addr", "off", "--state-dir", state],
        env=dict(os.environ, RUST_LOG=os.environ.get("RUST_LOG", "warn")),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    started = time.monotonic()
    last = {}
    try:
        for at in times:
            time.sleep(max(0.0, at - (time.monotonic() - started)))
            if agent.poll() is not None:
                sys.exit(f"the agent exited ({agent.returncode})")
            pages = resident_pages(agent.pid, exe)
            by_perms = collections.Counter()
            for (perms, _), present in pages.items():
                by_perms[perms] += len(present) * 4
            print(f"t={at:6.1f}s {status(agent.pid)} mappings {len(pages)} resident KiB {dict(by_perms)}",
                  flush=True)
            last = pages
    finally:
        agent.terminate()
        agent.wait()
    if "--symbols" in sys.argv:
        code = set().union(*(p for (perms, _), p in last.items() if "x" in perms))
        print(crates_in(binary, code))


if __name__ == "__main__":
    main()
