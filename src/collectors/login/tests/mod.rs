use super::*;
use crate::collectors::Context;
use crate::config::Config;
use crate::event::{CollectorHealth, Event, LoginResult, Payload};
use crate::host::HostRoot;
use crate::metrics::Metrics;
use chrono::{Datelike, Local, TimeZone};
use std::io::Write;
use std::net::Ipv6Addr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

// ----- utmp fixtures, shared by the parts -----

const T0: i64 = 1_795_000_000; // 2026-11-19

/// A utmp record written field by field at the layout's offsets.
#[allow(clippy::too_many_arguments)]
fn utmp(
    layout: UtmpLayout,
    kind: i16,
    pid: i32,
    line: &str,
    user: &[u8],
    host: &str,
    sec: i64,
    addr: [u8; 16],
) -> Vec<u8> {
    let mut b = vec![0u8; layout.size()];
    let put = |b: &mut [u8], s: &[u8]| b[..s.len()].copy_from_slice(s);
    b[0..2].copy_from_slice(&kind.to_ne_bytes());
    b[4..8].copy_from_slice(&pid.to_ne_bytes());
    put(&mut b[8..40], line.as_bytes());
    put(&mut b[40..44], b"ts/0");
    put(&mut b[44..76], user);
    put(&mut b[76..332], host.as_bytes());
    let (s, u, a) = layout.tail_offsets();
    match layout {
        UtmpLayout::Compat32 => {
            b[336..340].copy_from_slice(&4242_i32.to_ne_bytes());
            b[s..s + 4].copy_from_slice(&(sec as u32).to_ne_bytes());
            b[u..u + 4].copy_from_slice(&123_456_i32.to_ne_bytes());
        }
        UtmpLayout::Native64 => {
            b[336..344].copy_from_slice(&4242_i64.to_ne_bytes());
            b[s..s + 8].copy_from_slice(&sec.to_ne_bytes());
            b[u..u + 8].copy_from_slice(&123_456_i64.to_ne_bytes());
        }
    }
    b[a..a + 16].copy_from_slice(&addr);
    b
}

fn sample(layout: UtmpLayout) -> Vec<u8> {
    let v6: [u8; 16] = "2001:db8::7".parse::<Ipv6Addr>().unwrap().octets();
    [
        utmp(layout, 2, 0, "~", b"reboot", "6.18.0", T0, [0; 16]),
        utmp(
            layout,
            USER_PROCESS,
            1200,
            "pts/0",
            b"alice",
            "203.0.113.9",
            T0 + 5,
            v4([203, 0, 113, 9]),
        ),
        utmp(
            layout,
            DEAD_PROCESS,
            1200,
            "pts/0",
            b"",
            "",
            T0 + 60,
            [0; 16],
        ),
        utmp(
            layout,
            6,
            1300,
            "ssh:notty",
            b"admin",
            "2001:db8::7",
            T0 + 70,
            v6,
        ),
    ]
    .concat()
}

fn v4(a: [u8; 4]) -> [u8; 16] {
    let mut r = [0u8; 16];
    r[..4].copy_from_slice(&a);
    r
}

mod authlog;
mod follow;
mod journal;
mod sshd;
mod utmp;
