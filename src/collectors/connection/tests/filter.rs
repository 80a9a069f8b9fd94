//! The filter, run by a small classic-BPF interpreter.

use super::*;

fn run_filter(prog: &[libc::sock_filter], pkt: &[u8], ethertype: u16) -> u32 {
    use libc::*;
    let load = |off: usize, size: usize| -> Option<u32> {
        let b = pkt.get(off..off.checked_add(size)?)?;
        Some(b.iter().fold(0u32, |acc, &v| acc << 8 | u32::from(v)))
    };
    let (mut a, mut x, mut pc) = (0u32, 0u32, 0usize);
    for _ in 0..prog.len() {
        let i = prog[pc];
        pc += 1;
        let (k, code) = (i.k, u32::from(i.code));
        let loaded = |v: Option<u32>| v.unwrap_or(u32::MAX);
        match code {
            c if c == BPF_LD | BPF_H | BPF_ABS => {
                if k == (SKF_AD_OFF + SKF_AD_PROTOCOL) as u32 {
                    a = u32::from(ethertype);
                } else {
                    match load(k as usize, 2) {
                        Some(v) => a = v,
                        None => return 0,
                    }
                }
            }
            c if c == BPF_LD | BPF_B | BPF_ABS => match load(k as usize, 1) {
                Some(v) => a = v,
                None => return 0,
            },
            c if c == BPF_LD | BPF_B | BPF_IND => match load((x + k) as usize, 1) {
                Some(v) => a = v,
                None => return 0,
            },
            c if c == BPF_LDX | BPF_B | BPF_MSH => {
                let v = loaded(load(k as usize, 1));
                if v == u32::MAX {
                    return 0;
                }
                x = (v & 0xf) * 4;
            }
            c if c == BPF_JMP | BPF_JA => pc += k as usize,
            c if c == BPF_JMP | BPF_JEQ | BPF_K => {
                pc += usize::from(if a == k { i.jt } else { i.jf })
            }
            c if c == BPF_JMP | BPF_JSET | BPF_K => {
                pc += usize::from(if a & k != 0 { i.jt } else { i.jf })
            }
            c if c == BPF_ALU | BPF_AND | BPF_K => a &= k,
            c if c == BPF_RET | BPF_K => return k,
            other => panic!("opcode {other:#x} at {}", pc - 1),
        }
    }
    panic!("the program ran off its end");
}

#[test]
fn filter_accepts_only_connection_requests_and_their_answers() {
    let prog = syn_filter();
    assert!(prog.len() <= libc::BPF_MAXINSNS as usize);
    let syn = tcp(40000, 443, 1, TCP_SYN);
    let synack = tcp(443, 40000, 1, TCP_SYN | TCP_ACK);
    let ip4 = |opts, p: &[u8]| v4([10, 0, 0, 1], [10, 0, 0, 2], opts, p);
    let cases: Vec<(Vec<u8>, u16, bool)> = vec![
        (ip4(0, &syn), 0x0800, true),
        (ip4(4, &syn), 0x0800, true),
        (ip4(0, &synack), 0x0800, true),
        (ip4(0, &tcp(443, 40000, 1, TCP_ACK | 0x01)), 0x0800, false),
        (ip4(0, &tcp(1, 2, 0, TCP_ACK)), 0x0800, false),
        (ip4(0, &syn), 0x0806, false),
        (ip4(0, &syn)[..30].to_vec(), 0x0800, false),
        (
            {
                let mut p = ip4(0, &syn);
                p[9] = 17;
                p
            },
            0x0800,
            false,
        ),
        (
            {
                let mut p = ip4(0, &syn);
                p[7] = 9;
                p
            },
            0x0800,
            false,
        ),
        (v6(A6, B6, IPPROTO_TCP, &syn), 0x86dd, true),
        (v6(A6, B6, IPPROTO_TCP, &synack), 0x86dd, true),
        (v6(A6, B6, 17, &syn), 0x86dd, false),
        (v6(A6, B6, 58, &syn), 0x86dd, false),
        // Extension headers go to user space.
        (v6(A6, B6, 0, &ext(IPPROTO_TCP, 0, &syn)), 0x86dd, true),
        (
            v6(A6, B6, 44, &fragment(IPPROTO_TCP, 0, &syn)),
            0x86dd,
            true,
        ),
    ];
    for (i, (pkt, ethertype, accept)) in cases.iter().enumerate() {
        let got = run_filter(&prog, pkt, *ethertype);
        assert_eq!(got == SNAP_LEN, *accept, "case {i}");
        assert!(got == 0 || got == SNAP_LEN, "case {i}");
    }
}
