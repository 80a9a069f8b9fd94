//! IoT Edge drift: containers and modules that changed without a deployment asking for it.
//!
//! On an IoT Edge device every workload container is edgeAgent's: it creates them from the
//! deployment and labels them ([`EDGE_OWNER_LABEL`], [`EDGE_ORIGINAL_IMAGE_LABEL`]). So
//! - a container started without the owner label, on a device where edgeAgent runs, was started
//!   by someone else (`docker run` of a miner, a debugging shell left behind);
//! - a module recreated from the same image reference but a different image id ran an image that
//!   was replaced under its tag (a `docker tag`/`docker load` over it, or a moving tag re-pulled);
//! - a module recreated with privileges its previous container lacked (privileged, host
//!   namespaces, the Docker socket, new capabilities or devices) gained them, by a deployment or by
//!   hand.
//!
//! The watcher inspects each container it sees created or started and calls [`Drift::judge`],
//! which writes what it found into the event's `ExtraDetails`; the rules of the detection catalog
//! (`container-outside-deployment`, `module-image-replaced`, `module-privilege-gained`,
//! `privileged-container-started`) read those fields. What a module looked like is learned when
//! the watcher connects (every existing container of edgeAgent's is inspected) and from each
//! creation after, and kept in the state directory ([`FILE_NAME`]): a module recreated while the
//! agent was stopped (or while the engine's connection was down) is judged against its last
//! container when the watcher connects ([`Drift::learn`]), and reported as a `running` record if
//! its image was replaced or it gained privileges.

use super::cache::{ContainerMeta, EDGE_OWNER_LABEL};
use super::posture;
use crate::event::ExtraDetails;
use bollard::models::ContainerInspectResponse;
use serde::{Deserialize, Serialize};
use std::borrow::Cow;
use std::collections::{BTreeSet, HashMap, HashSet};
use std::path::{Path, PathBuf};

/// The file in the state directory.
pub const FILE_NAME: &str = "drift.json";
/// Format version of [`FILE_NAME`].
const VERSION: u32 = 1;

/// The image reference of the deployment, as edgeAgent labels the containers it creates.
pub const EDGE_ORIGINAL_IMAGE_LABEL: &str = "net.azure-devices.edge.original-image";

/// Modules remembered; an edge device runs tens. Past it new modules are not remembered (and so
/// not compared), and the count says so in the log.
const MAX_MODULES: usize = 512;
/// Unowned containers already reported as running, so a reconnect does not report them again.
const MAX_REPORTED: usize = 4096;

/// What one container's inspect answer says that drift compares.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Facts {
    /// The owner label's value (edgeAgent's containers have one).
    pub owner: Option<String>,
    /// The IoT Edge module name (see [`ContainerMeta::from_inspect`]).
    pub module: Option<String>,
    /// The deployment's image reference (`original-image` label), else the container's image.
    pub image_ref: Option<String>,
    /// The image id (`sha256:…`) the container was created from.
    pub image_id: Option<String>,
    pub privileged: bool,
    /// [`posture::privileges`].
    pub privileges: BTreeSet<String>,
    pub running: bool,
}

impl Facts {
    /// The facts of inspect answer `c`, whose [`ContainerMeta`] the caller has already built
    /// (it needs it for the cache too: building it twice cost a second pass over the labels).
    pub fn new(c: &ContainerInspectResponse, meta: &ContainerMeta) -> Facts {
        let labels = c.config.as_ref().and_then(|c| c.labels.as_ref());
        let label = |k: &str| {
            labels
                .and_then(|l| l.get(k))
                .map(|v| v.trim().to_string())
                .filter(|v| !v.is_empty())
        };
        Facts {
            owner: label(EDGE_OWNER_LABEL),
            module: meta.module.clone(),
            image_ref: label(EDGE_ORIGINAL_IMAGE_LABEL).or_else(|| meta.image.clone()),
            image_id: meta.image_id.clone(),
            privileged: c.host_config.as_ref().and_then(|h| h.privileged) == Some(true),
            privileges: posture::privileges(c),
            running: c.state.as_ref().and_then(|s| s.running) == Some(true),
        }
    }
}

/// The last container seen of one module.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Sighting {
    container_id: String,
    image_ref: Option<String>,
    image_id: Option<String>,
    privileges: BTreeSet<String>,
}

/// What the watcher knows about the device's modules, across reconnects and restarts.
#[derive(Debug, Default)]
pub struct Drift {
    modules: HashMap<String, Sighting>,
    /// Whether edgeAgent's containers exist here (any container with the owner label was seen).
    edge_device: bool,
    /// Unowned containers reported running, once per agent run (not saved).
    reported_running: HashSet<String>,
    full_logged: bool,
    /// Changed since it was last saved.
    dirty: bool,
    /// Where [`Drift::save`] writes ([`Drift::load`]'s file); `None`: kept in memory only.
    path: Option<PathBuf>,
}

/// [`FILE_NAME`]'s contents (borrowed when saved, owned when loaded).
#[derive(Debug, Serialize, Deserialize)]
struct Stored<'a> {
    version: u32,
    edge_device: bool,
    modules: Cow<'a, HashMap<String, Sighting>>,
}

impl Drift {
    /// The history saved in `path` by an earlier run, kept there from now on; none (a first
    /// start, or a file that cannot be read, which the log says) starts empty: every module's
    /// first container is then its reference, as on a new device.
    pub fn load(file: &Path) -> Drift {
        let path = Some(file.to_path_buf());
        let stored: Option<Stored> = crate::state::read_json_or_warn(
            file,
            super::COLLECTOR,
            "cannot read the saved IoT Edge module history; modules changed while stopped are not judged",
            "saved IoT Edge module history is corrupt; modules changed while stopped are not judged",
        );
        let Some(stored) = stored.filter(|s| s.version == VERSION) else {
            return Drift {
                path,
                ..Drift::default()
            };
        };
        Drift {
            modules: stored
                .modules
                .into_owned()
                .into_iter()
                .take(MAX_MODULES)
                .collect(),
            edge_device: stored.edge_device,
            path,
            ..Drift::default()
        }
    }

    /// The file the history is saved to, if any.
    pub fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }

    /// Saves the history to its file when it changed since the last save.
    pub fn save(&mut self) -> std::io::Result<()> {
        let Some(path) = self.path.as_deref().filter(|_| self.dirty) else {
            return Ok(());
        };
        let stored = Stored {
            version: VERSION,
            edge_device: self.edge_device,
            modules: Cow::Borrowed(&self.modules),
        };
        let bytes = serde_json::to_vec(&stored).map_err(std::io::Error::other)?;
        crate::state::write_atomic(path, &bytes)?;
        self.dirty = false;
        Ok(())
    }

    /// Whether this looks like an IoT Edge device (edgeAgent's label was seen on a container).
    pub fn edge_device(&self) -> bool {
        self.edge_device
    }

    /// Notes that edgeAgent's containers exist on this device.
    pub fn saw_edge_agent(&mut self) {
        self.dirty |= !self.edge_device;
        self.edge_device = true;
    }

    /// Remembers a container seen when connecting: the reference that later containers of its
    /// module are compared with. A module's running container wins over a stopped one left
    /// behind. A running container that is not the module's last one known (recreated while the
    /// agent was stopped, or while the engine was out of reach) is judged against it as
    /// [`Drift::judge`] judges a creation; the findings come back when it replaced the image or
    /// gained privileges (what the drift rules alert on), for a `running` record.
    pub fn learn(&mut self, id: &str, facts: &Facts) -> Option<ExtraDetails> {
        if facts.owner.is_some() {
            self.saw_edge_agent();
        }
        let (Some(_), Some(module)) = (&facts.owner, &facts.module) else {
            return None;
        };
        let known = self.modules.get(module);
        if !facts.running && known.is_some() {
            return None;
        }
        if known.is_some_and(|s| s.container_id != id) {
            let mut extra = ExtraDetails::new();
            self.judge(id, facts, true, &mut extra);
            let drifted =
                extra.contains_key("PreviousImageId") || extra.contains_key("PrivilegesGained");
            return drifted.then_some(extra);
        }
        self.remember(module, id, facts);
        None
    }

    /// Whether an unowned container seen running when connecting should be reported (once per
    /// container, on an edge device only).
    pub fn report_running(&mut self, id: &str, facts: &Facts) -> bool {
        if !self.edge_device || facts.owner.is_some() || !facts.running {
            return false;
        }
        if self.reported_running.len() >= MAX_REPORTED {
            self.reported_running.clear();
        }
        self.reported_running.insert(id.to_string())
    }

    /// Judges a container the engine reports created (`judge_module` true: compared with its
    /// module's previous container, which it then replaces) or started, and writes the findings
    /// into `extra`:
    /// - `Privileged` (`true`/`false`) and `Privileges` (the words of [`posture::privileges`]);
    /// - `IotEdgeOwner` (the owner label) and `IotEdgeDevice` (`true` once edgeAgent was seen);
    /// - on a module's new container: `PreviousContainerId`, and where they apply
    ///   `PreviousImageId` (same image reference, another image id) and `PrivilegesGained`.
    pub fn judge(&mut self, id: &str, facts: &Facts, judge_module: bool, extra: &mut ExtraDetails) {
        if facts.owner.is_some() {
            self.saw_edge_agent();
        }
        extra.insert("Privileged".into(), facts.privileged.to_string());
        if !facts.privileges.is_empty() {
            extra.insert("Privileges".into(), join(&facts.privileges));
        }
        if let Some(owner) = &facts.owner {
            extra.insert("IotEdgeOwner".into(), owner.clone());
        }
        if self.edge_device {
            extra.insert("IotEdgeDevice".into(), "true".into());
        }
        let (Some(_), Some(module), true) = (&facts.owner, &facts.module, judge_module) else {
            return;
        };
        if let Some(before) = self.modules.get(module).filter(|s| s.container_id != id) {
            extra.insert("PreviousContainerId".into(), before.container_id.clone());
            if let (Some(old), Some(new)) = (&before.image_id, &facts.image_id) {
                if old != new && before.image_ref.is_some() && before.image_ref == facts.image_ref {
                    extra.insert("PreviousImageId".into(), old.clone());
                }
            }
            let gained: BTreeSet<String> = facts
                .privileges
                .difference(&before.privileges)
                .cloned()
                .collect();
            if !gained.is_empty() {
                extra.insert("PrivilegesGained".into(), join(&gained));
            }
        }
        self.remember(module, id, facts);
    }

    fn remember(&mut self, module: &str, id: &str, facts: &Facts) {
        if self.modules.len() >= MAX_MODULES && !self.modules.contains_key(module) {
            if !self.full_logged {
                tracing::warn!(
                    modules = MAX_MODULES,
                    "more IoT Edge modules than drift remembers: new ones are not compared"
                );
                self.full_logged = true;
            }
            return;
        }
        let sighting = Sighting {
            container_id: id.to_string(),
            image_ref: facts.image_ref.clone(),
            image_id: facts.image_id.clone(),
            privileges: facts.privileges.clone(),
        };
        if self.modules.get(module) != Some(&sighting) {
            self.modules.insert(module.to_string(), sighting);
            self.dirty = true;
        }
    }
}

fn join(words: &BTreeSet<String>) -> String {
    words
        .iter()
        .map(String::as_str)
        .collect::<Vec<_>>()
        .join(",")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn owned(module: &str, image_id: &str, privileges: &[&str]) -> Facts {
        Facts {
            owner: Some("Microsoft.Azure.Devices.Edge.Agent".into()),
            module: Some(module.into()),
            image_ref: Some("registry.example/app:1.0".into()),
            image_id: Some(image_id.into()),
            privileged: privileges.contains(&"privileged"),
            privileges: privileges.iter().map(|p| p.to_string()).collect(),
            running: true,
        }
    }

    fn judge(d: &mut Drift, id: &str, f: &Facts, create: bool) -> ExtraDetails {
        let mut extra = ExtraDetails::new();
        d.judge(id, f, create, &mut extra);
        extra
    }

    #[test]
    fn a_recreated_module_is_compared_with_its_previous_container() {
        let mut d = Drift::default();
        d.learn("c1", &owned("app", "sha256:a", &[]));
        assert!(d.edge_device());
        // Same image, same options: nothing but the facts.
        let e = judge(&mut d, "c2", &owned("app", "sha256:a", &[]), true);
        assert_eq!(e.get("PreviousContainerId").map(String::as_str), Some("c1"));
        assert!(!e.contains_key("PreviousImageId") && !e.contains_key("PrivilegesGained"));
        assert_eq!(e.get("Privileged").map(String::as_str), Some("false"));
        assert_eq!(e.get("IotEdgeDevice").map(String::as_str), Some("true"));
        // Same reference, another image id.
        let e = judge(&mut d, "c3", &owned("app", "sha256:b", &[]), true);
        assert_eq!(
            e.get("PreviousImageId").map(String::as_str),
            Some("sha256:a")
        );
        // A new reference is a deployment's change, not a replaced image.
        let mut moved = owned("app", "sha256:c", &[]);
        moved.image_ref = Some("registry.example/app:2.0".into());
        let e = judge(&mut d, "c4", &moved, true);
        assert!(!e.contains_key("PreviousImageId"), "{e:?}");
        // Privilege gained, and only what is new is named.
        let e = judge(
            &mut d,
            "c5",
            &owned("app", "sha256:c", &["cap=NET_ADMIN", "pid=host"]),
            true,
        );
        assert_eq!(
            e.get("PrivilegesGained").map(String::as_str),
            Some("cap=NET_ADMIN,pid=host")
        );
        let e = judge(
            &mut d,
            "c6",
            &owned(
                "app",
                "sha256:c",
                &["cap=NET_ADMIN", "pid=host", "privileged"],
            ),
            true,
        );
        assert_eq!(
            e.get("PrivilegesGained").map(String::as_str),
            Some("privileged")
        );
        assert_eq!(e.get("Privileged").map(String::as_str), Some("true"));
        // Fewer privileges is no finding; the start of the same container judges nothing again.
        let e = judge(&mut d, "c7", &owned("app", "sha256:c", &[]), true);
        assert!(!e.contains_key("PrivilegesGained"));
        let e = judge(&mut d, "c7", &owned("app", "sha256:c", &[]), false);
        assert!(!e.contains_key("PreviousContainerId"));
    }

    #[test]
    fn unowned_containers_count_only_on_an_edge_device() {
        let mut d = Drift::default();
        let stray = Facts {
            running: true,
            ..Facts::default()
        };
        assert!(!d.report_running("x", &stray));
        let e = judge(&mut d, "x", &stray, true);
        assert!(!e.contains_key("IotEdgeDevice") && !e.contains_key("IotEdgeOwner"));
        d.learn("agent", &owned("edgeAgent", "sha256:e", &[]));
        assert!(d.report_running("x", &stray));
        assert!(!d.report_running("x", &stray), "reported once");
        let e = judge(&mut d, "y", &stray, false);
        assert_eq!(e.get("IotEdgeDevice").map(String::as_str), Some("true"));
        assert!(!e.contains_key("IotEdgeOwner"));
    }

    #[test]
    fn a_stopped_leftover_does_not_replace_the_running_module() {
        let mut d = Drift::default();
        d.learn("run", &owned("app", "sha256:a", &[]));
        let mut old = owned("app", "sha256:old", &["privileged"]);
        old.running = false;
        d.learn("old", &old);
        let e = judge(
            &mut d,
            "new",
            &owned("app", "sha256:a", &["privileged"]),
            true,
        );
        assert_eq!(
            e.get("PreviousContainerId").map(String::as_str),
            Some("run")
        );
        assert_eq!(
            e.get("PrivilegesGained").map(String::as_str),
            Some("privileged")
        );
    }

    #[test]
    fn a_module_recreated_while_the_agent_was_stopped_is_judged_at_the_next_start() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(FILE_NAME);
        let mut d = Drift::load(&path);
        assert!(d.learn("c1", &owned("app", "sha256:a", &[])).is_none());
        assert!(d.learn("c9", &owned("other", "sha256:o", &[])).is_none());
        d.save().unwrap();
        // Saved only when changed: an unchanged history is not written again.
        std::fs::remove_file(&path).unwrap();
        assert!(d.learn("c1", &owned("app", "sha256:a", &[])).is_none());
        d.save().unwrap();
        assert!(!path.exists());
        d.dirty = true;
        d.save().unwrap();

        // The next run: app was recreated from a replaced image with a new capability while
        // the agent was stopped; other is the same container.
        let mut next = Drift::load(&path);
        assert!(next.edge_device());
        let e = next
            .learn("c2", &owned("app", "sha256:b", &["cap=SYS_ADMIN"]))
            .expect("a drifted module");
        assert_eq!(e.get("PreviousContainerId").map(String::as_str), Some("c1"));
        assert_eq!(
            e.get("PreviousImageId").map(String::as_str),
            Some("sha256:a")
        );
        assert_eq!(
            e.get("PrivilegesGained").map(String::as_str),
            Some("cap=SYS_ADMIN")
        );
        assert!(next.learn("c9", &owned("other", "sha256:o", &[])).is_none());
        // Recreated the same way (a restart of the module, a deployment's new reference), or a
        // stopped leftover: nothing to report, the new container is the reference.
        let mut moved = owned("other", "sha256:p", &[]);
        moved.image_ref = Some("registry.example/other:2".into());
        assert!(next.learn("c10", &moved).is_none());
        let mut stopped = owned("app", "sha256:z", &["privileged"]);
        stopped.running = false;
        assert!(next.learn("c0", &stopped).is_none());
        next.save().unwrap();
        let third = Drift::load(&path);
        assert_eq!(third.modules["app"].container_id, "c2");
        assert_eq!(third.modules["other"].container_id, "c10");
    }

    #[test]
    fn a_bad_history_file_starts_afresh() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(FILE_NAME);
        for bad in [
            &b"{"[..],
            b"[]",
            br#"{"version":9,"edge_device":true,"modules":{}}"#,
            br#"{"version":1,"edge_device":true,"modules":{"m":{"container_id":5}}}"#,
        ] {
            std::fs::write(&path, bad).unwrap();
            let d = Drift::load(&path);
            assert!(d.modules.is_empty() && !d.edge_device(), "{bad:?}");
        }
    }
}
