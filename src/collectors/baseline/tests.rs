use super::*;
use crate::collectors::Periodic;
use crate::config::Config;
use crate::event::{BaselineCheck, BaselineResult, BaselineSeverity, Event, Payload};
use crate::host::HostRoot;
use BaselineSeverity::Critical;
use std::collections::{BTreeMap, HashMap};
use std::os::unix::fs::MetadataExt;
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::sync::Arc;
use tokio::sync::watch;

/// A fake host root in a temporary directory. Needs root (it chowns files).
struct Root {
    dir: tempfile::TempDir,
}

impl Root {
    fn new() -> Root {
        Root {
            dir: tempfile::tempdir().unwrap(),
        }
    }

    fn host(&self) -> HostRoot {
        HostRoot::new(self.dir.path())
    }

    fn at(&self, path: &str) -> PathBuf {
        self.dir.path().join(path.trim_start_matches('/'))
    }

    fn write(&self, path: &str, content: &str, mode: u32) -> &Root {
        let p = self.at(path);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(&p, content).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).unwrap();
        self
    }

    fn mkdir(&self, path: &str, mode: u32) -> &Root {
        let p = self.at(path);
        std::fs::create_dir_all(&p).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).unwrap();
        self
    }

    fn chown(&self, path: &str, uid: u32) -> &Root {
        std::os::unix::fs::chown(self.at(path), Some(uid), None).unwrap();
        self
    }

    fn chown_group(&self, path: &str, uid: u32, gid: u32) -> &Root {
        std::os::unix::fs::chown(self.at(path), Some(uid), Some(gid)).unwrap();
        self
    }

    fn symlink(&self, target: &str, path: &str) -> &Root {
        let p = self.at(path);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::os::unix::fs::symlink(target, p).unwrap();
        self
    }

    fn sysctls(&self, values: &[(&str, &str)]) -> &Root {
        for (name, value) in values {
            self.write(
                &format!("/proc/sys/{}", name.replace('.', "/")),
                &format!("{value}\n"),
                0o644,
            );
        }
        self
    }
}

fn by_id(records: &[BaselineCheck]) -> BTreeMap<String, &BaselineCheck> {
    records.iter().map(|r| (r.cce_id.clone(), r)).collect()
}

fn actual(r: &BaselineCheck) -> &str {
    r.extra_details
        .get("Actual")
        .map(String::as_str)
        .unwrap_or("")
}

const GOOD_SYSCTLS: &[(&str, &str)] = &[
    ("kernel.randomize_va_space", "2"),
    ("net.ipv4.conf.all.accept_redirects", "0"),
    ("net.ipv4.conf.all.send_redirects", "0"),
    ("net.ipv4.conf.all.accept_source_route", "0"),
    ("net.ipv4.tcp_syncookies", "1"),
    ("kernel.kptr_restrict", "2"),
    ("kernel.dmesg_restrict", "1"),
    ("kernel.yama.ptrace_scope", "1"),
    ("net.ipv4.conf.all.rp_filter", "2"),
    ("net.ipv4.conf.all.log_martians", "1"),
    ("fs.protected_hardlinks", "1"),
    ("fs.protected_symlinks", "1"),
    ("fs.suid_dumpable", "0"),
    ("net.ipv6.conf.all.accept_redirects", "0"),
    ("net.ipv6.conf.all.accept_source_route", "0"),
    ("net.ipv4.conf.default.accept_redirects", "0"),
    ("net.ipv4.conf.default.send_redirects", "0"),
    ("net.ipv4.conf.all.secure_redirects", "0"),
    ("net.ipv4.conf.default.secure_redirects", "0"),
    ("net.ipv4.conf.default.accept_source_route", "0"),
    ("net.ipv4.conf.default.rp_filter", "1"),
    ("net.ipv4.conf.default.log_martians", "1"),
    ("net.ipv4.icmp_echo_ignore_broadcasts", "1"),
    ("net.ipv4.icmp_ignore_bogus_error_responses", "1"),
    ("net.ipv4.ip_forward", "0"),
    ("net.ipv6.conf.all.forwarding", "0"),
    ("net.ipv6.conf.all.accept_ra", "0"),
    ("net.ipv6.conf.default.accept_ra", "0"),
    ("net.ipv6.conf.default.accept_redirects", "0"),
    ("net.ipv6.conf.default.accept_source_route", "0"),
    ("kernel.unprivileged_bpf_disabled", "2"),
    ("net.core.bpf_jit_harden", "2"),
    ("kernel.perf_event_paranoid", "3"),
    ("fs.protected_fifos", "2"),
    ("fs.protected_regular", "1"),
];

const BAD_SYSCTLS: &[(&str, &str)] = &[
    ("kernel.randomize_va_space", "1"),
    ("net.ipv4.conf.all.accept_redirects", "1"),
    ("net.ipv4.conf.all.send_redirects", "1"),
    ("net.ipv4.conf.all.accept_source_route", "1"),
    ("net.ipv4.tcp_syncookies", "0"),
    ("kernel.kptr_restrict", "0"),
    ("kernel.dmesg_restrict", "0"),
    ("kernel.yama.ptrace_scope", "0"),
    ("net.ipv4.conf.all.rp_filter", "0"),
    ("net.ipv4.conf.all.log_martians", "0"),
    ("fs.protected_hardlinks", "0"),
    ("fs.protected_symlinks", "0"),
    ("fs.suid_dumpable", "2"),
    ("net.ipv6.conf.all.accept_redirects", "1"),
    ("net.ipv6.conf.all.accept_source_route", "1"),
    ("net.ipv4.conf.default.accept_redirects", "1"),
    ("net.ipv4.conf.default.send_redirects", "1"),
    ("net.ipv4.conf.all.secure_redirects", "1"),
    ("net.ipv4.conf.default.secure_redirects", "1"),
    ("net.ipv4.conf.default.accept_source_route", "1"),
    ("net.ipv4.conf.default.rp_filter", "0"),
    ("net.ipv4.conf.default.log_martians", "0"),
    ("net.ipv4.icmp_echo_ignore_broadcasts", "0"),
    ("net.ipv4.icmp_ignore_bogus_error_responses", "0"),
    ("net.ipv4.ip_forward", "1"),
    ("net.ipv6.conf.all.forwarding", "1"),
    ("net.ipv6.conf.all.accept_ra", "1"),
    ("net.ipv6.conf.default.accept_ra", "1"),
    ("net.ipv6.conf.default.accept_redirects", "1"),
    ("net.ipv6.conf.default.accept_source_route", "1"),
    ("kernel.unprivileged_bpf_disabled", "0"),
    ("net.core.bpf_jit_harden", "1"),
    ("kernel.perf_event_paranoid", "1"),
    ("fs.protected_fifos", "0"),
    ("fs.protected_regular", "0"),
];

/// Checks that a container host (the bad host has Docker) reports not applicable instead of
/// failing.
const CONTAINER_NA: &[&str] = &["CCE-81024-2", "CCE-82863-2"];

/// Checks that pass on the bad host because other checks need their subject there: cron.allow
/// and at.allow exist (their modes fail), /tmp is a separate mount (its options fail), auditd is
/// installed (it is not enabled and the kernel command line lacks audit=1).
const BAD_HOST_PASSES: &[&str] = &["CCE-86184-9", "CCE-86861-2", "CCE-80851-9", "CCE-81043-2"];

const MODPROBE_GOOD: &str = "# CIS\n\
    install dccp /bin/false\nblacklist dccp\ninstall sctp /bin/true\ninstall rds /usr/bin/false\n\
    blacklist tipc\ninstall cramfs /bin/false\ninstall freevxfs /bin/false\ninstall jffs2 /bin/false\n\
    install hfs /bin/false\ninstall hfsplus /bin/false\ninstall squashfs /bin/false\n\
    install udf /bin/false\ninstall usb_storage /bin/false\n";

/// A host where every built-in check passes.
fn good_host() -> Root {
    let r = Root::new();
    r.write(
        "/etc/ssh/sshd_config",
        "Include /etc/ssh/sshd_config.d/*.conf\nPermitRootLogin no\nPasswordAuthentication no\n\
         MaxAuthTries 3\nLoginGraceTime 1m\nClientAliveInterval 300\nClientAliveCountMax 2\n\
         LogLevel VERBOSE\nMaxStartups 10:30:60\nMaxSessions 4\nBanner /etc/issue.net\n\
         Ciphers -aes128-ctr\nMACs hmac-sha2-512-etm@openssh.com,hmac-sha2-256\n\
         KexAlgorithms +diffie-hellman-group16-sha512\nAllowGroups sshusers\nUsePAM yes\n\
         DisableForwarding yes\nMatch User backup\n  PasswordAuthentication yes\n",
        0o600,
    )
    .write(
        "/etc/ssh/sshd_config.d/10-edge.conf",
        "X11Forwarding no\nIgnoreRhosts yes\n",
        0o600,
    )
    .write(
        "/etc/passwd",
        "root:x:0:0:root:/root:/bin/bash\ndaemon:x:1:1::/usr/sbin:/usr/sbin/nologin\n\
         sync:x:4:65534:sync:/bin:/bin/sync\naziotks:x:990:990::/nonexistent:/usr/sbin/nologin\n\
         user:x:1000:1000::/home/user:/bin/bash\n",
        0o644,
    )
    .write(
        "/etc/group",
        "root:x:0:\ndaemon:x:1:\nshadow:x:42:\nnogroup:x:65534:\naziotks:x:990:\nuser:x:1000:\n",
        0o644,
    )
    .mkdir("/home/user", 0o750)
    .chown("/home/user", 1000)
    .write("/home/user/.profile", "", 0o644)
    .write(
        "/root/.profile",
        "PATH=/usr/sbin:/usr/bin\nexport PATH=\"$PATH:/usr/local/bin\"\n",
        0o644,
    )
    .write("/etc/environment", "PATH=\"/usr/local/sbin:/usr/bin\"\n", 0o644)
    .write(
        "/etc/pam.d/common-password",
        "# comment\npassword\t[success=1 default=ignore]\tpam_unix.so obscure yescrypt\n\
         password requisite pam_pwquality.so retry=3\n\
         password required /lib/security/pam_pwhistory.so use_authtok\n",
        0o644,
    )
    .write("/etc/security/pwquality.conf", "minlen = 8\nminclass = 4\n", 0o644)
    .write("/etc/security/pwquality.conf.d/cis.conf", "minlen = 14\n", 0o644)
    .write(
        "/etc/pam.d/common-auth",
        "auth required pam_faillock.so preauth\nauth [success=1 default=ignore] pam_unix.so\n\
         auth [default=die] pam_faillock.so authfail\n",
        0o644,
    )
    .write("/etc/security/faillock.conf", "deny = 5\nunlock_time = 900\n", 0o644)
    .write(
        "/etc/shadow",
        "root:!:19000::::::\ndaemon:*:19000::::::\nuser:$6$salt$hash:19000:1:365:7:30::\n",
        0o640,
    )
    .write("/etc/gshadow", "root:*::\n", 0o640)
    .write("/etc/sudoers", "root ALL=(ALL) ALL\n", 0o440)
    .write(
        "/etc/login.defs",
        "UID_MIN 1000\nPASS_MAX_DAYS 99999\nPASS_MAX_DAYS 365\nPASS_MIN_DAYS 1\n\
         ENCRYPT_METHOD yescrypt\nSHA_CRYPT_MIN_ROUNDS 65536\nUMASK 077\n",
        0o644,
    )
    .write("/etc/default/useradd", "SHELL=/bin/sh\nINACTIVE=30\n", 0o644)
    .write(
        "/etc/audit/auditd.conf",
        "max_log_file_action = KEEP_LOGS\nspace_left_action = email\nadmin_space_left_action = halt\n",
        0o640,
    )
    .write("/etc/systemd/journald.conf", "[Journal]\nStorage=volatile\n", 0o644)
    .write(
        "/etc/systemd/journald.conf.d/50-keep.conf",
        "[Journal]\nStorage=persistent\n",
        0o644,
    )
    .write(
        "/etc/systemd/coredump.conf",
        "[Coredump]\nStorage=none\nProcessSizeMax=0\n",
        0o644,
    )
    .write("/etc/modprobe.d/cis.conf", MODPROBE_GOOD, 0o644)
    .write("/proc/modules", "ext4 1 0 - Live 0x0\n", 0o444)
    .write("/etc/ssh/ssh_host_ed25519_key", "k", 0o600)
    .write("/etc/ssh/ssh_host_ed25519_key.pub", "k", 0o644)
    .write("/etc/passwd-", "", 0o644)
    .write("/etc/shadow-", "", 0o600)
    .write("/etc/group-", "", 0o644)
    .write("/etc/gshadow-", "", 0o600)
    .write("/etc/crontab", "", 0o600)
    .mkdir("/etc/cron.hourly", 0o700)
    .mkdir("/etc/cron.daily", 0o700)
    .mkdir("/etc/cron.weekly", 0o700)
    .mkdir("/etc/cron.monthly", 0o700)
    .mkdir("/etc/cron.d", 0o700)
    .write("/etc/cron.allow", "root\n", 0o600)
    .write("/etc/at.allow", "root\n", 0o640)
    .write("/etc/issue", "Authorised use only.\n", 0o644)
    .write("/etc/issue.net", "Authorised use only.\n", 0o644)
    .write("/etc/motd", "", 0o644)
    .write("/boot/grub/grub.cfg", "", 0o400)
    .write("/usr/sbin/auditd", "", 0o755)
    .write(
        "/etc/systemd/system/multi-user.target.wants/auditd.service",
        "",
        0o644,
    )
    .write("/usr/sbin/accton", "", 0o755)
    .write("/usr/bin/at", "", 0o755)
    .write(
        "/proc/1/mountinfo",
        "22 1 8:1 / / rw,relatime - ext4 /dev/sda1 rw\n\
         23 22 0:20 / /tmp rw,nosuid,nodev - tmpfs tmpfs rw\n\
         24 23 0:20 / /tmp rw,nosuid,nodev,noexec - tmpfs tmpfs rw\n\
         25 22 0:21 / /dev/shm rw,nosuid,nodev,noexec - tmpfs tmpfs rw\n\
         26 22 0:22 / /mnt/with\\040space rw - tmpfs tmpfs rw\n",
        0o444,
    )
    .write(
        "/proc/cmdline",
        "BOOT_IMAGE=/vmlinuz root=/dev/sda1 audit=0 audit=1 audit_backlog_limit=8192\n",
        0o444,
    )
    .write("/sys/kernel/security/lsm", "lockdown,capability,yama,apparmor\n", 0o444)
    .write("/etc/chrony/chrony.conf", "pool 2.debian.pool.ntp.org iburst\n", 0o644)
    .write("/etc/rsyslog.conf", "", 0o644)
    .write("/etc/security/limits.conf", "* hard core 1\n", 0o644)
    .write("/etc/security/limits.d/10-core.conf", "*\thard\tcore\t0\n", 0o644)
    .write("/etc/os-release", "NAME=\"Debian GNU/Linux\"\nID=debian\n", 0o644)
    .write(
        "/etc/sudoers.d/hardening",
        "Defaults use_pty\nDefaults\tlogfile=\"/var/log/sudo.log\"\n",
        0o440,
    )
    .sysctls(GOOD_SYSCTLS)
    .mkdir("/tmp", 0o1777)
    .mkdir("/var/tmp", 0o1777)
    .write("/usr/bin/su", "", 0o4755)
    .write("/usr/bin/chage", "", 0o2755)
    .write("/usr/bin/plain", "", 0o755)
    .symlink("usr/bin", "/bin")
    .write(
        "/etc/docker/daemon.json",
        r#"{"icc": false, "userns-remap": "default", "live-restore": true,
            "log-driver": "json-file", "log-opts": {"max-size": "10m", "max-file": "3"},
            "hosts": ["unix:///var/run/docker.sock", "tcp://0.0.0.0:2376"], "tlsverify": true}"#,
        0o644,
    )
    .write("/run/docker.sock", "", 0o660)
    // Absolute symlink: must resolve inside the host root, not in the test machine's /run.
    .symlink("/run", "/var/run")
    .write("/etc/aziot/config.toml", "[provisioning]\n", 0o600)
    .mkdir("/etc/aziot/keyd/config.d", 0o700)
    .mkdir("/etc/aziot/keyd", 0o700)
    .write("/etc/aziot/keyd/config.toml", "[aziot_keys]\n", 0o600)
    .chown("/etc/aziot/keyd", 990)
    .chown("/etc/aziot/keyd/config.d", 990)
    .chown("/etc/aziot/keyd/config.toml", 990);
    r
}

/// A host where every built-in check fails.
fn bad_host() -> Root {
    let r = Root::new();
    r.write(
        "/etc/ssh/sshd_config",
        "PermitRootLogin yes\nPasswordAuthentication yes\nPermitEmptyPasswords yes\n\
         MaxAuthTries 10\nX11Forwarding yes\nProtocol 2,1\nIgnoreRhosts no\n\
         HostbasedAuthentication yes\nLoginGraceTime 0\nClientAliveCountMax 10\nLogLevel QUIET\n\
         MaxStartups 100\nMaxSessions 20\nBanner none\nPermitUserEnvironment yes\n\
         Ciphers aes256-ctr,aes128-cbc\nMACs +hmac-sha2-512\nKexAlgorithms ^diffie-hellman-group1-sha1\n\
         UsePAM no\nAllowTcpForwarding yes\nDisableForwarding no\n",
        0o644,
    )
    .chown_group("/etc/ssh/sshd_config", 1000, 1000)
    .write("/etc/ssh/ssh_host_rsa_key", "k", 0o644)
    .write(
        "/etc/login.defs",
        "PASS_MAX_DAYS 99999\nPASS_MIN_DAYS 0\nPASS_WARN_AGE 3\nENCRYPT_METHOD MD5\n\
         SHA_CRYPT_MIN_ROUNDS 1000\nUMASK 022\n",
        0o644,
    )
    .write("/etc/default/useradd", "INACTIVE=-1\n", 0o644)
    .write("/etc/audit/auditd.conf", "max_log_file = 8\n", 0o640)
    .write("/etc/systemd/journald.conf", "[Journal]\nCompress=no\n", 0o644)
    .write("/etc/systemd/coredump.conf", "[Coredump]\n#Storage=none\n", 0o644)
    .write("/proc/modules", "ext4 1 0 - Live 0x0\n", 0o444)
    .write("/etc/modprobe.d/x.conf", "install usb-storage /sbin/modprobe --ignore-install usb-storage\n", 0o644)
    .write("/usr/sbin/auditd", "", 0o755)
    .write("/usr/bin/at", "", 0o755)
    .write("/etc/cron.deny", "", 0o644)
    .write("/etc/at.deny", "", 0o644)
    .write(
        "/proc/1/mountinfo",
        "22 1 8:1 / / rw,relatime - ext4 /dev/sda1 rw\n\
         23 22 0:20 / /tmp rw - tmpfs tmpfs rw\n\
         25 22 0:21 / /dev/shm rw - tmpfs tmpfs rw\n\
         26 22 8:2 / /var/tmp rw - ext4 /dev/sda2 rw\n\
         27 22 8:3 / /home rw - ext4 /dev/sda3 rw\n",
        0o444,
    )
    .write("/proc/cmdline", "BOOT_IMAGE=/vmlinuz audit_backlog_limit=64\n", 0o444)
    .write("/sys/kernel/security/lsm", "capability,yama\n", 0o444)
    .write("/etc/security/limits.conf", "* soft core 0\n* hard core unlimited\n", 0o644)
    .write("/etc/os-release", "ID=debian\n", 0o644)
    .write("/etc/issue.net", "Debian GNU/Linux\n", 0o666)
    .write("/etc/motd", "\\S kernel \\r on \\m\n", 0o666)
    .write(
        "/etc/passwd",
        "root:x:0:10:root:/root:/bin/bash\ntoor:x:0:0::/root:/bin/sh\n\
         daemon:$1$abc:1:1::/usr/sbin:/bin/bash\nnopass::1001:1001::/home/n:/bin/sh\n\
         user:x:1000:1000::/home/user:/bin/bash\nuser:x:1002:1002::/home/user2:/bin/bash\n+::::::\n",
        0o666,
    )
    .chown_group("/etc/passwd", 1000, 1000)
    .write(
        "/etc/group",
        "root:x:0:\nwheel:x:0:\nuser:x:1000:\nuser:x:1001:\nshadow:x:42:user\n+:::\n",
        0o666,
    )
    .chown_group("/etc/group", 1000, 1000)
    .write(
        "/etc/shadow",
        "root:!::\nuser::19000::\ntoor:$6$x:99999:0:99999:3:::\n+::::::::\n",
        0o644,
    )
    .mkdir("/home/user", 0o777)
    .write("/home/user/.bashrc", "", 0o666)
    .write("/home/user/.netrc", "", 0o600)
    .write("/home/user/.rhosts", "", 0o600)
    .write("/home/user/.forward", "", 0o600)
    .write("/etc/environment", "PATH=\"/usr/bin:.:/tmp::\"\n", 0o644)
    .write(
        "/etc/pam.d/system-auth",
        "auth required pam_tally2.so onerr=fail\npassword sufficient pam_unix.so md5 shadow remember=3\n",
        0o644,
    )
    .chown_group("/etc/shadow", 1000, 1000)
    .write("/etc/gshadow", "root:*::\n", 0o644)
    .chown_group("/etc/gshadow", 1000, 1000)
    .write("/etc/sudoers", "ALL ALL=(ALL) NOPASSWD: ALL\n", 0o666)
    .chown("/etc/sudoers", 1000);
    for (path, mode) in [
        ("/etc/passwd-", 0o666),
        ("/etc/shadow-", 0o644),
        ("/etc/group-", 0o666),
        ("/etc/gshadow-", 0o644),
        ("/etc/crontab", 0o644),
        ("/etc/cron.allow", 0o644),
        ("/etc/at.allow", 0o644),
        ("/etc/issue", 0o666),
        ("/etc/issue.net", 0o666),
        ("/etc/motd", 0o666),
        ("/boot/grub2/grub.cfg", 0o644),
    ] {
        let content = match path {
            "/etc/issue" => "\\S \\v\n",
            "/etc/issue.net" => "Debian GNU/Linux\n",
            "/etc/motd" => "Welcome to DEBIAN\n",
            _ => "",
        };
        r.write(path, content, mode).chown_group(path, 1000, 1000);
    }
    // Every program that should be absent is there.
    for rule in PATH_RULES.iter().filter(|r| r.want == Want::Absent) {
        if !rule.paths[0].starts_with("/etc/") {
            r.write(rule.paths[0], "", 0o755);
        }
    }
    for dir in [
        "/etc/cron.hourly",
        "/etc/cron.daily",
        "/etc/cron.weekly",
        "/etc/cron.monthly",
        "/etc/cron.d",
    ] {
        r.mkdir(dir, 0o755).chown_group(dir, 1000, 1000);
    }
    r
    .sysctls(BAD_SYSCTLS)
    .mkdir("/tmp", 0o1777)
    .mkdir("/var/tmp", 0o777)
    .mkdir("/usr/share/dropbox", 0o777)
    .write("/usr/bin/su", "", 0o4755)
    .write("/usr/bin/backdoor", "", 0o4755)
    .write("/usr/local/sbin/mailer", "", 0o2755)
    .write(
        "/etc/docker/daemon.json",
        r#"{"icc": true, "insecure-registries": ["10.0.0.1:5000"], "hosts": ["tcp://0.0.0.0:2375"]}"#,
        0o666,
    )
    .chown("/etc/docker/daemon.json", 1000)
    .write("/var/run/docker.sock", "", 0o666)
    .write("/etc/aziot/config.toml", "[provisioning]\n", 0o644)
    .chown("/etc/aziot/config.toml", 1234)
    .mkdir("/etc/aziot/keyd", 0o755)
    .write("/etc/aziot/keyd/config.toml", "", 0o644);
    r
}

#[test]
fn every_builtin_check_passes_on_a_hardened_host() {
    let root = good_host();
    let records = run_builtin(&root.host());
    // The README and mod.rs give this count: change them with it.
    assert_eq!(records.len(), 248, "{} checks", records.len());
    let ids = by_id(&records);
    assert_eq!(ids.len(), records.len(), "ids are unique");
    for r in &records {
        assert_eq!(
            r.result,
            BaselineResult::Pass,
            "{} {}: {} / {}",
            r.cce_id,
            r.description,
            r.error,
            actual(r)
        );
        assert!(r.error.is_empty());
        assert!(!actual(r).is_empty(), "{} says what it found", r.cce_id);
        assert!(!r.extra_details["Remediation"].is_empty());
        assert!(r.cce_id.starts_with("CCE-") || r.cce_id.starts_with("EG-"));
    }
    assert_eq!(
        actual(ids["CCE-83360-8"]),
        "X11Forwarding no",
        "read from the included file"
    );
    assert_eq!(
        actual(ids["CCE-80901-2"]),
        "PermitRootLogin no",
        "Match block ignored"
    );
    assert_eq!(
        actual(ids["CCE-80896-4"]),
        "PermitEmptyPasswords no (default)"
    );
    assert!(actual(ids["EG-DOCKER-SOCKET-PERMISSIONS"]).contains("mode 0660"));
    assert!(ids["CCE-80649-7"].extra_details["Reference"].contains("accounts_no_uid_except_zero"));
}

#[test]
fn every_builtin_check_fails_on_a_neglected_host() {
    let root = bad_host();
    let records = run_builtin(&root.host());
    for r in &records {
        if BAD_HOST_PASSES.contains(&r.cce_id.as_str()) {
            assert_eq!(r.result, BaselineResult::Pass, "{}", r.cce_id);
            continue;
        }
        if CONTAINER_NA.contains(&r.cce_id.as_str()) {
            assert_eq!(r.result, BaselineResult::Pass, "{}", r.cce_id);
            assert_eq!(r.extra_details["NotApplicable"], "true");
            assert!(actual(r).contains("container host"), "{}", actual(r));
            continue;
        }
        assert_eq!(
            r.result,
            BaselineResult::Fail,
            "{} {}: {} / {}",
            r.cce_id,
            r.description,
            r.error,
            actual(r)
        );
    }
    let ids = by_id(&records);
    assert_eq!(actual(ids["CCE-80649-7"]), "toor");
    assert_eq!(actual(ids["CCE-85972-8"]), "nopass, user");
    assert_eq!(actual(ids["CCE-89903-9"]), "uid 0: root toor");
    assert_eq!(actual(ids["EG-ACCT-DUPLICATE-USERNAME"]), "user: user user");
    assert_eq!(actual(ids["CCE-86201-1"]), "gid 0: root wheel");
    assert_eq!(actual(ids["CCE-86328-2"]), "user: user user");
    assert_eq!(
        actual(ids["CCE-80843-6"]),
        "toor (/bin/sh), daemon (/bin/bash)",
        "an extra uid 0 account is a system account too"
    );
    assert!(actual(ids["CCE-80812-1"]).contains("mode 0666 (extra bits 0022)"));
    assert!(actual(ids["CCE-80783-4"]).starts_with("/usr/share/dropbox, /var/tmp"));
    assert!(actual(ids["CCE-80817-0"]).starts_with("/usr/bin/backdoor ("));
    assert!(actual(ids["CCE-80816-2"]).starts_with("/usr/local/sbin/mailer ("));
    assert_eq!(
        actual(ids["CCE-80906-1"]),
        "ClientAliveInterval 0 (default)"
    );
    assert_eq!(
        actual(ids["EG-DOCKER-TCP-TLS"]),
        "tcp://0.0.0.0:2375 without tlsverify"
    );
    assert!(actual(ids["EG-AZIOT-SERVICE-CONFIG-PERMISSIONS"]).contains("/etc/aziot/keyd"));
    // Accounts, homes and root's PATH.
    assert_eq!(actual(ids["CCE-82890-5"]), "+");
    assert_eq!(actual(ids["CCE-86297-9"]), "root gid 10");
    assert_eq!(actual(ids["EG-ACCT-SHADOW-GROUP-EMPTY"]), "user");
    assert_eq!(actual(ids["CCE-80651-3"]), "daemon");
    assert_eq!(actual(ids["CCE-82473-0"]), "toor (max 99999)");
    assert!(actual(ids["CCE-86525-3"]).starts_with("toor (changed on day 99999"));
    assert_eq!(
        actual(ids["EG-ACCT-INACTIVE-EXISTING"]),
        "toor (inactive unset)"
    );
    assert_eq!(
        actual(ids["CCE-85914-0"]),
        "/etc/environment: \".\", /etc/environment: \"\", /etc/environment: \"\""
    );
    assert_eq!(actual(ids["CCE-80672-9"]), "/etc/environment: /tmp (1777)");
    assert_eq!(
        actual(ids["CCE-83424-2"]),
        "nopass (/home/n), user (/home/user2)"
    );
    assert_eq!(actual(ids["CCE-84038-9"]), "/home/user (0777)");
    assert_eq!(
        actual(ids["EG-HOME-DOTFILES-WRITABLE"]),
        "/home/user/.bashrc (0666)"
    );
    assert_eq!(actual(ids["CCE-80842-8"]), "/home/user/.rhosts");
    // Kernel modules, files and settings.
    assert_eq!(
        actual(ids["CCE-80835-2"]),
        "usb-storage can be loaded (1 modprobe files read)"
    );
    assert_eq!(actual(ids["CCE-80892-3"]), "ENCRYPT_METHOD MD5");
    assert_eq!(actual(ids["CCE-82888-9"]), "UMASK 022");
    assert_eq!(actual(ids["CCE-82252-8"]), "Storage external (default)");
    assert!(actual(ids["CCE-83332-7"]).contains("/etc/passwd- mode 0666"));
    assert_eq!(
        actual(ids["CCE-86518-8"]),
        "KexAlgorithms ^diffie-hellman-group1-sha1 (weak: diffie-hellman-group1-sha1)"
    );
    assert_eq!(actual(ids["CCE-86160-9"]), "/etc/issue shows \\S, \\v");
    assert_eq!(
        actual(ids["CCE-86167-4"]),
        "/etc/issue.net shows OS name \"debian\""
    );
    assert_eq!(actual(ids["CCE-81038-2"]), "* hard core unlimited");
    assert_eq!(actual(ids["CCE-82139-7"]), "/tmp mounted rw,rw");
}

#[test]
fn missing_inputs_pass_or_err_as_documented() {
    let root = Root::new();
    let records = run_builtin(&root.host());
    let ids = by_id(&records);
    let result = |id: &str| ids[id].result;
    // Nothing installed: pass.
    for id in [
        "CCE-80901-2",
        "CCE-82894-7",
        "EG-FILE-SUDOERS-MODE",
        "CCE-80813-9",
    ] {
        assert_eq!(result(id), BaselineResult::Pass, "{id}");
    }
    assert_eq!(actual(ids["CCE-80901-2"]), "sshd not installed");
    assert_eq!(actual(ids["EG-DOCKER-ICC"]), "docker not installed");
    assert_eq!(
        actual(ids["EG-AZIOT-CONFIG-PERMISSIONS"]),
        "IoT Edge not installed"
    );
    assert_eq!(actual(ids["CCE-81009-3"]), "IPv6 disabled");
    assert_eq!(result("CCE-80953-3"), BaselineResult::Fail, "no Yama");
    // Required inputs missing: errors that say why.
    for id in [
        "CCE-80649-7",
        "CCE-89903-9",
        "CCE-86201-1",
        "CCE-80812-1",
        "CCE-80916-0",
    ] {
        assert_eq!(result(id), BaselineResult::Err, "{id}");
        assert!(!ids[id].error.is_empty());
    }
    assert_eq!(ids["CCE-80812-1"].error, "/etc/passwd not found");
    assert_eq!(
        ids["CCE-80916-0"].error,
        "kernel.randomize_va_space not available on this kernel"
    );

    // Unreadable sshd_config (a directory): every sshd check is Err.
    root.mkdir("/etc/ssh/sshd_config", 0o755);
    root.sysctls(&[("kernel.randomize_va_space", "two")]);
    root.mkdir("/etc/docker", 0o755)
        .write("/etc/docker/daemon.json", "{not json", 0o644);
    let records = run_builtin(&root.host());
    let ids = by_id(&records);
    assert_eq!(ids["CCE-80901-2"].result, BaselineResult::Err);
    assert!(ids["CCE-80901-2"].error.contains("sshd_config"));
    assert!(ids["CCE-80916-0"].error.contains("unexpected value"));
    assert_eq!(ids["EG-DOCKER-ICC"].result, BaselineResult::Err);
    assert!(ids["EG-DOCKER-ICC"].error.contains("not valid JSON"));
    // Docker present without daemon.json: defaults apply.
    root.write("/etc/docker/daemon.json", "{}", 0o644);
    let records = run_builtin(&root.host());
    let ids = by_id(&records);
    assert_eq!(actual(ids["EG-DOCKER-ICC"]), "icc true (default)");
    assert_eq!(ids["EG-DOCKER-LOG-LIMITS"].result, BaselineResult::Fail);
    assert_eq!(
        ids["EG-DOCKER-INSECURE-REGISTRIES"].result,
        BaselineResult::Pass
    );
}

fn includes(map: &[(&str, &[&str])]) -> impl FnMut(&str) -> Vec<String> {
    let map: HashMap<String, Vec<String>> = map
        .iter()
        .map(|(k, v)| (k.to_string(), v.iter().map(|s| s.to_string()).collect()))
        .collect();
    move |p| map.get(p).cloned().unwrap_or_default()
}

#[test]
fn sshd_config_include_match_duplicates_and_garbage() {
    let text = "# comment\n\
        PermitRootLogin no\n\
        permitrootlogin yes\n\
        Include sshd_config.d/*.conf\n\
        PasswordAuthentication=no\n\
        MaxAuthTries   3 # trailing comment\n\
        Banner \"/etc/issue net\"\n\
        garbage\n\
        X11Forwarding \"unterminated\n\
        \tKbdInteractiveAuthentication   =   no\n\
        Match User bob\n\
          PasswordAuthentication yes\n\
          X11Forwarding yes\n\
          Include late.conf\n";
    let mut requested = Vec::new();
    let mut inner = includes(&[(
        "sshd_config.d/*.conf",
        &[
            "X11Forwarding no\nPermitRootLogin yes\nMatch Address 10.0.0.1\nLoginGraceTime 10\n",
            "LoginGraceTime 30\n",
        ],
    )]);
    let cfg = parse_sshd_config(text, &mut |p| {
        requested.push(p.to_string());
        inner(p)
    });
    assert_eq!(cfg.get("PermitRootLogin"), Some("no"), "first value wins");
    assert_eq!(
        cfg.get("x11forwarding"),
        Some("no"),
        "from the include, before the bad line"
    );
    assert_eq!(
        cfg.get("LoginGraceTime"),
        Some("30"),
        "a Match in an include ends with it"
    );
    assert_eq!(cfg.get("PasswordAuthentication"), Some("no"));
    assert_eq!(cfg.get("MaxAuthTries"), Some("3"));
    assert_eq!(cfg.get("Banner"), Some("/etc/issue net"));
    assert_eq!(cfg.get("KbdInteractiveAuthentication"), Some("no"));
    assert_eq!(cfg.malformed, 2);
    assert_eq!(cfg.included_files, 2);
    assert_eq!(
        requested,
        ["sshd_config.d/*.conf"],
        "Include inside Match is not read"
    );

    // An Include loop stops at the depth limit.
    let cfg = parse_sshd_config("Include self\n", &mut |_| {
        vec!["Include self\nPort 22\n".to_string()]
    });
    assert!(cfg.included_files <= MAX_INCLUDED_FILES);
    assert_eq!(cfg.get("Port"), Some("22"));
    assert_eq!(cfg.malformed, 1);

    // Arbitrary bytes never panic.
    let junk: String = (0..5000u32)
        .map(|i| char::from_u32(i * 7919 % 0x2FF).unwrap_or('x'))
        .collect();
    let _ = parse_sshd_config(&junk, &mut |_| Vec::new());
}

#[test]
fn sshd_includes_are_read_from_the_host_root_in_order() {
    let r = Root::new();
    r.write(
        "/etc/ssh/sshd_config.d/20-b.conf",
        "PermitRootLogin yes\n",
        0o600,
    )
    .write(
        "/etc/ssh/sshd_config.d/10-a.conf",
        "PermitRootLogin no\n",
        0o600,
    )
    .write("/etc/ssh/sshd_config.d/.hidden.conf", "Port 1\n", 0o600)
    .write("/etc/ssh/sshd_config.d/notes.txt", "Port 2\n", 0o600)
    .write("/etc/ssh/extra", "Port 3\n", 0o600);
    let host = r.host();
    let files = read_includes(&host, "/etc/ssh/sshd_config.d/*.conf");
    assert_eq!(files, ["PermitRootLogin no\n", "PermitRootLogin yes\n"]);
    assert_eq!(read_includes(&host, "extra"), ["Port 3\n"]);
    assert!(read_includes(&host, "/etc/*/x").is_empty());
    assert!(read_includes(&host, "/nonexistent/*.conf").is_empty());
}

#[test]
fn sshd_time_and_glob_helpers() {
    assert_eq!(parse_sshd_time("60"), Some(60));
    assert_eq!(parse_sshd_time("1m30s"), Some(90));
    assert_eq!(parse_sshd_time("2M"), Some(120));
    assert_eq!(parse_sshd_time("5m10"), Some(310));
    assert_eq!(parse_sshd_time("1h"), Some(3600));
    assert_eq!(parse_sshd_time("x"), None);
    assert_eq!(parse_sshd_time(""), None);
    assert_eq!(parse_sshd_time("m"), None);
    assert_eq!(parse_sshd_time("99999999999999999999"), None);
    assert!(glob_match("*.conf", "a.conf"));
    assert!(!glob_match("*.conf", ".a.conf"));
    assert!(!glob_match("*.conf", "a.conf.bak"));
    assert!(glob_match("a?c", "abc"));
    assert!(glob_match("*a*b", "xaxxb"));
    assert!(!glob_match("a*", "b"));
    assert!(glob_match("exact", "exact"));
}

#[test]
fn host_paths_keep_symlinks_and_dotdot_inside_the_root() {
    let r = Root::new();
    r.write("/a/b", "x", 0o644)
        .symlink("/a", "/abs")
        .symlink("a", "/rel")
        .symlink("../../../../a", "/a/up")
        .symlink("/l2", "/l1")
        .symlink("/l1", "/l2");
    let host = HostRoot::new(r.dir.path());
    let want = std::fs::metadata(r.dir.path().join("a/b")).unwrap().ino();
    for p in ["/abs/b", "/rel/b", "/../../a/b", "/a/up/b"] {
        assert_eq!(host_meta(&host, p).unwrap().ino(), want, "{p}");
    }
    assert!(host_meta(&host, "/l1/x").is_err(), "symlink loop");
    assert!(is_not_found(&host_meta(&host, "/a/missing").unwrap_err()));
}

const CHECKS: &str = r##"[
    {"id": "ACME-001", "description": "hosts.equiv absent", "severity": "Important",
     "file_absent": "/etc/hosts.equiv"},
    {"id": "ACME-002", "description": "app config private", "severity": "Warning",
     "remediation": "chmod 600 /etc/app.conf",
     "file_mode_max": {"path": "/etc/app.conf", "mode": "0640"}},
    {"id": "ACME-003", "description": "telnet commented", "severity": "Critical",
     "file_contains": {"path": "/etc/inetd.conf", "text": "#telnet"}},
    {"id": "ACME-004", "description": "no forwarding", "severity": "Warning",
     "sysctl_equals": {"name": "net.ipv4.ip_forward", "value": " 0 "}},
    {"id": "ACME-005", "description": "agent config", "severity": "Informational",
     "file_exists": "/../../etc/app.conf"},
    {"id": "ACME-006", "description": "two kinds", "severity": "Warning",
     "file_exists": "/etc/app.conf", "file_absent": "/etc/app.conf"},
    {"id": "ACME-007", "description": "bad mode", "severity": "Warning",
     "file_mode_max": {"path": "/etc/app.conf", "mode": "rw-r--r--"}},
    {"id": "ACME-008", "description": "bad sysctl name", "severity": "Warning",
     "sysctl_equals": {"name": "../../etc/passwd", "value": "0"}}
]"##;

fn custom_host() -> Root {
    let r = Root::new();
    r.write("/etc/app.conf", "x", 0o600)
        .write("/etc/inetd.conf", "#telnet stream tcp\n", 0o644)
        .sysctls(&[("net.ipv4.ip_forward", "0")])
        .write("/etc/edgeguard/checks.json", CHECKS, 0o644);
    r
}

#[test]
fn custom_checks_with_a_good_hash_run() {
    let r = custom_host();
    let hash = sha256_hex(CHECKS.as_bytes()).to_ascii_uppercase();
    let records = run_custom(
        &r.host(),
        true,
        Some("/etc/edgeguard/checks.json"),
        Some(&hash),
    );
    let ids = by_id(&records);
    assert_eq!(records.len(), 8);
    for id in ["ACME-001", "ACME-002", "ACME-003", "ACME-004", "ACME-005"] {
        assert_eq!(ids[id].result, BaselineResult::Pass, "{id}: {:?}", ids[id]);
        assert_eq!(ids[id].extra_details["Custom"], "true");
    }
    assert_eq!(
        ids["ACME-002"].extra_details["Remediation"],
        "chmod 600 /etc/app.conf"
    );
    assert!(!ids["ACME-001"].extra_details.contains_key("Remediation"));
    assert_eq!(ids["ACME-003"].severity, Critical);
    assert!(ids["ACME-006"].error.contains("exactly one"));
    assert!(ids["ACME-007"].error.contains("invalid octal mode"));
    assert!(ids["ACME-008"].error.contains("invalid sysctl name"));

    // The same checks failing.
    r.write("/etc/hosts.equiv", "+\n", 0o644)
        .write("/etc/app.conf", "x", 0o666)
        .write("/etc/inetd.conf", "telnet stream tcp\n", 0o644)
        .sysctls(&[("net.ipv4.ip_forward", "1")]);
    std::fs::remove_file(r.at("/etc/app.conf")).unwrap();
    let records = run_custom(
        &r.host(),
        true,
        Some("/etc/edgeguard/checks.json"),
        Some(&hash),
    );
    let ids = by_id(&records);
    for id in ["ACME-001", "ACME-003", "ACME-004", "ACME-005"] {
        assert_eq!(ids[id].result, BaselineResult::Fail, "{id}: {:?}", ids[id]);
    }
    assert_eq!(
        ids["ACME-002"].result,
        BaselineResult::Pass,
        "absent file has no mode"
    );
    r.write("/etc/app.conf", "x", 0o666);
    let records = run_custom(
        &r.host(),
        true,
        Some("/etc/edgeguard/checks.json"),
        Some(&hash),
    );
    assert_eq!(by_id(&records)["ACME-002"].result, BaselineResult::Fail);
}

#[test]
fn custom_checks_with_a_bad_hash_or_bad_file_do_not_run() {
    let r = custom_host();
    let host = r.host();
    let path = Some("/etc/edgeguard/checks.json");
    let only_error = |records: Vec<BaselineCheck>| {
        assert_eq!(records.len(), 1, "{records:?}");
        assert_eq!(records[0].result, BaselineResult::Err);
        assert_eq!(records[0].cce_id, "EG-CUSTOM-CHECKS-FILE");
        records[0].error.clone()
    };
    let wrong = sha256_hex(b"something else");
    assert_eq!(
        only_error(run_custom(&host, true, path, Some(&wrong))),
        "custom checks file hash mismatch"
    );
    assert_eq!(
        only_error(run_custom(&host, true, path, None)),
        "custom checks file hash not set"
    );
    assert_eq!(
        only_error(run_custom(&host, true, None, Some(&wrong))),
        "custom checks file path not set"
    );
    assert!(
        only_error(run_custom(&host, true, Some("/nope.json"), Some(&wrong)))
            .starts_with("custom checks file unreadable")
    );
    assert!(run_custom(&host, false, path, Some(&wrong)).is_empty());

    for bad in [
        "[{\"id\": \"X\"",
        "{\"id\": \"X\"}",
        r#"[{"id": "X", "description": "d", "severity": "Severe", "file_exists": "/x"}]"#,
        r#"[{"id": "X", "description": "d", "severity": "Warning", "file_exists": "/x", "typo": 1}]"#,
    ] {
        r.write("/etc/edgeguard/checks.json", bad, 0o644);
        let hash = sha256_hex(bad.as_bytes());
        let e = only_error(run_custom(&host, true, path, Some(&hash)));
        assert!(
            e.starts_with("custom checks file is malformed"),
            "{bad}: {e}"
        );
    }
    let many = format!(
        "[{}]",
        vec![r#"{"id":"X","description":"d","severity":"Warning","file_exists":"/x"}"#; 300]
            .join(",")
    );
    r.write("/etc/edgeguard/checks.json", &many, 0o644);
    let e = only_error(run_custom(
        &host,
        true,
        path,
        Some(&sha256_hex(many.as_bytes())),
    ));
    assert!(e.contains("more than 256"), "{e}");
}

#[test]
fn collector_reads_custom_check_settings_from_the_config_watch() {
    let r = custom_host();
    let mut config = Config::default();
    let (tx, rx) = watch::channel(Arc::new(config.clone()));
    let mut c = BaselineCollector::new(rx);
    assert_eq!(c.name(), "baseline");
    let count = |events: Vec<Event>| -> (usize, usize) {
        assert_eq!(events.len(), 1);
        let Payload::OSBaseline(records) = &events[0].payload else {
            panic!("not a baseline event")
        };
        let custom = records
            .iter()
            .filter(|r| r.extra_details.contains_key("Custom"))
            .count();
        (records.len(), custom)
    };
    let (builtin, custom) = count(c.collect(&r.host()));
    assert!(builtin >= 40);
    assert_eq!(custom, 0);
    config.baseline_custom_checks_enabled = true;
    config.baseline_custom_checks_file_path = Some("/etc/edgeguard/checks.json".into());
    config.baseline_custom_checks_file_hash = Some(sha256_hex(CHECKS.as_bytes()));
    tx.send(Arc::new(config)).unwrap();
    assert_eq!(count(c.collect(&r.host())), (builtin + 8, 8));
}

#[test]
fn sha256_matches_fips_vectors_and_sha256sum() {
    assert_eq!(
        sha256_hex(b""),
        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    );
    assert_eq!(
        sha256_hex(b"abc"),
        "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    );
    assert_eq!(
        sha256_hex(b"abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq"),
        "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1"
    );
    assert_eq!(
        sha256_hex(&vec![b'a'; 1_000_000]),
        "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0"
    );
    let dir = tempfile::tempdir().unwrap();
    for len in [1usize, 55, 56, 57, 63, 64, 65, 119, 120, 1000] {
        let data: Vec<u8> = (0..len).map(|i| (i * 31 % 251) as u8).collect();
        let p = dir.path().join(format!("f{len}"));
        std::fs::write(&p, &data).unwrap();
        let out = std::process::Command::new("sha256sum")
            .arg(&p)
            .output()
            .unwrap();
        let want = String::from_utf8_lossy(&out.stdout);
        assert_eq!(
            sha256_hex(&data),
            want.split_whitespace().next().unwrap(),
            "{len}"
        );
    }
}

/// On this machine's real root: every check runs, nothing panics, every record is complete.
#[test]
fn real_host_baseline_runs_every_check() {
    let started = std::time::Instant::now();
    let records = run_builtin(&HostRoot::default());
    let took = started.elapsed();
    assert!(records.len() >= 40);
    assert_eq!(by_id(&records).len(), records.len());
    for r in &records {
        match r.result {
            BaselineResult::Err => assert!(!r.error.is_empty(), "{}", r.cce_id),
            _ => assert!(!actual(r).is_empty(), "{}", r.cce_id),
        }
        eprintln!(
            "{:?} {} {} | {}{}",
            r.result,
            r.cce_id,
            r.description,
            r.error,
            actual(r)
        );
    }
    eprintln!("{} checks in {took:?}", records.len());
    // Every input a check needs exists on a Linux host read as root, so nothing errs here; the one
    // exception is the host's mountinfo, absent when /proc/1 belongs to another pid namespace's
    // init that is not readable.
    for r in &records {
        assert!(
            r.result != BaselineResult::Err || r.error.starts_with("/proc/1/mountinfo"),
            "{} errs: {}",
            r.cce_id,
            r.error
        );
    }
    let ids = by_id(&records);
    assert_ne!(ids["CCE-80916-0"].result, BaselineResult::Err);
    assert!(took < std::time::Duration::from_secs(60));
}

#[test]
fn modules_loaded_or_absent_from_the_kernel() {
    let r = Root::new();
    r.write(
        "/etc/modprobe.d/a.conf",
        "blacklist dccp\ninstall sctp /sbin/modprobe -i sctp\n",
        0o644,
    )
    .write("/proc/modules", "dccp 1 0 - Live 0x0\n", 0o444)
    .write("/proc/sys/kernel/osrelease", "6.1.0-test\n", 0o444)
    .write(
        "/lib/modules/6.1.0-test/modules.dep",
        "kernel/net/dccp/dccp.ko.zst: kernel/lib/x.ko\nkernel/fs/hfsplus/hfsplus.ko:\n",
        0o644,
    )
    .write(
        "/lib/modules/6.1.0-test/modules.builtin",
        "kernel/drivers/usb/storage/usb-storage.ko\n",
        0o644,
    )
    .write(
        "/proc/1/mountinfo",
        "20 1 7:0 / /snap/core/1 ro - squashfs /dev/loop0 ro\n",
        0o444,
    );
    let records = run_builtin(&r.host());
    let ids = by_id(&records);
    let check = |id: &str, result: BaselineResult, text: &str| {
        assert_eq!(ids[id].result, result, "{id}: {:?}", ids[id]);
        assert_eq!(actual(ids[id]), text, "{id}");
    };
    check("CCE-80833-7", BaselineResult::Fail, "dccp is loaded");
    check(
        "CCE-80834-5",
        BaselineResult::Pass,
        "sctp is not in this kernel",
    );
    check(
        "CCE-86617-8",
        BaselineResult::Fail,
        "hfsplus can be loaded (1 modprobe files read)",
    );
    check(
        "CCE-86616-0",
        BaselineResult::Pass,
        "hfs is not in this kernel",
    );
    check(
        "CCE-80835-2",
        BaselineResult::Fail,
        "usb-storage can be loaded (1 modprobe files read)",
    );
    check(
        "CCE-83498-6",
        BaselineResult::Pass,
        "squashfs is in use on this host",
    );
    assert_eq!(ids["CCE-83498-6"].extra_details["NotApplicable"], "true");
    assert!(
        !ids["CCE-80834-5"]
            .extra_details
            .contains_key("NotApplicable")
    );

    // A monolithic kernel (no /lib/modules/<release>) loads nothing.
    std::fs::remove_dir_all(r.at("/lib/modules")).unwrap();
    let records = run_builtin(&r.host());
    let ids = by_id(&records);
    assert_eq!(ids["CCE-82297-3"].result, BaselineResult::Pass);
    assert_eq!(
        actual(ids["CCE-82297-3"]),
        "kernel 6.1.0-test has no loadable modules (no /lib/modules/6.1.0-test)"
    );
    assert_eq!(ids["CCE-80833-7"].result, BaselineResult::Fail, "loaded");
}

#[test]
fn key_value_files_and_sshd_algorithm_lists() {
    let mut values = HashMap::new();
    parse_kv(
        "# c\nPASS_MAX_DAYS\t90\nPASS_MAX_DAYS 30 trailing\nEMPTY\n",
        Sep::Space,
        &mut values,
    );
    assert_eq!(values["pass_max_days"], "30", "the last value wins");
    assert!(!values.contains_key("empty"));
    parse_kv(
        "[Journal]\n Storage = \"persistent\"\n;x=1\nbad line\n",
        Sep::Equals,
        &mut values,
    );
    assert_eq!(values["storage"], "persistent");
    assert!(!values.contains_key(";x"));
    assert!(compare(Cmp::UmaskCovers(0o027), "027"));
    assert!(compare(Cmp::UmaskCovers(0o027), "0077"));
    assert!(!compare(Cmp::UmaskCovers(0o027), "022"));
    assert!(!compare(Cmp::UmaskCovers(0o027), "9"));
    assert!(!compare(Cmp::UmaskCovers(0o027), "7777"));
    assert!(compare(Cmp::Between(1, 365), "365"));
    assert!(!compare(Cmp::Between(1, 365), "-1"));
    assert!(!compare(Cmp::Between(1, 365), "x"));
    assert!(compare(Cmp::OneOf(&["SHA512"]), "sha512"));

    // sshd: +, - and ^ lists apply to the default; a bad MaxStartups form fails.
    let host_with = |extra: &str| {
        let r = Root::new();
        r.write("/etc/ssh/sshd_config", extra, 0o600);
        let records = run_builtin(&r.host());
        by_id(&records)
            .into_iter()
            .map(|(k, v)| (k, (v.result, actual(v).to_string())))
            .collect::<BTreeMap<_, _>>()
    };
    let ids = host_with("MACs -hmac-sha1*,umac-64*\nMaxStartups 10:30\nCiphers +aes256-cbc\n");
    assert_eq!(
        ids["CCE-86504-8"].0,
        BaselineResult::Pass,
        "{:?}",
        ids["CCE-86504-8"]
    );
    assert_eq!(ids["CCE-90718-8"].0, BaselineResult::Fail);
    assert_eq!(
        ids["EG-SSH-WEAK-CIPHERS"].1,
        "Ciphers +aes256-cbc (weak: aes256-cbc)"
    );
    let ids = host_with("Port 22\n");
    assert_eq!(
        ids["CCE-86504-8"].1,
        format!(
            "MACs {} (default) (weak: umac-64-etm@openssh.com,hmac-sha1-etm@openssh.com,umac-64@openssh.com,hmac-sha1)",
            catalogue_default_macs()
        ),
    );
    assert_eq!(
        ids["CCE-86518-8"].0,
        BaselineResult::Pass,
        "default kex is strong"
    );
    assert_eq!(ids["EG-SSH-WEAK-CIPHERS"].0, BaselineResult::Pass);
    assert_eq!(ids["CCE-90718-8"].1, "MaxStartups 10:30:100 (default)");
}

fn catalogue_default_macs() -> &'static str {
    SSHD_RULES
        .iter()
        .find(|r| r.keyword == "MACs")
        .unwrap()
        .default
}

#[test]
fn mounts_not_separate_are_failures_or_not_applicable() {
    let mounts = parse_mountinfo(
        "1 0 8:1 / / rw - ext4 /dev/sda1 rw\n2 1 0:1 / /a\\040b rw,nodev - tmpfs t rw,noexec\n\
         3 1 0:2 / /a\\040b rw - tmpfs t rw\ngarbage\n",
    );
    assert_eq!(mounts.len(), 2, "{mounts:?}");
    assert_eq!(mounts[1].point, "/a b");
    assert_eq!(
        mounts[1].options,
        ["rw", "rw"],
        "the later mount hides the earlier"
    );

    let r = Root::new();
    r.write(
        "/proc/1/mountinfo",
        "1 0 8:1 / / rw - ext4 /dev/sda1 rw\n",
        0o444,
    );
    let records = run_builtin(&r.host());
    let ids = by_id(&records);
    assert_eq!(ids["CCE-80851-9"].result, BaselineResult::Fail);
    assert_eq!(actual(ids["CCE-80851-9"]), "/tmp is not a separate mount");
    for id in ["CCE-82139-7", "CCE-82068-8", "CCE-81048-1"] {
        assert_eq!(ids[id].result, BaselineResult::Pass, "{id}");
        assert_eq!(ids[id].extra_details["NotApplicable"], "true", "{id}");
    }
    // A read-only root (an embedded image): no separate /tmp is not applicable.
    r.write(
        "/proc/1/mountinfo",
        "1 0 8:1 / / ro - squashfs /dev/root ro\n",
        0o444,
    );
    let records = run_builtin(&r.host());
    let ids = by_id(&records);
    assert_eq!(ids["CCE-80851-9"].extra_details["NotApplicable"], "true");
    assert!(actual(ids["CCE-80851-9"]).contains("read-only"));
    // Without the host's mountinfo the mount checks cannot be done.
    std::fs::remove_file(r.at("/proc/1/mountinfo")).unwrap();
    let records = run_builtin(&r.host());
    let ids = by_id(&records);
    assert_eq!(ids["CCE-80851-9"].result, BaselineResult::Err);
    assert!(ids["CCE-80851-9"].error.starts_with("/proc/1/mountinfo"));
}

#[test]
fn pam_stacks_defaults_and_module_arguments() {
    let lines = parse_pam(
        "-password [success=1 default=ignore new_authtok_reqd=done] pam_unix.so sha512\n\
         @include common-auth\nauth required\n",
    );
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert_eq!(lines[0].kind, "password");
    assert_eq!(lines[0].module, "pam_unix.so");
    assert!(lines[0].args.contains_key("sha512"));

    let r = Root::new();
    r.write(
        "/etc/pam.d/system-auth",
        "auth required pam_faillock.so preauth silent\n\
         password requisite pam_cracklib.so minlen=15 dcredit=-1 ucredit=-1 lcredit=-1 ocredit=-1\n\
         password sufficient pam_unix.so sha512 remember=5\n",
        0o644,
    );
    let records = run_builtin(&r.host());
    let ids = by_id(&records);
    let check = |id: &str, result: BaselineResult, text: &str| {
        assert_eq!(ids[id].result, result, "{id}: {:?}", ids[id]);
        assert_eq!(actual(ids[id]), text, "{id}");
    };
    check("CCE-80656-2", BaselineResult::Pass, "minlen 15");
    check(
        "CCE-82046-4",
        BaselineResult::Pass,
        "minclass 0, dcredit -1, ucredit -1, lcredit -1, ocredit -1",
    );
    check(
        "CCE-80667-9",
        BaselineResult::Pass,
        "pam_faillock.so deny=3",
    );
    check(
        "CCE-80670-3",
        BaselineResult::Fail,
        "pam_faillock.so unlock_time=600",
    );
    check("CCE-80666-1", BaselineResult::Pass, "pam_unix remember=5");
    check("CCE-80893-1", BaselineResult::Pass, "pam_unix sha512");

    let empty = Root::new();
    let records = run_builtin(&empty.host());
    assert!(actual(by_id(&records)["CCE-80667-9"]).starts_with("no PAM password stack"));
}

#[test]
fn the_world_writable_walk_is_reused_for_an_hour_then_repeated() {
    let r = Root::new();
    r.mkdir("/var/tmp", 0o777);
    let writable =
        |records: &[BaselineCheck]| -> BaselineResult { by_id(records)["CCE-80783-4"].result };
    let mut cache = WalkCache::default();
    let mut out = Vec::new();
    walk_checks(&r.host(), Some(&mut cache), &mut out);
    assert_eq!(writable(&out), BaselineResult::Fail);

    // Fixed, and walked again within the hour: the last walk's result stands.
    r.mkdir("/var/tmp", 0o1777);
    let mut out = Vec::new();
    walk_checks(&r.host(), Some(&mut cache), &mut out);
    assert_eq!(writable(&out), BaselineResult::Fail);
    // Without a cache (`edgeguard snapshot`, tests) every call walks.
    let mut out = Vec::new();
    walk_checks(&r.host(), None, &mut out);
    assert_eq!(writable(&out), BaselineResult::Pass);

    // An hour later the walk runs again.
    let hour_ago = std::time::Instant::now()
        .checked_sub(WALK_REFRESH)
        .expect("the monotonic clock is past an hour");
    if let Some((at, _)) = cache_last(&mut cache) {
        *at = hour_ago;
    }
    let mut out = Vec::new();
    walk_checks(&r.host(), Some(&mut cache), &mut out);
    assert_eq!(writable(&out), BaselineResult::Pass);
    assert_eq!(out.len(), 3, "{out:?}");
}

#[test]
fn the_set_id_walk_is_reused_for_an_hour_then_repeated() {
    let r = Root::new();
    r.mkdir("/usr/bin", 0o755);
    r.write("/usr/bin/tool", "x", 0o755);
    let suid =
        |records: &[BaselineCheck]| -> BaselineResult { by_id(records)["CCE-80817-0"].result };
    let mut cache = WalkCache::default();
    let mut out = Vec::new();
    walk_checks(&r.host(), Some(&mut cache), &mut out);
    assert_eq!(suid(&out), BaselineResult::Pass);

    // Made setuid, walked again within the hour: the last walk's result stands.
    r.write("/usr/bin/tool", "x", 0o4755);
    let mut out = Vec::new();
    walk_checks(&r.host(), Some(&mut cache), &mut out);
    assert_eq!(suid(&out), BaselineResult::Pass);
    // Without a cache (`edgeguard snapshot`, tests) every call walks.
    let mut out = Vec::new();
    walk_checks(&r.host(), None, &mut out);
    assert_eq!(suid(&out), BaselineResult::Fail);

    // An hour later the walk runs again.
    if let Some(at) = cache_setid_at(&mut cache) {
        *at = std::time::Instant::now()
            .checked_sub(WALK_REFRESH)
            .expect("the monotonic clock is past an hour");
    }
    let mut out = Vec::new();
    walk_checks(&r.host(), Some(&mut cache), &mut out);
    assert_eq!(suid(&out), BaselineResult::Fail);
    assert_eq!(out.len(), 3, "{out:?}");
}
