use super::*;
use crate::config::Config;
use crate::metrics::Metrics;
use std::sync::Arc;
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

const PASSWD_TEXT: &str = "root:x:0:0:root:/root:/bin/bash\n\
    daemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin\n\
    alice:x:1000:1000:Alice:/home/alice:/bin/bash\n\
    bob:x:1001:4242::/home/bob:/bin/sh\n\
    legacy::1002:1002::/home/legacy:/bin/sh\n\
    broken line\n\
    alice:x:2000:2000::/tmp:/bin/sh\n";
const GROUP_TEXT: &str = "root:x:0:\ndaemon:x:1:\nadm:x:4:alice\nsudo:x:27:alice,bob,alice\nalice:x:1000:\nlegacy:x:1002:\n";
const SHADOW_TEXT: &str = "root:*:19000:0:99999:7:::\ndaemon:*:19000::::::\nalice:$6$salt$hash:19000::::::\nbob:!$6$x:19000::::::\n";

fn user<'a>(users: &'a [LocalUser], name: &str) -> &'a LocalUser {
    users.iter().find(|u| u.user_name == name).unwrap()
}

#[test]
fn local_users_have_groups_and_password_state() {
    let acc = parse_accounts(PASSWD_TEXT, Some(GROUP_TEXT), Some(SHADOW_TEXT));
    assert_eq!(acc.skipped, 2, "one malformed line, one duplicate name");
    let users = local_users(&acc);
    assert_eq!(users.len(), 5);
    let alice = user(&users, "alice");
    assert_eq!(
        (
            alice.user_id.as_str(),
            alice.group_names.as_str(),
            alice.group_ids.as_str()
        ),
        ("1000", "alice;adm;sudo", "1000;4;27")
    );
    assert_eq!(alice.extra_details["HasPassword"], "true");
    assert_eq!(alice.extra_details["Locked"], "false");
    assert_eq!(alice.extra_details["Shell"], "/bin/bash");
    assert_eq!(alice.extra_details["Home"], "/home/alice");
    assert!(!alice.extra_details.contains_key("ShadowReadable"));
    // A primary gid without a group entry is named by its number.
    let bob = user(&users, "bob");
    assert_eq!(
        (bob.group_names.as_str(), bob.group_ids.as_str()),
        ("4242;sudo", "4242;27")
    );
    assert_eq!(bob.extra_details["Locked"], "true");
    // The password in passwd itself (no shadow entry): empty.
    assert_eq!(
        user(&users, "legacy").extra_details["EmptyPassword"],
        "true"
    );
    assert_eq!(user(&users, "root").extra_details["HasPassword"], "false");

    let acc = parse_accounts(PASSWD_TEXT, None, None);
    let users = local_users(&acc);
    let alice = user(&users, "alice");
    assert_eq!(
        (alice.group_names.as_str(), alice.group_ids.as_str()),
        ("1000", "1000")
    );
    assert_eq!(alice.extra_details["ShadowReadable"], "false");
    assert!(!alice.extra_details.contains_key("HasPassword"));
    assert_eq!(
        user(&users, "legacy").extra_details["EmptyPassword"],
        "true"
    );
}

fn ops(changes: &[UserChange]) -> Vec<(AccountOperation, String)> {
    changes
        .iter()
        .map(|c| (c.operation, c.name.clone()))
        .collect()
}

#[test]
fn diff_reports_each_kind_of_change() {
    let old = parse_accounts(PASSWD_TEXT, Some(GROUP_TEXT), Some(SHADOW_TEXT));
    assert!(diff(&old, &old).is_empty());
    let passwd = PASSWD_TEXT
        .replace(
            "bob:x:1001:4242::/home/bob:/bin/sh",
            "bob:x:0:4242::/home/bob:/bin/bash",
        )
        .replace("daemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin\n", "")
        + "toor:x:0:0::/root:/bin/sh\n";
    let group = GROUP_TEXT
        .replace("adm:x:4:alice\n", "")
        .replace("sudo:x:27:alice,bob,alice", "sudo:x:27:bob,carol")
        + "docker:x:999:alice\n";
    let shadow = SHADOW_TEXT.replace("alice:$6$salt$hash", "alice:!$6$salt$hash");
    let new = parse_accounts(&passwd, Some(&group), Some(&shadow));
    let changes = diff(&old, &new);
    use AccountOperation::*;
    assert_eq!(
        ops(&changes),
        [
            (UserChanged, "alice".into()),
            (UserChanged, "bob".into()),
            (UserAdded, "toor".into()),
            (UserRemoved, "daemon".into()),
            (GroupAdded, "docker".into()),
            (GroupChanged, "sudo".into()),
            (GroupRemoved, "adm".into()),
        ]
    );
    assert_eq!(
        changes[0].details.as_deref(),
        Some("password set -> locked")
    );
    assert_eq!(
        changes[1].details.as_deref(),
        Some("uid 1001 -> 0; shell /bin/sh -> /bin/bash")
    );
    assert_eq!(
        (
            changes[1].id.as_str(),
            changes[1].extra_details["NewUid0"].as_str()
        ),
        ("0", "true")
    );
    assert_eq!(changes[2].extra_details["NewUid0"], "true");
    assert!(!changes[0].extra_details.contains_key("NewUid0"));
    assert_eq!(changes[5].details.as_deref(), Some("members +carol -alice"));
    assert_eq!(
        (
            changes[6].id.as_str(),
            changes[4].extra_details["Members"].as_str()
        ),
        ("4", "alice")
    );
}

#[test]
fn unreadable_files_are_not_reported_as_changes() {
    let old = parse_accounts(PASSWD_TEXT, Some(GROUP_TEXT), Some(SHADOW_TEXT));
    let blind = parse_accounts(PASSWD_TEXT, None, None);
    assert!(diff(&old, &blind).is_empty());
    let kept = carry_over(blind, Some(&old));
    assert_eq!((&kept.users, &kept.groups), (&old.users, &old.groups));
    assert!(!kept.shadow_readable);
    // Once readable again, a change made meanwhile shows.
    let new = parse_accounts(
        PASSWD_TEXT,
        Some(&GROUP_TEXT.replace("adm:x:4:alice\n", "")),
        Some(SHADOW_TEXT),
    );
    assert_eq!(
        ops(&diff(&kept, &new)),
        [(AccountOperation::GroupRemoved, "adm".into())]
    );
}

struct Host {
    root: tempfile::TempDir,
    state: tempfile::TempDir,
}

impl Host {
    fn new() -> Host {
        let h = Host {
            root: tempfile::tempdir().unwrap(),
            state: tempfile::tempdir().unwrap(),
        };
        std::fs::create_dir_all(h.root.path().join("etc")).unwrap();
        h.write("passwd", PASSWD_TEXT);
        h.write("group", GROUP_TEXT);
        h.write("shadow", SHADOW_TEXT);
        h
    }
    /// Replaces a file the way useradd does (write a new file, rename over).
    fn write(&self, name: &str, text: &str) {
        let tmp = self.root.path().join(format!("etc/{name}+"));
        std::fs::write(&tmp, text).unwrap();
        std::fs::rename(tmp, self.root.path().join(format!("etc/{name}"))).unwrap();
    }
    fn host(&self) -> HostRoot {
        HostRoot::new(self.root.path())
    }
    fn context(&self) -> (Context, mpsc::Receiver<Event>) {
        let (tx, rx) = mpsc::channel(64);
        let (_cfg, config) = watch::channel(Arc::new(Config::default()));
        let ctx = Context {
            host: self.host(),
            events: tx,
            metrics: Arc::new(Metrics::for_tests()),
            config,
            cancel: CancellationToken::new(),
            state_dir: self.state.path().to_path_buf(),
        };
        (ctx, rx)
    }
}

#[test]
fn periodic_snapshot_from_a_host_root() {
    let h = Host::new();
    let events = LocalUsersCollector.collect(&h.host());
    assert_eq!(events.len(), 1);
    match &events[0].payload {
        Payload::LocalUsers(u) => assert_eq!(u.len(), 5),
        other => panic!("{other:?}"),
    }
    // No passwd: no snapshot rather than an empty one.
    std::fs::remove_file(h.root.path().join("etc/passwd")).unwrap();
    assert!(LocalUsersCollector.collect(&h.host()).is_empty());
}

#[test]
fn the_real_host_has_root() {
    let acc = read_accounts(&HostRoot::default()).unwrap();
    assert_eq!(acc.users.get("root").map(|u| u.uid), Some(0));
    let users = local_users(&acc);
    assert!(
        users
            .iter()
            .any(|u| u.user_name == "root" && u.group_ids.starts_with('0'))
    );
}

async fn next_change(rx: &mut mpsc::Receiver<Event>) -> UserChange {
    let event = tokio::time::timeout(Duration::from_secs(5), rx.recv())
        .await
        .unwrap()
        .unwrap();
    match event.payload {
        Payload::UserChange(mut c) => c.remove(0),
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn the_watcher_reports_changes_also_across_restarts() {
    let h = Host::new();
    let tick = Duration::from_millis(20);
    let (ctx, mut rx) = h.context();
    let task = tokio::spawn(watch_every(ctx.clone(), tick));
    // First start ever: nothing to compare with, so nothing reported; the state is saved.
    let saved = h.state.path().join(STATE_FILE);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !saved.exists() && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(tick).await;
    }
    assert!(saved.exists(), "the first look is saved");
    assert!(rx.try_recv().is_err());

    h.write(
        "passwd",
        &format!("{PASSWD_TEXT}eve:x:1003:1003::/home/eve:/bin/sh\n"),
    );
    let c = next_change(&mut rx).await;
    assert_eq!(
        (c.operation, c.name.as_str(), c.id.as_str()),
        (AccountOperation::UserAdded, "eve", "1003")
    );
    assert!(!c.extra_details.contains_key("NewUid0"));

    h.write(
        "passwd",
        &format!("{PASSWD_TEXT}eve:x:0:1003::/home/eve:/bin/sh\n"),
    );
    let c = next_change(&mut rx).await;
    assert_eq!(
        (c.operation, c.name.as_str()),
        (AccountOperation::UserChanged, "eve")
    );
    assert_eq!(c.details.as_deref(), Some("uid 1003 -> 0"));
    assert_eq!(c.extra_details["NewUid0"], "true");

    h.write("group", &GROUP_TEXT.replace("adm:x:4:alice\n", ""));
    let c = next_change(&mut rx).await;
    assert_eq!(
        (c.operation, c.name.as_str(), c.id.as_str()),
        (AccountOperation::GroupRemoved, "adm", "4")
    );
    ctx.cancel.cancel();
    tokio::time::timeout(Duration::from_secs(2), task)
        .await
        .unwrap()
        .unwrap();
    assert!(rx.try_recv().is_err());

    // Changed while stopped: reported at the next start, once.
    h.write("passwd", PASSWD_TEXT);
    let (ctx, mut rx) = h.context();
    let task = tokio::spawn(watch_every(ctx.clone(), tick));
    let c = next_change(&mut rx).await;
    assert_eq!(
        (c.operation, c.name.as_str()),
        (AccountOperation::UserRemoved, "eve")
    );
    tokio::time::sleep(tick * 5).await;
    assert!(rx.try_recv().is_err());

    // passwd unreadable: Degraded, then Up again, without reporting every user removed.
    std::fs::remove_file(h.root.path().join("etc/passwd")).unwrap();
    let event = tokio::time::timeout(Duration::from_secs(5), rx.recv())
        .await
        .unwrap()
        .unwrap();
    assert!(
        matches!(&event.payload, Payload::CollectorStatus(s) if s[0].status == CollectorHealth::Degraded)
    );
    h.write("passwd", PASSWD_TEXT);
    let event = tokio::time::timeout(Duration::from_secs(5), rx.recv())
        .await
        .unwrap()
        .unwrap();
    assert!(
        matches!(&event.payload, Payload::CollectorStatus(s) if s[0].status == CollectorHealth::Up)
    );
    tokio::time::sleep(tick * 5).await;
    assert!(rx.try_recv().is_err());
    ctx.cancel.cancel();
    tokio::time::timeout(Duration::from_secs(2), task)
        .await
        .unwrap()
        .unwrap();
}

/// With an interval of an hour only inotify can wake the watcher: a user added by rename (as
/// useradd does) and one added by a write in place (a hand edit) are both reported at once.
#[tokio::test]
async fn changes_are_reported_as_they_happen_not_on_the_interval() {
    let h = Host::new();
    let (ctx, mut rx) = h.context();
    let task = tokio::spawn(watch_every(ctx.clone(), Duration::from_secs(3600)));
    let saved = h.state.path().join(STATE_FILE);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !saved.exists() && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(saved.exists(), "the first look is saved");
    h.write(
        "passwd",
        &format!("{PASSWD_TEXT}eve:x:1003:1003::/home/eve:/bin/sh\n"),
    );
    let c = next_change(&mut rx).await;
    assert_eq!(
        (c.operation, c.name.as_str()),
        (AccountOperation::UserAdded, "eve")
    );
    std::fs::write(
        h.root.path().join("etc/passwd"),
        format!("{PASSWD_TEXT}eve:x:1003:1003::/home/eve:/bin/sh\nmallory:x:0:0::/root:/bin/sh\n"),
    )
    .unwrap();
    let c = next_change(&mut rx).await;
    assert_eq!(
        (c.operation, c.name.as_str()),
        (AccountOperation::UserAdded, "mallory")
    );
    assert_eq!(c.extra_details["NewUid0"], "true");
    ctx.cancel.cancel();
    task.await.unwrap();
}
