//! Running the host's own tools (chrooted into the host root when it is not `/`), with a time
//! limit and an output cap.

use super::{Backend, IpFamily, MAX_TOOL_OUTPUT, TOOL_DIRS, TOOL_PATH, TOOL_TIMEOUT, ToolError};
use crate::text::within_bytes;
use std::io::Read;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// One tool the collector may run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tool {
    pub program: &'static str,
    pub args: &'static [&'static str],
    /// `None` for nft (its JSON names each table's family).
    pub family: Option<IpFamily>,
    /// `None` for plain `iptables-save`, whose backend is read from its output header.
    pub backend: Option<Backend>,
}

pub(super) const NFT: Tool = Tool {
    program: "nft",
    args: &["-j", "list", "ruleset"],
    family: None,
    backend: Some(Backend::Nftables),
};

/// The iptables tools per family: legacy variant, nft variant, plain fallback.
const IPTABLES: [(IpFamily, [&str; 3]); 2] = [
    (
        IpFamily::V4,
        ["iptables-legacy-save", "iptables-nft-save", "iptables-save"],
    ),
    (
        IpFamily::V6,
        [
            "ip6tables-legacy-save",
            "ip6tables-nft-save",
            "ip6tables-save",
        ],
    ),
];

/// The result of running one tool.
#[derive(Debug)]
pub struct ToolRun {
    pub tool: Tool,
    pub result: Result<Vec<u8>, ToolError>,
}

/// Finds `program` in [`TOOL_DIRS`] under `root`; the path returned is the one to exec (inside
/// the chroot when `root` is not `/`). A dangling symlink still counts: exec reports it missing.
pub(super) fn find_tool(root: &Path, program: &str) -> Option<String> {
    TOOL_DIRS.iter().find_map(|dir| {
        let inside = format!("{dir}/{program}");
        // Looked up inside the root (the directories on the way resolved as the host would).
        crate::host::HostRoot::new(root)
            .symlink_metadata(&inside)
            .ok()
            .map(|_| inside)
    })
}

/// Runs `program` from the host (chrooted into `root` when `chroot`), with a clean environment,
/// a time limit and an output cap. Returns its stdout.
pub fn run_tool(
    root: &Path,
    chroot: bool,
    program: &str,
    args: &[&str],
    timeout: Duration,
    max_output: usize,
) -> Result<Vec<u8>, ToolError> {
    let path = find_tool(root, program).ok_or(ToolError::NotFound)?;
    let mut cmd = Command::new(&path);
    cmd.args(args)
        .env_clear()
        .env("PATH", TOOL_PATH)
        .env("LC_ALL", "C")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if chroot {
        use std::os::unix::ffi::OsStrExt;
        let dir =
            std::ffi::CString::new(root.as_os_str().as_bytes()).map_err(|_| ToolError::BadRoot)?;
        crate::kernel::sys::chroot_before_exec(&mut cmd, dir);
    }
    let mut child = cmd.spawn().map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => ToolError::NotFound,
        _ => ToolError::Spawn(e),
    })?;

    // Both pipes are drained on their own threads so a chatty stderr cannot block the tool. The
    // stdout reader stops at the cap and raises `overflow`, and the tool is killed. Results come
    // back over channels with a grace period: a grandchild that inherited a pipe must not hang
    // the collector (its reader thread ends when the pipe closes).
    let overflow = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let (out_tx, out_rx) = std::sync::mpsc::channel();
    let (err_tx, err_rx) = std::sync::mpsc::channel();
    if let Some(out) = child.stdout.take() {
        let overflow = overflow.clone();
        spawn_reader(&mut child, move || {
            let mut buf = Vec::new();
            let r = out.take(max_output as u64 + 1).read_to_end(&mut buf);
            if buf.len() > max_output {
                overflow.store(true, std::sync::atomic::Ordering::SeqCst);
            }
            let _ = out_tx.send(r.map(|_| buf));
        })?;
    }
    if let Some(mut err) = child.stderr.take() {
        spawn_reader(&mut child, move || {
            let mut buf = Vec::new();
            let _ = (&mut err).take(4096).read_to_end(&mut buf);
            let _ = err_tx.send(buf);
            let _ = std::io::copy(&mut err, &mut std::io::sink());
        })?;
    }

    let deadline = Instant::now() + timeout;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break Ok(status),
            Ok(None) if overflow.load(std::sync::atomic::Ordering::SeqCst) => {
                break Err(ToolError::TooLarge(max_output));
            }
            Ok(None) if Instant::now() >= deadline => break Err(ToolError::Timeout(timeout)),
            Ok(None) => std::thread::sleep(Duration::from_millis(10)),
            Err(e) => break Err(ToolError::Io(e)),
        }
    };
    if status.is_err() {
        let _ = child.kill();
        let _ = child.wait();
    }
    let status = status?;
    let out = match out_rx.recv_timeout(Duration::from_secs(1)) {
        Ok(out) => out,
        Err(_) => return Err(ToolError::Timeout(timeout)),
    };
    let err = err_rx
        .recv_timeout(Duration::from_millis(200))
        .unwrap_or_default();
    let out = out.map_err(ToolError::Io)?;
    if out.len() > max_output {
        return Err(ToolError::TooLarge(max_output));
    }
    if !status.success() {
        return Err(ToolError::Failed {
            status: status.to_string(),
            stderr: within_bytes(String::from_utf8_lossy(&err).trim(), 300),
        });
    }
    Ok(out)
}

/// Starts a pipe reader thread; if the thread cannot be created, the tool is killed.
fn spawn_reader(
    child: &mut std::process::Child,
    f: impl FnOnce() + Send + 'static,
) -> Result<(), ToolError> {
    match std::thread::Builder::new()
        .name("firewall-tool-pipe".into())
        .spawn(f)
    {
        Ok(_) => Ok(()),
        Err(e) => {
            let _ = child.kill();
            let _ = child.wait();
            Err(ToolError::Io(e))
        }
    }
}

/// Runs every tool the host has: nft, then per family the legacy and nft iptables variants, or
/// the plain `iptables-save` when neither variant exists (an old distribution).
pub(super) fn run_all(root: &Path) -> Vec<ToolRun> {
    let chroot = root != Path::new("/");
    let run = |tool: Tool| ToolRun {
        tool,
        result: run_tool(
            root,
            chroot,
            tool.program,
            tool.args,
            TOOL_TIMEOUT,
            MAX_TOOL_OUTPUT,
        ),
    };
    let mut runs = vec![run(NFT)];
    for (family, [legacy, nft, plain]) in IPTABLES {
        let tool = |program, backend| Tool {
            program,
            args: &[],
            family: Some(family),
            backend,
        };
        let l = run(tool(legacy, Some(Backend::IptablesLegacy)));
        let n = run(tool(nft, Some(Backend::IptablesNft)));
        let neither = matches!(l.result, Err(ToolError::NotFound))
            && matches!(n.result, Err(ToolError::NotFound));
        runs.push(l);
        runs.push(n);
        if neither {
            runs.push(run(tool(plain, None)));
        }
    }
    runs
}

/// The backend a plain `iptables-save` used, from its `# Generated by … (nf_tables)` header.
/// Legacy builds print no suffix (or `(legacy)`).
pub(super) fn detect_backend(output: &[u8]) -> Backend {
    let head = &output[..output.len().min(4096)];
    let head = String::from_utf8_lossy(head);
    if head
        .lines()
        .any(|l| l.starts_with('#') && l.contains("(nf_tables)"))
    {
        Backend::IptablesNft
    } else {
        Backend::IptablesLegacy
    }
}
