use super::*;
use crate::event::{ContainerEvent, ListeningPort};
use proptest::prelude::*;

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
    for (i, rule) in Rule::ALL.iter().enumerate() {
        assert_eq!(*rule as usize, i, "{rule:?}");
    }
    let ids: std::collections::HashSet<&str> = Rule::ALL.iter().map(|r| r.id()).collect();
    assert_eq!(ids.len(), Rule::ALL.len());
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
    // Full once, then purged of what had expired.
    assert_eq!(most, MAX_SUPPRESSED);
    assert!(d.suppressed.len() < MAX_SUPPRESSED);
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

proptest! {
    /// Whatever a collector or another module sends, the detector neither panics nor alerts on
    /// a kind it has no rule for, and raises at most one alert per record.
    #[test]
    fn arbitrary_records_never_panic(
        exe in ".{0,40}",
        command in proptest::option::of(".{0,40}"),
        operation in ".{0,20}",
        name in ".{0,12}",
        id in "[0-9]{0,3}",
    ) {
        let mut d = Detector::new();
        let now = Instant::now();
        prop_assert!(run(&mut d, &process(&exe, None), now).len() <= 1);
        prop_assert!(run(&mut d, &exec_start(command.as_deref()), now).len() <= 1);
        prop_assert!(run(&mut d, &failed_login(&operation, None, &name), now).len() <= 1);
        let change = user_change(AccountOperation::UserChanged, &name, &id, false);
        prop_assert!(run(&mut d, &change, now).len() <= 1);
    }
}
