//! How one message is stored in the `records` table: a small header (format, output, priority,
//! event count) before the body, and reading both formats back.

use super::*;
use crate::event::Priority;
use crate::pipeline::Output;

fn priority_byte(p: Priority) -> u8 {
    match p {
        Priority::High => 0,
        Priority::Low => 1,
        Priority::Off => 2,
    }
}

fn output_byte(o: Output) -> u8 {
    match o {
        Output::Events => 0,
        Output::Alerts => 1,
    }
}

pub(super) fn encode(output: Output, priority: Priority, events: usize, body: &[u8]) -> Vec<u8> {
    let mut v = Vec::with_capacity(HEADER + body.len());
    v.push(FORMAT);
    v.push(priority_byte(priority));
    v.extend_from_slice(&(events as u64).to_le_bytes());
    v.push(output_byte(output));
    v.extend_from_slice(body);
    v
}

/// What a stored record's header says.
pub(super) struct Decoded<'a> {
    pub(super) output: Output,
    pub(super) priority: Priority,
    pub(super) events: usize,
    pub(super) body: &'a [u8],
}

/// Splits a stored record (format 2, or format 1 of an earlier version) into its header fields
/// and body; `None` if it is not one we wrote.
pub(super) fn decode(raw: &[u8]) -> Option<Decoded<'_>> {
    let (header, body, output) = match *raw.first()? {
        FORMAT => {
            let (header, body) = raw.split_at_checked(HEADER)?;
            let output = match header[HEADER_1] {
                0 => Output::Events,
                1 => Output::Alerts,
                _ => return None,
            };
            (header, body, output)
        }
        FORMAT_1 => {
            let (header, body) = raw.split_at_checked(HEADER_1)?;
            (header, body, Output::Events)
        }
        _ => return None,
    };
    let priority = match header[1] {
        0 => Priority::High,
        1 => Priority::Low,
        2 => Priority::Off,
        _ => return None,
    };
    let events = u64::from_le_bytes(header[2..HEADER_1].try_into().ok()?);
    Some(Decoded {
        output,
        priority,
        events: usize::try_from(events).ok()?,
        body,
    })
}
