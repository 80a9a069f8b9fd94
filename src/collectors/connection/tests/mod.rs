use super::*;
use crate::collectors::Context;
use crate::config::Config;
use crate::event::{CollectorHealth, ConnectionCreate, Direction, Event, Payload};
use crate::host::HostRoot;
use crate::host::netns::{local_addresses, parse_fib_trie_local, parse_if_inet6};
use crate::host::sockets::{SocketEntry, TCP_ESTABLISHED, TCP_LISTEN};
use crate::kernel::netlink::{NLM_F_REQUEST, NLMSG_ERROR, NLMSG_HDRLEN};
use crate::kernel::socket::socket;
use crate::metrics::DropReason;
use crate::metrics::Metrics;
use crate::test_support::TestNetns;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::net::{TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::os::unix::fs::MetadataExt;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

// ----- packet builders and addresses, shared by the parts -----

fn sa(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

const A6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1);

const B6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 2);

fn tcp(sport: u16, dport: u16, seq: u32, flags: u8) -> Vec<u8> {
    let mut t = vec![0u8; 20];
    t[0..2].copy_from_slice(&sport.to_be_bytes());
    t[2..4].copy_from_slice(&dport.to_be_bytes());
    t[4..8].copy_from_slice(&seq.to_be_bytes());
    t[12] = 5 << 4;
    t[13] = flags;
    t
}

fn v4(src: [u8; 4], dst: [u8; 4], option_words: usize, payload: &[u8]) -> Vec<u8> {
    let hl = 20 + option_words * 4;
    let mut p = vec![0u8; hl];
    p[0] = 0x40 | (hl / 4) as u8;
    p[2..4].copy_from_slice(&((hl + payload.len()) as u16).to_be_bytes());
    p[8] = 64;
    p[9] = IPPROTO_TCP;
    p[12..16].copy_from_slice(&src);
    p[16..20].copy_from_slice(&dst);
    p.extend_from_slice(payload);
    p
}

fn v6(src: Ipv6Addr, dst: Ipv6Addr, next: u8, payload: &[u8]) -> Vec<u8> {
    let mut p = vec![0u8; 40];
    p[0] = 0x60;
    p[4..6].copy_from_slice(&(payload.len() as u16).to_be_bytes());
    p[6] = next;
    p[7] = 64;
    p[8..24].copy_from_slice(&src.octets());
    p[24..40].copy_from_slice(&dst.octets());
    p.extend_from_slice(payload);
    p
}

/// An IPv6 extension header of `units` × 8 bytes followed by `rest`.
fn ext(next: u8, units: u8, rest: &[u8]) -> Vec<u8> {
    let mut h = vec![0u8; (usize::from(units) + 1) * 8];
    h[0] = next;
    h[1] = units;
    h.extend_from_slice(rest);
    h
}

fn fragment(next: u8, offset: u16, rest: &[u8]) -> Vec<u8> {
    let mut h = vec![next, 0, 0, 0, 0, 0, 0, 1];
    h[2..4].copy_from_slice(&(offset << 3 | 1).to_be_bytes());
    h.extend_from_slice(rest);
    h
}

mod diag;
mod filter;
mod interpretation;
mod kernel;
mod packet;
