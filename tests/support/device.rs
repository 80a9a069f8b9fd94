//! One IoT Edge device as the tests see it: the edgeHub and workload API doubles sharing a test
//! PKI and a module identity, and the environment edgeAgent gives the module. Used by the
//! in-process hub tests and by the tests that run the real binary, so both talk to the same
//! device setup.

use super::certs::{GATEWAY_HOST, TestPki};
use super::edgehub::{EdgeHub, EdgeHubConfig};
use super::workload::{Workload, WorkloadConfig};

/// Who the module is: IoT Hub, device, module, generation and the module's SAS key (base64).
pub struct ModuleIdentity {
    pub hub: &'static str,
    pub device: &'static str,
    pub module: &'static str,
    pub generation: &'static str,
    pub key: String,
}

/// The doubles of one device. Dropping it stops them.
pub struct EdgeDevice {
    pub pki: TestPki,
    pub hub: EdgeHub,
    pub workload: Workload,
}

impl EdgeDevice {
    /// Starts edgeHub (its config adjusted by `tune`) and the workload API for `id`.
    pub async fn start(id: &ModuleIdentity, tune: impl FnOnce(&mut EdgeHubConfig)) -> EdgeDevice {
        let pki = TestPki::new(GATEWAY_HOST);
        let mut cfg =
            EdgeHubConfig::new(id.hub, id.device, id.module, &id.key, pki.server_config());
        tune(&mut cfg);
        let hub = EdgeHub::start(cfg).await;
        let workload = Workload::start(WorkloadConfig {
            module_id: id.module.into(),
            generation_id: id.generation.into(),
            module_key: id.key.clone(),
            trust_bundle: pki.ca_pem.clone(),
        })
        .await;
        EdgeDevice { pki, hub, workload }
    }

    /// The `IOTEDGE_*` variables edgeAgent sets for the module on this device.
    pub fn module_env(&self, id: &ModuleIdentity) -> Vec<(&'static str, String)> {
        module_env(id, &self.workload.uri())
    }
}

/// The `IOTEDGE_*` variables edgeAgent sets for a module whose workload API is at
/// `workload_uri`. The doubles' certificate names "localhost", which also resolves.
pub fn module_env(id: &ModuleIdentity, workload_uri: &str) -> Vec<(&'static str, String)> {
    vec![
        ("IOTEDGE_IOTHUBHOSTNAME", id.hub.to_string()),
        ("IOTEDGE_GATEWAYHOSTNAME", "localhost".to_string()),
        ("IOTEDGE_DEVICEID", id.device.to_string()),
        ("IOTEDGE_MODULEID", id.module.to_string()),
        ("IOTEDGE_MODULEGENERATIONID", id.generation.to_string()),
        ("IOTEDGE_WORKLOADURI", workload_uri.to_string()),
        ("IOTEDGE_AUTHSCHEME", "sasToken".to_string()),
        ("IOTEDGE_APIVERSION", "2022-08-03".to_string()),
    ]
}
