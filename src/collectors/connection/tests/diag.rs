//! Sock_diag messages.

use super::*;

fn diag_reply(
    seq: u32,
    family: u8,
    state: u8,
    local: SocketAddr,
    remote: SocketAddr,
    uid: u32,
    inode: u32,
) -> Vec<u8> {
    let mut m = vec![0u8; NLMSG_HDRLEN + DIAG_MSG_LEN];
    let len = m.len() as u32;
    m[0..4].copy_from_slice(&len.to_ne_bytes());
    m[4..6].copy_from_slice(&SOCK_DIAG_BY_FAMILY.to_ne_bytes());
    m[8..12].copy_from_slice(&seq.to_ne_bytes());
    let b = &mut m[NLMSG_HDRLEN..];
    b[0] = family;
    b[1] = state;
    b[4..6].copy_from_slice(&local.port().to_be_bytes());
    b[6..8].copy_from_slice(&remote.port().to_be_bytes());
    let put = |slot: &mut [u8], ip: IpAddr| match ip {
        IpAddr::V4(a) => slot[..4].copy_from_slice(&a.octets()),
        IpAddr::V6(a) => slot.copy_from_slice(&a.octets()),
    };
    put(&mut b[8..24], local.ip());
    put(&mut b[24..40], remote.ip());
    b[64..68].copy_from_slice(&uid.to_ne_bytes());
    b[68..72].copy_from_slice(&inode.to_ne_bytes());
    m
}

#[test]
fn diag_request_and_reply_layout() {
    let req = encode_diag_request(7, sa("10.0.0.1:40000"), sa("10.0.0.2:443"), None);
    assert_eq!(u32::from_ne_bytes(req[0..4].try_into().unwrap()), 72);
    assert_eq!(
        u16::from_ne_bytes(req[4..6].try_into().unwrap()),
        SOCK_DIAG_BY_FAMILY
    );
    assert_eq!(
        u16::from_ne_bytes(req[6..8].try_into().unwrap()),
        NLM_F_REQUEST
    );
    assert_eq!(u32::from_ne_bytes(req[8..12].try_into().unwrap()), 7);
    let r = &req[NLMSG_HDRLEN..];
    assert_eq!((r[0], r[1]), (libc::AF_INET as u8, IPPROTO_TCP));
    assert_eq!(&r[8..12], &[0x9c, 0x40, 0x01, 0xbb]);
    assert_eq!(&r[12..16], &[10, 0, 0, 1]);
    assert_eq!(&r[28..32], &[10, 0, 0, 2]);
    assert_eq!(&r[48..56], &[0xff; 8]);
    let req6 = encode_diag_request(
        8,
        SocketAddr::new(A6.into(), 1),
        SocketAddr::new(B6.into(), 2),
        None,
    );
    assert_eq!(req6[NLMSG_HDRLEN], libc::AF_INET6 as u8);
    assert_eq!(&req6[NLMSG_HDRLEN + 12..NLMSG_HDRLEN + 28], &A6.octets());

    let mut buf = diag_reply(
        7,
        libc::AF_INET as u8,
        1,
        sa("10.0.0.1:40000"),
        sa("10.0.0.2:443"),
        1000,
        4242,
    );
    let mut err = vec![0u8; 36];
    err[0..4].copy_from_slice(&36u32.to_ne_bytes());
    err[4..6].copy_from_slice(&NLMSG_ERROR.to_ne_bytes());
    err[8..12].copy_from_slice(&8u32.to_ne_bytes());
    err[16..20].copy_from_slice(&(-libc::ENOENT).to_ne_bytes());
    buf.extend_from_slice(&err);
    let msgs = parse_diag_messages(&buf).unwrap();
    assert_eq!(
        msgs,
        vec![
            (
                7,
                DiagMessage::Socket(DiagSocket {
                    state: 1,
                    local: sa("10.0.0.1:40000"),
                    remote: sa("10.0.0.2:443"),
                    uid: 1000,
                    inode: 4242
                })
            ),
            (8, DiagMessage::Error(-libc::ENOENT)),
        ]
    );
    // Bad lengths and families are errors, not panics.
    let mut bad = buf.clone();
    bad[0..4].copy_from_slice(&8u32.to_ne_bytes());
    assert_eq!(parse_diag_messages(&bad), Err(DiagError::BadLength(8)));
    bad[0..4].copy_from_slice(&9999u32.to_ne_bytes());
    assert_eq!(parse_diag_messages(&bad), Err(DiagError::BadLength(9999)));
    let mut fam = buf.clone();
    fam[NLMSG_HDRLEN] = 99;
    assert_eq!(parse_diag_messages(&fam), Err(DiagError::BadFamily(99)));
    for n in 0..buf.len() {
        let _ = parse_diag_messages(&buf[..n]);
    }
}
