#!/usr/bin/env bash
# Runs the static armv7 edgeguard on a real 32-bit ARM kernel (Debian's armmp kernel under
# qemu-system-arm, machine `virt`) and checks that the kernel collectors work there:
#
#   scripts/arm32-vm-test.sh [BINARY]
#
# Why a VM: qemu-user (qemu-arm-static, scripts/arm32-smoke.sh) translates system calls but not
# the netlink process connector or sock_diag, so under it the process and connection collectors
# fall back and their real paths never run. Here they run against an armhf kernel.
#
# What it does:
#   1. installs what is missing: qemu-system-arm, cpio, the armhf architecture in dpkg; downloads
#      the current armmp kernel (the package `linux-image-armmp:armhf` depends on) and
#      busybox-static:armhf with `apt-get download`, unpacked with `dpkg -x` into a cache
#      ($EDGEGUARD_ARM32_CACHE, default /var/cache/edgeguard-arm32) so later runs download
#      nothing;
#   2. builds an initramfs: the binary, busybox, the sock_diag modules (inet_diag, tcp_diag,
#      udp_diag and what they depend on; CONFIG_INET_DIAG=m in that kernel) and an /init that
#      mounts proc/sys/devtmpfs/tracefs, brings up lo, loads the modules, starts `edgeguard run`
#      with a file sink and short timers, then makes activity, each step waiting (with a
#      deadline) until the agent has written what it expects, never a fixed sleep that assumes
#      the agent is fast:
#      - EXECS runs of a uniquely named script with distinctive arguments, each kept alive until
#        the agent has reported it, then exiting 3;
#      - QUICK runs, one after another, of a script that exits at once (what a slow CPU keeps
#        of those is informational);
#      - CONNS TCP connections over 127.0.0.1 and CONNS6 over ::1 to a busybox `nc -ll`
#        listener, each held open (server and client alive) until the agent has reported both
#        ends; then QCONNS connections to a second listener that closes each at once; both
#        listeners stay open for a ListeningPorts snapshot;
#      - with the agent watching, loads a signed in-tree module (`dummy`), a module whose
#        signature was cut off (`crc-itu-t`: the kernel loads it and taints it E), then the VM's
#        USB host controller (xhci) and the storage drivers, so the emulated USB stick and USB
#        keyboard qemu was started with enumerate now: the kernel-module and USB rules driven by
#        the kernel itself, with near misses (the signed module is not unsigned, the keyboard
#        and the controller's root hubs are not storage);
#      then SIGTERMs the agent, waits for it and prints /out (messages, agent log, guest facts)
#      as base64 of a tar.gz between markers on the serial console, and powers off;
#   3. extracts that on the host and checks it (check_results below): the process and connection
#      collectors Up (so: the process connector and sock_diag, not the fallbacks), the exec
#      tracepoint open, a complete ProcessCreate (command line, user, parent) and an exit status 3
#      ProcessTerminate for every probe, a ProcessCreate for every quick exec, exactly one Out and
#      one In per connection with the held ones attributed to their processes, both listeners
#      in ListeningPorts with their pids, a KernelModule record for every late module, the
#      alerts kernel-module-inserted (dummy), unsigned-kernel-module (crc_itu_t only) and
#      usb-storage-connected (the stick only), no other collector Degraded/Down except those that
#      cannot be Up in this VM (login: no log files; firewall: no nft/iptables), a clean exit on
#      SIGTERM. Prints PASS/FAIL/INFO lines, a summary with counts and the wall times, and exits
#      non-zero on any failure.
#
# BINARY defaults to `scripts/build-static.sh arm32v7` (CARGO_TARGET_DIR is honoured). The guest's
# output is kept in $EDGEGUARD_ARM32_OUT (default ${CARGO_TARGET_DIR:-target}/arm32-vm):
# console.log, messages.jsonl, agent.log, init.log, guest-info.txt, dmesg.txt.
#
# Knobs (environment): EXECS (20), QUICK (20), CONNS (20), CONNS6 (5), QCONNS (20),
# ARM32_VM_TIMEOUT (seconds for the VM run, 480), ARM32_VM_SMP (2), ARM32_VM_QUIET (1: do not
# stream the guest's console; its tail is printed on failure).
#
# Needs root (apt-get, dpkg, mknod for /dev/console in the initramfs).
set -euo pipefail
# A BINARY given relative to the caller's directory must survive the cd below.
binary_arg="${1:+$(realpath -m -- "$1")}"
cd "$(dirname "$0")/.."

log() { printf '==> %s\n' "$*" >&2; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

t_start=$(date +%s.%N)
elapsed() { awk -v a="$1" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }'; }

cache="${EDGEGUARD_ARM32_CACHE:-/var/cache/edgeguard-arm32}"
out="${EDGEGUARD_ARM32_OUT:-${CARGO_TARGET_DIR:-target}/arm32-vm}"
EXECS="${EXECS:-20}"
QUICK="${QUICK:-20}"
CONNS="${CONNS:-20}"
CONNS6="${CONNS6:-5}"
QCONNS="${QCONNS:-20}"
vm_timeout="${ARM32_VM_TIMEOUT:-480}"
smp="${ARM32_VM_SMP:-2}"
quiet="${ARM32_VM_QUIET:-0}"
for n in EXECS QUICK CONNS CONNS6 QCONNS; do
    [[ "${!n}" =~ ^[0-9]+$ ]] || die "$n must be a number, not '${!n}'"
done

[ "$(id -u)" = 0 ] || die "run as root: it installs packages and makes a device node for the initramfs"

# ---------------------------------------------------------------------------------------------
# 1. Tools and packages
# ---------------------------------------------------------------------------------------------

apt_updated=0
apt_update() {
    if [ "$apt_updated" = 0 ]; then
        log "apt-get update"
        apt-get update -qq >&2 || die "apt-get update failed (are Debian's package mirrors reachable?)"
        apt_updated=1
    fi
}
# install COMMAND PACKAGE: installs PACKAGE when COMMAND is missing.
install_for() {
    command -v "$1" >/dev/null 2>&1 && return 0
    log "installing $2 (for $1)"
    local apt_log
    apt_log=$(mktemp)
    # A machine whose package lists were never fetched cannot install anything: update once.
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$2" >"$apt_log" 2>&1 || {
        apt_update
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$2" >"$apt_log" 2>&1 \
            || { cat "$apt_log" >&2; rm -f "$apt_log"; die "apt-get install $2 failed"; }
    }
    rm -f "$apt_log"
    command -v "$1" >/dev/null 2>&1 || die "installing $2 did not provide $1"
}

t_prep=$(date +%s.%N)
install_for qemu-system-arm qemu-system-arm
install_for cpio cpio
install_for python3 python3
install_for readelf binutils

if ! dpkg --print-foreign-architectures | grep -qx armhf; then
    log "adding the armhf architecture to dpkg (for apt-get download of the armhf kernel and busybox)"
    dpkg --add-architecture armhf
    apt_updated=0
    apt_update
fi

# apt_field PACKAGE FIELD: a field of the candidate version, empty if apt does not know it.
apt_field() {
    apt-cache show --no-all-versions "$1" 2>/dev/null | awk -v f="$2:" '$1 == f && !done { print $2; done = 1 }'
}
# The armmp metapackage names the kernel of the day (linux-image-6.1.0-NN-armmp); its ABI number
# moves with every Debian point release, so it is looked up, never written down here.
resolve_kernel() {
    apt-cache depends linux-image-armmp:armhf 2>/dev/null \
        | awk '$1 == "Depends:" && $2 ~ /^linux-image-[0-9].*-armmp(:armhf)?$/ && !done { sub(/:armhf$/, "", $2); print $2; done = 1 }'
}
kernel_pkg=$(resolve_kernel)
if [ -z "$kernel_pkg" ]; then
    apt_update
    kernel_pkg=$(resolve_kernel)
fi
[ -n "$kernel_pkg" ] || die "apt does not know linux-image-armmp:armhf (is armhf in 'dpkg --print-foreign-architectures' and the lists updated?)"
kernel_ver=$(apt_field "$kernel_pkg:armhf" Version)
busybox_ver=$(apt_field busybox-static:armhf Version)
[ -n "$kernel_ver" ] && [ -n "$busybox_ver" ] || die "apt has no version for $kernel_pkg:armhf or busybox-static:armhf"

# fetch PACKAGE VERSION STALE_GLOB: downloads and unpacks PACKAGE:armhf once; prints the unpacked
# directory. The `.done` stamp is written last, so an interrupted unpack is redone, not trusted.
# Older versions (directories matching STALE_GLOB) are removed so the cache does not grow with
# every Debian point release.
fetch() {
    local pkg=$1 ver=$2 stale=$3 dir old
    dir="$cache/${pkg}_${ver//:/%3a}"
    if [ ! -e "$dir/.done" ]; then
        log "downloading $pkg:armhf $ver into $cache"
        rm -rf "$dir" "$cache/download"
        mkdir -p "$cache/download"
        # As root into a root-owned directory: apt's _apt sandbox user could not write there.
        (cd "$cache/download" && apt-get download -q -o APT::Sandbox::User=root "$pkg:armhf=$ver" >&2) \
            || die "apt-get download $pkg:armhf=$ver failed"
        local deb
        deb=$(ls "$cache"/download/*.deb)
        dpkg -x "$deb" "$dir.tmp"
        rm -rf "$cache/download"
        mv "$dir.tmp" "$dir"
        touch "$dir/.done"
        for old in "$cache"/$stale; do
            [ "$old" = "$dir" ] || [ ! -d "$old" ] || { log "removing $old from the cache"; rm -rf "$old"; }
        done
    fi
    printf '%s\n' "$dir"
}
mkdir -p "$cache"
kernel_dir=$(fetch "$kernel_pkg" "$kernel_ver" 'linux-image-*-armmp_*')
busybox_dir=$(fetch busybox-static "$busybox_ver" 'busybox-static_*')
prep_secs=$(elapsed "$t_prep")

kver=$(ls "$kernel_dir/lib/modules")
vmlinuz="$kernel_dir/boot/vmlinuz-$kver"
kconfig="$kernel_dir/boot/config-$kver"
[ -f "$vmlinuz" ] && [ -f "$kconfig" ] || die "no vmlinuz/config for $kver in $kernel_dir"

# ---------------------------------------------------------------------------------------------
# 2. The binary
# ---------------------------------------------------------------------------------------------

binary="$binary_arg"
t_build=$(date +%s.%N)
if [ -z "$binary" ]; then
    binary=$(scripts/build-static.sh arm32v7)
fi
build_secs=$(elapsed "$t_build")
[ -x "$binary" ] || die "$binary is not an executable file"
readelf -h "$binary" 2>/dev/null | grep -q 'Machine:.*ARM$' \
    || die "$binary is not a 32-bit ARM executable"
# The initramfs has no C library: a dynamically linked binary would fail with "not found".
if readelf --program-headers "$binary" | grep -q INTERP; then
    die "$binary is dynamically linked; build it with scripts/build-static.sh arm32v7"
fi

# ---------------------------------------------------------------------------------------------
# 3. The initramfs
# ---------------------------------------------------------------------------------------------

# What the collectors need from this kernel. Built in (=y) is fine; a module (=m) must be
# carried; anything else means the kernel cannot do it and the test would prove nothing.
kconf() { awk -F= -v k="CONFIG_$1" '$1 == k { print $2; exit }' "$kconfig"; }
for opt in CONNECTOR PROC_EVENTS PACKET PERF_EVENTS DEVTMPFS BLK_DEV_INITRD; do
    [ "$(kconf "$opt")" = y ] || die "$kver: CONFIG_$opt is '$(kconf "$opt")', the test needs y"
done
modules=()
for opt in INET_DIAG:inet_diag INET_TCP_DIAG:tcp_diag INET_UDP_DIAG:udp_diag; do
    case "$(kconf "${opt%%:*}")" in
        y) ;;
        m) modules+=("${opt#*:}") ;;
        *) die "$kver: CONFIG_${opt%%:*} is '$(kconf "${opt%%:*}")': no sock_diag for TCP/UDP" ;;
    esac
done

work=$(mktemp -d /tmp/edgeguard-arm32-vm.XXXXXX)
trap 'rm -rf "$work"' EXIT
root="$work/root"
mkdir -p "$root"/{bin,sbin,usr/bin,usr/sbin,usr/local/bin,etc,dev,proc,sys,run,tmp,out,state,var/log,root}
chmod 1777 "$root/tmp"

# Modules in load order (dependencies first). The .deb has no modules.dep (depmod runs at
# install); the `depends=` entry of each module's .modinfo section says the same thing.
# The kernel treats - and _ in module names alike; file names use either (xhci-hcd.ko, sd_mod.ko).
modfile() {
    local dashed=${1//_/-}
    find "$kernel_dir/lib/modules/$kver/kernel" \( -name "$1.ko" -o -name "$1.ko.xz" -o -name "$1.ko.zst" \
        -o -name "$dashed.ko" -o -name "$dashed.ko.xz" -o -name "$dashed.ko.zst" \) -print -quit
}
declare -A seen_mod=()
load_order=()
add_module() {
    local name=${1//-/_} file deps d
    [ -n "${seen_mod[$name]:-}" ] && return 0
    seen_mod[$name]=1
    file=$(modfile "$name")
    [ -n "$file" ] || die "$kver has no module $name"
    deps=$(case "$file" in
        *.xz) xz -dc "$file" ;;
        *.zst) zstd -dc "$file" ;;
        *) cat "$file" ;;
    esac | tr '\0' '\n' | awk -F= '$1 == "depends" && !done { print $2; done = 1 }')
    for d in ${deps//,/ }; do add_module "$d"; done
    mkdir -p "$root/lib/modules"
    # busybox insmod loads plain .ko files only.
    case "$file" in
        *.xz) xz -dc "$file" >"$root/lib/modules/$name.ko" ;;
        *.zst) zstd -dc "$file" >"$root/lib/modules/$name.ko" ;;
        *) cp "$file" "$root/lib/modules/$name.ko" ;;
    esac
    load_order+=("$name")
}
for m in "${modules[@]}"; do add_module "$m"; done
: >"$root/etc/eg-modules"
for m in "${load_order[@]}"; do echo "$m" >>"$root/etc/eg-modules"; done

# Loaded by /init once the agent runs, so each load is news to it: `dummy` (signed, in tree),
# `crc-itu-t` unsigned (below), then the USB host controller and the stick's drivers (xhci-pci
# makes the stick and keyboard on qemu's xhci bus enumerate; usb-storage and sd_mod give the
# stick a disk). Modules the early list already loaded are not loaded twice.
early=${#load_order[@]}
for m in dummy crc-itu-t xhci-pci usb-storage sd_mod; do add_module "$m"; done
: >"$root/etc/eg-late-modules"
for m in "${load_order[@]:$early}"; do echo "$m" >>"$root/etc/eg-late-modules"; done
# A module with its appended signature cut off, as an out-of-band build would be: the trailer is
# the PKCS#7 signature, a 12-byte struct module_signature (its last 4 bytes the signature's
# length, big-endian; signer and key id lengths 0 for PKCS#7) and the magic string. The kernel
# (CONFIG_MODULE_SIG=y, not forced) loads it and taints it E, as it would a rootkit's module.
python3 - "$root/lib/modules/crc_itu_t.ko" <<'PYEOF' || die "could not strip the signature of crc_itu_t.ko"
import struct, sys
path = sys.argv[1]
data = open(path, "rb").read()
magic = b"~Module signature appended~\n"
if not data.endswith(magic):
    sys.exit(f"{path}: no appended signature")
info = data[-len(magic) - 12:-len(magic)]
signer_len, key_id_len = info[3], info[4]
sig_len = struct.unpack(">I", info[8:12])[0]
cut = len(magic) + 12 + sig_len + signer_len + key_id_len
if cut >= len(data):
    sys.exit(f"{path}: signature trailer longer than the file")
open(path, "wb").write(data[:-cut])
PYEOF
# The emulated USB stick's backing file (a blank disk is enough: it is plugged in, not mounted).
stick="$work/stick.img"
truncate -s 4M "$stick"

cp "$busybox_dir/bin/busybox" "$root/bin/busybox"
ln -s busybox "$root/bin/sh"
cp "$binary" "$root/bin/edgeguard"
# The kernel opens /dev/console for /init before anything is mounted: without this node /init
# would run with no stdout, and nothing would come back.
mknod -m 600 "$root/dev/console" c 5 1

# Files every real device has, so that the users and system collectors have something to read.
cat >"$root/etc/passwd" <<'EOF'
root:x:0:0:root:/root:/bin/sh
daemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin
nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin
EOF
cat >"$root/etc/group" <<'EOF'
root:x:0:
daemon:x:1:
nogroup:x:65534:
EOF
cat >"$root/etc/shadow" <<'EOF'
root:*:19000:0:99999:7:::
daemon:*:19000:0:99999:7:::
nobody:*:19000:0:99999:7:::
EOF
chmod 640 "$root/etc/shadow"
cat >"$root/etc/os-release" <<'EOF'
PRETTY_NAME="edgeguard arm32 test initramfs (Debian 12 armmp kernel)"
NAME="Debian GNU/Linux"
VERSION_ID="12"
ID=debian
EOF
echo arm32-vm >"$root/etc/hostname"

# The agent's configuration: short timers so messages come out while the VM runs; no
# aggregation, so every exec and connection is its own record; the kinds the checks need High;
# snapshots every 5 s so the listener opened after the start shows in a ListeningPorts
# snapshot. There is no Docker engine in the VM: container collection is off rather than Down.
cat >"$root/etc/eg-config.json" <<'EOF'
{"ms_iotn:urn_azureiot_Security_SecurityAgentConfiguration": {
  "highPriorityMessageFrequency": "PT2S",
  "lowPriorityMessageFrequency": "PT3S",
  "snapshotFrequency": "PT5S",
  "aggregationEnabledProcessCreate": false,
  "aggregationEnabledConnectionCreate": false,
  "aggregationEnabledProcessTerminate": false,
  "eventPriorityProcessCreate": "High",
  "eventPriorityProcessTerminate": "High",
  "eventPriorityConnectionCreate": "High",
  "eventPriorityListeningPorts": "High",
  "eventPrioritySystemInformation": "High",
  "containerCollectionEnabled": false
}}
EOF

cat >"$root/etc/eg-params" <<EOF
EXECS=$EXECS
QUICK=$QUICK
CONNS=$CONNS
CONNS6=$CONNS6
QCONNS=$QCONNS
PORT=7001
QPORT=7002
EOF

# The probe: a uniquely named script with distinctive arguments that lives until the gate (its
# stdin, a FIFO) closes, so the agent can read its command line from /proc however slow the VM
# is; then it exits 3, an exit status that only the process connector reports (the /proc
# fallback cannot know exit statuses).
cat >"$root/usr/local/bin/eg-probe" <<'EOF'
#!/bin/sh
read -r _line || :
exit 3
EOF
# The quick one exits at once: whether the agent gets its command line depends on the CPU.
cat >"$root/usr/local/bin/eg-quick" <<'EOF'
#!/bin/sh
exit 0
EOF
# The server side of a held connection: keeps it open until the init script opens the gate (a
# file appearing, polled: a FIFO's end-of-file reaches only readers that opened it before the
# last writer closed, and under load an eg-hold can get there later and block for good). `sleep`
# gets no copy of the socket (nc -e hands it over as stdin/stdout/stderr): only eg-hold holds it.
cat >"$root/usr/local/bin/eg-hold" <<'EOF'
#!/bin/sh
while [ ! -e /run/conngate ]; do sleep 0.2 </dev/null >/dev/null 2>&1; done
exit 0
EOF
chmod 755 "$root/usr/local/bin/eg-probe" "$root/usr/local/bin/eg-quick" "$root/usr/local/bin/eg-hold"

cat >"$root/init" <<'EOF'
#!/bin/sh
# PID 1 of the arm32 VM test, written by scripts/arm32-vm-test.sh (see there for why).
# Waits are on conditions with deadlines, never on the agent being fast: a missed deadline is
# logged and the run goes on, and the host's checks say what is missing.
PATH=/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
export PATH
/bin/busybox mkdir -p /proc /sys /dev /run /tmp /out /state
/bin/busybox --install -s
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mkdir -p /dev/pts /dev/shm
# Keep the kernel's messages off the console: the results come back over it.
echo 1 >/proc/sys/kernel/printk
. /etc/eg-params
MSG=/out/messages.jsonl

now() { read -r up _ </proc/uptime; echo "${up%%.*}"; }
log() { read -r up _ </proc/uptime; echo "eg-init[$up]: $*"; echo "[$up] $*" >>/out/init.log; }
# wait_for DESCRIPTION SECONDS COMMAND...: polls COMMAND every 0.5 s until it succeeds.
wait_for() {
    desc=$1 limit=$2
    shift 2
    deadline=$(( $(now) + limit ))
    while ! "$@"; do
        if [ "$(now)" -ge "$deadline" ]; then
            log "TIMEOUT after ${limit}s waiting for: $desc"
            echo "$desc" >>/out/timeouts
            return 1
        fi
        if [ -n "${agent:-}" ] && [ -e /out/agent.rc ]; then
            log "the agent exited (code $(cat /out/agent.rc)) while waiting for: $desc"
            echo "$desc (agent exited)" >>/out/timeouts
            return 1
        fi
        sleep 0.5
    done
    log "done: $desc"
}
count() { grep -o "$1" "$MSG" 2>/dev/null | sort -u | wc -l; }
count_all() { grep -o "$1" "$MSG" 2>/dev/null | wc -l; }

log "init started (kernel $(uname -r), $(uname -m))"
hostname "$(cat /etc/hostname)"
if mount -t tracefs tracefs /sys/kernel/tracing 2>/dev/null; then
    log "tracefs mounted"
else
    log "no tracefs: the exec tracepoint will be unavailable"
fi
ip link set lo up
while read -r m; do
    if insmod "/lib/modules/$m.ko"; then log "insmod $m"; else log "insmod $m FAILED"; fi
done </etc/eg-modules

{
    echo "uname: $(uname -a)"
    echo "cpu: $(grep -m1 '^model name' /proc/cpuinfo)"
    echo "cpus: $(grep -c ^processor /proc/cpuinfo)"
    echo "memory: $(grep MemTotal /proc/meminfo)"
    echo "tracefs: $(ls /sys/kernel/tracing/events/sched/sched_process_exec 2>/dev/null | tr '\n' ' ')"
    echo "modules:"; cat /proc/modules
} >/out/guest-info.txt

# The agent, with its exit code written when it ends (a zombie would fool `kill -0`).
log "starting edgeguard"
(
    EDGEGUARD_CONFIG_JSON=$(cat /etc/eg-config.json) \
    RUST_LOG="info,edgeguard::collectors::process=debug" \
        sh -c 'echo $$ >/run/agent.pid; exec /bin/edgeguard run --sink file --output /out/messages.jsonl \
            --state-dir /state --metrics-addr off --shutdown-grace 10' 2>/out/agent.log 3>&-
    echo $? >/out/agent.rc
) &
agent=1
agent_up() { [ -s /run/agent.pid ]; }
wait_for "agent pid" 10 agent_up
# Both kernel readers say where they stand in a CollectorStatus event (Up or Degraded).
statuses() { grep -q '"Collector":"process"' "$MSG" 2>/dev/null && grep -q '"Collector":"connection"' "$MSG"; }
wait_for "process and connection collector status" 120 statuses
echo "started: $(now)" >>/out/phases

# --- execs held until reported -----------------------------------------------------------
mkfifo /run/gate
exec 3<>/run/gate  # a writer stays open, so each probe's `read` waits
log "starting $EXECS probes"
pids=""
i=1
while [ "$i" -le "$EXECS" ]; do
    eg-probe --seq "$i" --tag arm32vm </run/gate 3>&- &
    pids="$pids $!"
    i=$((i + 1))
done
echo "$pids" >/out/probe-pids
probes_seen() { [ "$(count "eg-probe --seq [0-9]* --tag arm32vm\"")" -ge "$EXECS" ]; }
wait_for "$EXECS probes reported with their command lines" 180 probes_seen
exec 3>&-  # the last writer: every probe reads end-of-file and exits 3
codes=""
for p in $pids; do wait "$p"; codes="$codes $?"; done
echo "$codes" >/out/probe-codes
probe_exits() { [ "$(count_all '"ExitStatus":3[,}]')" -ge "$EXECS" ]; }
wait_for "$EXECS probe exits (status 3)" 60 probe_exits
echo "execs: $(now)" >>/out/phases

# --- quick execs ---------------------------------------------------------------------------
log "running $QUICK quick execs"
qpids=""
i=1
while [ "$i" -le "$QUICK" ]; do
    # In the background only to learn its pid; waited for at once, so one runs at a time.
    eg-quick --seq "$i" --tag arm32vm 3>&- &
    qpids="$qpids $!"
    wait $!
    i=$((i + 1))
done
echo "$qpids" >/out/quick-pids
# A ProcessCreate record for each pid, however incomplete ("ProcessId":N,"ParentProcessId" is
# ProcessCreate's field order). One pattern with alternatives: busybox `grep -o` with several
# patterns prints the matches of only one of them per line (and a message is one line).
echo "\"ProcessId\":($(echo $qpids | tr ' ' '|')),\"ParentProcessId\"" >/run/quick-pattern
quick_seen() { [ "$(grep -o -E -f /run/quick-pattern "$MSG" | sort -u | wc -l)" -ge "$QUICK" ]; }
wait_for "$QUICK quick execs reported" 60 quick_seen
echo "quick: $(now)" >>/out/phases

# --- connections -----------------------------------------------------------------------------
# Held: each connection stays open until the agent has reported both ends (the server side,
# eg-hold, waits on a second gate), so both processes are there to be found however slow the
# VM is; attribution is checked exactly. Quick: the server closes at once and the client exits,
# so its Out side may be gone before the lookup (a documented limit): counted, attribution only
# reported.
log "listeners on $PORT (held) and $QPORT (quick)"
# -ll: keep listening, each connection handed to a new process running the -e program.
nc -ll -p "$PORT" -e /usr/local/bin/eg-hold </dev/null >/dev/null 2>&1 3>&- 4>&- &
listener=$!
nc -ll -p "$QPORT" -e /bin/true </dev/null >/dev/null 2>&1 3>&- 4>&- &
qlistener=$!
echo "$listener" >/out/listener-pid
echo "$qlistener" >/out/qlistener-pid
listening() { netstat -ltn 2>/dev/null | grep -q ":$PORT " && netstat -ltn 2>/dev/null | grep -q ":$QPORT "; }
wait_for "listeners on $PORT and $QPORT" 30 listening

log "$CONNS held connections over 127.0.0.1 and $CONNS6 over ::1"
cpids=""
i=1
while [ "$i" -le "$((CONNS + CONNS6))" ]; do
    addr=127.0.0.1
    [ "$i" -gt "$CONNS" ] && addr=::1
    nc -w 10 "$addr" "$PORT" </dev/null >/dev/null 2>&1 3>&- 4>&- &
    cpids="$cpids $!"
    i=$((i + 1))
done
echo "$cpids" >/out/client-pids
held_seen() {
    [ "$(count_all "\"RemotePort\":\"$PORT\"")" -ge $((CONNS + CONNS6)) ] && \
    [ "$(count_all "\"LocalPort\":\"$PORT\",\"Direction\":\"In\"")" -ge $((CONNS + CONNS6)) ]
}
wait_for "$((CONNS + CONNS6)) held connections reported Out and In" 120 held_seen
: >/run/conngate  # every eg-hold sees the gate and exits; its client sees the close and exits
failed=0
for p in $cpids; do wait "$p" || failed=$((failed + 1)); done

log "$QCONNS quick connections over 127.0.0.1"
i=1
while [ "$i" -le "$QCONNS" ]; do
    nc -w 10 127.0.0.1 "$QPORT" </dev/null >/dev/null 2>&1 3>&- || failed=$((failed + 1))
    i=$((i + 1))
done
log "clients done ($failed failed)"
echo "$failed" >/out/client-failures
quick_conns_seen() {
    [ "$(count_all "\"RemotePort\":\"$QPORT\"")" -ge "$QCONNS" ] && \
    [ "$(count_all "\"LocalPort\":\"$QPORT\",\"Direction\":\"In\"")" -ge "$QCONNS" ]
}
wait_for "$QCONNS quick connections reported Out and In" 120 quick_conns_seen
# A ListeningPorts record (Protocol, LocalAddress, LocalPort, ExtraDetails in that order;
# ExtraDetails keys sorted) for the held listener that names its process.
listener_seen() {
    grep -q "\"Protocol\":\"TCP\",\"LocalAddress\":\"[^\"]*\",\"LocalPort\":\"$PORT\",\"ExtraDetails\":{[^}]*\"ProcessId\":\"$listener\"" "$MSG"
}
wait_for "ListeningPorts snapshot with port $PORT and its process" 60 listener_seen
echo "connections: $(now)" >>/out/phases

# --- kernel modules and USB --------------------------------------------------------------------
# Loaded with the agent watching (see the host script): each load is a module uevent and a new
# /proc/modules line; loading xhci-pci makes the stick and keyboard enumerate.
log "loading $(wc -l </etc/eg-late-modules) modules with the agent watching"
cp /etc/eg-late-modules /out/late-modules
while read -r m; do
    if insmod "/lib/modules/$m.ko"; then log "insmod $m"; else log "insmod $m FAILED"; echo "$m" >>/out/late-insmod-failed; fi
done </etc/eg-late-modules
rule_seen() { grep -q "\"RuleId\":\"$1\"" "$MSG" 2>/dev/null; }
hw_alerts() { rule_seen kernel-module-inserted && rule_seen unsigned-kernel-module && rule_seen usb-storage-connected; }
wait_for "module and USB alerts (kernel-module-inserted, unsigned-kernel-module, usb-storage-connected)" 120 hw_alerts
echo "hardware: $(now)" >>/out/phases

# --- shutdown --------------------------------------------------------------------------------
log "SIGTERM to the agent"
kill -TERM "$(cat /run/agent.pid)"
stopped() { [ -e /out/agent.rc ]; }
agent=  # its exit is expected now
if ! wait_for "agent exit after SIGTERM" 40 stopped; then
    kill -KILL "$(cat /run/agent.pid)"
    sleep 1
fi
echo "stopped: $(now)" >>/out/phases
kill "$listener" "$qlistener" 2>/dev/null
dmesg >/out/dmesg.txt
cat /proc/modules >/out/modules-at-end.txt
log "agent exit code $(cat /out/agent.rc 2>/dev/null); $(wc -c <"$MSG" 2>/dev/null) bytes of messages"

# --- results over the console ----------------------------------------------------------------
cd /out && tar -cf /run/out.tar . && gzip -9 /run/out.tar
echo "==EDGEGUARD-OUT-BEGIN== $(wc -c </run/out.tar.gz) $(sha256sum /run/out.tar.gz | cut -d' ' -f1)"
base64 /run/out.tar.gz
echo "==EDGEGUARD-OUT-END=="
sync
poweroff -f
EOF
chmod 755 "$root/init"

initrd="$work/initrd.cpio.gz"
(cd "$root" && find . -print | LC_ALL=C sort | cpio -o -H newc --owner=0:0 --quiet) | gzip -1 >"$initrd"
log "initramfs: $(du -h "$initrd" | cut -f1) ($kernel_pkg $kernel_ver, modules: ${load_order[*]:-none}, binary $binary)"

# ---------------------------------------------------------------------------------------------
# 4. Boot
# ---------------------------------------------------------------------------------------------

rm -rf "$out"
mkdir -p "$out"
console="$out/console.log"
log "booting $kernel_pkg under qemu-system-arm -M virt,highmem=off -smp $smp (timeout ${vm_timeout}s)"
t_vm=$(date +%s.%N)
vm_rc=0
# The console is streamed with a prefix (without the base64 block) so a CI log shows progress.
# highmem=off: qemu puts the PCIe ECAM window above 4 GiB otherwise, which the armmp kernel
# (no LPAE) cannot claim ("can't claim ECAM area"): no PCI bus, so no xhci and no USB devices.
timeout -k 10 "$vm_timeout" qemu-system-arm -M virt,highmem=off -smp "$smp" -m 512 \
    -kernel "$vmlinuz" -initrd "$initrd" \
    -append "console=ttyAMA0 rdinit=/init panic=-1 quiet loglevel=3" \
    -device qemu-xhci,id=xhci -drive if=none,id=stick,format=raw,file="$stick" \
    -device usb-storage,bus=xhci.0,drive=stick,removable=on -device usb-kbd,bus=xhci.0 \
    -nic none -nographic -no-reboot </dev/null 2>&1 \
    | tr -d '\r' | tee "$console" \
    | awk -v quiet="$quiet" '/^==EDGEGUARD-OUT-BEGIN==/ { skip = 1; print "guest| " $0 " (base64 not shown)"; fflush() }
                             !skip && quiet != "1" { print "guest| " $0; fflush() }
                             /^==EDGEGUARD-OUT-END==/ { skip = 0 }' >&2 \
    || vm_rc=${PIPESTATUS[0]}
vm_secs=$(elapsed "$t_vm")
if [ "$vm_rc" = 124 ] || [ "$vm_rc" = 137 ]; then
    [ "$quiet" = 1 ] && tail -50 "$console" >&2
    die "the VM did not power off within ${vm_timeout}s (console: $console)"
fi
[ "$vm_rc" = 0 ] || log "qemu-system-arm exited $vm_rc"

# ---------------------------------------------------------------------------------------------
# 5. Checks
# ---------------------------------------------------------------------------------------------

python3 - "$console" "$out" <<'PYEOF' || { [ "$quiet" = 1 ] && tail -50 "$console" >&2; die "no results came back from the guest"; }
import base64, hashlib, io, re, sys, tarfile
console, out = sys.argv[1], sys.argv[2]
lines = open(console, errors="replace").read().splitlines()
begin = next((i for i, l in enumerate(lines) if l.startswith("==EDGEGUARD-OUT-BEGIN==")), None)
end = next((i for i, l in enumerate(lines) if l.startswith("==EDGEGUARD-OUT-END==")), None)
if begin is None or end is None or end < begin:
    print("error: no results block on the console", file=sys.stderr)
    sys.exit(1)
_, size, digest = lines[begin].split()
# Only base64 lines: a stray kernel line on the console must not corrupt the block.
blob = base64.b64decode("".join(l.strip() for l in lines[begin + 1:end] if re.fullmatch(r"[A-Za-z0-9+/=]+", l.strip())))
if len(blob) != int(size) or hashlib.sha256(blob).hexdigest() != digest:
    print(f"error: the results block is damaged ({len(blob)} bytes, want {size})", file=sys.stderr)
    sys.exit(1)
with tarfile.open(fileobj=io.BytesIO(blob), mode="r:gz") as tar:
    try:
        tar.extractall(out, filter="data")  # Python 3.12+: no links or paths out of `out`
    except TypeError:
        tar.extractall(out)
PYEOF

check_results() {
    python3 - "$out" "$EXECS" "$QUICK" "$CONNS" "$CONNS6" "$QCONNS" <<'PYEOF'
import json, os, sys
out = sys.argv[1]
EXECS, QUICK, CONNS, CONNS6, QCONNS = map(int, sys.argv[2:7])
PORT, QPORT = "7001", "7002"

def read(name, default=""):
    try:
        return open(os.path.join(out, name)).read()
    except FileNotFoundError:
        return default

results = []
def check(ok, what):
    results.append(bool(ok))
    print(("PASS  " if ok else "FAIL  ") + what)
def info(what):
    print("INFO  " + what)

events = []
messages = 0
for n, line in enumerate(read("messages.jsonl").splitlines(), 1):
    if not line.strip():
        continue
    try:
        m = json.loads(line)
    except ValueError as e:
        check(False, f"messages.jsonl line {n} is not JSON: {e}")
        continue
    messages += 1
    events.extend(m["Events"])
records = lambda name: [r for e in events if e["Name"] == name for r in e["Payload"]]
kinds = {}
for e in events:
    kinds[e["Name"]] = kinds.get(e["Name"], 0) + 1
info(f"{messages} messages, {len(events)} events: " + ", ".join(f"{k} {v}" for k, v in sorted(kinds.items())))
for t in read("timeouts").splitlines():
    info(f"guest wait timed out: {t}")

# The agent itself.
rc = read("agent.rc").strip()
check(rc == "0", f"agent exited {rc or 'never (killed)'} after SIGTERM (want 0)")
check(not records("ConfigurationError"),
      "configuration accepted" + "".join(f"; rejected {r['ConfigurationName']}: {r['Message']}" for r in records("ConfigurationError")))
agent_log = read("agent.log")
panics = [l for l in agent_log.splitlines() if "panicked" in l]
check(not panics, "no panic in the agent log" + (f": {panics[0]}" if panics else ""))

# Collector health. Only the kernel readers announce a healthy start; the others speak up when
# they are not healthy (and on recovery), so "no non-Up status" is their Up.
# Collectors that cannot be Up in this initramfs, and why (see the docs):
EXPECTED_NOT_UP = {
    "login": "the initramfs has no wtmp, btmp, auth.log or secure (src/collectors/login/: Degraded when every source is missing)",
    "firewall": "the initramfs has no nft or iptables binary (src/collectors/firewall/: Degraded when no backend answers)",
    "firewall_changes": "the armmp kernel builds nfnetlink and nf_tables as modules and the initramfs loads none (src/collectors/firewall/monitor.rs: Degraded, iptables-legacy digest only)",
}
status = {}
for r in records("CollectorStatus"):
    status.setdefault(r["Collector"], []).append(r)
for c, rs in sorted(status.items()):
    for r in rs:
        info(f"CollectorStatus {c}: {r['Status']}: {r['Message']}" + (f" (fallback: {r['Fallback']})" if r.get("Fallback") else ""))
for c in ("process", "connection"):
    rs = status.get(c, [])
    check(rs and all(r["Status"] == "Up" for r in rs),
          f"{c} collector Up, never Degraded/Down (" + ("; ".join(f"{r['Status']}: {r['Message']}" for r in rs) or "no status") + ")")
for c, rs in sorted(status.items()):
    if c in ("process", "connection"):
        continue
    bad = [r for r in rs if r["Status"] != "Up"]
    if not bad:
        continue
    if c in EXPECTED_NOT_UP:
        info(f"{c} is {bad[-1]['Status']} as expected in this VM: {EXPECTED_NOT_UP[c]}")
    else:
        check(False, f"{c} collector {bad[-1]['Status']}: {bad[-1]['Message']}")
for c in EXPECTED_NOT_UP:
    if not any(r["Status"] != "Up" for r in status.get(c, [])):
        info(f"{c}: no non-Up status (expected one in this VM)")
if "exec tracepoint open" in agent_log:
    check(True, "exec tracepoint (sched_process_exec via perf) open")
else:
    line = next((l for l in agent_log.splitlines() if "exec tracepoint unavailable" in l), "no line about it in the log")
    check(False, f"exec tracepoint open ({line.strip()})")

# ProcessCreate for the probes: from the connector (complete: command line, user, parent).
procs = records("ProcessCreate")
probe_pids = {int(p) for p in read("probe-pids").split()}
want = {f"/bin/sh /usr/local/bin/eg-probe --seq {i} --tag arm32vm" for i in range(1, EXECS + 1)}
probes = [r for r in procs if r.get("CommandLine") in want]
seen = {r["CommandLine"] for r in probes}
complete = [r for r in probes if "Incomplete" not in r.get("ExtraDetails", {})
            and r.get("UserId") == "0" and r.get("UserName") == "root"
            and r.get("ParentProcessId", 0) > 0 and r["ProcessId"] in probe_pids
            and r.get("Executable") == "/bin/busybox"]
check(len(seen) == EXECS and len(probes) == EXECS,
      f"ProcessCreate for the probes: {len(seen)} of {EXECS} command lines, {len(probes)} records (want exactly {EXECS})")
check(len(complete) == EXECS,
      f"probe records complete (executable /bin/busybox, user root, parent, pid of the probe): {len(complete)} of {EXECS}")
terms = [r for r in records("ProcessTerminate") if r["ProcessId"] in probe_pids]
exit3 = [r for r in terms if str(r.get("ExitStatus")) == "3"]
check(len(exit3) == EXECS,
      f"ProcessTerminate with exit status 3 for the probes (only the process connector knows it): {len(exit3)} of {EXECS}"
      + (f" (statuses: {sorted(str(r.get('ExitStatus')) for r in terms)})" if len(exit3) != EXECS else ""))
codes = read("probe-codes").split()
if codes and set(codes) != {"3"}:
    info(f"probe exit codes seen by the guest: {codes}")

# Quick execs: the connector must report every one (a record for each pid); how much of it is
# known depends on the CPU (a process gone before /proc is read loses its command line; the exec
# tracepoint still names its file): informational.
quick_pids = [int(p) for p in read("quick-pids").split()]
qrec = {r["ProcessId"]: r for r in procs if r["ProcessId"] in set(quick_pids)}
check(len(qrec) == QUICK, f"ProcessCreate for every quick exec (exits at once): {len(qrec)} of {QUICK} pids")
q_cmd = sum((r.get("CommandLine") or "").startswith("/bin/sh /usr/local/bin/eg-quick --seq ") for r in qrec.values())
q_exe = sum(not (r.get("CommandLine") or "") and r.get("Executable") == "/usr/local/bin/eg-quick" for r in qrec.values())
q_inc = sum("Incomplete" in r.get("ExtraDetails", {}) for r in qrec.values())
info(f"quick execs: {q_cmd} of {QUICK} with their command line, {q_exe} named by the exec tracepoint only "
     f"(file name, no command line), {QUICK - q_cmd - q_exe} with neither; {q_inc} marked Incomplete")

# Connections. Held ones (both ends alive until reported): exact counts, exact attribution.
conns = records("ConnectionCreate")
def to_port(port, direction):
    if direction == "Out":
        return [r for r in conns if r["Direction"] == "Out" and r["RemotePort"] == port]
    return [r for r in conns if r["Direction"] == "In" and r.get("LocalPort") == port]
def pid_file(name):
    return int(read(name, "0").strip() or 0)
listener_pid, qlistener_pid = pid_file("listener-pid"), pid_file("qlistener-pid")
client_pids = {int(p) for p in read("client-pids").split()}
is_client = lambda r, port: (r.get("ProcessId") in client_pids and r.get("Executable") == "/bin/busybox"
                             and (r.get("CommandLine") or "").startswith("nc -w 10 ") and (r.get("CommandLine") or "").endswith(f" {port}"))
# The In side of an accepted connection belongs to the process that holds the accepted socket:
# the listener (busybox nc) or the child it forked for the connection (eg-hold, or `true`), or
# the listener when the child was gone.
is_server = lambda r: r.get("ProcessId", 0) > 0 and r.get("Executable") == "/bin/busybox"
unattributed = lambda rs: sum("Unattributed" in r.get("ExtraDetails", {}) for r in rs)
for fam, n, addr in (("IPv4", CONNS, "127.0.0.1"), ("IPv6", CONNS6, "::1")):
    o = [r for r in to_port(PORT, "Out") if r["RemoteAddress"] == addr]
    i = [r for r in to_port(PORT, "In") if r["RemoteAddress"] == addr]
    check(len(o) == n, f"held {fam}: ConnectionCreate Out to {addr}:{PORT}: {len(o)} (want exactly {n})")
    check(len(i) == n, f"held {fam}: ConnectionCreate In on {addr}:{PORT}: {len(i)} (want exactly {n})")
    oa = [r for r in o if is_client(r, PORT)]
    ia = [r for r in i if is_server(r)]
    check(len(oa) == n, f"held {fam}: Out attributed to its nc client (pid, busybox, 'nc -w 10 {addr} {PORT}'): {len(oa)} of {len(o)}"
          + (f"; unattributed {unattributed(o)}; others: " + "; ".join(f"pid {r.get('ProcessId')} {r.get('Executable')!r} {r.get('CommandLine')!r}" for r in o if r not in oa)[:400] if len(oa) != len(o) else ""))
    check(len(ia) == n, f"held {fam}: In attributed to the server (busybox): {len(ia)} of {len(i)} "
          f"({sum(r.get('ProcessId') == listener_pid for r in i)} to the listener pid {listener_pid}, the rest to the eg-hold child)"
          + (f"; unattributed {unattributed(i)}" if len(ia) != len(i) else ""))
# Quick ones: the client is gone within milliseconds of connecting.
qo, qi = to_port(QPORT, "Out"), to_port(QPORT, "In")
check(len(qo) == QCONNS, f"quick: ConnectionCreate Out to 127.0.0.1:{QPORT}: {len(qo)} (want exactly {QCONNS})")
check(len(qi) == QCONNS, f"quick: ConnectionCreate In on 127.0.0.1:{QPORT}: {len(qi)} (want exactly {QCONNS})")
qia = [r for r in qi if is_server(r)]
check(len(qia) == QCONNS, f"quick: In attributed to the server (busybox): {len(qia)} of {len(qi)} "
      f"(ListenerClosed {sum('ListenerClosed' in r.get('ExtraDetails', {}) for r in qi)})")
qoa = [r for r in qo if (r.get("CommandLine") or "").startswith("nc -w 10 ")]
qop = [r for r in qo if r.get("ProcessId") and r not in qoa]
info(f"quick: Out attributed to the client with its command line {len(qoa)} of {len(qo)}, "
     f"with a pid only (gone before /proc was read) {len(qop)}, unattributed {unattributed(qo)} "
     f"(a client gone before the lookup cannot be named: README 'Status')")
other = [r for r in conns if r.get("RemotePort") not in (PORT, QPORT) and r.get("LocalPort") not in (PORT, QPORT)]
if other:
    info(f"{len(other)} other ConnectionCreate records: " + "; ".join(f"{r['Direction']} {r.get('LocalAddress')}:{r.get('LocalPort')} -> {r['RemoteAddress']}:{r['RemotePort']}" for r in other[:5]))

# The listeners in a ListeningPorts snapshot, with their processes.
lps = records("ListeningPorts")
for port, pid in ((PORT, listener_pid), (QPORT, qlistener_pid)):
    entries = [r for r in lps if r.get("LocalPort") == port and r.get("Protocol") == "TCP"]
    owned = [r for r in entries if r.get("ExtraDetails", {}).get("ProcessId") == str(pid)]
    check(owned, f"ListeningPorts entry for TCP port {port} naming its listener (pid {pid}, "
          f"{owned[0]['ExtraDetails'].get('Executable') if owned else '-'}): {len(owned)} of {len(entries)} snapshot entries"
          f" (addresses {sorted({r.get('LocalAddress') for r in entries})})")
    if len(owned) != len(entries):
        info(f"port {port}: {len(entries) - len(owned)} snapshot entr(y/ies) without the process: a listener opened while "
             "the snapshot ran (owners are scanned before the socket tables: src/collectors/listening.rs snapshot())")

# Kernel modules and USB devices, loaded and plugged while the agent watched: the kernel-module
# and USB rules driven by the kernel itself, each with its near miss.
late = read("late-modules").split()
failed_insmod = read("late-insmod-failed").split()
check(late and not failed_insmod, f"late modules loaded by the guest: {len(late) - len(failed_insmod)} of {len(late)}"
      + (f" (failed: {failed_insmod})" if failed_insmod else ""))
loaded = {r["Name"]: r for r in records("KernelModule") if r.get("Action") == "Loaded"}
missing = [m for m in late if m not in loaded]
check(late and not missing, f"KernelModule Loaded for every module loaded after the start: {len(late) - len(missing)} of {len(late)}"
      + (f" (missing: {missing})" if missing else ""))
alerts = records("Alert")
def alerts_of(rule, key=None, value=None):
    return [a for a in alerts if a.get("RuleId") == rule and (key is None or a.get("ExtraDetails", {}).get(key) == value)]
check(alerts_of("kernel-module-inserted", "Module", "dummy"), "alert kernel-module-inserted for dummy (signed, loaded after the start)")
unsigned = sorted({a.get("ExtraDetails", {}).get("Module") for a in alerts_of("unsigned-kernel-module")})
check(unsigned == ["crc_itu_t"], f"alert unsigned-kernel-module for crc_itu_t (signature cut off) and no other module: {unsigned}")
insmods = [r for r in records("ProcessCreate") if (r.get("CommandLine") or "").startswith("insmod ")]
info(f"kernel-module-loaded (the insmod command line): {len(alerts_of('kernel-module-loaded'))} alerts, {len(insmods)} insmod "
     "ProcessCreate records (busybox's shell may run an applet in a forked child without an exec: then there is no "
     "exec to see, and only the kernel's side, kernel-module-inserted, reports the load)")
crc = loaded.get("crc_itu_t", {}).get("ExtraDetails", {})
info(f"crc_itu_t as reported: taint {crc.get('Taint')!r}, Unsigned {crc.get('Unsigned')!r}, source {crc.get('Source')!r}")
added = [r for r in records("ConnectedHardware") if r.get("ExtraDetails", {}).get("Action") == "Added"]
info("hardware added while the agent watched: " + "; ".join(
    f"{r.get('HardwareCategory')}/{r.get('HardwareSubCategory')} {r.get('HardwareName')!r}" for r in added[:12]))
usb_alerts = alerts_of("usb-storage-connected")
storage = lambda d: d.get("HardwareSubCategory") in ("Mass Storage", "Removable Disk") or "Mass Storage" in d.get("InterfaceClasses", "")
check(any(storage(r | r.get("ExtraDetails", {})) for r in added), "ConnectedHardware Added for the USB stick (Mass Storage or Removable Disk)")
check(usb_alerts, f"alert usb-storage-connected: {len(usb_alerts)} ("
      + "; ".join(f"{a.get('ExtraDetails', {}).get('HardwareSubCategory')} {a.get('ExtraDetails', {}).get('HardwareName')!r}" for a in usb_alerts) + ")")
not_storage = [a for a in usb_alerts if not storage(a.get("ExtraDetails", {}))]
hid = [r for r in added if "Human Interface Device" in r.get("ExtraDetails", {}).get("InterfaceClasses", "")]
check(hid and not not_storage, f"the USB keyboard was added ({len(hid)} record(s)) and no usb-storage-connected alert is about a device that is not storage"
      + (f": {not_storage}" if not_storage else ""))

# The periodic side, for the record.
si = records("SystemInformation")
if si:
    s = si[-1]
    info(f"SystemInformation: {s.get('OSName')} {s.get('OSVersion')} {s.get('OsArchitecture')}, kernel {s.get('ExtraDetails', {}).get('KernelRelease')}, "
         f"{s.get('TotalPhysicalMemoryInKB')} KiB" + (f", unavailable: {s['ExtraDetails']['Unavailable']}" if "Unavailable" in s.get("ExtraDetails", {}) else ""))
check(si and (si[-1].get("OsArchitecture") or "").startswith("arm"), "SystemInformation from the ARM guest")
dropped = [r for r in records("DroppedEventsStatistics") if int(r.get("DroppedEvents", 0))]
if dropped:
    info("dropped events: " + "; ".join(f"{r['Queue']}: {r['DroppedEvents']} of {r['CollectedEvents']}" for r in dropped))
warns = [l for l in agent_log.splitlines() if " WARN " in l or " ERROR " in l]
for l in warns[:15]:
    info("agent log: " + l.strip()[:300])
if len(warns) > 15:
    info(f"... {len(warns) - 15} more WARN/ERROR lines in agent.log")

passed, failed = results.count(True), results.count(False)
print(f"arm32-vm: {passed} passed, {failed} failed")
sys.exit(1 if failed else 0)
PYEOF
}

check_rc=0
check_results || check_rc=$?
if [ "$check_rc" != 0 ] && [ "$quiet" = 1 ]; then
    # The guest's own account of what it waited for and when.
    sed 's/^/guest| /' "$out/init.log" >&2 || true
fi
phases=$(tr '\n' ' ' <"$out/phases" 2>/dev/null || true)
boot=$(sed -n 's/^\[\([0-9.]*\)\] init started.*/\1/p' "$out/init.log" 2>/dev/null | head -1)
printf '\ntimes: preparation (installs, downloads) %ss, build %ss, VM run %ss (kernel to /init %ss; guest uptime at: %s), total %ss\n' \
    "$prep_secs" "$build_secs" "$vm_secs" "${boot:-?}" "${phases:-?}" "$(elapsed "$t_start")"
printf 'kernel: %s %s (%s); busybox-static %s; results in %s\n' "$kernel_pkg" "$kernel_ver" "$kver" "$busybox_ver" "$out"
if [ "$check_rc" = 0 ]; then
    echo "arm32-vm: PASS"
else
    echo "arm32-vm: FAIL"
fi
exit "$check_rc"
