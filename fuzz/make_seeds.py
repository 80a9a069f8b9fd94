#!/usr/bin/env python3
"""Writes the seed corpora in fuzz/corpus/<target>/ from the repository's test fixtures
(tests/fixtures, inline fixtures of the parsers' unit tests) and hand-built wire messages with
the same layout the unit tests build. Deterministic: re-running gives the same files.

Run from anywhere: python3 fuzz/make_seeds.py
"""
import ipaddress
import pathlib
import re
import shutil
import struct
import sys

FUZZ = pathlib.Path(__file__).resolve().parent
ROOT = FUZZ.parent
CORPUS = FUZZ / "corpus"
NE = "<" if sys.byteorder == "little" else ">"  # the parsers read the host's byte order


def put(target, name, data):
    d = CORPUS / target
    d.mkdir(parents=True, exist_ok=True)
    if isinstance(data, str):
        data = data.encode()
    (d / name).write_bytes(data)


def rust_strings(path, pattern):
    """Rust string literals (plain "..." only) in a source file whose text matches `pattern`."""
    text = (ROOT / path).read_text()
    out = []
    for m in re.finditer(r'"((?:[^"\\]|\\.)*)"', text, re.S):
        s = re.sub(r"\\\n\s*", "", m.group(1))  # a `\` line continuation
        if re.search(pattern, s):
            s = (s.replace('\\"', '"').replace("\\n", "\n").replace("\\t", "\t")
                 .replace("\\\\", "\\"))
            out.append(s)
    return out


# ---- process_netlink: nlmsghdr + cn_msg + proc_event, as process.rs tests build them
def proc_event(what, fields):
    data = bytearray(24)
    for i, f in enumerate(fields):
        data[i * 4:i * 4 + 4] = struct.pack(NE + "I", f)
    return struct.pack(NE + "IIQ", what, 0, 123) + bytes(data)


def cn_msg(idx, seq, ack, data):
    return struct.pack(NE + "IIIIHH", idx, 1, seq, ack, len(data), 0) + data


def nlmsg(kind, payload):
    m = struct.pack(NE + "IHH II", 16 + len(payload), kind, 0, 0, 0) + payload
    return m + b"\0" * (-len(m) % 4)


def datagram(what, fields):
    return nlmsg(3, cn_msg(1, 0, 0, proc_event(what, fields)))


put("process_netlink", "fork", datagram(1, [10, 10, 11, 11]))
put("process_netlink", "exec", datagram(2, [11, 11]))
put("process_netlink", "exit", datagram(0x80000000, [11, 11, 0x300, 17, 10, 10]))
put("process_netlink", "exit-signal", datagram(0x80000000, [11, 11, 0x89, 17]))
put("process_netlink", "ack", nlmsg(3, cn_msg(1, 7, 8, proc_event(0, [1]))))
put("process_netlink", "other", datagram(0x200, [1, 1]))
put("process_netlink", "two-with-noop",
    datagram(2, [5, 5]) + nlmsg(1, b"") + datagram(2, [6, 6]))
put("process_netlink", "truncated", datagram(2, [5, 5])[:30])
put("process_netlink", "other-channel", nlmsg(3, cn_msg(9, 0, 0, proc_event(2, [1, 1]))))


# ---- connection_syn: IP + TCP headers as a cooked capture delivers them
def tcp(sport, dport, seq, flags):
    return struct.pack(">HHIIBBHHH", sport, dport, seq, 0, 5 << 4, flags, 64240, 0, 0)


def ipv4(src, dst, payload, frag=0, proto=6):
    return struct.pack(">BBHHHBBH4s4s", 0x45, 0, 20 + len(payload), 1, frag, 64, proto, 0,
                       ipaddress.IPv4Address(src).packed,
                       ipaddress.IPv4Address(dst).packed) + payload


def ipv6(src, dst, next_header, payload):
    return struct.pack(">IHBB16s16s", 6 << 28, len(payload), next_header, 64,
                       ipaddress.IPv6Address(src).packed,
                       ipaddress.IPv6Address(dst).packed) + payload


put("connection_syn", "v4-syn", ipv4("192.0.2.1", "192.0.2.2", tcp(40000, 22, 1234, 0x02)))
put("connection_syn", "v4-synack", ipv4("192.0.2.2", "192.0.2.1", tcp(22, 40000, 99, 0x12)))
put("connection_syn", "v4-fragment",
    ipv4("192.0.2.1", "192.0.2.2", tcp(40000, 22, 1, 0x02), frag=0x0010))
put("connection_syn", "v4-udp", ipv4("192.0.2.1", "192.0.2.2", b"\0" * 8, proto=17))
put("connection_syn", "v6-syn", ipv6("2001:db8::1", "2001:db8::2", 6, tcp(40000, 443, 7, 0x02)))
hop = bytes([44, 0]) + b"\0" * 6        # hop-by-hop options, then a fragment header
frag = bytes([6, 0, 0, 0]) + b"\0" * 4  # first fragment, then TCP
put("connection_syn", "v6-ext-headers",
    ipv6("2001:db8::1", "2001:db8::2", 0, hop + frag + tcp(40000, 443, 7, 0x02)))
put("connection_syn", "v6-truncated", ipv6("::1", "::1", 6, tcp(1, 2, 3, 0x02))[:50])


# ---- connection_diag: sock_diag replies (inet_diag_msg after the netlink header)
def diag_msg(family, state, local, lport, remote, rport, uid, inode):
    def addr(a):
        b = ipaddress.ip_address(a).packed
        return b + b"\0" * (16 - len(b))
    head = struct.pack(">BBBB", family, state, 0, 0) + struct.pack(">HH", lport, rport)
    body = head + addr(local) + addr(remote) + struct.pack(NE + "I", 0) + b"\xff" * 8
    body += struct.pack(NE + "IIIII", 0, 0, 0, uid, inode)
    assert len(body) == 72
    return body


put("connection_diag", "v4-socket",
    nlmsg(20, diag_msg(2, 1, "127.0.0.1", 5000, "127.0.0.1", 80, 1000, 4242)) + nlmsg(3, b"\0" * 4))
put("connection_diag", "v6-socket",
    nlmsg(20, diag_msg(10, 10, "::1", 8080, "::", 0, 0, 31337)))
put("connection_diag", "error", nlmsg(2, struct.pack(NE + "i", -2) + b"\0" * 16))

# ---- listening_socket_table: the unit tests' tables
for i, s in enumerate(rust_strings("src/collectors/listening.rs", r"local_address")):
    put("listening_socket_table", f"table-{i}", s)
put("listening_socket_table", "tcp4",
    "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n"
    "   0: 0100007F:0016 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1234 1 0000000000000000 100 0 0 10 0\n"
    "   1: 0200000A:0016 0100000A:D2F0 01 00000000:00000000 02:0000A2E4 00000000  1000        0 5678 2 0000000000000000 20 4 30 10 -1\n"
    "   2: 00000000:0044 00000000:0000 07 00000000:00000000 00:00000000 00000000     0        0 999 2 0000000000000000 0\n")
put("listening_socket_table", "links", "socket:[12345]\nnet:[4026531840]\n")


# ---- login_utmp: records at the layout's offsets, as login.rs tests write them
def utmp(layout, kind, pid, line, user, host, sec, addr):
    size = 384 if layout == "compat32" else 400
    b = bytearray(size)
    b[0:2] = struct.pack(NE + "h", kind)
    b[4:8] = struct.pack(NE + "i", pid)
    b[8:8 + len(line)] = line
    b[40:44] = b"ts/0"
    b[44:44 + len(user)] = user
    b[76:76 + len(host)] = host
    if layout == "compat32":
        b[336:340] = struct.pack(NE + "i", 4242)
        b[340:344] = struct.pack(NE + "I", sec)
        b[344:348] = struct.pack(NE + "i", 123456)
        b[348:364] = addr
    else:
        b[336:344] = struct.pack(NE + "q", 4242)
        b[344:352] = struct.pack(NE + "q", sec)
        b[352:360] = struct.pack(NE + "q", 123456)
        b[360:376] = addr
    return bytes(b)


T0 = 1_795_000_000
v4 = ipaddress.IPv4Address("203.0.113.9").packed + b"\0" * 12
v6 = ipaddress.IPv6Address("2001:db8::7").packed
for layout in ("compat32", "native64"):
    recs = [
        utmp(layout, 2, 0, b"~", b"reboot", b"6.18.0", T0, b"\0" * 16),
        utmp(layout, 7, 1200, b"pts/0", b"alice", b"203.0.113.9", T0 + 5, v4),
        utmp(layout, 6, 1300, b"ssh:notty", b"root", b"2001:db8::7", T0 + 9, v6),
        utmp(layout, 8, 1200, b"pts/0", b"", b"", T0 + 60, b"\0" * 16),
    ]
    put("login_utmp", f"{layout}-wtmp", b"".join(recs))
    put("login_utmp", f"{layout}-partial", b"".join(recs[:2]) + recs[2][:100])
put("login_utmp", "bad-type", b"\x7f\x7f" + b"\0" * 382)

# ---- login_auth_log: the unit tests' auth.log lines (and the sshd messages of their tables,
# under a syslog header), one file each and all together
header = r"^(<\d+>1 |Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec|Foo|20\d\d-)"
lines = []
for f in sorted((ROOT / "src/collectors/login/tests").glob("*.rs")):
    rel = f.relative_to(ROOT)
    lines += rust_strings(rel, header)
    lines += ["Nov 23 17:42:57 edge sshd[77]: " + m for m in rust_strings(
        rel, r"^(Accepted|Failed|ROOT|Invalid|Illegal|input_|User |Disconnect|error: |fatal: |"
             r"Connection|Received|refused|Did not|Bad protocol|banner|pam_|Address )")]
for i, s in enumerate(lines):
    put("login_auth_log", f"line-{i:03}", s + "\n")
put("login_auth_log", "all", "".join(s + "\n" for s in lines))

# ---- login_journal: small journal files built to systemd's "Journal File Format" (the reader
# needs no hash tables), regular and compact, as login/tests/journal.rs reads real ones; and with
# MESSAGE compressed as journald stores long fields (flags: XZ 1, LZ4 2, ZSTD 4), made by the
# reference encoders (liblzma through Python's lzma, the lz4 and zstd tools), so the fuzzer
# starts inside the decoders
def journal(compact, entries):
    """entries: [(seqnum, realtime, [b"FIELD=value" or (object_flag, stored_payload), ...])]"""
    def obj(kind, body, flags=0):
        size = 16 + len(body)
        return struct.pack("<BB6xQ", kind, flags, size) + body + b"\0" * (-size % 8)
    out = bytearray(264)
    offsets = {}
    header_flags = 16 if compact else 0
    for _, _, fields in entries:
        for f in fields:
            if f not in offsets:
                offsets[f] = len(out)
                flags, stored = f if isinstance(f, tuple) else (0, f)
                header_flags |= {0: 0, 1: 1, 2: 2, 4: 8}[flags]
                body = b"\0" * (48 + (8 if compact else 0)) + stored
                out += obj(1, body, flags)
    entry_offsets = []
    for seq, rt, fields in entries:
        entry_offsets.append(len(out))
        body = struct.pack("<QQQ", seq, rt, 1000 + seq) + b"\x01" * 16 + struct.pack("<Q", 0)
        for f in fields:
            body += struct.pack("<I", offsets[f]) if compact else struct.pack("<QQ", offsets[f], 0)
        out += obj(3, body)
    array_at = len(out)
    items = b"".join(struct.pack("<I" if compact else "<Q", o) for o in entry_offsets)
    out += obj(6, struct.pack("<Q", 0) + items + b"\0" * (4 if compact else 8))  # one spare slot
    header = struct.pack("<8sII8x", b"LPKSHHRH", 0, header_flags)
    header += b"\x11" * 16 + b"\x22" * 16 + b"\x01" * 16 + b"\x33" * 16
    header += struct.pack("<QQQQQQQQQQQQQQQ", 264, len(out) - 264, 0, 0, 0, 0, array_at,
                          len(entry_offsets) * 2 + len(offsets) + 1, len(entries),
                          entries[-1][0], entries[0][0], array_at, entries[0][1],
                          entries[-1][1], 0)
    out[:len(header)] = header
    return bytes(out)


def xz_journald(data):
    """XZ as journald's compress_blob_xz writes it (1 MiB dictionary, fast mode, no check)."""
    import lzma
    return lzma.compress(data, format=lzma.FORMAT_XZ, check=lzma.CHECK_NONE, filters=[{
        "id": lzma.FILTER_LZMA2, "dict_size": 1 << 20, "lc": 3, "lp": 0, "pb": 2,
        "mode": lzma.MODE_FAST, "nice_len": 128, "mf": lzma.MF_HC3, "depth": 4}])


def lz4_journald(data):
    """LZ4 as journald writes it: the size (64-bit little-endian), then the one block of the lz4
    tool's frame (4 MiB blocks, no checksums)."""
    import subprocess
    frame = subprocess.run(["lz4", "-q", "-B7", "--no-frame-crc", "-c"], input=data,
                           capture_output=True, check=True).stdout
    assert frame[:4] == b"\x04\x22\x4d\x18" and not frame[4] & 0x10
    at = 6 + (8 if frame[4] & 0x08 else 0) + (4 if frame[4] & 0x01 else 0) + 1
    size = struct.unpack_from("<I", frame, at)[0]
    assert not size & 0x80000000 and frame[at + 4 + size:at + 8 + size] == b"\0" * 4
    return struct.pack("<Q", len(data)) + frame[at + 4:at + 4 + size]


def zstd_journald(data):
    """ZSTD as journald's ZSTD_compress writes it: one single-segment frame (size known)."""
    import subprocess
    return subprocess.run(["zstd", "-q", "-c", f"--stream-size={len(data)}"], input=data,
                          capture_output=True, check=True).stdout


sshd_entries = [
    (1, 1795000000000000, [b"_HOSTNAME=edge", b"SYSLOG_IDENTIFIER=sshd", b"_PID=1234",
                           b"MESSAGE=Failed password for root from 192.0.2.1 port 5 ssh2"]),
    (2, 1795000001000000, [b"_HOSTNAME=edge", b"SYSLOG_IDENTIFIER=sshd", b"_PID=1234",
                           b"MESSAGE=Accepted password for alice from 192.0.2.1 port 5 ssh2"]),
]
put("login_journal", "regular", journal(False, sshd_entries))
put("login_journal", "compact", journal(True, sshd_entries))
# journald compresses fields over 512 bytes: the messages get a long user name.
long_entries = [(seq, rt, [f.replace(b" for ", b" for " + b"u" * 600 + b"@") for f in fields])
                for seq, rt, fields in sshd_entries]
for name, flag, encode in [("xz", 1, xz_journald), ("lz4", 2, lz4_journald),
                           ("zstd", 4, zstd_journald)]:
    compressed = [(seq, rt, [(flag, encode(f)) if f.startswith(b"MESSAGE=") else f
                             for f in fields]) for seq, rt, fields in long_entries]
    put("login_journal", f"compact-{name}", journal(True, compressed))

# ---- firewall: the integration test fixtures
for f in sorted((ROOT / "tests/fixtures/firewall").iterdir()):
    target = "firewall_nft_json" if f.suffix == ".json" else "firewall_iptables_save"
    shutil.copyfile(f, CORPUS / target / f.name) if (CORPUS / target).is_dir() else (
        put(target, f.name, f.read_bytes()))

# ---- baseline: sshd_config texts from the unit tests, the documented custom checks example
for i, s in enumerate(rust_strings("src/collectors/baseline/tests.rs",
                                   r"^(PermitRootLogin|X11Forwarding|Include|# comment)")):
    put("baseline", f"sshd-{i:02}", s)
put("baseline", "sshd-full",
    "# comment\nPermitRootLogin no\npermitrootlogin yes\nInclude sshd_config.d/*.conf\n"
    "PasswordAuthentication=no\nMaxAuthTries   3 # trailing comment\nBanner \"/etc/issue net\"\n"
    "LoginGraceTime 1m30s\nClientAliveInterval 300\ngarbage\nX11Forwarding \"unterminated\n"
    "\tKbdInteractiveAuthentication   =   no\nMatch User bob\n  PasswordAuthentication yes\n")
doc = (ROOT / "src/collectors/baseline/mod.rs").read_text()
m = re.search(r"//! ```json\n(.*?)//! ```", doc, re.S)
if m:
    put("baseline", "custom-checks.json",
        "".join(l[4:] + "\n" if l.startswith("//! ") else "\n"
                for l in m.group(1).splitlines()))

# ---- accounts: passwd \0 group \0 shadow, from the unit tests
put("accounts", "tests",
    "root:x:0:0:root:/root:/bin/bash\n# comment\n\nbad line\nuser:x:1000:1000::/home/user:/bin/sh\n"
    "neg:x:-1:0::/:/bin/sh\n+nis\nshort:x:1\n\0"
    "root:x:0:\nadm:x:4:syslog, user\nbroken\n\0"
    "root:!:19000:0:99999:7:::\nu:$6$abc:1::\nopen::1::\n*bad\n")
put("accounts", "passwd-only",
    "root:x:0:0:root:/root:/bin/bash\ndaemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin\n"
    "toor:x:0:0::/root:/bin/sh\nroot:x:5:5::/:/bin/sh\n")

# ---- proc_files
ID = "3f1d9c2e4b5a69788796a5b4c3d2e1f00112233445566778899aabbccddeeff0"
put("proc_files", "cgroup-v1", f"12:pids:/docker/{ID}\n1:name=systemd:/\n")
put("proc_files", "cgroup-v2", f"0::/kubepods.slice/kubepods-burstable.slice/cri-containerd-{ID}.scope\n")
put("proc_files", "cgroup-podman", f"0::/machine.slice/libpod-{ID}.scope/container\n")
put("proc_files", "status", "Name:\tbash\nUmask:\t0022\nPPid:\t12\nUid:\t1000\t0\t0\t0\n")
put("proc_files", "cmdline", b"sh\0-c\0echo hi\0")
put("proc_files", "cmdline-invalid", bytes([0xFF]) + b"a\0")
for i, s in enumerate(rust_strings("src/collectors/connection/tests/interpretation.rs", r"^(Main:|0{31}1 )")):
    put("proc_files", f"net-{i}", s)
put("proc_files", "os-release",
    'PRETTY_NAME="Debian GNU/Linux 13 (trixie)"\nNAME="Debian GNU/Linux"\nVERSION_ID="13"\n'
    "ID=debian\n# comment\nHOME_URL='https://www.debian.org/'\n")
put("proc_files", "meminfo", "MemTotal:        2014256 kB\nMemFree:          123456 kB\n")
put("proc_files", "uptime", "12345.67 23456.78\n")
put("proc_files", "stat", "cpu  1 2 3 4\nbtime 1795000000\nprocesses 1234\n")
put("proc_files", "cpu-list", "0-3,5,7-8\n")

# exec_trace: a sched_process_exec raw record (filename at 20, 14 bytes with its NUL; pid 4321)
# and the kernel's format file.
_name = b"/usr/bin/true\0"
_rec = bytearray(20)
_rec[8:12] = (20 | (len(_name) << 16)).to_bytes(4, "little")
_rec[12:16] = (4321).to_bytes(4, "little")
put("exec_trace", "record", bytes(_rec) + _name)
put("exec_trace", "format",
    "name: sched_process_exec\nID: 365\nformat:\n"
    "\tfield:unsigned short common_type;\toffset:0;\tsize:2;\tsigned:0;\n"
    "\tfield:__data_loc char[] filename;\toffset:8;\tsize:4;\tsigned:0;\n"
    "\tfield:pid_t pid;\toffset:12;\tsize:4;\tsigned:1;\n")

# ---- inventory_rpm: rpm header blobs (intro, 16-byte index entries, data store; as
# inventory/tests/rpm.rs builds them) in an rpmdb.sqlite-shaped database of 512-byte pages (one
# header large enough to overflow), without and with a WAL (copied while the connection is
# open, before SQLite checkpoints it away). Input layout: see fuzz_targets/inventory_rpm.rs.
def rpm_header(entries):
    index, data = b"", b""
    for tag, ty, value in entries:
        if ty == 4:
            data += b"\0" * (-len(data) % 4)
        index += struct.pack(">IIII", tag, ty, len(data), 1)
        data += value
    return struct.pack(">II", len(entries), len(data)) + index + data


def rpm_package(name, version, release, epoch=None, arch=b"noarch", description=b"test"):
    e = [(63, 7, b"\0" * 16), (1000, 6, name + b"\0"), (1001, 6, version + b"\0"),
         (1002, 6, release + b"\0")]
    if epoch is not None:
        e.append((1003, 4, struct.pack(">I", epoch)))
    e += [(1005, 9, description + b"\0"), (1022, 6, arch + b"\0"),
          (1044, 6, name + b"-" + version + b"-" + release + b".src.rpm\0")]
    return rpm_header(e)


def rpm_sqlite(wal):
    import sqlite3
    import tempfile
    with tempfile.TemporaryDirectory() as d:
        db = pathlib.Path(d) / "rpmdb.sqlite"
        con = sqlite3.connect(db, isolation_level=None)
        con.execute("PRAGMA page_size=512")
        if wal:
            con.execute("PRAGMA journal_mode=WAL")
            con.execute("PRAGMA wal_autocheckpoint=0")
        con.execute("CREATE TABLE IF NOT EXISTS 'Packages' "
                    "(hnum INTEGER PRIMARY KEY AUTOINCREMENT,blob BLOB NOT NULL)")
        con.execute("CREATE TABLE IF NOT EXISTS 'Name' (key 'TEXT' NOT NULL, "
                    "hnum INTEGER NOT NULL, idx INTEGER NOT NULL)")
        for blob in [rpm_package(b"openssl", b"3.0.7", b"25.fc38", 1, b"x86_64"),
                     rpm_package(b"gpg-pubkey", b"18b8e74c", b"62f2920f", arch=None or b""),
                     rpm_package(b"kernel-core", b"6.5.6", b"300.fc39", arch=b"x86_64",
                                 description=b"The Linux kernel. " * 60)]:
            con.execute("INSERT INTO Packages(blob) VALUES (?)", (blob,))
        main = db.read_bytes()
        wal_bytes = (pathlib.Path(d) / "rpmdb.sqlite-wal").read_bytes() if wal else b""
        con.close()
    if wal:
        return b"\x01" + struct.pack("<H", len(wal_bytes)) + wal_bytes + main
    return b"\x00" + main


put("inventory_rpm", "rpmdb", rpm_sqlite(False))
put("inventory_rpm", "rpmdb-wal", rpm_sqlite(True))
put("inventory_rpm", "header", b"\x00" + rpm_package(b"bash", b"5.2.15", b"5.fc39", 0))


# ---- inventory_bdb: rpm's BerkeleyDB `Packages`, written by Berkeley DB itself (`db5.3_load`
# from Debian's db5.3-util, which scripts/test.sh installs) from the header blobs above: small
# pages (a header over an overflow chain), the default size, and the other byte order. Input:
# the file. Skipped, with a note, when db5.3_load is missing.
def rpm_bdb(options):
    import subprocess
    import tempfile
    blobs = [rpm_package(b"bash", b"5.2.15", b"5.fc39", 0),
             rpm_package(b"openssl", b"3.0.9", b"2.fc39", arch=b"x86_64"),
             rpm_package(b"kernel-core", b"6.5.6", b"300.fc39", arch=b"x86_64",
                         description=b"The Linux kernel. " * 60)]
    dump = "VERSION=3\nformat=bytevalue\ntype=hash\nHEADER=END\n"
    records = [(0, struct.pack("<I", len(blobs) + 1))] + list(enumerate(blobs, 1))
    for key, value in records:
        dump += " " + struct.pack("<I", key).hex() + "\n " + value.hex() + "\n"
    dump += "DATA=END\n"
    with tempfile.TemporaryDirectory() as d:
        out = pathlib.Path(d) / "Packages"
        subprocess.run(["db5.3_load", *options, str(out)], input=dump.encode(), check=True)
        return out.read_bytes()


if shutil.which("db5.3_load"):
    put("inventory_bdb", "pagesize-512", rpm_bdb(["-c", "db_pagesize=512"]))
    put("inventory_bdb", "pagesize-4096", rpm_bdb(["-c", "db_pagesize=4096"]))
    put("inventory_bdb", "big-endian", rpm_bdb(["-c", "db_pagesize=1024", "-c", "db_lorder=4321"]))
else:
    print("make_seeds: db5.3_load not found (apt-get install db5.3-util): no inventory_bdb seeds")


# ---- hardware_uevent: kernel uevent datagrams as lib/kobject_uevent.c sends them (a USB stick,
# a network interface, a module), the libudev re-broadcast header, and near misses.
put("hardware_uevent", "usb-add",
    b"add@/devices/pci0000:00/0000:00:14.0/usb1/1-1\0ACTION=add\0"
    b"DEVPATH=/devices/pci0000:00/0000:00:14.0/usb1/1-1\0SUBSYSTEM=usb\0"
    b"DEVTYPE=usb_device\0PRODUCT=781/5567/100\0TYPE=0/0/0\0BUSNUM=001\0DEVNUM=002\0SEQNUM=4242\0")
put("hardware_uevent", "net-remove",
    b"remove@/devices/virtual/net/veth0\0ACTION=remove\0DEVPATH=/devices/virtual/net/veth0\0"
    b"SUBSYSTEM=net\0INTERFACE=veth0\0IFINDEX=7\0SEQNUM=17\0")
put("hardware_uevent", "module-add",
    b"add@/module/loop\0ACTION=add\0DEVPATH=/module/loop\0SUBSYSTEM=module\0SEQNUM=9\0")
put("hardware_uevent", "libudev", b"libudev\0\xfe\xed\xca\xfe" + b"\0" * 32)
put("hardware_uevent", "dotdot", b"add@/devices/../etc\0ACTION=add\0SUBSYSTEM=block\0")
