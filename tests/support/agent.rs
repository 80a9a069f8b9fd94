//! Runs the real `edgeguard` binary as a child process, as a user or edgeAgent would.

use serde_json::Value;
use std::io::{BufRead, BufReader, Read};
use std::path::Path;
use std::process::{Child, ChildStdout, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// The binary with an environment cleaned of anything that would change its behaviour.
pub fn command() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_edgeguard"));
    clean_env(&mut c);
    c
}

/// [`command`] for a fake host root that shows some of this machine's own trees (`proc`, `sys`,
/// `dev`): the binary runs in a private mount namespace of its own (`unshare --mount`, as root)
/// in which each tree is bind-mounted (recursively) at `root/<tree>`. A symlink
/// `root/proc -> /proc` would not do: it points outside the host root, and the agent resolves
/// every host path inside it. A bind mount in the test's own namespace would be seen by the
/// whole machine, and removing the temporary root would descend into it; this one goes away
/// with the agent.
pub fn command_with_trees(root: &Path, trees: &[&str]) -> Command {
    command_with_trees_of(Path::new(env!("CARGO_BIN_EXE_edgeguard")), root, trees)
}

/// [`command_with_trees`] running `binary` instead of this build's own `edgeguard` (a benchmark
/// that measures another build, such as the release binary under `target/release`).
pub fn command_with_trees_of(binary: &Path, root: &Path, trees: &[&str]) -> Command {
    let mut script = String::new();
    for t in trees {
        script.push_str(&format!(
            r#"mkdir -p "$0/{t}" && mount --rbind /{t} "$0/{t}" && "#
        ));
    }
    script.push_str(r#"exec "$@""#);
    let mut c = Command::new("unshare");
    c.args(["--mount", "--propagation", "private", "sh", "-c", &script])
        .arg(root)
        .arg(binary);
    clean_env(&mut c);
    c
}

/// Makes `c` (an agent command from [`command`] or [`command_with_trees_of`]) start the agent
/// as edgeAgent starts a module: `env` (the module's `IOTEDGE_*` variables, see
/// `device::module_env`), edgeHub's MQTT port, `run` over `host` with its state in `state`,
/// no metrics endpoint, and its log (stderr) into `log`. Callers add their own `RUST_LOG` and
/// arguments after it.
pub fn as_module<'c>(
    c: &'c mut Command,
    env: Vec<(&'static str, String)>,
    hub_port: u16,
    host: &Path,
    state: &Path,
    log: std::fs::File,
) -> &'c mut Command {
    c.envs(env)
        .env("EDGEGUARD_HUB_PORT", hub_port.to_string())
        .arg("run")
        .arg("--host-root")
        .arg(host)
        .arg("--state-dir")
        .arg(state)
        .args(["--metrics-addr", "off"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log)
}

/// Removes from `c`'s environment what would change the agent's behaviour, and logs at info.
pub fn clean_env(c: &mut Command) {
    for var in [
        "IOTEDGE_MODULEID",
        "EdgeHubConnectionString",
        "EDGEGUARD_CONFIG",
        "EDGEGUARD_CONFIG_JSON",
        "EDGEGUARD_SINK",
        "EDGEGUARD_OUTPUT",
        "EDGEGUARD_HOST_ROOT",
        "EDGEGUARD_STATE_DIR",
        "EDGEGUARD_METRICS_ADDR",
    ] {
        c.env_remove(var);
    }
    c.env("RUST_LOG", "info");
}

/// Twin settings for tests that read what the agent prints: messages every second or two, short
/// aggregation windows, snapshots not in the way, a cache no test fills.
pub const SHORT_TIMERS: &str = r#""highPriorityMessageFrequency":"PT1S","lowPriorityMessageFrequency":"PT2S",
    "snapshotFrequency":"PT1H","maxLocalCacheSizeInBytes":20000000,
    "aggregationIntervalProcessCreate":"PT2S","aggregationIntervalConnectionCreate":"PT2S",
    "aggregationIntervalProcessTerminate":"PT2S""#;

/// A running `edgeguard run`, its stdout read line by line on a thread.
pub struct Agent {
    pub child: Child,
    lines: mpsc::Receiver<String>,
}

impl Agent {
    /// Starts `edgeguard run --state-dir STATE ARGS…` with stdout and stderr piped.
    pub fn start(state_dir: &Path, args: &[&str]) -> Agent {
        Agent::start_with(command(), state_dir, args)
    }

    /// Like [`Agent::start`], from a [`command`] the caller prepared (extra environment).
    #[allow(dead_code)] // Not every test binary that includes the support module uses it.
    pub fn start_with(mut cmd: Command, state_dir: &Path, args: &[&str]) -> Agent {
        let mut child = cmd
            .arg("run")
            .arg("--state-dir")
            .arg(state_dir)
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("edgeguard starts");
        let stdout: ChildStdout = child.stdout.take().expect("stdout is piped");
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Agent { child, lines }
    }

    /// `edgeguard run` over the host root `root`, showing this machine's `trees` there
    /// ([`command_with_trees`]), its state in `state`, with the twin settings [`SHORT_TIMERS`]
    /// and `extra` (more members of the same JSON object, or `""`) from a config file, and no
    /// metrics endpoint. Returns the agent and its first message (within 20 s).
    pub fn over_host_root(
        root: &Path,
        trees: &[&str],
        state: &Path,
        extra: &str,
    ) -> (Agent, Value) {
        let config = state.join("twin.json");
        let json = match extra {
            "" => format!("{{{SHORT_TIMERS}}}"),
            extra => format!("{{{SHORT_TIMERS},{extra}}}"),
        };
        std::fs::write(&config, json).expect("the twin settings file");
        let (root_arg, config_arg) = (root.to_str().unwrap(), config.to_str().unwrap());
        let agent = Agent::start_with(
            command_with_trees(root, trees),
            state,
            &[
                "--host-root",
                root_arg,
                "--config",
                config_arg,
                "--metrics-addr",
                "off",
            ],
        );
        let first = agent
            .next_message(Duration::from_secs(20))
            .expect("a first message");
        (agent, first)
    }

    /// The next message on stdout, parsed, within `timeout`.
    pub fn next_message(&self, timeout: Duration) -> Option<Value> {
        let line = self.lines.recv_timeout(timeout).ok()?;
        Some(serde_json::from_str(&line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}")))
    }

    /// Every message that arrives until `timeout` passes with nothing new.
    pub fn messages_until_quiet(&self, quiet: Duration) -> Vec<Value> {
        std::iter::from_fn(|| self.next_message(quiet)).collect()
    }

    /// Sends SIGTERM and waits (at most `timeout`) for the exit; returns its success, the
    /// messages flushed after the signal, and stderr.
    pub fn stop(mut self, timeout: Duration) -> (bool, Vec<Value>, String) {
        // SAFETY: sending a signal to our own child process.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let deadline = Instant::now() + timeout;
        let status = loop {
            if let Some(s) = self.child.try_wait().expect("wait works") {
                break s;
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                panic!("edgeguard did not stop within {timeout:?} of SIGTERM");
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        let rest = self.messages_until_quiet(Duration::from_millis(500));
        let mut stderr = String::new();
        if let Some(mut e) = self.child.stderr.take() {
            let _ = e.read_to_string(&mut stderr);
        }
        (status.success(), rest, stderr)
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A child process killed (SIGKILL) and reaped when dropped, so that a test that panics
/// does not leave its agent running. Derefs to the `Child` for everything else.
pub struct ChildGuard(pub std::process::Child);

impl std::ops::Deref for ChildGuard {
    type Target = std::process::Child;
    fn deref(&self) -> &std::process::Child {
        &self.0
    }
}

impl std::ops::DerefMut for ChildGuard {
    fn deref_mut(&mut self) -> &mut std::process::Child {
        &mut self.0
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

/// Names of the events in some messages, in order.
pub fn event_names(messages: &[Value]) -> Vec<String> {
    messages
        .iter()
        .flat_map(|m| m["Events"].as_array().cloned().unwrap_or_default())
        .map(|e| e["Name"].as_str().unwrap_or_default().to_string())
        .collect()
}

/// A TCP port that was free a moment ago on 127.0.0.1.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("an ephemeral port")
}

/// Every payload record of every event named `name` in messages the agent printed.
pub fn records<'a>(messages: &'a [Value], name: &'a str) -> impl Iterator<Item = &'a Value> + 'a {
    messages
        .iter()
        .flat_map(|m| m["Events"].as_array().into_iter().flatten())
        .filter(move |e| e["Name"] == name)
        .flat_map(|e| e["Payload"].as_array().into_iter().flatten())
}

/// Appends `bytes` to the file at `path` (created if missing), as a logger or an editor would.
pub fn append(path: &Path, bytes: &[u8]) {
    use std::io::Write;
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .open(path)
        .unwrap();
    f.write_all(bytes).unwrap();
}
