//! The check catalogue: id, severity, description, remediation and reference of every built-in
//! check, in one place (the order of the checks in a snapshot is set by `run_builtin`).

use super::{Absent, Expect, Meta, SysctlRule};
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
        SysctlRule {
            name: $name,
            expect: $expect,
            absent: $absent,
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
];
