//! The real Docker engine for tests: the daemon started when missing (`scripts/dockerd-up.sh`),
//! the docker client, a busybox image built FROM scratch (no registry here), and container names
//! that are removed even when a test fails.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicUsize, Ordering};

/// A busybox image: `sh`, `sleep` and the other applets, `sleep 300` by default.
pub const IMAGE: &str = "edgeguard-test-busybox:1";

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Runs `docker ARGS`, returning (success, stdout, stderr).
pub fn docker(args: &[&str]) -> (bool, String, String) {
    let out = Command::new("docker")
        .args(args)
        .output()
        .expect("the docker client runs");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).trim().to_string(),
        String::from_utf8_lossy(&out.stderr).trim().to_string(),
    )
}

pub fn docker_ok(args: &[&str]) -> String {
    let (ok, out, err) = docker(args);
    assert!(ok, "docker {args:?} failed: {err}");
    out
}

/// A daemon answers (started by `scripts/dockerd-up.sh` when none does).
pub fn daemon_up() {
    let status = Command::new("bash")
        .arg(repo().join("scripts/dockerd-up.sh"))
        .status()
        .expect("scripts/dockerd-up.sh runs");
    assert!(status.success(), "no Docker daemon");
}

/// The daemon is up and [`IMAGE`] built (once per test binary); returns the image id.
pub fn busybox_image() -> &'static str {
    static IMAGE_ID: OnceLock<String> = OnceLock::new();
    IMAGE_ID.get_or_init(|| {
        daemon_up();
        let dir = tempfile::tempdir().expect("a temp dir");
        let busybox = ["/bin/busybox", "/usr/bin/busybox"]
            .into_iter()
            .find(|p| Path::new(p).exists())
            .expect("busybox-static is installed (scripts/dockerd-up.sh)");
        std::fs::copy(busybox, dir.path().join("busybox")).expect("busybox copies");
        std::fs::write(
            dir.path().join("Dockerfile"),
            "FROM scratch\nCOPY busybox /bin/busybox\n\
             RUN [\"/bin/busybox\", \"--install\", \"-s\", \"/bin\"]\n\
             CMD [\"/bin/sleep\", \"300\"]\n",
        )
        .expect("Dockerfile writes");
        let dir_str = dir.path().to_string_lossy().to_string();
        docker_ok(&["build", "-q", "-t", IMAGE, &dir_str]);
        docker_ok(&["image", "inspect", "-f", "{{.Id}}", IMAGE])
    })
}

/// Unique container names for this process; removes them all when dropped (also on panic).
pub struct Names(Vec<String>);

impl Names {
    pub fn new() -> Names {
        Names(Vec::new())
    }

    pub fn add(&mut self, what: &str) -> String {
        static N: AtomicUsize = AtomicUsize::new(0);
        let name = format!(
            "eg-test-{}-{}-{what}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        );
        self.0.push(name.clone());
        name
    }

    /// Also removes `name` (a container named by the test itself) when dropped.
    pub fn adopt(&mut self, name: &str) {
        self.0.push(name.to_string());
    }
}

impl Drop for Names {
    fn drop(&mut self) {
        if !self.0.is_empty() {
            let mut args = vec!["rm", "-f"];
            args.extend(self.0.iter().map(String::as_str));
            let _ = docker(&args);
        }
    }
}
