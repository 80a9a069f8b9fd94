//! The check catalogue: id, severity, description, remediation and reference of every built-in
//! check, in one place (the order of the checks in a snapshot is set by `run_builtin`).

use super::{
    Absent, Cmp, Expect, FileRule, KvFile, KvRule, Meta, Missing, ModuleRule, MountRule, PathRule,
    Sep, SshdExpect, SshdRule, SysctlRule, Unset, Want,
};
use crate::event::BaselineSeverity;
use BaselineSeverity::{Critical, Important, Informational, Warning};
macro_rules! meta {
    ($name:ident, $id:literal, $sev:ident, $desc:literal, $fix:literal, $reference:literal) => {
        pub(super) const $name: Meta = Meta {
            id: $id,
            description: $desc,
            severity: $sev,
            remediation: $fix,
            reference: $reference,
        };
    };
}

meta!(
    SSH_ROOT_LOGIN,
    "CCE-80901-2",
    Important,
    "SSH root login is disabled (PermitRootLogin no)",
    "Set 'PermitRootLogin no' in /etc/ssh/sshd_config and reload sshd.",
    "ComplianceAsCode sshd_disable_root_login"
);

meta!(
    SSH_PASSWORD_AUTH,
    "EG-SSH-PASSWORD-AUTH",
    Important,
    "SSH password authentication is disabled (PasswordAuthentication no)",
    "Use key-based logins and set 'PasswordAuthentication no' in /etc/ssh/sshd_config.",
    ""
);

meta!(
    SSH_EMPTY_PASSWORDS,
    "CCE-80896-4",
    Critical,
    "SSH logins with empty passwords are refused (PermitEmptyPasswords no)",
    "Set 'PermitEmptyPasswords no' in /etc/ssh/sshd_config (or remove the line).",
    "ComplianceAsCode sshd_disable_empty_passwords"
);

meta!(
    SSH_MAX_AUTH_TRIES,
    "CCE-82354-2",
    Warning,
    "SSH allows at most 4 authentication attempts per connection (MaxAuthTries)",
    "Set 'MaxAuthTries 4' (or lower) in /etc/ssh/sshd_config.",
    "ComplianceAsCode sshd_set_max_auth_tries (cce@rhel7)"
);

meta!(
    SSH_X11,
    "CCE-83360-8",
    Warning,
    "SSH X11 forwarding is disabled (X11Forwarding no)",
    "Set 'X11Forwarding no' in /etc/ssh/sshd_config.",
    "ComplianceAsCode sshd_disable_x11_forwarding"
);

meta!(
    SSH_PROTOCOL,
    "CCE-80894-9",
    Critical,
    "SSH allows protocol 2 only",
    "Remove any 'Protocol 1' setting from /etc/ssh/sshd_config (OpenSSH 7.4+ only speaks 2).",
    "ComplianceAsCode sshd_allow_only_protocol2"
);

meta!(
    SSH_IGNORE_RHOSTS,
    "CCE-80899-8",
    Important,
    "SSH ignores .rhosts files (IgnoreRhosts yes)",
    "Set 'IgnoreRhosts yes' in /etc/ssh/sshd_config (or remove the line).",
    "ComplianceAsCode sshd_disable_rhosts"
);

meta!(
    SSH_HOSTBASED,
    "CCE-80786-7",
    Important,
    "SSH host-based authentication is disabled (HostbasedAuthentication no)",
    "Set 'HostbasedAuthentication no' in /etc/ssh/sshd_config.",
    "ComplianceAsCode disable_host_auth"
);

meta!(
    SSH_GRACE_TIME,
    "CCE-86551-9",
    Warning,
    "SSH login grace time is between 1 and 60 seconds (LoginGraceTime)",
    "Set 'LoginGraceTime 60' in /etc/ssh/sshd_config.",
    "ComplianceAsCode sshd_set_login_grace_time"
);

meta!(
    SSH_CLIENT_ALIVE,
    "CCE-80906-1",
    Informational,
    "SSH checks idle clients at most every 600 seconds (ClientAliveInterval 1-600)",
    "Set 'ClientAliveInterval 300' and 'ClientAliveCountMax 3' in /etc/ssh/sshd_config.",
    "ComplianceAsCode sshd_set_idle_timeout"
);

meta!(
    ACCT_UID0,
    "CCE-80649-7",
    Critical,
    "Only root has user id 0",
    "Remove the extra uid 0 accounts or give them their own uid (usermod -u).",
    "ComplianceAsCode accounts_no_uid_except_zero"
);

meta!(
    ACCT_EMPTY_PASSWORD,
    "CCE-85972-8",
    Critical,
    "No account has an empty password",
    "Set a password (passwd <user>) or lock the account (passwd -l <user>).",
    "ComplianceAsCode no_empty_passwords_etc_shadow (cce@rhel9)"
);

meta!(
    ACCT_DUP_UID,
    "CCE-89903-9",
    Important,
    "Every account has a unique user id",
    "Give each account sharing a uid its own uid in /etc/passwd.",
    "ComplianceAsCode account_unique_id"
);

meta!(
    ACCT_DUP_NAME,
    "EG-ACCT-DUPLICATE-USERNAME",
    Important,
    "Every account name is unique",
    "Remove or rename duplicate entries in /etc/passwd (vipw).",
    ""
);

meta!(
    ACCT_DUP_GID,
    "CCE-86201-1",
    Warning,
    "Every group has a unique group id",
    "Give each group sharing a gid its own gid in /etc/group.",
    "ComplianceAsCode group_unique_id"
);

meta!(
    ACCT_DUP_GROUP,
    "CCE-86328-2",
    Warning,
    "Every group name is unique",
    "Remove or rename duplicate entries in /etc/group (vigr).",
    "ComplianceAsCode group_unique_name"
);

meta!(
    ACCT_SYSTEM_SHELL,
    "CCE-80843-6",
    Warning,
    "System accounts (uid below UID_MIN, except root) have no login shell",
    "Run 'usermod -s /usr/sbin/nologin <account>' for each listed account.",
    "ComplianceAsCode no_shelllogin_for_systemaccounts"
);

meta!(
    PASSWD_MODE,
    "CCE-80812-1",
    Important,
    "/etc/passwd mode is 0644 or stricter",
    "chmod 0644 /etc/passwd",
    "ComplianceAsCode file_permissions_etc_passwd"
);

meta!(
    PASSWD_OWNER,
    "CCE-80803-0",
    Important,
    "/etc/passwd is owned by root",
    "chown root /etc/passwd",
    "ComplianceAsCode file_owner_etc_passwd"
);

meta!(
    SHADOW_MODE,
    "CCE-80813-9",
    Critical,
    "/etc/shadow mode is 0640 or stricter",
    "chmod 0640 /etc/shadow",
    "ComplianceAsCode file_permissions_etc_shadow"
);

meta!(
    SHADOW_OWNER,
    "CCE-80804-8",
    Critical,
    "/etc/shadow is owned by root",
    "chown root /etc/shadow",
    "ComplianceAsCode file_owner_etc_shadow"
);

meta!(
    GROUP_MODE,
    "CCE-80810-5",
    Important,
    "/etc/group mode is 0644 or stricter",
    "chmod 0644 /etc/group",
    "ComplianceAsCode file_permissions_etc_group"
);

meta!(
    GROUP_OWNER,
    "CCE-80801-4",
    Important,
    "/etc/group is owned by root",
    "chown root /etc/group",
    "ComplianceAsCode file_owner_etc_group"
);

meta!(
    GSHADOW_MODE,
    "CCE-80811-3",
    Critical,
    "/etc/gshadow mode is 0640 or stricter",
    "chmod 0640 /etc/gshadow",
    "ComplianceAsCode file_permissions_etc_gshadow"
);

meta!(
    GSHADOW_OWNER,
    "CCE-80802-2",
    Critical,
    "/etc/gshadow is owned by root",
    "chown root /etc/gshadow",
    "ComplianceAsCode file_owner_etc_gshadow"
);

meta!(
    SUDOERS_MODE,
    "EG-FILE-SUDOERS-MODE",
    Critical,
    "/etc/sudoers mode is 0440 or stricter",
    "chmod 0440 /etc/sudoers",
    ""
);

meta!(
    SUDOERS_OWNER,
    "EG-FILE-SUDOERS-OWNER",
    Critical,
    "/etc/sudoers is owned by root",
    "chown root /etc/sudoers",
    ""
);

meta!(
    SSHD_CONFIG_MODE,
    "CCE-82894-7",
    Warning,
    "/etc/ssh/sshd_config mode is 0600 or stricter",
    "chmod 0600 /etc/ssh/sshd_config",
    "ComplianceAsCode file_permissions_sshd_config"
);

meta!(
    SSHD_CONFIG_OWNER,
    "CCE-82898-8",
    Important,
    "/etc/ssh/sshd_config is owned by root",
    "chown root /etc/ssh/sshd_config",
    "ComplianceAsCode file_owner_sshd_config"
);

meta!(
    WORLD_WRITABLE_STICKY,
    "CCE-80783-4",
    Warning,
    "Every world-writable directory has the sticky bit",
    "chmod +t each listed directory, or remove its world-write permission (chmod o-w).",
    "ComplianceAsCode dir_perms_world_writable_sticky_bits"
);

meta!(
    UNEXPECTED_SUID,
    "CCE-80817-0",
    Important,
    "No unexpected setuid programs in the system binary directories",
    "Review each listed program; remove the setuid bit (chmod u-s) unless it is needed.",
    "ComplianceAsCode file_permissions_unauthorized_suid"
);

meta!(
    UNEXPECTED_SGID,
    "CCE-80816-2",
    Warning,
    "No unexpected setgid programs in the system binary directories",
    "Review each listed program; remove the setgid bit (chmod g-s) unless it is needed.",
    "ComplianceAsCode file_permissions_unauthorized_sgid"
);

meta!(
    DOCKER_DAEMON_JSON_FILE,
    "EG-DOCKER-DAEMON-JSON-PERMISSIONS",
    Important,
    "/etc/docker/daemon.json is owned by root and not writable by group or others",
    "chown root:root /etc/docker/daemon.json && chmod 0644 /etc/docker/daemon.json",
    ""
);

meta!(
    DOCKER_ICC,
    "EG-DOCKER-ICC",
    Warning,
    "Docker inter-container communication on the default bridge is disabled (icc false)",
    "Set \"icc\": false in /etc/docker/daemon.json and restart Docker (IoT Edge modules use their own network).",
    ""
);

meta!(
    DOCKER_USERNS,
    "EG-DOCKER-USERNS-REMAP",
    Informational,
    "Docker remaps container root to an unprivileged host user (userns-remap)",
    "Set \"userns-remap\": \"default\" in /etc/docker/daemon.json if every module supports it.",
    ""
);

meta!(
    DOCKER_LIVE_RESTORE,
    "EG-DOCKER-LIVE-RESTORE",
    Informational,
    "Containers keep running while the Docker daemon restarts (live-restore true)",
    "Set \"live-restore\": true in /etc/docker/daemon.json.",
    ""
);

meta!(
    DOCKER_INSECURE_REGISTRIES,
    "EG-DOCKER-INSECURE-REGISTRIES",
    Important,
    "Docker uses no insecure (plain HTTP or unverified TLS) registries",
    "Remove \"insecure-registries\" from /etc/docker/daemon.json; give registries valid TLS certificates.",
    ""
);

meta!(
    DOCKER_LOG_LIMITS,
    "EG-DOCKER-LOG-LIMITS",
    Warning,
    "Docker container logs are size-limited (log driver local, or json-file with max-size)",
    "Set \"log-driver\": \"local\", or \"log-opts\": {\"max-size\": \"10m\", \"max-file\": \"3\"} in /etc/docker/daemon.json.",
    ""
);

meta!(
    DOCKER_TCP_TLS,
    "EG-DOCKER-TCP-TLS",
    Critical,
    "The Docker API is not exposed over TCP without TLS client verification",
    "Remove tcp:// entries from \"hosts\" in /etc/docker/daemon.json, or set \"tlsverify\": true with certificates.",
    ""
);

meta!(
    DOCKER_SOCKET,
    "EG-DOCKER-SOCKET-PERMISSIONS",
    Critical,
    "The Docker socket is owned by root and not world-writable",
    "Restore the socket's defaults (root:docker, 0660): check docker.socket's SocketMode and SocketGroup.",
    ""
);

meta!(
    AZIOT_CONFIG,
    "EG-AZIOT-CONFIG-PERMISSIONS",
    Critical,
    "/etc/aziot/config.toml (provisioning secrets) is not readable by others and owned by root or an aziot user",
    "chown root:root /etc/aziot/config.toml && chmod 0600 /etc/aziot/config.toml",
    ""
);

meta!(
    AZIOT_SERVICE_CONFIG,
    "EG-AZIOT-SERVICE-CONFIG-PERMISSIONS",
    Important,
    "IoT Edge service configuration under /etc/aziot/*/ is not world-readable and owned by root or aziot users",
    "Restore ownership (e.g. chown -R aziotks:aziotks /etc/aziot/keyd) and remove world access (chmod -R o-rwx /etc/aziot/*/).",
    ""
);

meta!(
    CUSTOM_FILE,
    "EG-CUSTOM-CHECKS-FILE",
    Warning,
    "Custom baseline checks file (baselineCustomChecksFilePath) can be used",
    "Check baselineCustomChecksFilePath, and set baselineCustomChecksFileHash to the file's SHA-256 (sha256sum).",
    ""
);

macro_rules! sysctl {
    ($name:literal, $expect:expr, $absent:expr, $id:literal, $sev:ident, $desc:literal, $reference:literal) => {
        sysctl!(@ false, $name, $expect, $absent, $id, $sev, $desc, $reference)
    };
    (@ $container_na:literal, $name:literal, $expect:expr, $absent:expr, $id:literal, $sev:ident, $desc:literal, $reference:literal) => {
        SysctlRule {
            name: $name,
            expect: $expect,
            absent: $absent,
            container_na: $container_na,
            meta: Meta {
                id: $id,
                description: $desc,
                severity: $sev,
                remediation: concat!(
                    "Set the value in /etc/sysctl.d/99-hardening.conf (",
                    $name,
                    ") and run 'sysctl --system'."
                ),
                reference: $reference,
            },
        }
    };
}

/// A sysctl rule that does not apply on a container host (forwarding is how containers reach
/// the network): a failing value there is reported not applicable.
macro_rules! sysctl_na {
    ($name:literal, $expect:expr, $absent:expr, $id:literal, $sev:ident, $desc:literal, $reference:literal) => {
        sysctl!(@ true, $name, $expect, $absent, $id, $sev, $desc, $reference)
    };
}

const IPV6_OFF: Absent = Absent::Pass("IPv6 disabled");

pub(super) const SYSCTL_RULES: &[SysctlRule] = &[
    sysctl!(
        "kernel.randomize_va_space",
        Expect::Eq(2),
        Absent::Err,
        "CCE-80916-0",
        Important,
        "Address space layout randomization is fully enabled (kernel.randomize_va_space = 2)",
        "ComplianceAsCode sysctl_kernel_randomize_va_space"
    ),
    sysctl!(
        "net.ipv4.conf.all.accept_redirects",
        Expect::Eq(0),
        Absent::Err,
        "CCE-80917-8",
        Warning,
        "IPv4 ICMP redirects are ignored (net.ipv4.conf.all.accept_redirects = 0)",
        "ComplianceAsCode sysctl_net_ipv4_conf_all_accept_redirects"
    ),
    sysctl!(
        "net.ipv4.conf.all.send_redirects",
        Expect::Eq(0),
        Absent::Err,
        "CCE-80918-6",
        Warning,
        "IPv4 ICMP redirects are not sent (net.ipv4.conf.all.send_redirects = 0)",
        "ComplianceAsCode sysctl_net_ipv4_conf_all_send_redirects"
    ),
    sysctl!(
        "net.ipv4.conf.all.accept_source_route",
        Expect::Eq(0),
        Absent::Err,
        "CCE-81011-9",
        Warning,
        "IPv4 source-routed packets are refused (net.ipv4.conf.all.accept_source_route = 0)",
        "ComplianceAsCode sysctl_net_ipv4_conf_all_accept_source_route"
    ),
    sysctl!(
        "net.ipv4.tcp_syncookies",
        Expect::Eq(1),
        Absent::Err,
        "CCE-80923-6",
        Warning,
        "TCP SYN cookies are enabled (net.ipv4.tcp_syncookies = 1)",
        "ComplianceAsCode sysctl_net_ipv4_tcp_syncookies"
    ),
    sysctl!(
        "kernel.kptr_restrict",
        Expect::AtLeast(1),
        Absent::Err,
        "CCE-80915-2",
        Warning,
        "Kernel pointers are hidden from unprivileged users (kernel.kptr_restrict >= 1)",
        "ComplianceAsCode sysctl_kernel_kptr_restrict"
    ),
    sysctl!(
        "kernel.dmesg_restrict",
        Expect::Eq(1),
        Absent::Err,
        "CCE-80913-7",
        Warning,
        "The kernel log is restricted to privileged users (kernel.dmesg_restrict = 1)",
        "ComplianceAsCode sysctl_kernel_dmesg_restrict"
    ),
    sysctl!(
        "kernel.yama.ptrace_scope",
        Expect::AtLeast(1),
        Absent::Fail("Yama LSM not enabled: ptrace unrestricted"),
        "CCE-80953-3",
        Warning,
        "ptrace is restricted to descendant processes (kernel.yama.ptrace_scope >= 1)",
        "ComplianceAsCode sysctl_kernel_yama_ptrace_scope"
    ),
    sysctl!(
        "net.ipv4.conf.all.rp_filter",
        Expect::OneOf(&[1, 2]),
        Absent::Err,
        "CCE-81021-8",
        Warning,
        "Reverse path filtering is enabled (net.ipv4.conf.all.rp_filter = 1 or 2)",
        "ComplianceAsCode sysctl_net_ipv4_conf_all_rp_filter"
    ),
    sysctl!(
        "net.ipv4.conf.all.log_martians",
        Expect::Eq(1),
        Absent::Err,
        "CCE-81018-4",
        Informational,
        "Packets with impossible addresses are logged (net.ipv4.conf.all.log_martians = 1)",
        "ComplianceAsCode sysctl_net_ipv4_conf_all_log_martians"
    ),
    sysctl!(
        "fs.protected_hardlinks",
        Expect::Eq(1),
        Absent::Err,
        "CCE-81027-5",
        Important,
        "Hard links to files of other users are restricted (fs.protected_hardlinks = 1)",
        "ComplianceAsCode sysctl_fs_protected_hardlinks"
    ),
    sysctl!(
        "fs.protected_symlinks",
        Expect::Eq(1),
        Absent::Err,
        "CCE-81030-9",
        Important,
        "Symlinks in sticky world-writable directories are restricted (fs.protected_symlinks = 1)",
        "ComplianceAsCode sysctl_fs_protected_symlinks"
    ),
    sysctl!(
        "fs.suid_dumpable",
        Expect::Eq(0),
        Absent::Err,
        "CCE-80912-9",
        Warning,
        "Setuid programs do not dump core (fs.suid_dumpable = 0)",
        "ComplianceAsCode sysctl_fs_suid_dumpable"
    ),
    sysctl!(
        "net.ipv6.conf.all.accept_redirects",
        Expect::Eq(0),
        IPV6_OFF,
        "CCE-81009-3",
        Warning,
        "IPv6 ICMP redirects are ignored (net.ipv6.conf.all.accept_redirects = 0)",
        "ComplianceAsCode sysctl_net_ipv6_conf_all_accept_redirects"
    ),
    sysctl!(
        "net.ipv6.conf.all.accept_source_route",
        Expect::Eq(0),
        IPV6_OFF,
        "EG-SYSCTL-IPV6-ACCEPT-SOURCE-ROUTE",
        Warning,
        "IPv6 source-routed packets are refused (net.ipv6.conf.all.accept_source_route = 0)",
        ""
    ),
    sysctl!(
        "net.ipv4.conf.default.accept_redirects",
        Expect::Eq(0),
        Absent::Err,
        "CCE-80919-4",
        Warning,
        "IPv4 ICMP redirects are ignored on new interfaces (net.ipv4.conf.default.accept_redirects = 0)",
        "ComplianceAsCode sysctl_net_ipv4_conf_default_accept_redirects"
    ),
    sysctl!(
        "net.ipv4.conf.default.send_redirects",
        Expect::Eq(0),
        Absent::Err,
        "CCE-80921-0",
        Warning,
        "IPv4 ICMP redirects are not sent from new interfaces (net.ipv4.conf.default.send_redirects = 0)",
        "ComplianceAsCode sysctl_net_ipv4_conf_default_send_redirects"
    ),
    sysctl!(
        "net.ipv4.conf.all.secure_redirects",
        Expect::Eq(0),
        Absent::Err,
        "CCE-81016-8",
        Warning,
        "IPv4 secure ICMP redirects are ignored (net.ipv4.conf.all.secure_redirects = 0)",
        "ComplianceAsCode sysctl_net_ipv4_conf_all_secure_redirects"
    ),
    sysctl!(
        "net.ipv4.conf.default.secure_redirects",
        Expect::Eq(0),
        Absent::Err,
        "CCE-81017-6",
        Warning,
        "IPv4 secure ICMP redirects are ignored on new interfaces (net.ipv4.conf.default.secure_redirects = 0)",
        "ComplianceAsCode sysctl_net_ipv4_conf_default_secure_redirects"
    ),
    sysctl!(
        "net.ipv4.conf.default.accept_source_route",
        Expect::Eq(0),
        Absent::Err,
        "CCE-80920-2",
        Warning,
        "IPv4 source-routed packets are refused on new interfaces (net.ipv4.conf.default.accept_source_route = 0)",
        "ComplianceAsCode sysctl_net_ipv4_conf_default_accept_source_route"
    ),
    sysctl!(
        "net.ipv4.conf.default.rp_filter",
        Expect::OneOf(&[1, 2]),
        Absent::Err,
        "CCE-81022-6",
        Warning,
        "Reverse path filtering is enabled on new interfaces (net.ipv4.conf.default.rp_filter = 1 or 2)",
        "ComplianceAsCode sysctl_net_ipv4_conf_default_rp_filter"
    ),
    sysctl!(
        "net.ipv4.conf.default.log_martians",
        Expect::Eq(1),
        Absent::Err,
        "CCE-81020-0",
        Informational,
        "Packets with impossible addresses are logged on new interfaces (net.ipv4.conf.default.log_martians = 1)",
        "ComplianceAsCode sysctl_net_ipv4_conf_default_log_martians"
    ),
    sysctl!(
        "net.ipv4.icmp_echo_ignore_broadcasts",
        Expect::Eq(1),
        Absent::Err,
        "CCE-80922-8",
        Warning,
        "Broadcast ICMP echo requests are ignored (net.ipv4.icmp_echo_ignore_broadcasts = 1)",
        "ComplianceAsCode sysctl_net_ipv4_icmp_echo_ignore_broadcasts"
    ),
    sysctl!(
        "net.ipv4.icmp_ignore_bogus_error_responses",
        Expect::Eq(1),
        Absent::Err,
        "CCE-81023-4",
        Informational,
        "Bogus ICMP error responses are ignored (net.ipv4.icmp_ignore_bogus_error_responses = 1)",
        "ComplianceAsCode sysctl_net_ipv4_icmp_ignore_bogus_error_responses"
    ),
    sysctl_na!(
        "net.ipv4.ip_forward",
        Expect::Eq(0),
        Absent::Err,
        "CCE-81024-2",
        Warning,
        "The host does not route IPv4 packets (net.ipv4.ip_forward = 0; not applicable on a container host)",
        "ComplianceAsCode sysctl_net_ipv4_ip_forward"
    ),
    sysctl_na!(
        "net.ipv6.conf.all.forwarding",
        Expect::Eq(0),
        IPV6_OFF,
        "CCE-82863-2",
        Warning,
        "The host does not route IPv6 packets (net.ipv6.conf.all.forwarding = 0; not applicable on a container host)",
        "ComplianceAsCode sysctl_net_ipv6_conf_all_forwarding"
    ),
    sysctl!(
        "net.ipv6.conf.all.accept_ra",
        Expect::Eq(0),
        IPV6_OFF,
        "CCE-81006-9",
        Warning,
        "IPv6 router advertisements are ignored (net.ipv6.conf.all.accept_ra = 0)",
        "ComplianceAsCode sysctl_net_ipv6_conf_all_accept_ra"
    ),
    sysctl!(
        "net.ipv6.conf.default.accept_ra",
        Expect::Eq(0),
        IPV6_OFF,
        "CCE-81007-7",
        Warning,
        "IPv6 router advertisements are ignored on new interfaces (net.ipv6.conf.default.accept_ra = 0)",
        "ComplianceAsCode sysctl_net_ipv6_conf_default_accept_ra"
    ),
    sysctl!(
        "net.ipv6.conf.default.accept_redirects",
        Expect::Eq(0),
        IPV6_OFF,
        "CCE-81010-1",
        Warning,
        "IPv6 ICMP redirects are ignored on new interfaces (net.ipv6.conf.default.accept_redirects = 0)",
        "ComplianceAsCode sysctl_net_ipv6_conf_default_accept_redirects"
    ),
    sysctl!(
        "net.ipv6.conf.default.accept_source_route",
        Expect::Eq(0),
        IPV6_OFF,
        "CCE-81015-0",
        Warning,
        "IPv6 source-routed packets are refused on new interfaces (net.ipv6.conf.default.accept_source_route = 0)",
        "ComplianceAsCode sysctl_net_ipv6_conf_default_accept_source_route"
    ),
    sysctl!(
        "kernel.unprivileged_bpf_disabled",
        Expect::AtLeast(1),
        Absent::Pass("no bpf() system call in this kernel"),
        "CCE-82974-7",
        Important,
        "Unprivileged users cannot use bpf() (kernel.unprivileged_bpf_disabled >= 1)",
        "ComplianceAsCode sysctl_kernel_unprivileged_bpf_disabled"
    ),
    sysctl!(
        "net.core.bpf_jit_harden",
        Expect::Eq(2),
        Absent::Pass("no BPF JIT in this kernel"),
        "CCE-82934-1",
        Warning,
        "The BPF JIT compiler is hardened for every user (net.core.bpf_jit_harden = 2)",
        "ComplianceAsCode sysctl_net_core_bpf_jit_harden"
    ),
    sysctl!(
        "kernel.perf_event_paranoid",
        Expect::AtLeast(2),
        Absent::Pass("no perf events in this kernel"),
        "CCE-81054-9",
        Warning,
        "Unprivileged users cannot profile the kernel (kernel.perf_event_paranoid >= 2)",
        "ComplianceAsCode sysctl_kernel_perf_event_paranoid"
    ),
    sysctl!(
        "fs.protected_fifos",
        Expect::OneOf(&[1, 2]),
        Absent::Fail("kernel has no FIFO protection (before 4.19)"),
        "CCE-85884-5",
        Warning,
        "FIFOs in sticky world-writable directories are protected (fs.protected_fifos = 1 or 2)",
        "ComplianceAsCode sysctl_fs_protected_fifos (cce@rhel9)"
    ),
    sysctl!(
        "fs.protected_regular",
        Expect::OneOf(&[1, 2]),
        Absent::Fail("kernel has no regular-file protection (before 4.19)"),
        "CCE-85885-2",
        Warning,
        "Regular files in sticky world-writable directories are protected (fs.protected_regular = 1 or 2)",
        "ComplianceAsCode sysctl_fs_protected_regular (cce@rhel9)"
    ),
];

pub(super) const FILE_RULES: &[FileRule] = &[
    FileRule {
        paths: &["/etc/passwd"],
        max_mode: 0o644,
        groups: &[],
        missing: Missing::Err,
        mode: PASSWD_MODE,
        owner: PASSWD_OWNER,
        group: Some(Meta {
            id: "CCE-80798-2",
            description: "/etc/passwd is group-owned by root",
            severity: Important,
            remediation: "chgrp root /etc/passwd",
            reference: "ComplianceAsCode file_groupowner_etc_passwd",
        }),
    },
    FileRule {
        paths: &["/etc/shadow"],
        max_mode: 0o640,
        groups: &["shadow"],
        missing: Missing::Pass("no /etc/shadow"),
        mode: SHADOW_MODE,
        owner: SHADOW_OWNER,
        group: Some(Meta {
            id: "CCE-80799-0",
            description: "/etc/shadow is group-owned by root or shadow",
            severity: Critical,
            remediation: "chgrp root /etc/shadow",
            reference: "ComplianceAsCode file_groupowner_etc_shadow",
        }),
    },
    FileRule {
        paths: &["/etc/group"],
        max_mode: 0o644,
        groups: &[],
        missing: Missing::Err,
        mode: GROUP_MODE,
        owner: GROUP_OWNER,
        group: Some(Meta {
            id: "CCE-80796-6",
            description: "/etc/group is group-owned by root",
            severity: Important,
            remediation: "chgrp root /etc/group",
            reference: "ComplianceAsCode file_groupowner_etc_group",
        }),
    },
    FileRule {
        paths: &["/etc/gshadow"],
        max_mode: 0o640,
        groups: &["shadow"],
        missing: Missing::Pass("no /etc/gshadow"),
        mode: GSHADOW_MODE,
        owner: GSHADOW_OWNER,
        group: Some(Meta {
            id: "CCE-80797-4",
            description: "/etc/gshadow is group-owned by root or shadow",
            severity: Critical,
            remediation: "chgrp root /etc/gshadow",
            reference: "ComplianceAsCode file_groupowner_etc_gshadow",
        }),
    },
    FileRule {
        paths: &["/etc/sudoers"],
        max_mode: 0o440,
        groups: &[],
        missing: Missing::Pass("sudo not installed"),
        mode: SUDOERS_MODE,
        owner: SUDOERS_OWNER,
        group: None,
    },
    FileRule {
        paths: &["/etc/ssh/sshd_config"],
        max_mode: 0o600,
        groups: &[],
        missing: Missing::Pass("sshd not installed"),
        mode: SSHD_CONFIG_MODE,
        owner: SSHD_CONFIG_OWNER,
        group: Some(Meta {
            id: "CCE-82901-0",
            description: "/etc/ssh/sshd_config is group-owned by root",
            severity: Important,
            remediation: "chgrp root /etc/ssh/sshd_config",
            reference: "ComplianceAsCode file_groupowner_sshd_config",
        }),
    },
    FileRule {
        paths: &["/etc/passwd-"],
        max_mode: 0o644,
        groups: &[],
        missing: Missing::Pass("no /etc/passwd-"),
        mode: Meta {
            id: "CCE-83332-7",
            description: "/etc/passwd- mode is 0644 or stricter",
            severity: Important,
            remediation: "chmod 0644 /etc/passwd-",
            reference: "ComplianceAsCode file_permissions_backup_etc_passwd",
        },
        owner: Meta {
            id: "CCE-83326-9",
            description: "/etc/passwd- is owned by root",
            severity: Important,
            remediation: "chown root /etc/passwd-",
            reference: "ComplianceAsCode file_owner_backup_etc_passwd",
        },
        group: Some(Meta {
            id: "CCE-83324-4",
            description: "/etc/passwd- is group-owned by root",
            severity: Important,
            remediation: "chgrp root /etc/passwd-",
            reference: "ComplianceAsCode file_groupowner_backup_etc_passwd",
        }),
    },
    FileRule {
        paths: &["/etc/shadow-"],
        max_mode: 0o640,
        groups: &["shadow"],
        missing: Missing::Pass("no /etc/shadow-"),
        mode: Meta {
            id: "CCE-83417-6",
            description: "/etc/shadow- mode is 0640 or stricter",
            severity: Critical,
            remediation: "chmod 0640 /etc/shadow-",
            reference: "ComplianceAsCode file_permissions_backup_etc_shadow",
        },
        owner: Meta {
            id: "CCE-83413-5",
            description: "/etc/shadow- is owned by root",
            severity: Critical,
            remediation: "chown root /etc/shadow-",
            reference: "ComplianceAsCode file_owner_backup_etc_shadow",
        },
        group: Some(Meta {
            id: "CCE-83415-0",
            description: "/etc/shadow- is group-owned by root or shadow",
            severity: Critical,
            remediation: "chgrp root /etc/shadow-",
            reference: "ComplianceAsCode file_groupowner_backup_etc_shadow",
        }),
    },
    FileRule {
        paths: &["/etc/group-"],
        max_mode: 0o644,
        groups: &[],
        missing: Missing::Pass("no /etc/group-"),
        mode: Meta {
            id: "CCE-83483-8",
            description: "/etc/group- mode is 0644 or stricter",
            severity: Important,
            remediation: "chmod 0644 /etc/group-",
            reference: "ComplianceAsCode file_permissions_backup_etc_group",
        },
        owner: Meta {
            id: "CCE-83473-9",
            description: "/etc/group- is owned by root",
            severity: Important,
            remediation: "chown root /etc/group-",
            reference: "ComplianceAsCode file_owner_backup_etc_group",
        },
        group: Some(Meta {
            id: "CCE-83475-4",
            description: "/etc/group- is group-owned by root",
            severity: Important,
            remediation: "chgrp root /etc/group-",
            reference: "ComplianceAsCode file_groupowner_backup_etc_group",
        }),
    },
    FileRule {
        paths: &["/etc/gshadow-"],
        max_mode: 0o640,
        groups: &["shadow"],
        missing: Missing::Pass("no /etc/gshadow-"),
        mode: Meta {
            id: "CCE-83573-6",
            description: "/etc/gshadow- mode is 0640 or stricter",
            severity: Critical,
            remediation: "chmod 0640 /etc/gshadow-",
            reference: "ComplianceAsCode file_permissions_backup_etc_gshadow",
        },
        owner: Meta {
            id: "CCE-83533-0",
            description: "/etc/gshadow- is owned by root",
            severity: Critical,
            remediation: "chown root /etc/gshadow-",
            reference: "ComplianceAsCode file_owner_backup_etc_gshadow",
        },
        group: Some(Meta {
            id: "CCE-83535-5",
            description: "/etc/gshadow- is group-owned by root or shadow",
            severity: Critical,
            remediation: "chgrp root /etc/gshadow-",
            reference: "ComplianceAsCode file_groupowner_backup_etc_gshadow",
        }),
    },
    FileRule {
        paths: &["/etc/crontab"],
        max_mode: 0o600,
        groups: &[],
        missing: Missing::Pass("cron not installed"),
        mode: Meta {
            id: "CCE-82206-4",
            description: "/etc/crontab mode is 0600 or stricter",
            severity: Warning,
            remediation: "chmod 0600 /etc/crontab",
            reference: "ComplianceAsCode file_permissions_crontab",
        },
        owner: Meta {
            id: "CCE-82224-7",
            description: "/etc/crontab is owned by root",
            severity: Warning,
            remediation: "chown root /etc/crontab",
            reference: "ComplianceAsCode file_owner_crontab",
        },
        group: Some(Meta {
            id: "CCE-82223-9",
            description: "/etc/crontab is group-owned by root",
            severity: Warning,
            remediation: "chgrp root /etc/crontab",
            reference: "ComplianceAsCode file_groupowner_crontab",
        }),
    },
    FileRule {
        paths: &["/etc/cron.hourly"],
        max_mode: 0o700,
        groups: &[],
        missing: Missing::Pass("no /etc/cron.hourly"),
        mode: Meta {
            id: "CCE-82230-4",
            description: "/etc/cron.hourly mode is 0700 or stricter",
            severity: Warning,
            remediation: "chmod 0700 /etc/cron.hourly",
            reference: "ComplianceAsCode file_permissions_cron_hourly",
        },
        owner: Meta {
            id: "CCE-82209-8",
            description: "/etc/cron.hourly is owned by root",
            severity: Warning,
            remediation: "chown root /etc/cron.hourly",
            reference: "ComplianceAsCode file_owner_cron_hourly",
        },
        group: Some(Meta {
            id: "CCE-82227-0",
            description: "/etc/cron.hourly is group-owned by root",
            severity: Warning,
            remediation: "chgrp root /etc/cron.hourly",
            reference: "ComplianceAsCode file_groupowner_cron_hourly",
        }),
    },
    FileRule {
        paths: &["/etc/cron.daily"],
        max_mode: 0o700,
        groups: &[],
        missing: Missing::Pass("no /etc/cron.daily"),
        mode: Meta {
            id: "CCE-82240-3",
            description: "/etc/cron.daily mode is 0700 or stricter",
            severity: Warning,
            remediation: "chmod 0700 /etc/cron.daily",
            reference: "ComplianceAsCode file_permissions_cron_daily",
        },
        owner: Meta {
            id: "CCE-82237-9",
            description: "/etc/cron.daily is owned by root",
            severity: Warning,
            remediation: "chown root /etc/cron.daily",
            reference: "ComplianceAsCode file_owner_cron_daily",
        },
        group: Some(Meta {
            id: "CCE-82234-6",
            description: "/etc/cron.daily is group-owned by root",
            severity: Warning,
            remediation: "chgrp root /etc/cron.daily",
            reference: "ComplianceAsCode file_groupowner_cron_daily",
        }),
    },
    FileRule {
        paths: &["/etc/cron.weekly"],
        max_mode: 0o700,
        groups: &[],
        missing: Missing::Pass("no /etc/cron.weekly"),
        mode: Meta {
            id: "CCE-82253-6",
            description: "/etc/cron.weekly mode is 0700 or stricter",
            severity: Warning,
            remediation: "chmod 0700 /etc/cron.weekly",
            reference: "ComplianceAsCode file_permissions_cron_weekly",
        },
        owner: Meta {
            id: "CCE-82247-8",
            description: "/etc/cron.weekly is owned by root",
            severity: Warning,
            remediation: "chown root /etc/cron.weekly",
            reference: "ComplianceAsCode file_owner_cron_weekly",
        },
        group: Some(Meta {
            id: "CCE-82244-5",
            description: "/etc/cron.weekly is group-owned by root",
            severity: Warning,
            remediation: "chgrp root /etc/cron.weekly",
            reference: "ComplianceAsCode file_groupowner_cron_weekly",
        }),
    },
    FileRule {
        paths: &["/etc/cron.monthly"],
        max_mode: 0o700,
        groups: &[],
        missing: Missing::Pass("no /etc/cron.monthly"),
        mode: Meta {
            id: "CCE-82263-5",
            description: "/etc/cron.monthly mode is 0700 or stricter",
            severity: Warning,
            remediation: "chmod 0700 /etc/cron.monthly",
            reference: "ComplianceAsCode file_permissions_cron_monthly",
        },
        owner: Meta {
            id: "CCE-82260-1",
            description: "/etc/cron.monthly is owned by root",
            severity: Warning,
            remediation: "chown root /etc/cron.monthly",
            reference: "ComplianceAsCode file_owner_cron_monthly",
        },
        group: Some(Meta {
            id: "CCE-82256-9",
            description: "/etc/cron.monthly is group-owned by root",
            severity: Warning,
            remediation: "chgrp root /etc/cron.monthly",
            reference: "ComplianceAsCode file_groupowner_cron_monthly",
        }),
    },
    FileRule {
        paths: &["/etc/cron.d"],
        max_mode: 0o700,
        groups: &[],
        missing: Missing::Pass("no /etc/cron.d"),
        mode: Meta {
            id: "CCE-82277-5",
            description: "/etc/cron.d mode is 0700 or stricter",
            severity: Warning,
            remediation: "chmod 0700 /etc/cron.d",
            reference: "ComplianceAsCode file_permissions_cron_d",
        },
        owner: Meta {
            id: "CCE-82272-6",
            description: "/etc/cron.d is owned by root",
            severity: Warning,
            remediation: "chown root /etc/cron.d",
            reference: "ComplianceAsCode file_owner_cron_d",
        },
        group: Some(Meta {
            id: "CCE-82268-4",
            description: "/etc/cron.d is group-owned by root",
            severity: Warning,
            remediation: "chgrp root /etc/cron.d",
            reference: "ComplianceAsCode file_groupowner_cron_d",
        }),
    },
    FileRule {
        paths: &["/etc/cron.allow"],
        max_mode: 0o640,
        groups: &[],
        missing: Missing::Pass("no /etc/cron.allow"),
        mode: Meta {
            id: "CCE-86876-0",
            description: "/etc/cron.allow mode is 0640 or stricter",
            severity: Warning,
            remediation: "chmod 0640 /etc/cron.allow",
            reference: "ComplianceAsCode file_permissions_cron_allow",
        },
        owner: Meta {
            id: "CCE-86843-0",
            description: "/etc/cron.allow is owned by root",
            severity: Warning,
            remediation: "chown root /etc/cron.allow",
            reference: "ComplianceAsCode file_owner_cron_allow",
        },
        group: Some(Meta {
            id: "CCE-86829-9",
            description: "/etc/cron.allow is group-owned by root",
            severity: Warning,
            remediation: "chgrp root /etc/cron.allow",
            reference: "ComplianceAsCode file_groupowner_cron_allow",
        }),
    },
    FileRule {
        paths: &["/etc/at.allow"],
        max_mode: 0o640,
        groups: &[],
        missing: Missing::Pass("no /etc/at.allow"),
        mode: Meta {
            id: "CCE-86903-2",
            description: "/etc/at.allow mode is 0640 or stricter",
            severity: Warning,
            remediation: "chmod 0640 /etc/at.allow",
            reference: "ComplianceAsCode file_permissions_at_allow",
        },
        owner: Meta {
            id: "CCE-86345-6",
            description: "/etc/at.allow is owned by root",
            severity: Warning,
            remediation: "chown root /etc/at.allow",
            reference: "ComplianceAsCode file_owner_at_allow",
        },
        group: Some(Meta {
            id: "CCE-87102-0",
            description: "/etc/at.allow is group-owned by root",
            severity: Warning,
            remediation: "chgrp root /etc/at.allow",
            reference: "ComplianceAsCode file_groupowner_at_allow",
        }),
    },
    FileRule {
        paths: &["/etc/issue"],
        max_mode: 0o644,
        groups: &[],
        missing: Missing::Pass("no /etc/issue"),
        mode: Meta {
            id: "CCE-83348-3",
            description: "/etc/issue mode is 0644 or stricter",
            severity: Informational,
            remediation: "chmod 0644 /etc/issue",
            reference: "ComplianceAsCode file_permissions_etc_issue",
        },
        owner: Meta {
            id: "CCE-83718-7",
            description: "/etc/issue is owned by root",
            severity: Informational,
            remediation: "chown root /etc/issue",
            reference: "ComplianceAsCode file_owner_etc_issue",
        },
        group: Some(Meta {
            id: "CCE-83708-8",
            description: "/etc/issue is group-owned by root",
            severity: Informational,
            remediation: "chgrp root /etc/issue",
            reference: "ComplianceAsCode file_groupowner_etc_issue",
        }),
    },
    FileRule {
        paths: &["/etc/issue.net"],
        max_mode: 0o644,
        groups: &[],
        missing: Missing::Pass("no /etc/issue.net"),
        mode: Meta {
            id: "CCE-86047-8",
            description: "/etc/issue.net mode is 0644 or stricter",
            severity: Informational,
            remediation: "chmod 0644 /etc/issue.net",
            reference: "ComplianceAsCode file_permissions_etc_issue_net",
        },
        owner: Meta {
            id: "CCE-86054-4",
            description: "/etc/issue.net is owned by root",
            severity: Informational,
            remediation: "chown root /etc/issue.net",
            reference: "ComplianceAsCode file_owner_etc_issue_net",
        },
        group: Some(Meta {
            id: "CCE-86051-0",
            description: "/etc/issue.net is group-owned by root",
            severity: Informational,
            remediation: "chgrp root /etc/issue.net",
            reference: "ComplianceAsCode file_groupowner_etc_issue_net",
        }),
    },
    FileRule {
        paths: &["/etc/motd"],
        max_mode: 0o644,
        groups: &[],
        missing: Missing::Pass("no /etc/motd"),
        mode: Meta {
            id: "CCE-83338-4",
            description: "/etc/motd mode is 0644 or stricter",
            severity: Informational,
            remediation: "chmod 0644 /etc/motd",
            reference: "ComplianceAsCode file_permissions_etc_motd",
        },
        owner: Meta {
            id: "CCE-83738-5",
            description: "/etc/motd is owned by root",
            severity: Informational,
            remediation: "chown root /etc/motd",
            reference: "ComplianceAsCode file_owner_etc_motd",
        },
        group: Some(Meta {
            id: "CCE-83728-6",
            description: "/etc/motd is group-owned by root",
            severity: Informational,
            remediation: "chgrp root /etc/motd",
            reference: "ComplianceAsCode file_groupowner_etc_motd",
        }),
    },
    FileRule {
        paths: &["/boot/grub/grub.cfg", "/boot/grub2/grub.cfg"],
        max_mode: 0o600,
        groups: &[],
        missing: Missing::Pass("no GRUB configuration"),
        mode: Meta {
            id: "CCE-80814-7",
            description: "/boot/grub/grub.cfg mode is 0600 or stricter",
            severity: Important,
            remediation: "chmod 0600 /boot/grub/grub.cfg",
            reference: "ComplianceAsCode file_permissions_grub2_cfg",
        },
        owner: Meta {
            id: "CCE-80805-5",
            description: "/boot/grub/grub.cfg is owned by root",
            severity: Important,
            remediation: "chown root /boot/grub/grub.cfg",
            reference: "ComplianceAsCode file_owner_grub2_cfg",
        },
        group: Some(Meta {
            id: "CCE-80800-6",
            description: "/boot/grub/grub.cfg is group-owned by root",
            severity: Important,
            remediation: "chgrp root /boot/grub/grub.cfg",
            reference: "ComplianceAsCode file_groupowner_grub2_cfg",
        }),
    },
];
macro_rules! module {
    ($name:literal, $na:literal, $id:literal, $sev:ident, $desc:literal, $reference:literal) => {
        ModuleRule {
            name: $name,
            na_in_use: $na,
            meta: Meta {
                id: $id,
                description: $desc,
                severity: $sev,
                remediation: concat!(
                    "Add 'install ",
                    $name,
                    " /bin/false' and 'blacklist ",
                    $name,
                    "' to /etc/modprobe.d/",
                    $name,
                    ".conf, then unload it (modprobe -r ",
                    $name,
                    ")."
                ),
                reference: $reference,
            },
        }
    };
}

pub(super) const MODULE_RULES: &[ModuleRule] = &[
    module!(
        "dccp",
        false,
        "CCE-80833-7",
        Warning,
        "The kernel cannot load the DCCP network protocol (dccp)",
        "ComplianceAsCode kernel_module_dccp_disabled"
    ),
    module!(
        "sctp",
        false,
        "CCE-80834-5",
        Warning,
        "The kernel cannot load the SCTP network protocol (sctp)",
        "ComplianceAsCode kernel_module_sctp_disabled"
    ),
    module!(
        "rds",
        false,
        "CCE-82870-7",
        Warning,
        "The kernel cannot load the RDS network protocol (rds)",
        "ComplianceAsCode kernel_module_rds_disabled"
    ),
    module!(
        "tipc",
        false,
        "CCE-82297-3",
        Warning,
        "The kernel cannot load the TIPC network protocol (tipc)",
        "ComplianceAsCode kernel_module_tipc_disabled"
    ),
    module!(
        "cramfs",
        false,
        "CCE-81031-7",
        Informational,
        "The kernel cannot load the cramfs filesystem (cramfs)",
        "ComplianceAsCode kernel_module_cramfs_disabled"
    ),
    module!(
        "freevxfs",
        false,
        "CCE-86615-2",
        Informational,
        "The kernel cannot load the freevxfs filesystem (freevxfs)",
        "ComplianceAsCode kernel_module_freevxfs_disabled"
    ),
    module!(
        "jffs2",
        true,
        "CCE-86618-6",
        Informational,
        "The kernel cannot load the jffs2 filesystem (jffs2)",
        "ComplianceAsCode kernel_module_jffs2_disabled"
    ),
    module!(
        "hfs",
        false,
        "CCE-86616-0",
        Informational,
        "The kernel cannot load the hfs filesystem (hfs)",
        "ComplianceAsCode kernel_module_hfs_disabled"
    ),
    module!(
        "hfsplus",
        false,
        "CCE-86617-8",
        Informational,
        "The kernel cannot load the hfsplus filesystem (hfsplus)",
        "ComplianceAsCode kernel_module_hfsplus_disabled"
    ),
    module!(
        "squashfs",
        true,
        "CCE-83498-6",
        Informational,
        "The kernel cannot load the squashfs filesystem (not applicable where snaps or read-only images use it) (squashfs)",
        "ComplianceAsCode kernel_module_squashfs_disabled"
    ),
    module!(
        "udf",
        false,
        "CCE-82729-5",
        Informational,
        "The kernel cannot load the udf filesystem (udf)",
        "ComplianceAsCode kernel_module_udf_disabled"
    ),
    module!(
        "usb-storage",
        false,
        "CCE-80835-2",
        Warning,
        "The kernel cannot load USB mass storage (usb-storage)",
        "ComplianceAsCode kernel_module_usb-storage_disabled"
    ),
];

const LOGIN_DEFS: KvFile = KvFile {
    path: "/etc/login.defs",
    dropins: &[],
    sep: Sep::Space,
    missing: "no /etc/login.defs (shadow utilities not installed)",
};
const USERADD: KvFile = KvFile {
    path: "/etc/default/useradd",
    dropins: &[],
    sep: Sep::Equals,
    missing: "no /etc/default/useradd (useradd not installed)",
};
const AUDITD_CONF: KvFile = KvFile {
    path: "/etc/audit/auditd.conf",
    dropins: &[],
    sep: Sep::Equals,
    missing: "auditd not installed",
};
const JOURNALD_CONF: KvFile = KvFile {
    path: "/etc/systemd/journald.conf",
    dropins: &[
        "/etc/systemd/journald.conf.d",
        "/run/systemd/journald.conf.d",
    ],
    sep: Sep::Equals,
    missing: "systemd-journald not installed",
};
const COREDUMP_CONF: KvFile = KvFile {
    path: "/etc/systemd/coredump.conf",
    dropins: &[
        "/etc/systemd/coredump.conf.d",
        "/run/systemd/coredump.conf.d",
    ],
    sep: Sep::Equals,
    missing: "systemd-coredump not installed",
};

macro_rules! kv {
    ($file:ident, $key:literal, $cmp:expr, $unset:expr, $id:literal, $sev:ident, $desc:literal, $fix:literal, $reference:literal) => {
        KvRule {
            file: &$file,
            key: $key,
            cmp: $cmp,
            unset: $unset,
            meta: Meta {
                id: $id,
                description: $desc,
                severity: $sev,
                remediation: $fix,
                reference: $reference,
            },
        }
    };
}

pub(super) const KV_RULES: &[KvRule] = &[
    kv!(
        LOGIN_DEFS,
        "PASS_MAX_DAYS",
        Cmp::Between(1, 365),
        Unset::Fail("PASS_MAX_DAYS not set (passwords never expire)"),
        "CCE-80647-1",
        Warning,
        "New passwords expire within 365 days (PASS_MAX_DAYS in /etc/login.defs)",
        "Set 'PASS_MAX_DAYS 365' (or less) in /etc/login.defs; for existing users: chage --maxdays 365 <user>.",
        "ComplianceAsCode accounts_maximum_age_login_defs"
    ),
    kv!(
        LOGIN_DEFS,
        "PASS_MIN_DAYS",
        Cmp::Between(1, 99_999),
        Unset::Fail("PASS_MIN_DAYS not set (0: passwords can be changed back at once)"),
        "CCE-80648-9",
        Warning,
        "Passwords cannot be changed again within a day (PASS_MIN_DAYS >= 1 in /etc/login.defs)",
        "Set 'PASS_MIN_DAYS 1' in /etc/login.defs; for existing users: chage --mindays 1 <user>.",
        "ComplianceAsCode accounts_minimum_age_login_defs"
    ),
    kv!(
        LOGIN_DEFS,
        "PASS_WARN_AGE",
        Cmp::Between(7, 99_999),
        Unset::Default("7"),
        "CCE-80671-1",
        Informational,
        "Users are warned at least 7 days before their password expires (PASS_WARN_AGE in /etc/login.defs)",
        "Set 'PASS_WARN_AGE 7' in /etc/login.defs; for existing users: chage --warndays 7 <user>.",
        "ComplianceAsCode accounts_password_warn_age_login_defs"
    ),
    kv!(
        LOGIN_DEFS,
        "ENCRYPT_METHOD",
        Cmp::OneOf(&["SHA512", "YESCRYPT"]),
        Unset::Fail("ENCRYPT_METHOD not set (weak DES hashing by default)"),
        "CCE-80892-3",
        Important,
        "Passwords are hashed with SHA-512 or yescrypt (ENCRYPT_METHOD in /etc/login.defs)",
        "Set 'ENCRYPT_METHOD SHA512' (or YESCRYPT) in /etc/login.defs.",
        "ComplianceAsCode set_password_hashing_algorithm_logindefs"
    ),
    kv!(
        LOGIN_DEFS,
        "SHA_CRYPT_MIN_ROUNDS",
        Cmp::Between(5000, i64::MAX),
        Unset::Default("5000"),
        "CCE-89707-4",
        Warning,
        "SHA-crypt password hashes use at least 5000 rounds (SHA_CRYPT_MIN_ROUNDS in /etc/login.defs)",
        "Set 'SHA_CRYPT_MIN_ROUNDS 5000' (or more), or remove the line, in /etc/login.defs.",
        "ComplianceAsCode set_password_hashing_min_rounds_logindefs"
    ),
    kv!(
        LOGIN_DEFS,
        "UMASK",
        Cmp::UmaskCovers(0o027),
        Unset::Default("022"),
        "CCE-82888-9",
        Warning,
        "New files are not group-writable nor accessible by others (UMASK 027 or stricter in /etc/login.defs)",
        "Set 'UMASK 027' in /etc/login.defs.",
        "ComplianceAsCode accounts_umask_etc_login_defs"
    ),
    kv!(
        USERADD,
        "INACTIVE",
        Cmp::Between(0, 30),
        Unset::Fail("INACTIVE not set (-1: accounts stay usable after their password expires)"),
        "CCE-80954-1",
        Warning,
        "Accounts are disabled within 30 days of password expiry (INACTIVE in /etc/default/useradd)",
        "Run 'useradd -D -f 30'; for existing users: chage --inactive 30 <user>.",
        "ComplianceAsCode account_disable_post_pw_expiration"
    ),
    kv!(
        AUDITD_CONF,
        "max_log_file_action",
        Cmp::OneOf(&["keep_logs"]),
        Unset::Default("rotate"),
        "CCE-80682-8",
        Warning,
        "Audit logs are kept, not rotated away (max_log_file_action = keep_logs in auditd.conf)",
        "Set 'max_log_file_action = keep_logs' in /etc/audit/auditd.conf and archive old logs.",
        "ComplianceAsCode auditd_data_retention_max_log_file_action"
    ),
    kv!(
        AUDITD_CONF,
        "space_left_action",
        Cmp::OneOf(&["email", "exec", "single", "halt"]),
        Unset::Default("ignore"),
        "CCE-80684-4",
        Warning,
        "auditd acts when disk space runs low (space_left_action email, exec, single or halt)",
        "Set 'space_left_action = email' in /etc/audit/auditd.conf.",
        "ComplianceAsCode auditd_data_retention_space_left_action"
    ),
    kv!(
        AUDITD_CONF,
        "admin_space_left_action",
        Cmp::OneOf(&["single", "halt"]),
        Unset::Default("suspend"),
        "CCE-80679-4",
        Warning,
        "auditd stops the system rather than lose records when the disk is nearly full (admin_space_left_action single or halt)",
        "Set 'admin_space_left_action = single' in /etc/audit/auditd.conf.",
        "ComplianceAsCode auditd_data_retention_admin_space_left_action"
    ),
    kv!(
        JOURNALD_CONF,
        "Storage",
        Cmp::OneOf(&["persistent"]),
        Unset::Default("auto"),
        "CCE-86045-2",
        Warning,
        "The journal is kept on disk across reboots (Storage=persistent in journald.conf)",
        "Set 'Storage=persistent' under [Journal] in /etc/systemd/journald.conf and restart systemd-journald.",
        "ComplianceAsCode journald_storage"
    ),
    kv!(
        JOURNALD_CONF,
        "Compress",
        Cmp::OneOf(&["yes", "true", "1", "on"]),
        Unset::Default("yes"),
        "CCE-85930-6",
        Informational,
        "Large journal entries are compressed (Compress=yes in journald.conf)",
        "Set 'Compress=yes' under [Journal] in /etc/systemd/journald.conf (or remove the line).",
        "ComplianceAsCode journald_compress"
    ),
    kv!(
        COREDUMP_CONF,
        "Storage",
        Cmp::OneOf(&["none"]),
        Unset::Default("external"),
        "CCE-82252-8",
        Warning,
        "systemd-coredump does not store core dumps (Storage=none in coredump.conf)",
        "Set 'Storage=none' under [Coredump] in /etc/systemd/coredump.conf.",
        "ComplianceAsCode coredump_disable_storage"
    ),
    kv!(
        COREDUMP_CONF,
        "ProcessSizeMax",
        Cmp::OneOf(&["0"]),
        Unset::Default("2G"),
        "CCE-82251-0",
        Informational,
        "systemd-coredump does not process core dumps (ProcessSizeMax=0 in coredump.conf)",
        "Set 'ProcessSizeMax=0' under [Coredump] in /etc/systemd/coredump.conf.",
        "ComplianceAsCode coredump_disable_backtraces"
    ),
];

meta!(
    SSH_HOST_KEYS,
    "CCE-82424-3",
    Important,
    "SSH host private keys are owned by root and not readable by others (0600, or 0640 for an ssh_keys group)",
    "chown root /etc/ssh/ssh_host_*_key && chmod 0600 /etc/ssh/ssh_host_*_key",
    "ComplianceAsCode file_permissions_sshd_private_key"
);

const SSH_DEFAULT_CIPHERS: &str = "chacha20-poly1305@openssh.com,aes128-ctr,aes192-ctr,aes256-ctr,\
    aes128-gcm@openssh.com,aes256-gcm@openssh.com";
const SSH_DEFAULT_MACS: &str = "umac-64-etm@openssh.com,umac-128-etm@openssh.com,\
    hmac-sha2-256-etm@openssh.com,hmac-sha2-512-etm@openssh.com,hmac-sha1-etm@openssh.com,\
    umac-64@openssh.com,umac-128@openssh.com,hmac-sha2-256,hmac-sha2-512,hmac-sha1";
const SSH_DEFAULT_KEX: &str = "sntrup761x25519-sha512@openssh.com,curve25519-sha256,\
    curve25519-sha256@libssh.org,ecdh-sha2-nistp256,ecdh-sha2-nistp384,ecdh-sha2-nistp521,\
    diffie-hellman-group-exchange-sha256,diffie-hellman-group16-sha512,\
    diffie-hellman-group18-sha512,diffie-hellman-group14-sha256";

macro_rules! sshd {
    ($keyword:literal, $default:expr, $alternatives:expr, $expect:expr, $meta:expr) => {
        SshdRule {
            keyword: $keyword,
            default: $default,
            alternatives: $alternatives,
            expect: $expect,
            meta: $meta,
        }
    };
}

macro_rules! new_meta {
    ($id:literal, $sev:ident, $desc:literal, $fix:literal, $reference:literal) => {
        Meta {
            id: $id,
            description: $desc,
            severity: $sev,
            remediation: $fix,
            reference: $reference,
        }
    };
}

/// sshd settings outside `Match` blocks; unset keywords take OpenSSH's current defaults.
pub(super) const SSHD_RULES: &[SshdRule] = &[
    sshd!(
        "PermitRootLogin",
        "prohibit-password",
        &[],
        SshdExpect::Is(&["no"]),
        SSH_ROOT_LOGIN
    ),
    sshd!(
        "PasswordAuthentication",
        "yes",
        &[],
        SshdExpect::Is(&["no"]),
        SSH_PASSWORD_AUTH
    ),
    sshd!(
        "PermitEmptyPasswords",
        "no",
        &[],
        SshdExpect::Is(&["no"]),
        SSH_EMPTY_PASSWORDS
    ),
    sshd!(
        "MaxAuthTries",
        "6",
        &[],
        SshdExpect::NumAtMost(4),
        SSH_MAX_AUTH_TRIES
    ),
    sshd!("X11Forwarding", "no", &[], SshdExpect::Is(&["no"]), SSH_X11),
    sshd!("Protocol", "2", &[], SshdExpect::Protocol2, SSH_PROTOCOL),
    sshd!(
        "IgnoreRhosts",
        "yes",
        &[],
        SshdExpect::Is(&["yes"]),
        SSH_IGNORE_RHOSTS
    ),
    sshd!(
        "HostbasedAuthentication",
        "no",
        &[],
        SshdExpect::Is(&["no"]),
        SSH_HOSTBASED
    ),
    sshd!(
        "LoginGraceTime",
        "120",
        &[],
        SshdExpect::TimeWithin(1, 60),
        SSH_GRACE_TIME
    ),
    sshd!(
        "ClientAliveInterval",
        "0",
        &[],
        SshdExpect::TimeWithin(1, 600),
        SSH_CLIENT_ALIVE
    ),
    sshd!(
        "ClientAliveCountMax",
        "3",
        &[],
        SshdExpect::NumAtMost(3),
        new_meta!(
            "EG-SSH-CLIENT-ALIVE-COUNT-MAX",
            Informational,
            "SSH drops unresponsive clients after at most 3 keepalives (ClientAliveCountMax <= 3)",
            "Set 'ClientAliveCountMax 3' (or less) in /etc/ssh/sshd_config.",
            ""
        )
    ),
    sshd!(
        "LogLevel",
        "INFO",
        &[],
        SshdExpect::Is(&["INFO", "VERBOSE"]),
        new_meta!(
            "CCE-82282-5",
            Warning,
            "SSH logs logins and key fingerprints (LogLevel INFO or VERBOSE)",
            "Set 'LogLevel VERBOSE' (or INFO) in /etc/ssh/sshd_config.",
            "ComplianceAsCode sshd_set_loglevel_info"
        )
    ),
    sshd!(
        "MaxStartups",
        "10:30:100",
        &[],
        SshdExpect::MaxStartups(10, 60),
        new_meta!(
            "CCE-90718-8",
            Warning,
            "SSH limits concurrent unauthenticated connections (MaxStartups 10:30:60 or stricter)",
            "Set 'MaxStartups 10:30:60' in /etc/ssh/sshd_config.",
            "ComplianceAsCode sshd_set_maxstartups"
        )
    ),
    sshd!(
        "MaxSessions",
        "10",
        &[],
        SshdExpect::NumAtMost(10),
        new_meta!(
            "CCE-83357-4",
            Warning,
            "SSH allows at most 10 sessions per connection (MaxSessions <= 10)",
            "Set 'MaxSessions 10' (or less) in /etc/ssh/sshd_config.",
            "ComplianceAsCode sshd_set_max_sessions"
        )
    ),
    sshd!(
        "Banner",
        "none",
        &[],
        SshdExpect::Set,
        new_meta!(
            "CCE-80905-3",
            Informational,
            "SSH shows a warning banner before login (Banner set)",
            "Set 'Banner /etc/issue.net' in /etc/ssh/sshd_config.",
            "ComplianceAsCode sshd_enable_warning_banner"
        )
    ),
    sshd!(
        "PermitUserEnvironment",
        "no",
        &[],
        SshdExpect::Is(&["no"]),
        new_meta!(
            "CCE-80903-8",
            Important,
            "SSH users cannot set environment options for sshd (PermitUserEnvironment no)",
            "Set 'PermitUserEnvironment no' in /etc/ssh/sshd_config (or remove the line).",
            "ComplianceAsCode sshd_do_not_permit_user_env"
        )
    ),
    sshd!(
        "Ciphers",
        SSH_DEFAULT_CIPHERS,
        &[],
        SshdExpect::NoneOf(&[
            "3des-cbc",
            "aes128-cbc",
            "aes192-cbc",
            "aes256-cbc",
            "blowfish-cbc",
            "cast128-cbc",
            "rijndael-cbc@lysator.liu.se",
            "arcfour*",
        ]),
        new_meta!(
            "EG-SSH-WEAK-CIPHERS",
            Important,
            "SSH offers no CBC-mode or RC4 ciphers (Ciphers)",
            "Set 'Ciphers chacha20-poly1305@openssh.com,aes256-gcm@openssh.com,aes128-gcm@openssh.com,aes256-ctr,aes192-ctr,aes128-ctr' in /etc/ssh/sshd_config.",
            ""
        )
    ),
    sshd!(
        "MACs",
        SSH_DEFAULT_MACS,
        &[],
        SshdExpect::NoneOf(&["hmac-md5*", "hmac-sha1*", "hmac-ripemd160*", "umac-64*"]),
        new_meta!(
            "CCE-86504-8",
            Warning,
            "SSH offers no MD5, SHA-1, RIPEMD-160 or 64-bit MACs (MACs)",
            "Set 'MACs hmac-sha2-512-etm@openssh.com,hmac-sha2-256-etm@openssh.com,umac-128-etm@openssh.com,hmac-sha2-512,hmac-sha2-256,umac-128@openssh.com' in /etc/ssh/sshd_config.",
            "ComplianceAsCode sshd_use_strong_macs"
        )
    ),
    sshd!(
        "KexAlgorithms",
        SSH_DEFAULT_KEX,
        &[],
        SshdExpect::NoneOf(&[
            "diffie-hellman-group1-sha1",
            "diffie-hellman-group14-sha1",
            "diffie-hellman-group-exchange-sha1",
        ]),
        new_meta!(
            "CCE-86518-8",
            Important,
            "SSH offers no SHA-1 Diffie-Hellman key exchange (KexAlgorithms)",
            "Remove diffie-hellman-group1-sha1, diffie-hellman-group14-sha1 and diffie-hellman-group-exchange-sha1 from KexAlgorithms in /etc/ssh/sshd_config.",
            "ComplianceAsCode sshd_use_strong_kex"
        )
    ),
    sshd!(
        "AllowUsers",
        "none",
        &[
            ("AllowGroups", None),
            ("DenyUsers", None),
            ("DenyGroups", None)
        ],
        SshdExpect::Set,
        new_meta!(
            "CCE-82422-7",
            Warning,
            "SSH access is limited to named users or groups (AllowUsers, AllowGroups, DenyUsers or DenyGroups)",
            "Set 'AllowGroups <group>' (or AllowUsers) in /etc/ssh/sshd_config.",
            "ComplianceAsCode sshd_limit_user_access"
        )
    ),
    sshd!(
        "UsePAM",
        "no",
        &[],
        SshdExpect::Is(&["yes"]),
        new_meta!(
            "CCE-86721-8",
            Warning,
            "SSH logins go through PAM, so account and password policies apply (UsePAM yes)",
            "Set 'UsePAM yes' in /etc/ssh/sshd_config.",
            "ComplianceAsCode sshd_enable_pam"
        )
    ),
    sshd!(
        "AllowTcpForwarding",
        "yes",
        &[("DisableForwarding", Some("yes"))],
        SshdExpect::Is(&["no"]),
        new_meta!(
            "CCE-83301-2",
            Warning,
            "SSH TCP forwarding is disabled (AllowTcpForwarding no, or DisableForwarding yes)",
            "Set 'DisableForwarding yes' (or 'AllowTcpForwarding no') in /etc/ssh/sshd_config.",
            "ComplianceAsCode sshd_disable_tcp_forwarding"
        )
    ),
];
macro_rules! path_rule {
    ($paths:expr, $want:ident, $only_if:expr, $not_installed:literal, $meta:expr) => {
        PathRule {
            paths: $paths,
            want: Want::$want,
            only_if: $only_if,
            not_installed: $not_installed,
            meta: $meta,
        }
    };
}

/// Programs and files that should be present or absent (a program stands for its package:
/// the check reads files, never the package database).
pub(super) const PATH_RULES: &[PathRule] = &[
    path_rule!(
        &["/sbin/auditd", "/usr/sbin/auditd"],
        Present,
        &[],
        "",
        new_meta!(
            "CCE-81043-2",
            Warning,
            "The audit daemon is installed (auditd)",
            "Install auditd (apt install auditd / dnf install audit) and enable it.",
            "ComplianceAsCode package_audit_installed"
        )
    ),
    path_rule!(
        &["/etc/systemd/system/multi-user.target.wants/auditd.service"],
        Present,
        &["/sbin/auditd", "/usr/sbin/auditd"],
        "auditd not installed",
        new_meta!(
            "CCE-80872-5",
            Warning,
            "The audit daemon starts at boot (auditd.service enabled)",
            "systemctl enable --now auditd",
            "ComplianceAsCode service_auditd_enabled"
        )
    ),
    path_rule!(
        &["/usr/sbin/accton", "/sbin/accton"],
        Present,
        &[],
        "",
        new_meta!(
            "CCE-82404-5",
            Informational,
            "Process accounting is installed (acct/psacct)",
            "Install process accounting (apt install acct / dnf install psacct) where its disk use is acceptable.",
            "ComplianceAsCode package_psacct_installed"
        )
    ),
    path_rule!(
        &["/etc/cron.allow"],
        Present,
        &["/usr/bin/crontab", "/etc/crontab"],
        "cron not installed",
        new_meta!(
            "CCE-86184-9",
            Warning,
            "cron is restricted to the users in /etc/cron.allow",
            "echo root > /etc/cron.allow && chmod 0600 /etc/cron.allow",
            "ComplianceAsCode file_cron_allow_exists"
        )
    ),
    path_rule!(
        &["/etc/cron.deny"],
        Absent,
        &["/usr/bin/crontab", "/etc/crontab"],
        "cron not installed",
        new_meta!(
            "CCE-86849-7",
            Warning,
            "/etc/cron.deny does not exist (cron.allow decides)",
            "rm /etc/cron.deny",
            "ComplianceAsCode file_cron_deny_not_exist"
        )
    ),
    path_rule!(
        &["/etc/at.allow"],
        Present,
        &["/usr/bin/at"],
        "at not installed",
        new_meta!(
            "CCE-86861-2",
            Warning,
            "at is restricted to the users in /etc/at.allow",
            "echo root > /etc/at.allow && chmod 0600 /etc/at.allow",
            "ComplianceAsCode file_at_allow_exists"
        )
    ),
    path_rule!(
        &["/etc/at.deny"],
        Absent,
        &["/usr/bin/at"],
        "at not installed",
        new_meta!(
            "CCE-86945-3",
            Warning,
            "/etc/at.deny does not exist (at.allow decides)",
            "rm /etc/at.deny",
            "ComplianceAsCode file_at_deny_not_exist"
        )
    ),
    path_rule!(
        &[
            "/usr/bin/gcc",
            "/usr/bin/cc",
            "/usr/bin/g++",
            "/usr/bin/clang"
        ],
        Absent,
        &[],
        "",
        new_meta!(
            "EG-COMPILER-PRESENT",
            Informational,
            "No compiler is installed on the device (gcc, cc, g++, clang)",
            "Remove compilers from production devices (apt purge gcc g++ clang).",
            ""
        )
    ),
    path_rule!(
        &["/usr/sbin/xinetd", "/sbin/xinetd"],
        Absent,
        &[],
        "",
        new_meta!(
            "CCE-80850-1",
            Warning,
            "xinetd is not installed",
            "Remove xinetd.",
            "ComplianceAsCode package_xinetd_removed"
        )
    ),
    path_rule!(
        &["/usr/sbin/in.telnetd", "/usr/sbin/telnetd"],
        Absent,
        &[],
        "",
        new_meta!(
            "CCE-82182-7",
            Critical,
            "No telnet server is installed",
            "Remove the telnet server (telnetd, inetutils-telnetd).",
            "ComplianceAsCode package_telnet-server_removed"
        )
    ),
    path_rule!(
        &[
            "/usr/sbin/in.rshd",
            "/usr/sbin/in.rlogind",
            "/usr/sbin/in.rexecd"
        ],
        Absent,
        &[],
        "",
        new_meta!(
            "CCE-82184-3",
            Critical,
            "No rsh, rlogin or rexec server is installed",
            "Remove rsh-server.",
            "ComplianceAsCode package_rsh-server_removed"
        )
    ),
    path_rule!(
        &["/usr/sbin/in.tftpd", "/usr/sbin/tftpd"],
        Absent,
        &[],
        "",
        new_meta!(
            "CCE-82436-7",
            Important,
            "No TFTP server is installed",
            "Remove the TFTP server (tftpd-hpa, tftp-server).",
            "ComplianceAsCode package_tftp-server_removed"
        )
    ),
    path_rule!(
        &["/usr/sbin/ypserv"],
        Absent,
        &[],
        "",
        new_meta!(
            "CCE-82432-6",
            Important,
            "No NIS server is installed (ypserv)",
            "Remove ypserv.",
            "ComplianceAsCode package_ypserv_removed"
        )
    ),
    path_rule!(
        &["/usr/sbin/ypbind", "/sbin/ypbind"],
        Absent,
        &[],
        "",
        new_meta!(
            "CCE-82181-9",
            Warning,
            "No NIS client is installed (ypbind)",
            "Remove the NIS client (nis, ypbind).",
            "ComplianceAsCode package_ypbind_removed"
        )
    ),
    path_rule!(
        &["/usr/bin/talk", "/usr/sbin/in.talkd", "/usr/sbin/in.ntalkd"],
        Absent,
        &[],
        "",
        new_meta!(
            "CCE-80848-5",
            Warning,
            "talk is not installed",
            "Remove talk and talkd.",
            "ComplianceAsCode package_talk_removed"
        )
    ),
    path_rule!(
        &["/usr/bin/telnet", "/usr/bin/telnet.netkit"],
        Absent,
        &[],
        "",
        new_meta!(
            "CCE-80849-3",
            Informational,
            "No telnet client is installed",
            "Remove the telnet client (telnet, inetutils-telnet); use ssh.",
            "ComplianceAsCode package_telnet_removed"
        )
    ),
    path_rule!(
        &["/usr/sbin/avahi-daemon"],
        Absent,
        &[],
        "",
        new_meta!(
            "CCE-86512-1",
            Warning,
            "The Avahi (mDNS) daemon is not installed",
            "Remove avahi-daemon unless service discovery is required.",
            "ComplianceAsCode package_avahi_removed"
        )
    ),
    path_rule!(
        &["/usr/sbin/cupsd"],
        Absent,
        &[],
        "",
        new_meta!(
            "CCE-86299-5",
            Warning,
            "The CUPS print server is not installed",
            "Remove cups.",
            "ComplianceAsCode package_cups_removed"
        )
    ),
    path_rule!(
        &["/usr/sbin/dhcpd", "/usr/sbin/kea-dhcp4"],
        Absent,
        &[],
        "",
        new_meta!(
            "CCE-83385-5",
            Warning,
            "No DHCP server is installed",
            "Remove the DHCP server unless the device serves addresses.",
            "ComplianceAsCode package_dhcp_removed"
        )
    ),
    path_rule!(
        &["/usr/sbin/slapd"],
        Absent,
        &[],
        "",
        new_meta!(
            "CCE-82415-1",
            Warning,
            "No LDAP server is installed (slapd)",
            "Remove slapd.",
            "ComplianceAsCode package_openldap-servers_removed"
        )
    ),
    path_rule!(
        &["/usr/sbin/named"],
        Absent,
        &[],
        "",
        new_meta!(
            "CCE-82408-6",
            Warning,
            "No DNS server is installed (named)",
            "Remove bind unless the device serves DNS.",
            "ComplianceAsCode package_bind_removed"
        )
    ),
    path_rule!(
        &["/usr/sbin/vsftpd"],
        Absent,
        &[],
        "",
        new_meta!(
            "CCE-82414-4",
            Important,
            "No FTP server is installed (vsftpd)",
            "Remove vsftpd.",
            "ComplianceAsCode package_vsftpd_removed"
        )
    ),
    path_rule!(
        &["/usr/sbin/httpd", "/usr/sbin/apache2"],
        Absent,
        &[],
        "",
        new_meta!(
            "CCE-85970-2",
            Informational,
            "No Apache web server is installed",
            "Remove Apache unless the device serves web pages.",
            "ComplianceAsCode package_httpd_removed"
        )
    ),
    path_rule!(
        &["/usr/sbin/dovecot"],
        Absent,
        &[],
        "",
        new_meta!(
            "CCE-85976-9",
            Warning,
            "No IMAP/POP3 server is installed (dovecot)",
            "Remove dovecot.",
            "ComplianceAsCode package_dovecot_removed"
        )
    ),
    path_rule!(
        &["/usr/sbin/smbd"],
        Absent,
        &[],
        "",
        new_meta!(
            "CCE-85978-5",
            Warning,
            "No Samba server is installed (smbd)",
            "Remove samba unless the device shares files.",
            "ComplianceAsCode package_samba_removed"
        )
    ),
    path_rule!(
        &["/usr/sbin/squid"],
        Absent,
        &[],
        "",
        new_meta!(
            "CCE-82189-2",
            Warning,
            "No HTTP proxy is installed (squid)",
            "Remove squid.",
            "ComplianceAsCode package_squid_removed"
        )
    ),
    path_rule!(
        &["/usr/sbin/snmpd"],
        Absent,
        &[],
        "",
        new_meta!(
            "CCE-85980-1",
            Warning,
            "No SNMP daemon is installed (snmpd)",
            "Remove snmpd unless the device is monitored over SNMP (then use SNMPv3).",
            "ComplianceAsCode package_net-snmp_removed"
        )
    ),
    path_rule!(
        &["/usr/sbin/rpcbind", "/sbin/rpcbind"],
        Absent,
        &[],
        "",
        new_meta!(
            "EG-RPCBIND-PRESENT",
            Warning,
            "rpcbind is not installed",
            "Remove rpcbind unless NFS is required.",
            ""
        )
    ),
    path_rule!(
        &["/usr/sbin/rpc.nfsd"],
        Absent,
        &[],
        "",
        new_meta!(
            "EG-NFS-SERVER-PRESENT",
            Warning,
            "No NFS server is installed",
            "Remove the NFS server (nfs-kernel-server, nfs-utils) unless the device exports files.",
            ""
        )
    ),
];

/// Mount points and options, read from the host's `/proc/1/mountinfo`.
pub(super) const MOUNT_RULES: &[MountRule] = &[
    MountRule {
        mountpoint: "/tmp",
        option: None,
        meta: new_meta!(
            "CCE-80851-9",
            Warning,
            "/tmp is a separate mount (tmpfs or its own partition)",
            "Mount /tmp separately: systemctl enable tmp.mount, or a tmpfs line in /etc/fstab.",
            "ComplianceAsCode partition_for_tmp"
        ),
    },
    MountRule {
        mountpoint: "/tmp",
        option: Some("nodev"),
        meta: new_meta!(
            "CCE-82623-0",
            Warning,
            "/tmp is mounted nodev",
            "Add nodev to /tmp's options in /etc/fstab (or tmp.mount) and remount.",
            "ComplianceAsCode mount_option_tmp_nodev"
        ),
    },
    MountRule {
        mountpoint: "/tmp",
        option: Some("nosuid"),
        meta: new_meta!(
            "CCE-82140-5",
            Warning,
            "/tmp is mounted nosuid",
            "Add nosuid to /tmp's options in /etc/fstab (or tmp.mount) and remount.",
            "ComplianceAsCode mount_option_tmp_nosuid"
        ),
    },
    MountRule {
        mountpoint: "/tmp",
        option: Some("noexec"),
        meta: new_meta!(
            "CCE-82139-7",
            Warning,
            "/tmp is mounted noexec",
            "Add noexec to /tmp's options in /etc/fstab (or tmp.mount) and remount.",
            "ComplianceAsCode mount_option_tmp_noexec"
        ),
    },
    MountRule {
        mountpoint: "/dev/shm",
        option: Some("nodev"),
        meta: new_meta!(
            "CCE-80837-8",
            Warning,
            "/dev/shm is mounted nodev",
            "Add nodev to /dev/shm's options in /etc/fstab and remount.",
            "ComplianceAsCode mount_option_dev_shm_nodev"
        ),
    },
    MountRule {
        mountpoint: "/dev/shm",
        option: Some("nosuid"),
        meta: new_meta!(
            "CCE-80839-4",
            Warning,
            "/dev/shm is mounted nosuid",
            "Add nosuid to /dev/shm's options in /etc/fstab and remount.",
            "ComplianceAsCode mount_option_dev_shm_nosuid"
        ),
    },
    MountRule {
        mountpoint: "/dev/shm",
        option: Some("noexec"),
        meta: new_meta!(
            "CCE-80838-6",
            Warning,
            "/dev/shm is mounted noexec",
            "Add noexec to /dev/shm's options in /etc/fstab and remount.",
            "ComplianceAsCode mount_option_dev_shm_noexec"
        ),
    },
    MountRule {
        mountpoint: "/var/tmp",
        option: Some("nodev"),
        meta: new_meta!(
            "CCE-82068-8",
            Warning,
            "/var/tmp is mounted nodev (when it is a separate mount)",
            "Add nodev to /var/tmp's options in /etc/fstab and remount.",
            "ComplianceAsCode mount_option_var_tmp_nodev"
        ),
    },
    MountRule {
        mountpoint: "/var/tmp",
        option: Some("nosuid"),
        meta: new_meta!(
            "CCE-82154-6",
            Warning,
            "/var/tmp is mounted nosuid (when it is a separate mount)",
            "Add nosuid to /var/tmp's options in /etc/fstab and remount.",
            "ComplianceAsCode mount_option_var_tmp_nosuid"
        ),
    },
    MountRule {
        mountpoint: "/var/tmp",
        option: Some("noexec"),
        meta: new_meta!(
            "CCE-82151-2",
            Warning,
            "/var/tmp is mounted noexec (when it is a separate mount)",
            "Add noexec to /var/tmp's options in /etc/fstab and remount.",
            "ComplianceAsCode mount_option_var_tmp_noexec"
        ),
    },
    MountRule {
        mountpoint: "/home",
        option: Some("nodev"),
        meta: new_meta!(
            "CCE-81048-1",
            Informational,
            "/home is mounted nodev (when it is a separate mount)",
            "Add nodev to /home's options in /etc/fstab and remount.",
            "ComplianceAsCode mount_option_home_nodev"
        ),
    },
];

meta!(
    AUDIT_CMDLINE,
    "CCE-80825-3",
    Warning,
    "Processes that start before auditd are audited (audit=1 on the kernel command line)",
    "Add audit=1 to GRUB_CMDLINE_LINUX in /etc/default/grub and run update-grub (or grub2-mkconfig).",
    "ComplianceAsCode grub2_audit_argument"
);

meta!(
    AUDIT_BACKLOG,
    "CCE-80943-4",
    Informational,
    "The audit backlog holds at least 8192 records (audit_backlog_limit on the kernel command line)",
    "Add audit_backlog_limit=8192 to GRUB_CMDLINE_LINUX in /etc/default/grub and regenerate the GRUB configuration.",
    "ComplianceAsCode grub2_audit_backlog_limit_argument"
);

meta!(
    LSM_ENABLED,
    "EG-LSM-ENABLED",
    Important,
    "A mandatory access control LSM is active (AppArmor or SELinux)",
    "Enable AppArmor (apparmor=1 security=apparmor) or SELinux on the kernel command line and load its policy.",
    ""
);

meta!(
    TIME_SYNC,
    "EG-TIME-SYNC",
    Warning,
    "Time synchronisation is configured (chrony, ntpd or systemd-timesyncd)",
    "Install and enable chrony or systemd-timesyncd (systemctl enable --now systemd-timesyncd).",
    ""
);

meta!(
    SYSLOG,
    "EG-LOG-SYSLOG",
    Warning,
    "Logs are kept: a syslog daemon is configured or the journal is persistent",
    "Install rsyslog or syslog-ng, or create /var/log/journal for a persistent journal.",
    ""
);

meta!(
    CORE_LIMIT,
    "CCE-81038-2",
    Warning,
    "Core dumps are disabled for all users ('* hard core 0' in limits.conf or limits.d)",
    "Add '* hard core 0' to /etc/security/limits.d/99-coredump.conf.",
    "ComplianceAsCode disable_users_coredumps"
);

meta!(
    BANNER_ISSUE,
    "CCE-86160-9",
    Informational,
    "The local login banner (/etc/issue) does not reveal the OS or kernel (\\m \\r \\s \\v, OS name)",
    "Replace /etc/issue with a warning text without getty escapes or the OS name.",
    "ComplianceAsCode banner_etc_issue_cis"
);

meta!(
    BANNER_ISSUE_NET,
    "CCE-86167-4",
    Informational,
    "The remote login banner (/etc/issue.net) does not reveal the OS or kernel (\\m \\r \\s \\v, OS name)",
    "Replace /etc/issue.net with a warning text without getty escapes or the OS name.",
    "ComplianceAsCode banner_etc_issue_net_cis"
);

meta!(
    BANNER_MOTD,
    "CCE-86145-0",
    Informational,
    "The message of the day (/etc/motd) does not reveal the OS or kernel (\\m \\r \\s \\v, OS name)",
    "Remove OS details and getty escapes from /etc/motd.",
    "ComplianceAsCode banner_etc_motd_cis"
);

meta!(
    SUDO_USE_PTY,
    "CCE-83798-9",
    Warning,
    "sudo runs commands in a pseudo-terminal (Defaults use_pty)",
    "Add 'Defaults use_pty' to /etc/sudoers.d/hardening (visudo -f).",
    "ComplianceAsCode sudo_add_use_pty"
);

meta!(
    SUDO_LOGFILE,
    "CCE-83601-5",
    Informational,
    "sudo keeps its own log file (Defaults logfile=)",
    "Add 'Defaults logfile=\"/var/log/sudo.log\"' to /etc/sudoers.d/hardening (visudo -f).",
    "ComplianceAsCode sudo_custom_logfile"
);

meta!(
    ACCT_PLUS_PASSWD,
    "CCE-82890-5",
    Important,
    "/etc/passwd has no legacy NIS '+' entries",
    "Remove lines starting with + or - from /etc/passwd (vipw).",
    "ComplianceAsCode no_legacy_plus_entries_etc_passwd"
);

meta!(
    ACCT_PLUS_SHADOW,
    "CCE-84290-6",
    Important,
    "/etc/shadow has no legacy NIS '+' entries",
    "Remove lines starting with + or - from /etc/shadow (vipw -s).",
    "ComplianceAsCode no_legacy_plus_entries_etc_shadow"
);

meta!(
    ACCT_PLUS_GROUP,
    "CCE-83389-7",
    Important,
    "/etc/group has no legacy NIS '+' entries",
    "Remove lines starting with + or - from /etc/group (vigr).",
    "ComplianceAsCode no_legacy_plus_entries_etc_group"
);

meta!(
    ACCT_ROOT_GID,
    "CCE-86297-9",
    Warning,
    "root's primary group is gid 0",
    "usermod -g 0 root",
    "ComplianceAsCode accounts_root_gid_zero"
);

meta!(
    ACCT_GROUPS_EXIST,
    "CCE-80822-0",
    Warning,
    "Every primary group in /etc/passwd exists in /etc/group",
    "Create the missing groups (groupadd -g <gid>) or correct the accounts' gids.",
    "ComplianceAsCode gid_passwd_group_same"
);

meta!(
    ACCT_SHADOW_GROUP,
    "EG-ACCT-SHADOW-GROUP-EMPTY",
    Important,
    "The shadow group has no members (it can read /etc/shadow)",
    "Remove the users from the shadow group (gpasswd -d <user> shadow) and give them another primary group.",
    ""
);

meta!(
    ACCT_SHADOWED,
    "CCE-80651-3",
    Critical,
    "No password hash is stored in the world-readable /etc/passwd",
    "Run pwconv to move the hashes to /etc/shadow.",
    "ComplianceAsCode accounts_password_all_shadowed"
);

meta!(
    ACCT_AGING_MAX,
    "CCE-82473-0",
    Warning,
    "Every password expires within 365 days (maximum age in /etc/shadow)",
    "chage --maxdays 365 <user> for each listed account.",
    "ComplianceAsCode accounts_password_set_max_life_existing"
);

meta!(
    ACCT_AGING_MIN,
    "CCE-82472-2",
    Warning,
    "No password can be changed again within a day (minimum age in /etc/shadow)",
    "chage --mindays 1 <user> for each listed account.",
    "ComplianceAsCode accounts_password_set_min_life_existing"
);

meta!(
    ACCT_AGING_WARN,
    "CCE-86914-9",
    Informational,
    "Every user is warned at least 7 days before the password expires (warning age in /etc/shadow)",
    "chage --warndays 7 <user> for each listed account.",
    "ComplianceAsCode accounts_password_set_warn_age_existing"
);

meta!(
    ACCT_AGING_INACTIVE,
    "EG-ACCT-INACTIVE-EXISTING",
    Warning,
    "Every account with a password is disabled within 30 days of its password expiring (inactive days in /etc/shadow)",
    "chage --inactive 30 <user> for each listed account.",
    ""
);

meta!(
    ACCT_AGING_LAST,
    "CCE-86525-3",
    Warning,
    "No password was last changed in the future",
    "Set a new password for each listed account (passwd <user>) and check the clock.",
    "ComplianceAsCode accounts_password_last_change_is_in_past"
);

meta!(
    ROOT_PATH_RELATIVE,
    "CCE-85914-0",
    Important,
    "root's PATH has no empty, '.' or relative entries (from /etc/environment and root's profiles; approximate)",
    "Remove empty entries, '.' and relative directories from PATH in /etc/environment and /root/.profile, .bashrc.",
    "ComplianceAsCode root_path_no_dot"
);

meta!(
    ROOT_PATH_WRITABLE,
    "CCE-80672-9",
    Important,
    "No directory in root's PATH is group- or world-writable (from /etc/environment and root's profiles; approximate)",
    "chmod go-w each listed directory, or remove it from root's PATH.",
    "ComplianceAsCode accounts_root_path_dirs_no_write"
);

meta!(
    HOME_EXISTS,
    "CCE-83424-2",
    Warning,
    "Every interactive user's home directory exists",
    "Create the home directory (mkhomedir_helper <user>) or correct the account's home in /etc/passwd.",
    "ComplianceAsCode accounts_user_interactive_home_directory_exists"
);

meta!(
    HOME_MODE,
    "CCE-84038-9",
    Warning,
    "Interactive users' home directories are mode 0750 or stricter",
    "chmod 0750 each listed home directory.",
    "ComplianceAsCode file_permissions_home_directories"
);

meta!(
    HOME_OWNER,
    "CCE-86131-0",
    Warning,
    "Interactive users' home directories are owned by their users",
    "chown <user> each listed home directory.",
    "ComplianceAsCode file_ownership_home_directories"
);

meta!(
    HOME_DOTFILES,
    "EG-HOME-DOTFILES-WRITABLE",
    Important,
    "No dot file in an interactive user's home is group- or world-writable",
    "chmod go-w each listed file.",
    ""
);

meta!(
    HOME_NETRC,
    "CCE-83444-0",
    Important,
    "No user has a .netrc file (plain-text remote passwords)",
    "Remove each listed .netrc file.",
    "ComplianceAsCode no_netrc_files"
);

meta!(
    HOME_RHOSTS,
    "CCE-80842-8",
    Critical,
    "No user has a .rhosts or .shosts file (host-based trust)",
    "Remove each listed .rhosts and .shosts file.",
    "ComplianceAsCode no_rsh_trust_files"
);

meta!(
    HOME_FORWARD,
    "CCE-86755-6",
    Warning,
    "No user has a .forward file (mail forwarded, or programs run, on delivery)",
    "Remove each listed .forward file.",
    "ComplianceAsCode no_forward_files"
);

meta!(
    PAM_QUALITY,
    "CCE-85872-0",
    Warning,
    "New passwords are checked for quality (pam_pwquality or pam_cracklib in the password stack)",
    "Add 'password requisite pam_pwquality.so retry=3' before pam_unix in /etc/pam.d/common-password (system-auth).",
    "ComplianceAsCode accounts_password_pam_pwquality_system_auth"
);

meta!(
    PAM_MINLEN,
    "CCE-80656-2",
    Warning,
    "New passwords have at least 14 characters (minlen in pwquality.conf or the module's arguments)",
    "Set 'minlen = 14' in /etc/security/pwquality.conf.",
    "ComplianceAsCode accounts_password_pam_minlen"
);

meta!(
    PAM_COMPLEXITY,
    "CCE-82046-4",
    Informational,
    "New passwords mix all four character classes (minclass 4, or every credit -1)",
    "Set 'minclass = 4' in /etc/security/pwquality.conf.",
    "ComplianceAsCode accounts_password_pam_minclass"
);

meta!(
    PAM_LOCKOUT,
    "CCE-80667-9",
    Important,
    "Accounts lock after at most 5 failed logins (pam_faillock or pam_tally2 deny)",
    "Add pam_faillock to the auth stack (authselect enable-feature with-faillock, or pam-auth-update) and set 'deny = 5' in /etc/security/faillock.conf.",
    "ComplianceAsCode accounts_passwords_pam_faillock_deny"
);

meta!(
    PAM_UNLOCK,
    "CCE-80670-3",
    Warning,
    "Locked accounts stay locked for at least 15 minutes (unlock_time 0 or >= 900)",
    "Set 'unlock_time = 900' in /etc/security/faillock.conf.",
    "ComplianceAsCode accounts_passwords_pam_faillock_unlock_time"
);

meta!(
    PAM_REMEMBER,
    "CCE-80666-1",
    Warning,
    "The last 5 passwords cannot be reused (pam_pwhistory or pam_unix remember >= 5)",
    "Add 'password required pam_pwhistory.so remember=5 use_authtok' before pam_unix in /etc/pam.d/common-password (system-auth).",
    "ComplianceAsCode accounts_password_pam_unix_remember"
);

meta!(
    PAM_HASH,
    "CCE-80893-1",
    Important,
    "pam_unix hashes new passwords with SHA-512 or yescrypt",
    "Add sha512 (or yescrypt) to the pam_unix password line in /etc/pam.d/common-password (system-auth).",
    "ComplianceAsCode set_password_hashing_algorithm_systemauth"
);
