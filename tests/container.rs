//! Container security against a real Docker engine (Debian's docker.io): lifecycle events,
//! posture findings, enrichment of a process started inside a container, and a dockerd restart
//! under a running watcher.
//!
//! Needs root and a daemon; `scripts/dockerd-up.sh` installs and starts one when missing. The test
//! image is built locally FROM scratch with busybox-static (no registry here). Tests share one
//! daemon and one of them restarts it, so they run one at a time (a lock), and each removes its
//! containers (names `eg-test-<pid>-…`) even when it fails.
//!
//! This machine lacks CAP_SYS_RESOURCE: `--privileged` containers can be created and inspected
//! but not started, so the privileged finding is checked on a created container, and the started
//! "bad" container gets its privileges piecemeal (--cap-add SYS_ADMIN, host network, sockets).

mod support;

use edgeguard::collectors::{Context, Periodic};
use edgeguard::config::Config;
use edgeguard::container::cache::{self, ContainerCache};
use edgeguard::container::{events, inventory::InventoryCollector};
use edgeguard::event::{
    CollectorHealth, ContainerEvent, ContainerInventory, Event, Payload, PostureFinding,
};
use edgeguard::host::HostRoot;
use edgeguard::metrics::Metrics;
use serde_json::Value;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

use support::docker::{IMAGE, Names, docker, docker_ok};

/// One test at a time (one restarts the daemon); a failed test must not block the others.
fn serial() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|p| p.into_inner())
}

/// The daemon is up and the test image built (once per test binary).
fn setup() -> &'static str {
    support::docker::busybox_image()
}

/// A container watcher running in this process, as the agent runs it.
struct Watcher {
    rx: mpsc::Receiver<Event>,
    seen: Vec<Event>,
    cancel: CancellationToken,
    cache: Arc<ContainerCache>,
    metrics: Arc<Metrics>,
    _config: watch::Sender<Arc<Config>>,
    state: Option<tempfile::TempDir>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Watcher {
    fn start() -> Watcher {
        Watcher::start_in(tempfile::tempdir().expect("a temp dir"))
    }

    /// A watcher whose state directory is `state` (an earlier watcher's, for a restart).
    fn start_in(state: tempfile::TempDir) -> Watcher {
        let (tx, rx) = mpsc::channel(4096);
        let (config_tx, config_rx) = watch::channel(Arc::new(Config::default()));
        let (cache, queue) = ContainerCache::new();
        let cancel = CancellationToken::new();
        let metrics = Arc::new(Metrics::for_tests());
        tokio::spawn(cache::run_inspector(
            cache.clone(),
            queue,
            config_rx.clone(),
            cancel.clone(),
        ));
        let ctx = Context {
            host: HostRoot::default(),
            events: tx,
            metrics: metrics.clone(),
            config: config_rx,
            cancel: cancel.clone(),
            state_dir: state.path().to_path_buf(),
        };
        let task = tokio::spawn(events::watch(ctx, cache.clone()));
        Watcher {
            rx,
            seen: Vec::new(),
            cancel,
            cache,
            metrics,
            _config: config_tx,
            state: Some(state),
            task: Some(task),
        }
    }

    /// Stops the watcher as a stopping agent does and waits until it has ended (so nothing it
    /// would still have seen changes its state); returns the state directory.
    async fn stop(mut self) -> tempfile::TempDir {
        self.cancel.cancel();
        if let Some(task) = self.task.take() {
            tokio::time::timeout(Duration::from_secs(10), task)
                .await
                .expect("the watcher stops within 10 s")
                .expect("the watcher task ends cleanly");
        }
        self.state.take().expect("the state directory")
    }

    /// Waits (at most `timeout`) for an event matching `pred`; every event is kept in `seen`.
    async fn wait_for(&mut self, timeout: Duration, pred: impl Fn(&Event) -> bool) -> bool {
        if self.seen.iter().any(&pred) {
            return true;
        }
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            match tokio::time::timeout_at(deadline, self.rx.recv()).await {
                Ok(Some(e)) => {
                    let hit = pred(&e);
                    self.seen.push(e);
                    if hit {
                        return true;
                    }
                }
                _ => return false,
            }
        }
    }

    /// Takes what arrived within `quiet` of silence.
    async fn drain(&mut self, quiet: Duration) {
        while let Ok(Some(e)) = tokio::time::timeout(quiet, self.rx.recv()).await {
            self.seen.push(e);
        }
    }

    /// Waits until the watcher's stream is live: a sentinel container's `create` arrives.
    async fn wait_live(&mut self, names: &mut Names) {
        for _ in 0..10 {
            let sentinel = names.add("sentinel");
            docker_ok(&["create", "--name", &sentinel, IMAGE]);
            if self
                .wait_for(Duration::from_secs(2), |e| {
                    container_events(e).any(|r| {
                        r.action == "create" && r.container_name.as_deref() == Some(&sentinel)
                    })
                })
                .await
            {
                return;
            }
        }
        panic!("the watcher never saw a container being created");
    }

    fn records(&self) -> Vec<ContainerEvent> {
        self.seen
            .iter()
            .flat_map(container_events)
            .cloned()
            .collect()
    }

    fn record(&self, name: &str, action: &str) -> ContainerEvent {
        self.records()
            .into_iter()
            .find(|r| r.action == action && r.container_name.as_deref() == Some(name))
            .unwrap_or_else(|| panic!("no {action} of {name} in {:#?}", self.records()))
    }

    fn statuses(&self) -> Vec<(CollectorHealth, String)> {
        self.seen
            .iter()
            .filter_map(|e| match &e.payload {
                Payload::CollectorStatus(v) => Some(v),
                _ => None,
            })
            .flatten()
            .filter(|s| s.collector == "container")
            .map(|s| (s.status, s.message.clone()))
            .collect()
    }
}

impl Drop for Watcher {
    fn drop(&mut self) {
        self.cancel.cancel();
    }
}

fn container_events(e: &Event) -> impl Iterator<Item = &ContainerEvent> {
    match &e.payload {
        Payload::ContainerEvent(v) => v.iter(),
        _ => [].iter(),
    }
}

fn finding_ids(r: &ContainerInventory) -> Vec<&str> {
    r.findings.iter().map(|f| f.id.as_str()).collect()
}

fn has(r: &ContainerInventory, id: &str, description: &str) -> bool {
    r.findings
        .iter()
        .any(|f: &PostureFinding| f.id == id && f.description.contains(description))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
// The lock only orders whole tests, each on its own thread and runtime: holding it across awaits
// cannot deadlock.
#[allow(clippy::await_holding_lock)]
async fn lifecycle_events_and_posture_of_bad_and_good_containers() {
    let _serial = serial();
    let image_id = setup();
    let mut names = Names::new();
    let mut w = Watcher::start();
    w.wait_live(&mut names).await;

    // Started, with host network, the Docker socket and / mounted, SYS_ADMIN, root, no limits.
    let bad = names.add("bad");
    docker_ok(&[
        "run",
        "-d",
        "--name",
        &bad,
        "--network",
        "host",
        "-v",
        "/var/run/docker.sock:/var/run/docker.sock",
        "-v",
        "/:/host",
        "--cap-add",
        "SYS_ADMIN",
        "--cap-add",
        "NET_ADMIN",
        "--security-opt",
        "seccomp=unconfined",
        "--restart",
        "always",
        IMAGE,
        "sleep",
        "300",
    ]);
    // Privileged: created only (it cannot start on this machine).
    let privileged = names.add("privileged");
    docker_ok(&[
        "create",
        "--name",
        &privileged,
        "--privileged",
        "--pid",
        "host",
        IMAGE,
    ]);
    // Well configured: read-only, non-root, limits, no-new-privileges, health check, pinned
    // image, default seccomp, no capabilities.
    let good = names.add("good");
    docker_ok(&[
        "run",
        "-d",
        "--name",
        &good,
        "--read-only",
        "--user",
        "1000:1000",
        "--memory",
        "64m",
        "--cpus",
        "0.5",
        "--pids-limit",
        "64",
        "--security-opt",
        "no-new-privileges",
        "--health-cmd",
        "true",
        "--health-interval",
        "30s",
        "--cap-drop",
        "ALL",
        "-p",
        "127.0.0.1:18081:80",
        image_id,
        "sleep",
        "300",
    ]);
    // Health checks run as execs every second: they must not show up as shells.
    let checked = names.add("health");
    docker_ok(&[
        "run",
        "-d",
        "--name",
        &checked,
        "--health-cmd",
        "true",
        "--health-interval",
        "1s",
        IMAGE,
        "sleep",
        "300",
    ]);
    docker_ok(&["exec", &bad, "sh", "-c", "echo shell-in-container"]);
    let exits = names.add("exits");
    let (ok, _, _) = docker(&["run", "--name", &exits, IMAGE, "sh", "-c", "exit 3"]);
    assert!(!ok, "the container exits with 3");
    docker_ok(&["kill", &good]);

    assert!(
        w.wait_for(Duration::from_secs(10), |e| container_events(e)
            .any(
                |r| r.action == "die" && r.container_name.as_deref() == Some(&good)
            ))
        .await,
        "no die of the killed container: {:#?}",
        w.records()
    );
    w.drain(Duration::from_millis(500)).await;

    let bad_id = docker_ok(&["inspect", "-f", "{{.Id}}", &bad]);
    let create = w.record(&bad, "create");
    assert_eq!(create.container_id.as_deref(), Some(bad_id.as_str()));
    assert_eq!(create.image.as_deref(), Some(IMAGE));
    assert!(
        w.records()
            .iter()
            .any(|r| r.action == "start" && r.container_id.as_deref() == Some(bad_id.as_str()))
    );
    let exec = w.record(&bad, "exec_start");
    // Not in the engine's event: filled by the background inspect that `create` queued.
    assert_eq!(exec.image_digest.as_deref(), Some(image_id));
    assert_eq!(
        exec.command.as_deref(),
        Some("sh -c echo shell-in-container")
    );
    assert!(w.records().iter().any(|r| r.action == "exec_create"
        && r.command.as_deref() == Some("sh -c echo shell-in-container")));
    assert_eq!(w.record(&exits, "die").exit_code, Some(3));
    // The engine runs the first check a second after start, or later on a loaded machine: wait
    // for it (it ran when the state leaves `starting`), then take what the watcher saw meanwhile.
    let deadline = Instant::now() + Duration::from_secs(60);
    let health = loop {
        let h = docker_ok(&["inspect", "-f", "{{.State.Health.Status}}", &checked]);
        if h != "starting" || Instant::now() > deadline {
            break h;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    assert_eq!(health, "healthy", "the health check ran");
    w.drain(Duration::from_millis(500)).await;
    let checked_execs: Vec<_> = w
        .records()
        .into_iter()
        .filter(|r| r.container_name.as_deref() == Some(&checked) && r.action.starts_with("exec"))
        .collect();
    assert_eq!(
        checked_execs,
        Vec::new(),
        "health-check execs are not reported"
    );
    let kill = w.record(&good, "kill");
    assert_eq!(kill.signal.as_deref(), Some("9"));
    assert_eq!(w.record(&good, "die").exit_code, Some(137));
    assert!(
        w.records().iter().any(|r| r.action == "connect"
            && r.container_id.as_deref() == Some(bad_id.as_str())
            && r.container_name.as_deref() == Some(bad.as_str())),
        "network connect of the bad container, enriched from the cache"
    );
    // The watcher's events are schema-valid messages.
    let v = support::schema::message_validator();
    let encoded: Vec<Vec<u8>> = w
        .seen
        .iter()
        .map(edgeguard::event::envelope::encode)
        .collect();
    let header = edgeguard::event::MessageHeader::new("0.1.0", uuid::Uuid::new_v4());
    let message: Value =
        serde_json::from_slice(&header.build(encoded.iter().map(Vec::as_slice))).unwrap();
    assert_eq!(support::schema::errors(&v, &message), Vec::<String>::new());

    // The inventory, as the periodic task runs it (on a blocking thread).
    let (_, config_rx) = watch::channel(Arc::new(Config::default()));
    let mut inv = InventoryCollector::new(
        tokio::runtime::Handle::current(),
        w.cache.clone(),
        config_rx,
        w.metrics.clone(),
    );
    let events = tokio::task::spawn_blocking(move || inv.collect(&HostRoot::default()))
        .await
        .expect("the inventory does not panic");
    let records: Vec<ContainerInventory> = events
        .iter()
        .filter_map(|e| match &e.payload {
            Payload::ContainerInventory(v) => Some(v.clone()),
            _ => None,
        })
        .flatten()
        .collect();
    let by_name = |n: &str| {
        records
            .iter()
            .find(|r| r.container_name.as_deref() == Some(n))
            .unwrap_or_else(|| panic!("{n} not in the inventory"))
            .clone()
    };
    let b = by_name(&bad);
    assert_eq!(b.state.as_deref(), Some("running"));
    for (id, what) in [
        ("host-network", "network"),
        ("docker-socket-mounted", "/var/run/docker.sock"),
        ("sensitive-host-path", "host path / is"),
        ("dangerous-capability", "SYS_ADMIN"),
        ("dangerous-capability", "NET_ADMIN"),
        ("seccomp-unconfined", ""),
        ("runs-as-root", ""),
        ("no-memory-limit", ""),
        ("no-cpu-limit", ""),
        ("no-pids-limit", ""),
        ("writable-rootfs", ""),
        ("mutable-image-tag", IMAGE),
        ("restart-policy", "always"),
        ("no-healthcheck", ""),
    ] {
        assert!(
            has(&b, id, what),
            "{id} ({what}) missing: {:?}",
            finding_ids(&b)
        );
    }
    assert!(
        !has(&b, "privileged", ""),
        "not privileged: {:?}",
        finding_ids(&b)
    );
    let p = by_name(&privileged);
    assert_eq!(p.state.as_deref(), Some("created"));
    assert!(has(&p, "privileged", ""), "{:?}", finding_ids(&p));
    assert!(has(&p, "host-pid", ""), "{:?}", finding_ids(&p));
    let g = by_name(&good);
    assert_eq!(
        g.findings,
        Vec::new(),
        "no false finding on the good container"
    );
    assert!(
        w.cache.get(&bad_id).is_some(),
        "the inventory fills the cache"
    );

    let images: Vec<_> = events
        .iter()
        .filter_map(|e| match &e.payload {
            Payload::ContainerImages(v) => Some(v.clone()),
            _ => None,
        })
        .flatten()
        .collect();
    let img = images
        .iter()
        .find(|i| i.image_id == image_id)
        .expect("the test image is in the inventory");
    assert!(img.tags.iter().any(|t| t == IMAGE));
    assert!(
        img.size_bytes > 500_000,
        "busybox is in it: {}",
        img.size_bytes
    );
    assert!(img.created.is_some());
}

/// Pid of the running dockerd, from its pid file.
/// Removes the test's image tags however the test ends.
struct Tags(Vec<String>);

impl Drop for Tags {
    fn drop(&mut self) {
        for t in &self.0 {
            let _ = docker(&["rmi", t]);
        }
    }
}

/// IoT Edge drift, from real containers through the watcher and the detection catalog: a
/// stray container running when the watcher connects and one started after it (on a device
/// where edgeAgent's label exists), a module recreated from an image replaced under its tag, a
/// module recreated with more privileges, a privileged container created. Near misses beside
/// them: a module recreated as it was, a deployment moving a module to another image reference,
/// a module's own start.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[allow(clippy::await_holding_lock)]
async fn iot_edge_drift_and_privileged_containers_raise_alerts() {
    use edgeguard::detect::{Detector, Finding};
    const OWNER: &str = "net.azure-devices.edge.owner=Microsoft.Azure.Devices.Edge.Agent";
    let _serial = serial();
    setup();
    let mut names = Names::new();
    let tag = |t: &str| format!("eg-drift-{}:{t}", std::process::id());
    let (v1, v2) = (tag("1.0"), tag("2.0"));
    let _tags = Tags(vec![v1.clone(), v2.clone()]);
    docker_ok(&["tag", IMAGE, &v1]);
    let module = format!("drift{}", std::process::id());
    // A module container as edgeAgent creates it: owner, module and original-image labels.
    let run_module = |name: &str, reference: &str, extra: &[&str]| {
        let module_label = format!("net.azure-devices.edge.module={module}");
        let image_label = format!("net.azure-devices.edge.original-image={reference}");
        let mut args = vec![
            "run",
            "-d",
            "--name",
            name,
            "--label",
            OWNER,
            "--label",
            &module_label,
            "--label",
            &image_label,
        ];
        args.extend_from_slice(extra);
        args.extend_from_slice(&[reference, "sleep", "300"]);
        docker_ok(&args);
    };

    // Before the watcher: edgeAgent's module, and a stray container already running.
    let m1 = names.add("m1");
    run_module(&m1, &v1, &[]);
    let early = names.add("early");
    docker_ok(&["run", "-d", "--name", &early, IMAGE, "sleep", "300"]);
    let mut w = Watcher::start();
    w.wait_live(&mut names).await;

    // The module recreated as it was (near miss), then from an image replaced under its tag.
    docker_ok(&["rm", "-f", &m1]);
    let m2 = names.add("m2");
    run_module(&m2, &v1, &[]);
    docker_ok(&["commit", &m2, &v1]);
    docker_ok(&["rm", "-f", &m2]);
    let m3 = names.add("m3");
    run_module(&m3, &v1, &[]);
    // With more privileges; then a deployment moving it to another reference (near miss).
    docker_ok(&["rm", "-f", &m3]);
    let m4 = names.add("m4");
    run_module(&m4, &v1, &["--cap-add", "NET_ADMIN", "--pid", "host"]);
    docker_ok(&["tag", IMAGE, &v2]);
    docker_ok(&["rm", "-f", &m4]);
    let m5 = names.add("m5");
    run_module(&m5, &v2, &["--cap-add", "NET_ADMIN", "--pid", "host"]);
    // A stray container started, and a privileged one created (it cannot start here).
    let stray = names.add("stray");
    docker_ok(&["run", "-d", "--name", &stray, IMAGE, "sleep", "300"]);
    let privileged = names.add("privileged");
    docker_ok(&["create", "--name", &privileged, "--privileged", IMAGE]);

    assert!(
        w.wait_for(Duration::from_secs(20), |e| container_events(e).any(|r| {
            r.action == "create" && r.container_name.as_deref() == Some(privileged.as_str())
        }))
        .await,
        "no create of the privileged container: {:#?}",
        w.records()
    );
    w.drain(Duration::from_millis(500)).await;

    // Only this test's containers (another test's may still be going away).
    let ours: std::collections::HashSet<String> =
        [&early, &m1, &m2, &m3, &m4, &m5, &stray, &privileged]
            .into_iter()
            .cloned()
            .collect();
    let mut detector = Detector::new();
    let mut found = Vec::new();
    for e in &w.seen {
        detector.inspect(e, tokio::time::Instant::now(), &mut found);
    }
    let mut raised: Vec<(String, String)> = found
        .iter()
        .filter_map(|f| match f {
            Finding::Raised(rule, a) => Some((
                rule.id().to_string(),
                a.container_name.clone().unwrap_or_default(),
            )),
            Finding::Suppressed(_) => None,
        })
        .filter(|(_, name)| ours.contains(name))
        .collect();
    raised.sort();
    let mut expected: Vec<(String, String)> = [
        ("container-outside-deployment", &early),
        ("container-outside-deployment", &stray),
        ("module-image-replaced", &m3),
        ("module-privilege-gained", &m4),
        ("privileged-container-started", &privileged),
    ]
    .iter()
    .map(|(r, n)| (r.to_string(), n.to_string()))
    .collect();
    expected.sort();
    assert_eq!(raised, expected, "records: {:#?}", w.records());

    // What the alerts read, as the watcher wrote it.
    let early_record = w.record(&early, "running");
    assert_eq!(early_record.extra_details["IotEdgeDevice"], "true");
    let m3_create = w.record(&m3, "create");
    let old_id = docker_ok(&["inspect", "-f", "{{.Id}}", IMAGE]);
    assert_eq!(m3_create.extra_details["PreviousImageId"], old_id);
    assert_ne!(m3_create.image_digest.as_deref(), Some(old_id.as_str()));
    assert_eq!(
        w.record(&m4, "create").extra_details["PrivilegesGained"],
        "cap=NET_ADMIN,pid=host"
    );
    assert_eq!(w.record(&m2, "create").extra_details["Privileged"], "false");
    let p = w.record(&privileged, "create");
    assert_eq!(p.extra_details["Privileged"], "true");
    assert!(
        p.extra_details["Privileges"].contains("privileged"),
        "{p:?}"
    );

    // The agent stops; the module is recreated from an image replaced under its tag and with
    // one capability more; the agent starts again on the same state directory and judges the
    // module's new container against the one it saw last.
    let state = w.stop().await;
    let m5_image = docker_ok(&["inspect", "-f", "{{.Image}}", &m5]);
    docker_ok(&["commit", &m5, &v2]);
    docker_ok(&["rm", "-f", &m5]);
    let m6 = names.add("m6");
    run_module(
        &m6,
        &v2,
        &[
            "--cap-add",
            "NET_ADMIN",
            "--pid",
            "host",
            "--cap-add",
            "SYS_PTRACE",
        ],
    );
    let mut w = Watcher::start_in(state);
    assert!(
        w.wait_for(Duration::from_secs(20), |e| container_events(e)
            .any(
                |r| r.action == "running" && r.container_name.as_deref() == Some(m6.as_str())
            ))
        .await,
        "the module recreated while stopped was not reported: {:#?}",
        w.records()
    );
    let m6_running = w.record(&m6, "running");
    assert_eq!(m6_running.extra_details["PreviousImageId"], m5_image);
    assert_eq!(
        m6_running.extra_details["PrivilegesGained"],
        "cap=SYS_PTRACE"
    );
    let mut found = Vec::new();
    for e in &w.seen {
        detector.inspect(e, tokio::time::Instant::now(), &mut found);
    }
    let mut raised: Vec<String> = found
        .iter()
        .filter_map(|f| match f {
            Finding::Raised(rule, a) if a.container_name.as_deref() == Some(m6.as_str()) => {
                Some(rule.id().to_string())
            }
            _ => None,
        })
        .collect();
    raised.sort();
    assert_eq!(raised, ["module-image-replaced", "module-privilege-gained"]);
}

fn dockerd_pid() -> Option<i32> {
    std::fs::read_to_string("/var/run/docker.pid")
        .ok()?
        .trim()
        .parse()
        .ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
// The lock only orders whole tests, each on its own thread and runtime: holding it across awaits
// cannot deadlock.
#[allow(clippy::await_holding_lock)]
async fn a_dockerd_restart_is_reported_and_the_stream_resumes_without_duplicates() {
    let _serial = serial();
    setup();
    let mut names = Names::new();
    let mut w = Watcher::start();
    w.wait_live(&mut names).await;
    let before = names.add("before");
    docker_ok(&["create", "--name", &before, IMAGE]);
    assert!(
        w.wait_for(Duration::from_secs(5), |e| container_events(e)
            .any(|r| r.container_name.as_deref() == Some(&before)))
            .await
    );

    // Stop the daemon we started (by its pid), wait for it to go, start it again.
    let pid = dockerd_pid().expect("dockerd writes its pid file");
    let started = Instant::now();
    // SAFETY: signalling one process by id.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGTERM) }, 0);
    while unsafe { libc::kill(pid, 0) } == 0 {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "dockerd did not stop"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(
        w.wait_for(Duration::from_secs(10), |e| matches!(&e.payload,
            Payload::CollectorStatus(v) if v.iter().any(|s| s.status == CollectorHealth::Down)))
            .await,
        "no Down status while the daemon is gone"
    );
    support::docker::daemon_up();
    assert!(
        w.wait_for(Duration::from_secs(40), |e| matches!(&e.payload,
            Payload::CollectorStatus(v) if v.iter().any(|s| s.status == CollectorHealth::Up)))
            .await,
        "no Up status after the daemon came back: {:?}",
        w.statuses()
    );
    let after = names.add("after");
    docker_ok(&["create", "--name", &after, IMAGE]);
    assert!(
        w.wait_for(Duration::from_secs(10), |e| container_events(e)
            .any(|r| r.container_name.as_deref() == Some(&after)))
            .await,
        "events after the restart arrive"
    );
    w.drain(Duration::from_millis(500)).await;

    let statuses = w.statuses();
    assert_eq!(
        statuses.iter().map(|s| s.0).collect::<Vec<_>>(),
        [CollectorHealth::Down, CollectorHealth::Up],
        "one Down while retrying, one Up: {statuses:?}"
    );
    let creates = |name: &str| {
        w.records()
            .iter()
            .filter(|r| r.action == "create" && r.container_name.as_deref() == Some(name))
            .count()
    };
    assert_eq!(creates(&before), 1, "no duplicate after resuming");
    assert_eq!(creates(&after), 1);
    assert!(
        w.metrics
            .value("edgeguard_errors_total", &[("component", "container")])
            .unwrap_or(0.0)
            >= 1.0
    );
}

#[test]
fn a_process_started_in_a_new_container_is_enriched_and_a_shell_exec_raises_an_alert() {
    let _serial = serial();
    setup();
    let mut names = Names::new();
    let state = tempfile::tempdir().unwrap();
    let config = r#"{"highPriorityMessageFrequency": "PT1S", "lowPriorityMessageFrequency": "PT1S",
        "eventPriorityProcessCreate": "High", "aggregationEnabledProcessCreate": false}"#;
    let mut cmd = support::agent::command();
    cmd.env("EDGEGUARD_CONFIG_JSON", config);
    let agent = support::agent::Agent::start_with(cmd, state.path(), &["--metrics-addr", "off"]);
    let mut messages: Vec<Value> = Vec::new();
    let events = |messages: &[Value]| -> Vec<Value> {
        messages
            .iter()
            .flat_map(|m| m["Events"].as_array().cloned().unwrap_or_default())
            .collect()
    };

    // The agent's watcher is live once it reports a sentinel container's creation.
    let mut live = false;
    for _ in 0..10 {
        let sentinel = names.add("sentinel");
        docker_ok(&["create", "--name", &sentinel, IMAGE]);
        let deadline = Instant::now() + Duration::from_secs(3);
        while Instant::now() < deadline {
            if let Some(m) = agent.next_message(Duration::from_millis(200)) {
                messages.push(m);
            }
            if events(&messages).iter().any(|e| {
                e["Name"] == "ContainerEvent" && e["Payload"][0]["ContainerName"] == sentinel
            }) {
                live = true;
                break;
            }
        }
        if live {
            break;
        }
    }
    assert!(live, "the agent never reported a container creation");

    let fresh = names.add("fresh");
    docker_ok(&["run", "-d", "--name", &fresh, IMAGE, "sleep", "301"]);
    // The shell lives a moment (the process collector reads /proc after the exec event), and
    // sleep is not its last command (busybox sh would exec into it, replacing the command line).
    docker_ok(&["exec", &fresh, "sh", "-c", "sleep 1; echo enrich-marker"]);
    let id = docker_ok(&["inspect", "-f", "{{.Id}}", &fresh]);
    let processes_of = |events: &[Value], needle: &str| -> Vec<Value> {
        events
            .iter()
            .filter(|e| e["Name"] == "ProcessCreate")
            .flat_map(|e| e["Payload"].as_array().cloned().unwrap_or_default())
            .filter(|p| {
                p["ExtraDetails"]["ContainerId"] == id.as_str()
                    && p["CommandLine"].as_str().unwrap_or("").contains(needle)
            })
            .collect()
    };
    let deadline = Instant::now() + Duration::from_secs(15);
    while Instant::now() < deadline {
        if let Some(m) = agent.next_message(Duration::from_millis(200)) {
            messages.push(m);
        }
        let all = events(&messages);
        if !processes_of(&all, "enrich-marker").is_empty()
            && !processes_of(&all, "301").is_empty()
            && all.iter().any(|e| e["Name"] == "Alert")
        {
            break;
        }
    }
    let (_, rest, stderr) = agent.stop(Duration::from_secs(15));
    messages.extend(rest);
    let all = events(&messages);
    // The exec'd shell, and the container's first process (started right after `create`).
    for needle in ["enrich-marker", "301"] {
        let found = processes_of(&all, needle);
        assert!(
            !found.is_empty(),
            "no ProcessCreate of {needle} in {id}; stderr: {stderr}"
        );
        for p in found {
            assert_eq!(p["ExtraDetails"]["ContainerName"], fresh.as_str(), "{p}");
            assert_eq!(p["ExtraDetails"]["ContainerImage"], IMAGE, "{p}");
        }
    }
    // The shell exec'd into the running container raised one alert (the engine's exec_create
    // and the process itself do not raise more).
    let alerts: Vec<Value> = all
        .iter()
        .filter(|e| e["Name"] == "Alert")
        .flat_map(|e| e["Payload"].as_array().cloned().unwrap_or_default())
        .filter(|a| a["ContainerId"] == id.as_str())
        .collect();
    assert_eq!(alerts.len(), 1, "{alerts:?}; stderr: {stderr}");
    assert_eq!(alerts[0]["RuleId"], "shell-in-container");
    assert_eq!(alerts[0]["ContainerName"], fresh.as_str());
    assert_eq!(
        alerts[0]["CommandLine"],
        "sh -c sleep 1; echo enrich-marker"
    );
    let v = support::schema::message_validator();
    for m in &messages {
        assert_eq!(support::schema::errors(&v, m), Vec::<String>::new());
    }
}

/// What a client asked of the Docker engine through [`ReadOnlyProbe`]: (method, path) per request.
type Requests = Arc<Mutex<Vec<(String, String)>>>;

/// A unix socket in front of the real engine that forwards everything and records each request
/// line the client sends (HTTP/1.1 framing: headers, then `Content-Length` bytes of body).
struct ReadOnlyProbe {
    path: std::path::PathBuf,
    requests: Requests,
    _dir: tempfile::TempDir,
}

impl ReadOnlyProbe {
    fn start() -> ReadOnlyProbe {
        use std::os::unix::net::{UnixListener, UnixStream};
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("docker.sock");
        let listener = UnixListener::bind(&path).unwrap();
        let requests: Requests = Arc::default();
        let seen = requests.clone();
        std::thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(client) = client else { break };
                let Ok(engine) = UnixStream::connect("/var/run/docker.sock") else {
                    continue;
                };
                let (mut c_read, mut e_write) =
                    (client.try_clone().unwrap(), engine.try_clone().unwrap());
                let (mut e_read, mut c_write) = (engine, client);
                let seen = seen.clone();
                std::thread::spawn(move || {
                    use std::io::{Read, Write};
                    let mut pending: Vec<u8> = Vec::new();
                    let mut skip_body = 0usize;
                    let mut buf = [0u8; 16384];
                    while let Ok(n) = c_read.read(&mut buf) {
                        if n == 0 || e_write.write_all(&buf[..n]).is_err() {
                            break;
                        }
                        pending.extend_from_slice(&buf[..n]);
                        loop {
                            if skip_body > 0 {
                                let k = skip_body.min(pending.len());
                                pending.drain(..k);
                                skip_body -= k;
                                if skip_body > 0 {
                                    break;
                                }
                            }
                            let Some(end) = pending.windows(4).position(|w| w == b"\r\n\r\n")
                            else {
                                break;
                            };
                            let head = String::from_utf8_lossy(&pending[..end]).to_string();
                            pending.drain(..end + 4);
                            let mut parts = head.lines().next().unwrap_or("").split(' ');
                            let method = parts.next().unwrap_or("").to_string();
                            let target = parts.next().unwrap_or("").to_string();
                            seen.lock().unwrap().push((method, target));
                            skip_body = head
                                .lines()
                                .find_map(|l| {
                                    let (k, v) = l.split_once(':')?;
                                    k.eq_ignore_ascii_case("content-length")
                                        .then(|| v.trim().parse().ok())?
                                })
                                .unwrap_or(0);
                        }
                    }
                    let _ = e_write.shutdown(std::net::Shutdown::Write);
                });
                std::thread::spawn(move || {
                    let _ = std::io::copy(&mut e_read, &mut c_write);
                    let _ = c_write.shutdown(std::net::Shutdown::Write);
                });
            }
        });
        ReadOnlyProbe {
            path,
            requests,
            _dir: dir,
        }
    }

    fn requests(&self) -> Vec<(String, String)> {
        self.requests.lock().unwrap().clone()
    }
}

#[test]
fn the_agent_only_reads_from_the_docker_engine() {
    let _serial = serial();
    setup();
    let probe = ReadOnlyProbe::start();
    let mut names = Names::new();
    let state = tempfile::tempdir().unwrap();
    let config = format!(
        r#"{{"highPriorityMessageFrequency": "PT1S", "lowPriorityMessageFrequency": "PT1S",
            "dockerSocketPath": "{}"}}"#,
        probe.path.display()
    );
    let mut cmd = support::agent::command();
    cmd.env("EDGEGUARD_CONFIG_JSON", config);
    let agent = support::agent::Agent::start_with(cmd, state.path(), &["--metrics-addr", "off"]);

    // Everything the agent does with containers: the event stream, enrichment's inspect, the
    // inventory and images snapshot, an exec, a stop and a removal.
    let target = names.add("readonly");
    docker_ok(&["run", "-d", "--name", &target, IMAGE, "sleep", "300"]);
    docker_ok(&["exec", &target, "sh", "-c", "sleep 1; true"]);
    docker_ok(&["stop", "-t", "1", &target]);
    docker_ok(&["rm", &target]);
    let (mut destroyed, mut inventory) = (false, false);
    let deadline = Instant::now() + Duration::from_secs(60);
    while !(destroyed && inventory) && Instant::now() < deadline {
        if let Some(m) = agent.next_message(Duration::from_millis(200)) {
            for e in m["Events"].as_array().into_iter().flatten() {
                destroyed |= e["Name"] == "ContainerEvent"
                    && e["Payload"][0]["Action"] == "destroy"
                    && e["Payload"][0]["ContainerName"] == target.as_str();
                inventory |= e["Name"] == "ContainerImages";
            }
        }
    }
    drop(agent);
    assert!(
        destroyed,
        "the agent followed the container through the probe"
    );
    assert!(
        inventory,
        "the agent took its container inventory through the probe"
    );
    let requests = probe.requests();
    let paths: Vec<&str> = requests.iter().map(|(_, p)| p.as_str()).collect();
    for expected in ["/events", "/containers/json", "/images/json"] {
        assert!(
            paths.iter().any(|p| p.contains(expected)),
            "{expected} was asked: {requests:?}"
        );
    }
    let writes: Vec<&(String, String)> = requests
        .iter()
        .filter(|(m, _)| m != "GET" && m != "HEAD")
        .collect();
    assert!(writes.is_empty(), "the agent changed something: {writes:?}");
}
