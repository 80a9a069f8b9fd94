//! The deployment artifacts, checked the way IoT Edge and its tools read them:
//! - `module.json` (iotedgedev's format): version from Cargo.toml, the three platforms, each with
//!   a Dockerfile that ships the static binary;
//! - `deployment.template.json`: valid against the deployment template 4.0 schema (offline, from
//!   `../shared/reference/iot-edge-schemas`), the module twin holding the whole default
//!   configuration, routes that carry alerts first and other modules' security messages in;
//! - `iotedgedev genconfig` (the real tool, from PyPI; `scripts/test.sh` installs it) expands the
//!   template for every platform into a manifest valid against the deployment 2.0 schema;
//! - `deployment.layered.json`: merged over a base manifest the way IoT Hub applies layered
//!   deployments (each path-style key assigned over the base), the result valid and the base's own
//!   modules and routes untouched; a second layer changes one twin key alone.

mod support;

use edgeguard::config::{self, CONFIG_OBJECT, Config};
use jsonschema::{Retrieve, Uri, Validator};
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::process::Command;
use support::routes::{self, Origin, Route, Sink};

const MODULE: &str = "edgeguard";
const PLATFORMS: [&str; 3] = ["amd64", "arm32v7", "arm64v8"];
const SCHEMA_BASE: &str = "https://json.schemastore.org/";

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn read_json(path: &Path) -> Value {
    let text =
        std::fs::read_to_string(path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{} is not JSON: {e}", path.display()))
}

fn template() -> Value {
    read_json(&repo().join("deployment.template.json"))
}

/// Serves the IoT Edge schemas from `../shared/reference/iot-edge-schemas` under their own ids
/// (they refer to each other relatively), never from the network.
struct EdgeSchemas;

fn edge_schema_dir() -> PathBuf {
    repo().join("../shared/reference/iot-edge-schemas")
}

impl Retrieve for EdgeSchemas {
    fn retrieve(
        &self,
        uri: &Uri<String>,
    ) -> Result<Value, Box<dyn std::error::Error + Send + Sync>> {
        let s = uri.as_str();
        let name = s
            .strip_prefix(SCHEMA_BASE)
            .ok_or_else(|| format!("refusing to fetch {s}"))?;
        let name = name.split('#').next().unwrap_or(name);
        Ok(read_json(&edge_schema_dir().join(name)))
    }
}

fn edge_validator(name: &str) -> Validator {
    let schema = read_json(&edge_schema_dir().join(name));
    jsonschema::options()
        .with_draft(jsonschema::Draft::Draft4)
        .with_retriever(EdgeSchemas)
        .build(&schema)
        .unwrap_or_else(|e| panic!("{name} compiles: {e}"))
}

fn assert_valid(validator: &Validator, doc: &Value, what: &str) {
    let errors: Vec<String> = validator
        .iter_errors(doc)
        .map(|e| format!("{} at {}", e, e.instance_path()))
        .collect();
    assert!(
        errors.is_empty(),
        "{what} is not valid:\n{}",
        errors.join("\n")
    );
}

/// The edgeguard module of a manifest's `$edgeAgent`.
fn module_of(manifest: &Value) -> &Value {
    &manifest["modulesContent"]["$edgeAgent"]["properties.desired"]["modules"][MODULE]
}

/// The twin's configuration object as the default configuration reports it.
fn default_twin() -> Value {
    let mut reported = config::reported(&Config::default(), None, &[]);
    let object = reported[CONFIG_OBJECT]
        .as_object_mut()
        .expect("the reported view is an object");
    object.remove("desiredVersion");
    object.remove("rejected");
    Value::Object(object.clone())
}

#[test]
fn module_json_names_the_crate_version_and_three_platforms_with_their_dockerfiles() {
    let module = read_json(&repo().join("module.json"));
    assert_eq!(module["$schema-version"], "0.0.1");
    assert_eq!(
        module["image"]["tag"]["version"],
        env!("CARGO_PKG_VERSION"),
        "module.json's version follows Cargo.toml"
    );
    assert_eq!(
        module["image"]["repository"],
        "${CONTAINER_REGISTRY_SERVER}/edgeguard"
    );
    let platforms = module["image"]["tag"]["platforms"]
        .as_object()
        .expect("platforms");
    let mut names: Vec<&str> = platforms.keys().map(String::as_str).collect();
    names.sort();
    assert_eq!(names, ["amd64", "arm32v7", "arm64v8"]);
    for platform in PLATFORMS {
        let file = platforms[platform].as_str().expect("a Dockerfile path");
        assert_eq!(file, format!("./Dockerfile.{platform}"));
        let text = std::fs::read_to_string(repo().join(file)).expect("the Dockerfile exists");
        let lines: Vec<&str> = text
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
            .collect();
        let has = |line: &str| lines.contains(&line);
        assert!(has("FROM scratch"), "{file}: FROM scratch");
        assert!(
            has(&format!("COPY dist/{platform}/edgeguard /edgeguard")),
            "{file} ships the binary scripts/build-static.sh {platform} stages"
        );
        assert!(
            has(&format!("ARG VERSION={}", env!("CARGO_PKG_VERSION"))),
            "{file}: the version label follows Cargo.toml"
        );
        for line in [
            "COPY packaging/nsswitch.conf /etc/nsswitch.conf",
            "ENTRYPOINT [\"/edgeguard\"]",
            "CMD [\"run\"]",
            "STOPSIGNAL SIGTERM",
            "HEALTHCHECK --interval=30s --timeout=10s --start-period=30s --retries=3 CMD [\"/edgeguard\", \"status\"]",
            "VOLUME [\"/var/lib/edgeguard\"]",
            "USER 0:0",
        ] {
            assert!(has(line), "{file}: {line}");
        }
        for label in ["version", "revision", "source"] {
            assert!(
                text.contains(&format!("org.opencontainers.image.{label}=")),
                "{file}: OCI label {label}"
            );
        }
    }
    // The build context is the staged binaries and packaging/ only.
    let ignore = std::fs::read_to_string(repo().join(".dockerignore")).expect(".dockerignore");
    let rules: Vec<&str> = ignore
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .collect();
    assert_eq!(rules, ["*", "!dist/", "!packaging/"]);
}

#[test]
fn the_template_is_a_valid_deployment_template() {
    let t = template();
    assert_eq!(t["$schema-template"], "4.0.0");
    let validator = edge_validator("azure-iot-edge-deployment-template-4.0.json");
    assert_valid(&validator, &t, "deployment.template.json");
    // The schema is in force (its references resolved): what edgeHub would refuse is refused.
    for (pointer, bad) in [
        (
            "/modulesContent/$edgeHub/properties.desired/schemaVersion",
            json!("1.0"),
        ),
        (
            "/modulesContent/$edgeHub/properties.desired/routes/edgeguardAlertsToIoTHub/priority",
            json!(12),
        ),
        (
            "/modulesContent/$edgeAgent/properties.desired/modules/edgeguard/restartPolicy",
            json!("sometimes"),
        ),
    ] {
        let mut broken = t.clone();
        *broken.pointer_mut(pointer).expect("the pointer exists") = bad;
        assert!(!validator.is_valid(&broken), "{pointer} should be refused");
    }
    let agent = &t["modulesContent"]["$edgeAgent"]["properties.desired"];
    assert_eq!(agent["schemaVersion"], "1.1");
    for (name, image) in [
        ("edgeAgent", "mcr.microsoft.com/azureiotedge-agent:1.5"),
        ("edgeHub", "mcr.microsoft.com/azureiotedge-hub:1.5"),
    ] {
        assert_eq!(agent["systemModules"][name]["settings"]["image"], image);
    }
    let hub = &t["modulesContent"]["$edgeHub"]["properties.desired"];
    assert_eq!(hub["schemaVersion"], "1.2", "route priorities need 1.2");
    assert!(
        hub["storeAndForwardConfiguration"]["timeToLiveSecs"]
            .as_u64()
            .is_some_and(|ttl| ttl >= 7200)
    );
    let m = module_of(&t);
    assert_eq!(m["image"], Value::Null);
    assert_eq!(m["settings"]["image"], "${MODULEDIR<.>}");
    assert_eq!(m["restartPolicy"], "always");
    assert_eq!(m["status"], "running");
    let hub_order = agent["systemModules"]["edgeHub"]["startupOrder"]
        .as_u64()
        .expect("edgeHub has a startup order");
    assert!(
        m["startupOrder"].as_u64().expect("a startup order") > hub_order,
        "edgeguard starts after edgeHub"
    );
}

#[test]
fn create_options_are_what_the_collectors_need_and_no_more() {
    let t = template();
    let options = &module_of(&t)["settings"]["createOptions"];
    let host = options["HostConfig"].as_object().expect("HostConfig");
    assert_eq!(host["PidMode"], "host", "processes of the host");
    assert_eq!(host["NetworkMode"], "host", "connections and uevents");
    assert_eq!(
        host["CapAdd"],
        json!(["NET_ADMIN", "SYS_PTRACE", "SYS_NICE", "SYS_ADMIN"])
    );
    assert_eq!(
        host["Binds"],
        json!([
            "/:/host:ro",
            "/var/run/docker.sock:/var/run/docker.sock",
            "edgeguard-state:/var/lib/edgeguard"
        ])
    );
    for too_much in [
        "Privileged",
        "CapDrop",
        "SecurityOpt",
        "Devices",
        "UsernsMode",
    ] {
        assert!(!host.contains_key(too_much), "{too_much} is not needed");
    }
    // iotedgedev and the portal split createOptions into 512-character chunks, at most 8.
    let text = serde_json::to_string(options).expect("serializes");
    assert!(text.len() <= 4096, "{} bytes", text.len());
}

#[test]
fn the_template_twin_holds_every_configuration_key_at_its_default() {
    let t = template();
    let desired = &t["modulesContent"][MODULE]["properties.desired"];
    let twin = &desired[CONFIG_OBJECT];
    assert_eq!(
        twin,
        &default_twin(),
        "the manifest's twin is the agent's defaults, key for key, as the portal shows them"
    );
    // What the module reads from it: the defaults, nothing rejected. IoT Hub keeps no nulls in a
    // twin: `{"value": null}` reaches the module as `{}`, which must mean the same.
    let (cfg, rejected, _) = config::load_str(&desired.to_string()).expect("loads");
    assert!(rejected.is_empty(), "{rejected:?}");
    assert_eq!(cfg, Config::default());
    let mut stripped = desired.clone();
    for (_, v) in stripped[CONFIG_OBJECT]
        .as_object_mut()
        .expect("object")
        .iter_mut()
    {
        if v["value"].is_null() {
            *v = json!({});
        }
    }
    let (cfg, rejected, _) = config::load_str(&stripped.to_string()).expect("loads");
    assert!(rejected.is_empty(), "{rejected:?}");
    assert_eq!(cfg, Config::default());
}

fn origin(module: &str, output: Option<&str>) -> Origin<'static> {
    Origin {
        device: "dev1",
        module: Box::leak(module.to_string().into_boxed_str()),
        output: output.map(|o| &*Box::leak(o.to_string().into_boxed_str())),
    }
}

/// The routes edgeguard's outputs and other modules' security messages take in `manifest`.
fn check_routes(manifest: &Value, what: &str) {
    let all = routes::from_manifest(manifest).unwrap_or_else(|e| panic!("{what}: {e}"));
    let only = |o: &Origin<'_>| -> Route {
        let hit = routes::routes_for(&all, o);
        assert_eq!(hit.len(), 1, "{what}: {o:?} takes one route: {hit:?}");
        hit[0].clone()
    };
    let alerts = only(&origin(MODULE, Some(edgeguard::hub::DEFAULT_ALERTS_OUTPUT)));
    let events = only(&origin(MODULE, Some(edgeguard::hub::DEFAULT_OUTPUT)));
    assert_eq!(alerts.sink, Sink::Upstream);
    assert_eq!(events.sink, Sink::Upstream);
    assert_eq!(alerts.priority, 0, "{what}: alerts go first");
    assert!(events.priority > alerts.priority, "{what}");
    assert!(
        alerts.ttl_secs >= events.ttl_secs && alerts.ttl_secs.is_some(),
        "{what}: alerts are kept at least as long while IoT Hub is away"
    );
    let input = Sink::Input {
        module: MODULE.into(),
        input: edgeguard::hub::inputs::DEFAULT_INPUT.into(),
    };
    for sender in ["sensor", "opcPublisher"] {
        let r = only(&origin(sender, Some("securityMessages")));
        assert_eq!(
            r.sink, input,
            "{what}: {sender}'s security messages reach edgeguard"
        );
        assert!(
            routes::routes_for(&all, &origin(sender, Some("telemetry")))
                .iter()
                .all(|r| r.sink != input),
            "{what}: other outputs stay out of edgeguard's input"
        );
    }
    assert!(
        all.iter()
            .filter(|r| r.sink == input)
            .all(|r| !r.matches(&origin(MODULE, Some(edgeguard::hub::DEFAULT_OUTPUT)))),
        "{what}: edgeguard's own messages do not loop back into it"
    );
}

#[test]
fn routes_send_alerts_first_and_bring_other_modules_security_messages_in() {
    check_routes(&template(), "deployment.template.json");
}

#[test]
fn the_route_reader_knows_edgehub_sources_sinks_and_conditions() {
    let parse = |t: &str| Route::parse("r", t);
    let o = |m: &str, out: Option<&str>| origin(m, out);
    let r = parse("FROM /messages/modules/m/outputs/alerts INTO $upstream").unwrap();
    assert!(r.matches(&o("m", Some("alerts"))));
    assert!(!r.matches(&o("m", Some("other"))));
    assert!(!r.matches(&o("n", Some("alerts"))));
    let r = parse("FROM /messages/modules/m/outputs/* INTO $upstream").unwrap();
    assert!(r.matches(&o("m", Some("x"))) && !r.matches(&o("m", None)));
    let r = parse(
        "FROM /messages/modules/* WHERE $outputName = 'securityMessages' INTO BrokeredEndpoint(\"/modules/eg/inputs/securityMessages\")",
    )
    .unwrap();
    assert!(r.matches(&o("sensor", Some("securityMessages"))));
    assert!(!r.matches(&o("sensor", Some("telemetry"))));
    assert!(!r.matches(&o("sensor", None)));
    assert_eq!(
        r.sink,
        Sink::Input {
            module: "eg".into(),
            input: "securityMessages".into()
        }
    );
    let r = parse(
        "FROM /messages/* WHERE $connectionModuleId <> 'eg' AND $outputName = 'x' INTO $upstream",
    )
    .unwrap();
    assert!(r.matches(&o("other", Some("x"))));
    assert!(!r.matches(&o("eg", Some("x"))));
    for bad in [
        "FROM /messages/modules/*/outputs/x INTO $upstream",
        "FROM /messages/* WHERE $body.x = 1 INTO $upstream",
        "FROM /messages/* WHERE temperature > 3 INTO $upstream",
        "FROM /messages/* INTO BrokeredEndpoint(\"/modules/eg\")",
        "SELECT * INTO $upstream",
    ] {
        assert!(parse(bad).is_err(), "{bad}");
    }
}

/// iotedgedev: `EDGEGUARD_IOTEDGEDEV` (set by scripts/test.sh to the one it installs), else the
/// one on PATH.
fn iotedgedev() -> PathBuf {
    if let Some(p) = std::env::var_os("EDGEGUARD_IOTEDGEDEV") {
        return PathBuf::from(p);
    }
    let found = std::env::var_os("PATH")
        .map(|path| std::env::split_paths(&path).collect::<Vec<_>>())
        .unwrap_or_default()
        .into_iter()
        .map(|dir| dir.join("iotedgedev"))
        .find(|p| p.is_file());
    found.unwrap_or_else(|| {
        panic!(
            "iotedgedev is not installed: run scripts/test.sh (it installs it from PyPI), or set \
             EDGEGUARD_IOTEDGEDEV to an iotedgedev executable"
        )
    })
}

#[test]
fn iotedgedev_expands_the_template_into_a_valid_manifest_for_every_platform() {
    let tool = iotedgedev();
    let dir = tempfile::tempdir().expect("temp dir");
    for file in ["module.json", "deployment.template.json"] {
        std::fs::copy(repo().join(file), dir.path().join(file)).expect("copy");
    }
    std::fs::write(
        dir.path().join(".env"),
        "CONTAINER_REGISTRY_SERVER=registry.example:5000\n",
    )
    .expect(".env");
    // A home of its own, with telemetry off, so nothing tries the network or asks questions.
    let home = dir.path().join("home");
    std::fs::create_dir_all(home.join(".iotedgedev")).expect("home");
    std::fs::write(
        home.join(".iotedgedev/setting.ini"),
        "[DEFAULT]\nfirsttime = no\ncollect_telemetry = no\n",
    )
    .expect("setting.ini");
    let validator = edge_validator("azure-iot-edge-deployment-2.0.json");
    let template = template();
    let template_options = &module_of(&template)["settings"]["createOptions"];
    for platform in PLATFORMS {
        let out = Command::new(&tool)
            .current_dir(dir.path())
            .env("HOME", &home)
            .args([
                "genconfig",
                "-f",
                "deployment.template.json",
                "-P",
                platform,
                "--fail-on-validation-error",
            ])
            .output()
            .expect("iotedgedev runs");
        let log = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(out.status.success(), "genconfig -P {platform}:\n{log}");
        assert!(
            log.contains("Validation for all createOptions passed"),
            "iotedgedev checked createOptions:\n{log}"
        );
        let manifest = read_json(
            &dir.path()
                .join(format!("config/deployment.{platform}.json")),
        );
        assert_valid(
            &validator,
            &manifest,
            &format!("deployment.{platform}.json"),
        );
        let m = module_of(&manifest);
        assert_eq!(
            m["settings"]["image"],
            format!(
                "registry.example:5000/edgeguard:{}-{platform}",
                env!("CARGO_PKG_VERSION")
            )
        );
        let options: Value = serde_json::from_str(
            m["settings"]["createOptions"]
                .as_str()
                .expect("createOptions became a string"),
        )
        .expect("createOptions is JSON");
        assert_eq!(&options, template_options);
        assert_eq!(
            manifest["modulesContent"][MODULE]["properties.desired"][CONFIG_OBJECT],
            default_twin()
        );
        check_routes(&manifest, &format!("deployment.{platform}.json"));
    }
}

/// A device's base deployment: the runtime and a sensor module, with a route of its own.
fn base_manifest() -> Value {
    json!({
        "modulesContent": {
            "$edgeAgent": {"properties.desired": {
                "schemaVersion": "1.1",
                "runtime": {"type": "docker", "settings": {"minDockerVersion": "v1.25", "loggingOptions": ""}},
                "systemModules": {
                    "edgeAgent": {"type": "docker", "settings": {"image": "mcr.microsoft.com/azureiotedge-agent:1.5", "createOptions": "{}"}},
                    "edgeHub": {"type": "docker", "status": "running", "restartPolicy": "always",
                        "settings": {"image": "mcr.microsoft.com/azureiotedge-hub:1.5", "createOptions": "{}"}}
                },
                "modules": {
                    "sensor": {"version": "1.0", "type": "docker", "status": "running", "restartPolicy": "always",
                        "settings": {"image": "contoso.azurecr.io/sensor:2.1", "createOptions": "{}"}}
                }
            }},
            "$edgeHub": {"properties.desired": {
                "schemaVersion": "1.2",
                "routes": {"sensorToIoTHub": {"route": "FROM /messages/modules/sensor/outputs/telemetry INTO $upstream", "priority": 3}},
                "storeAndForwardConfiguration": {"timeToLiveSecs": 7200}
            }},
            "sensor": {"properties.desired": {"interval": 10}}
        }
    })
}

/// Applies a layered deployment over `manifest` as IoT Hub does: for each module, every key is a
/// path whose first two segments are `properties.desired`; its value replaces what is at that
/// path (objects on the way are created). Layers apply in priority order, lowest first.
fn apply_layer(manifest: &mut Value, layer: &Value) {
    let modules = layer["modulesContent"]
        .as_object()
        .expect("a layer has modulesContent");
    for (module, paths) in modules {
        for (path, value) in paths.as_object().expect("path-style keys") {
            let rest = path
                .strip_prefix("properties.desired.")
                .unwrap_or_else(|| panic!("{module}: {path} is not under properties.desired"));
            let mut at = manifest["modulesContent"]
                .as_object_mut()
                .expect("modulesContent")
                .entry(module.clone())
                .or_insert_with(|| json!({}))
                .as_object_mut()
                .expect("a module's content")
                .entry("properties.desired")
                .or_insert_with(|| json!({}));
            let segments: Vec<&str> = rest.split('.').collect();
            let (last, parents) = segments.split_last().expect("a path");
            for segment in parents {
                at = at
                    .as_object_mut()
                    .expect("an object on the path")
                    .entry(segment.to_string())
                    .or_insert_with(|| json!({}));
            }
            at.as_object_mut()
                .expect("an object on the path")
                .insert(last.to_string(), value.clone());
        }
    }
}

#[test]
fn the_layered_deployment_adds_edgeguard_without_touching_the_base() {
    let layer = read_json(&repo().join("deployment.layered.json"));
    for (module, paths) in layer["modulesContent"].as_object().expect("modulesContent") {
        for path in paths.as_object().expect("paths").keys() {
            assert!(
                path.starts_with("properties.desired.") && path.len() > "properties.desired.".len(),
                "{module}: a layer sets paths below properties.desired, never all of it: {path}"
            );
        }
    }
    let base = base_manifest();
    let validator = edge_validator("azure-iot-edge-deployment-2.0.json");
    assert_valid(&validator, &base, "the base manifest");
    let mut merged = base.clone();
    apply_layer(&mut merged, &layer);
    assert_valid(&validator, &merged, "the base with the edgeguard layer");

    // The base's modules, routes and twins are as they were.
    let agent = |m: &Value| m["modulesContent"]["$edgeAgent"]["properties.desired"].clone();
    let hub = |m: &Value| m["modulesContent"]["$edgeHub"]["properties.desired"].clone();
    assert_eq!(
        agent(&merged)["modules"]["sensor"],
        agent(&base)["modules"]["sensor"]
    );
    assert_eq!(
        agent(&merged)["systemModules"],
        agent(&base)["systemModules"]
    );
    assert_eq!(
        hub(&merged)["routes"]["sensorToIoTHub"],
        hub(&base)["routes"]["sensorToIoTHub"]
    );
    assert_eq!(
        hub(&merged)["storeAndForwardConfiguration"],
        hub(&base)["storeAndForwardConfiguration"]
    );
    assert_eq!(
        merged["modulesContent"]["sensor"],
        base["modulesContent"]["sensor"]
    );

    // edgeguard as the template describes it, with a concrete image.
    let t = template();
    let ours = module_of(&merged);
    let theirs = module_of(&t);
    for key in [
        "version",
        "type",
        "status",
        "restartPolicy",
        "startupOrder",
        "env",
    ] {
        assert_eq!(ours[key], theirs[key], "{key}");
    }
    let options: Value = serde_json::from_str(
        ours["settings"]["createOptions"]
            .as_str()
            .expect("a layered deployment's createOptions is a string"),
    )
    .expect("JSON");
    assert_eq!(options, theirs["settings"]["createOptions"]);
    let image = ours["settings"]["image"].as_str().expect("image");
    assert!(
        image.ends_with(&format!(":{}-amd64", env!("CARGO_PKG_VERSION"))),
        "{image}"
    );
    assert_eq!(
        merged["modulesContent"][MODULE]["properties.desired"][CONFIG_OBJECT],
        default_twin()
    );
    check_routes(&merged, "the merged deployment");

    // A second layer (higher priority) for part of the fleet changes one key, and only it.
    let tuning = json!({"modulesContent": {MODULE: {
        format!("properties.desired.{CONFIG_OBJECT}.highPriorityMessageFrequency"): {"value": "PT1M"}
    }}});
    apply_layer(&mut merged, &tuning);
    assert_valid(&validator, &merged, "the base with two layers");
    let desired = &merged["modulesContent"][MODULE]["properties.desired"];
    let (cfg, rejected, _) = config::load_str(&desired.to_string()).expect("loads");
    assert!(rejected.is_empty(), "{rejected:?}");
    let expected = Config {
        high_priority_message_frequency: std::time::Duration::from_secs(60),
        ..Config::default()
    };
    assert_eq!(cfg, expected);
}
