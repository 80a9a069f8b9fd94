//! Security messages from other modules (`hub::inputs::parse_security_message`), then through
//! the pipeline as the agent handles them: detection, priorities, aggregation, batching. These
//! are untrusted MQTT payloads. Checks that every event of a parsed message is either taken or
//! rejected with a reason, that the detector raises at most one finding per record, and that
//! every message the pipeline cuts is JSON within the size limit.
#![no_main]

use edgeguard::config::Config;
use edgeguard::detect::Detector;
use edgeguard::event::MessageHeader;
use edgeguard::hub::inputs::parse_security_message;
use edgeguard::metrics::Metrics;
use edgeguard::pipeline::{Pipeline, Trigger};
use libfuzzer_sys::fuzz_target;
use std::sync::Arc;
use tokio::time::Instant;

const MAX_MESSAGE: usize = 8192;

fuzz_target!(|data: &[u8]| {
    let Ok(parsed) = parse_security_message(data) else {
        return;
    };
    let sent: serde_json::Value = serde_json::from_slice(data).expect("parsed, so JSON");
    let events = sent["Events"].as_array().map_or(0, Vec::len);
    assert_eq!(parsed.events.len() + parsed.rejected.len(), events);

    let now = Instant::now();
    let mut detector = Detector::new();
    let mut found = Vec::new();
    for e in &parsed.events {
        found.clear();
        detector.inspect(e, now, &mut found);
        assert!(found.len() <= e.payload.len().max(1));
    }

    let config = Config {
        max_message_size_in_bytes: MAX_MESSAGE as u64,
        ..Config::default()
    };
    let header = MessageHeader::new("fuzz", uuid::Uuid::nil());
    let mut pipeline = Pipeline::new(header, Arc::new(config), Arc::new(Metrics::for_tests()));
    for e in parsed.events {
        pipeline.push(e, now);
    }
    pipeline.flush_windows();
    while let Some(m) = pipeline.take_message(Trigger::All) {
        assert!(m.body.len() <= MAX_MESSAGE, "{} bytes", m.body.len());
        let v: serde_json::Value = serde_json::from_slice(&m.body).expect("messages are JSON");
        assert!(v["Events"].is_array());
    }
    assert_eq!(pipeline.queued_events(), 0);
});
