//! The systemd journal: real journal files written by systemd's own `systemd-journal-remote`
//! from the export format (Debian: `apt-get install systemd-journal-remote`; scripts/test.sh
//! installs it), checked against `journalctl --file`.

use super::*;
use crate::event::Login;
use std::path::Path;
use std::process::{Command, Stdio};

const REMOTE: &str = "/lib/systemd/systemd-journal-remote";
const MACHINE: &str = "0123456789abcdef0123456789abcdef";

/// One journal entry in the export format: (realtime µs, identifier, pid, message).
type E<'a> = (u64, &'a str, u32, &'a str);

/// Appends `entries` to the journal file at `path` (created when missing) with
/// systemd-journal-remote; `compact` picks the layout.
fn write_journal(path: &Path, entries: &[E<'_>], compact: bool) {
    write_journal_with(path, entries, compact, true);
}

/// As [`write_journal`]; `compress: false` stores every field plain.
fn write_journal_with(path: &Path, entries: &[E<'_>], compact: bool, compress: bool) {
    let mut export = String::new();
    for (i, (t, ident, pid, msg)) in entries.iter().enumerate() {
        export.push_str(&format!(
            "__REALTIME_TIMESTAMP={t}\n__MONOTONIC_TIMESTAMP={}\n_BOOT_ID={MACHINE}\n_HOSTNAME=edge\nSYSLOG_IDENTIFIER={ident}\n_COMM={ident}\n_PID={pid}\nMESSAGE={msg}\n\n",
            1000 + i
        ));
    }
    write_export(path, &export, compact, compress);
}

/// Appends entries in the export format (`FIELD=value` lines, a blank line after each entry).
fn write_export(path: &Path, export: &str, compact: bool, compress: bool) {
    assert!(
        Path::new(REMOTE).exists(),
        "{REMOTE} is missing: apt-get install systemd-journal-remote"
    );
    let mut child = Command::new(REMOTE)
        .arg(if compress {
            "--compress=yes"
        } else {
            "--compress=no"
        })
        .arg("-o")
        .arg(path)
        .arg("-")
        .env("SYSTEMD_JOURNAL_COMPACT", if compact { "1" } else { "0" })
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("running systemd-journal-remote");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(export.as_bytes())
        .unwrap();
    assert!(child.wait().unwrap().success());
}

/// journalctl's view of a file: the MESSAGE of every entry, in order.
fn journalctl_messages(path: &Path) -> Vec<String> {
    let out = Command::new("journalctl")
        .arg("--file")
        .arg(path)
        .args(["-o", "cat", "--no-pager"])
        .output()
        .expect("journalctl");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_string)
        .collect()
}

const T: u64 = 1_795_000_000_000_000;

fn sample() -> Vec<E<'static>> {
    vec![
        (
            T,
            "sshd",
            100,
            "Accepted publickey for alice from 192.0.2.1 port 50000 ssh2: ED25519 SHA256:k",
        ),
        (
            T + 1,
            "CRON",
            7,
            "pam_unix(cron:session): session opened for user root",
        ),
        (
            T + 2,
            "sshd",
            101,
            "pam_unix(sshd:auth): authentication failure; logname= uid=0 euid=0 tty=ssh ruser= rhost=198.51.100.7  user=root",
        ),
        (
            T + 3,
            "sshd",
            101,
            "Failed password for root from 198.51.100.7 port 41234 ssh2",
        ),
        (
            T + 4,
            "sudo",
            102,
            "   alice : TTY=pts/0 ; PWD=/home/alice ; USER=root ; COMMAND=/usr/bin/id",
        ),
    ]
}

#[test]
fn reads_real_journal_files_in_both_layouts() {
    for compact in [true, false] {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.journal");
        write_journal(&path, &sample(), compact);
        let jf = JournalFile::open(std::fs::File::open(&path).unwrap()).unwrap();
        assert_eq!(jf.header.compact(), compact);
        assert_eq!(jf.header.n_entries, 5);
        let mut walk = Walk::default();
        let got = jf.read_entries(&mut walk, 100, 0).unwrap();
        let messages: Vec<_> = got
            .entries
            .iter()
            .map(|e| e.message.clone().unwrap())
            .collect();
        assert_eq!(messages, journalctl_messages(&path), "compact={compact}");
        let e = &got.entries[3];
        assert_eq!(
            (
                e.identifier.as_deref(),
                e.comm.as_deref(),
                e.pid,
                e.hostname.as_deref()
            ),
            (Some("sshd"), Some("sshd"), Some(101), Some("edge"))
        );
        assert_eq!((e.seqnum, e.realtime), (4, T + 3));
        let seq: Vec<_> = got.entries.iter().map(|e| e.seqnum).collect();
        assert_eq!(seq, vec![1, 2, 3, 4, 5]);
        // Nothing new: nothing read; appended entries: only those.
        assert!(
            jf.read_entries(&mut walk, 100, 0)
                .unwrap()
                .entries
                .is_empty()
        );
        write_journal(
            &path,
            &[(T + 9, "su", 103, "(to root) alice on pts/0")],
            compact,
        );
        let mut jf = jf;
        jf.refresh().unwrap();
        let got = jf.read_entries(&mut walk, 100, 0).unwrap();
        assert_eq!(got.entries.len(), 1);
        assert_eq!(
            got.entries[0].message.as_deref(),
            Some("(to root) alice on pts/0")
        );
        // Skipping what was read before a restart.
        let mut walk = Walk::default();
        let got = jf.read_entries(&mut walk, 100, 5).unwrap();
        assert_eq!(got.entries.len(), 1);
        assert_eq!(walk.taken, 6);
    }
}

// ----- compressed fields -----

fn le64_at(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().unwrap())
}

/// Every object of a journal file in file order, walked by size from the end of the header:
/// (offset, type, flags, size).
fn objects(b: &[u8]) -> Vec<(usize, u8, u8, usize)> {
    let header_size = le64_at(b, 88) as usize;
    let end = header_size + le64_at(b, 96) as usize;
    let mut out = Vec::new();
    let mut at = header_size;
    while at + 16 <= end {
        let size = le64_at(b, at + 8) as usize;
        if size == 0 {
            break;
        }
        out.push((at, b[at], b[at + 1], size));
        at += size.next_multiple_of(8);
    }
    out
}

/// Offset of a DATA object's payload in the file's layout.
fn payload_offset(b: &[u8]) -> usize {
    if u32::from_le_bytes(b[12..16].try_into().unwrap()) & 16 != 0 {
        72
    } else {
        64
    }
}

/// How many DATA objects of a file have the given compression flag.
fn data_objects_flagged(path: &Path, flag: u8) -> usize {
    let b = std::fs::read(path).unwrap();
    objects(&b)
        .iter()
        .filter(|o| o.1 == 1 && o.2 == flag)
        .count()
}

/// Runs an independent encoder (the xz, lz4 or zstd tool, i.e. liblzma, liblz4, libzstd) on
/// `input`, given as a file so the tool knows its size (as journald's one-shot calls do).
fn encode(tool: &str, args: &[&str], input: &[u8]) -> Vec<u8> {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("in");
    std::fs::write(&path, input).unwrap();
    let out = Command::new(tool)
        .args(args)
        .arg("-c")
        .arg(&path)
        .output()
        .unwrap_or_else(|e| panic!("running {tool} (apt-get install xz-utils lz4 zstd): {e}"));
    assert!(out.status.success(), "{tool}: {:?}", out);
    out.stdout
}

/// XZ as journald writes it (`compress_blob_xz`: LZMA2, 1 MiB dictionary, fast mode, hc3, nice
/// 128, depth 4, no check).
fn xz_journald(input: &[u8]) -> Vec<u8> {
    encode(
        "xz",
        &[
            "--format=xz",
            "--check=none",
            "--lzma2=dict=1MiB,lc=3,lp=0,pb=2,mode=fast,nice=128,mf=hc3,depth=4",
        ],
        input,
    )
}

/// LZ4 as journald writes it (`compress_blob_lz4`: the uncompressed size, 64-bit
/// little-endian, then one LZ4 block). The block comes from the lz4 tool: its frame (4 MiB
/// blocks, no checksums) holds the input in one compressed block, taken out here.
fn lz4_journald(input: &[u8]) -> Vec<u8> {
    assert!(input.len() <= 4 << 20);
    let frame = encode("lz4", &["-q", "-B7", "--no-frame-crc"], input);
    assert_eq!(frame[..4], [0x04, 0x22, 0x4d, 0x18], "an LZ4 frame");
    let flg = frame[4];
    assert_eq!(flg & 0x10, 0, "no block checksums");
    // FLG, BD, the content size and dictionary id when flagged, the header checksum.
    let at = 6 + if flg & 0x08 != 0 { 8 } else { 0 } + if flg & 0x01 != 0 { 4 } else { 0 } + 1;
    let size = u32::from_le_bytes(frame[at..at + 4].try_into().unwrap()) as usize;
    assert_eq!(
        size & 0x8000_0000,
        0,
        "a compressed block, not a stored one"
    );
    let block = &frame[at + 4..at + 4 + size];
    assert_eq!(
        frame[at + 4 + size..at + 8 + size],
        [0; 4],
        "one block, then the end mark"
    );
    [&(input.len() as u64).to_le_bytes()[..], block].concat()
}

/// Rewrites the plain DATA object holding `payload` as journald would have stored it
/// compressed: `encoded` as its payload, object flag `flag`, and the header's matching
/// incompatible flag. The object shrinks in place (`journalctl --verify` would flag the gap
/// left before the next object; reading does not look there).
fn compress_in_place(path: &Path, payload: &[u8], flag: u8, encoded: &[u8]) {
    let mut b = std::fs::read(path).unwrap();
    let pa = payload_offset(&b);
    let (at, ..) = objects(&b)
        .into_iter()
        .find(|&(at, kind, flags, size)| {
            kind == 1
                && flags == 0
                && size == pa + payload.len()
                && &b[at + pa..at + size] == payload
        })
        .expect("the plain DATA object");
    assert!(encoded.len() < payload.len());
    b[at + 1] = flag;
    b[at + 8..at + 16].copy_from_slice(&((pa + encoded.len()) as u64).to_le_bytes());
    b[at + pa..at + pa + encoded.len()].copy_from_slice(encoded);
    b[at + pa + encoded.len()..at + pa + payload.len()].fill(0);
    let header_flag: u32 = match flag {
        OBJECT_COMPRESSED_XZ => 1,
        OBJECT_COMPRESSED_LZ4 => 2,
        _ => 8,
    };
    let incompatible = u32::from_le_bytes(b[12..16].try_into().unwrap()) | header_flag;
    b[12..16].copy_from_slice(&incompatible.to_le_bytes());
    std::fs::write(path, &b).unwrap();
}

fn journalctl_header(path: &Path) -> String {
    let out = Command::new("journalctl")
        .arg("--file")
        .arg(path)
        .args(["--header", "--no-pager"])
        .output()
        .expect("journalctl");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn long_compressed_messages_are_read() {
    let long = format!("Invalid user {} from 192.0.2.9 port 1", "x".repeat(4000));
    for compact in [true, false] {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.journal");
        write_journal(
            &path,
            &[
                (T, "sshd", 5, &long),
                (T + 1, "sshd", 6, "Invalid user a from 192.0.2.9 port 1"),
            ],
            compact,
        );
        // journald's default (this systemd-journal-remote's too): ZSTD, fields over 512 bytes.
        assert!(
            journalctl_header(&path).contains("COMPRESSED-ZSTD"),
            "{}",
            journalctl_header(&path)
        );
        assert_eq!(data_objects_flagged(&path, OBJECT_COMPRESSED_ZSTD), 1);
        let jf = JournalFile::open(std::fs::File::open(&path).unwrap()).unwrap();
        let got = jf.read_entries(&mut Walk::default(), 100, 0).unwrap();
        let messages: Vec<_> = got
            .entries
            .iter()
            .map(|e| e.message.clone().unwrap())
            .collect();
        assert_eq!(messages, journalctl_messages(&path));
        assert_eq!(messages[0], long);
        assert_eq!((got.compressed_failed, got.oversized), (0, 0));
        assert_eq!(got.entries[0].identifier.as_deref(), Some("sshd"));
    }

    // Recognised: a sudo command and an sshd user name too long to be stored plain.
    let (root, dir) = journal_root();
    let state = tempfile::tempdir().unwrap();
    let command = format!("/usr/bin/echo {}", "a".repeat(3000));
    let user = "u".repeat(600);
    write_journal(
        &dir.join("system.journal"),
        &[
            (
                T,
                "sudo",
                102,
                &format!("   alice : TTY=pts/0 ; PWD=/home/alice ; USER=root ; COMMAND={command}"),
            ),
            (
                T + 1,
                "sshd",
                103,
                &format!("Failed password for invalid user {user} from 192.0.2.8 port 7 ssh2"),
            ),
        ],
        true,
    );
    assert_eq!(
        data_objects_flagged(&dir.join("system.journal"), OBJECT_COMPRESSED_ZSTD),
        2
    );
    let mut f = LoginFollower::open(HostRoot::new(root.path()), state.path(), StartAt::Beginning);
    let b = f.poll();
    assert_eq!(b.journal_skipped, 0);
    let mut got = b.logins;
    got.extend(f.flush_held());
    assert_eq!(
        summary(&got),
        vec![
            ("sudo".into(), LoginResult::Success, Some("alice".into())),
            (
                "sshd:password".into(),
                LoginResult::Fail,
                Some(user.clone())
            ),
        ]
    );
    assert_eq!(got[0].extra_details["Command"], command.as_str());
}

/// LZ4 and XZ: this systemd writes only ZSTD, so a field written plain is rewritten the way
/// journald stores it with the other two, from data made by the lz4 and xz tools; systemd's own
/// reader (journalctl) reads it back first, which checks the framing.
#[test]
fn lz4_and_xz_compressed_fields_are_read() {
    let long = format!(
        "Failed password for {} from 192.0.2.9 port 1 ssh2",
        "y".repeat(5000)
    );
    let payload = format!("MESSAGE={long}");
    for (flag, name) in [
        (OBJECT_COMPRESSED_LZ4, "COMPRESSED-LZ4"),
        (OBJECT_COMPRESSED_XZ, "COMPRESSED-XZ"),
    ] {
        for compact in [true, false] {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("x.journal");
            write_journal_with(
                &path,
                &[
                    (T, "sshd", 5, &long),
                    (T + 1, "sshd", 6, "Invalid user a from 192.0.2.9 port 1"),
                ],
                compact,
                false,
            );
            let encoded = if flag == OBJECT_COMPRESSED_LZ4 {
                lz4_journald(payload.as_bytes())
            } else {
                xz_journald(payload.as_bytes())
            };
            compress_in_place(&path, payload.as_bytes(), flag, &encoded);
            assert!(journalctl_header(&path).contains(name));
            assert_eq!(data_objects_flagged(&path, flag), 1);
            let expected = vec![long.clone(), "Invalid user a from 192.0.2.9 port 1".into()];
            assert_eq!(
                journalctl_messages(&path),
                expected,
                "{name} compact={compact}"
            );
            let jf = JournalFile::open(std::fs::File::open(&path).unwrap()).unwrap();
            let got = jf.read_entries(&mut Walk::default(), 100, 0).unwrap();
            let messages: Vec<_> = got
                .entries
                .iter()
                .map(|e| e.message.clone().unwrap_or_default())
                .collect();
            assert_eq!(messages, expected, "{name} compact={compact}");
            assert_eq!((got.compressed_failed, got.oversized), (0, 0));
        }
    }
}

/// A corrupt compressed field and fields over the limit are counted, and the rest of their
/// entry and of the file is still read; an unwanted long field is neither read nor counted.
#[test]
fn corrupt_and_oversized_compressed_fields_are_counted() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("x.journal");
    let corrupt = format!("Invalid user {} from 192.0.2.9 port 1", "c".repeat(2000));
    let over = format!("Invalid user {} from 192.0.2.9 port 1", "o".repeat(20_000));
    // Past the ZSTD window accepted: refused before decoding, its name unknown.
    let huge = format!("Invalid user {} from 192.0.2.9 port 1", "h".repeat(200_000));
    write_journal(
        &path,
        &[
            (T, "sshd", 5, &corrupt),
            (T + 1, "sshd", 6, &over),
            (T + 2, "sshd", 7, &huge),
            (T + 3, "sshd", 8, "Invalid user a from 192.0.2.9 port 1"),
        ],
        true,
    );
    write_export(
        &path,
        &format!(
            "__REALTIME_TIMESTAMP={}\n__MONOTONIC_TIMESTAMP=2000\n_BOOT_ID={MACHINE}\nSYSLOG_IDENTIFIER=sshd\nBIG={}\nMESSAGE=after a long field\n\n",
            T + 4,
            "b".repeat(30_000)
        ),
        true,
        true,
    );
    assert_eq!(data_objects_flagged(&path, OBJECT_COMPRESSED_ZSTD), 4);
    // The first compressed object's frame loses its magic number.
    let mut b = std::fs::read(&path).unwrap();
    let pa = payload_offset(&b);
    let (at, ..) = objects(&b)
        .into_iter()
        .find(|o| o.1 == 1 && o.2 == OBJECT_COMPRESSED_ZSTD)
        .unwrap();
    assert_eq!(
        b[at + pa..at + pa + 4],
        [0x28, 0xb5, 0x2f, 0xfd],
        "a ZSTD frame"
    );
    b[at + pa..at + pa + 4].copy_from_slice(b"junk");
    std::fs::write(&path, &b).unwrap();

    let jf = JournalFile::open(std::fs::File::open(&path).unwrap()).unwrap();
    let got = jf.read_entries(&mut Walk::default(), 100, 0).unwrap();
    assert_eq!(got.compressed_failed, 1);
    assert_eq!(got.oversized, 2, "the 20,000- and 200,000-byte messages");
    let seen: Vec<_> = got
        .entries
        .iter()
        .map(|e| {
            (
                e.seqnum,
                e.pid,
                e.identifier.as_deref(),
                e.message.as_deref(),
            )
        })
        .collect();
    assert_eq!(
        seen,
        vec![
            (1, Some(5), Some("sshd"), None),
            (2, Some(6), Some("sshd"), None),
            (3, Some(7), Some("sshd"), None),
            (
                4,
                Some(8),
                Some("sshd"),
                Some("Invalid user a from 192.0.2.9 port 1")
            ),
            (5, None, Some("sshd"), Some("after a long field")),
        ]
    );
}

/// [`decompress`] on data from the reference encoders: whole fields, the limit (a
/// decompression bomb stops there), refused windows and dictionaries, corrupt data.
#[test]
fn decompress_reads_independent_encoders_and_stops_at_the_limit() {
    use Decompressed::*;
    let field = format!("MESSAGE={}", "sudo line ".repeat(300)).into_bytes();
    let zstd = encode("zstd", &["-q"], &field);
    let lz4 = lz4_journald(&field);
    let xz_journald_made = xz_journald(&field);
    let xz_default = encode("xz", &["-q"], &field); // CRC64, 8 MiB dictionary
    for (c, data) in [
        (Compression::Zstd, &zstd),
        (Compression::Lz4, &lz4),
        (Compression::Xz, &xz_journald_made),
        (Compression::Xz, &xz_default),
    ] {
        assert!(data.len() < field.len() / 4, "{c:?} compressed");
        assert_eq!(
            decompress(c, data, MAX_PAYLOAD_BYTES),
            Whole(field.clone()),
            "{c:?}"
        );
        // Exactly at the limit: whole; one byte under: too long.
        assert_eq!(
            decompress(c, data, field.len()),
            Whole(field.clone()),
            "{c:?}"
        );
        match decompress(c, data, field.len() - 1) {
            TooLong(head) => assert!(field.starts_with(&head[..8]), "{c:?}"),
            other => panic!("{c:?}: {other:?}"),
        }
        // Cut short, or bytes changed: corrupt, never more than the limit, never a panic.
        assert!(
            matches!(
                decompress(c, &data[..data.len() / 2], MAX_PAYLOAD_BYTES),
                Corrupt(_)
            ),
            "{c:?}"
        );
        let mut seed = 0x9e37_79b9_7f4a_7c15_u64;
        for _ in 0..300 {
            let mut d = data.clone();
            for _ in 0..3 {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                let at = (seed as usize) % d.len();
                d[at] = (seed >> 32) as u8;
            }
            let limit = 1000;
            match decode_payload(c, &d, limit) {
                Whole(v) | TooLong(v) | Corrupt(v) => assert!(v.len() <= limit, "{c:?}"),
            }
        }
    }
    assert!(matches!(
        decompress(Compression::Zstd, b"junk and more junk", MAX_PAYLOAD_BYTES),
        Corrupt(_)
    ));
    assert!(matches!(
        decompress(Compression::Xz, b"junk and more junk", MAX_PAYLOAD_BYTES),
        Corrupt(_)
    ));
    assert!(matches!(
        decompress(Compression::Lz4, b"\x05\0\0", MAX_PAYLOAD_BYTES),
        Corrupt(_)
    ));

    // Bombs: 1 MiB of one byte in a few hundred bytes (ZSTD 54, XZ ~200, LZ4 ~4 KiB).
    let bomb: Vec<u8> = [&b"MESSAGE="[..], &vec![b'x'; 1 << 20]].concat();
    let head = bomb[..MAX_PAYLOAD_BYTES].to_vec();
    // The zstd tool sizes the window to the input (1 MiB): refused before decoding.
    let zstd = encode("zstd", &["-q"], &bomb);
    assert_eq!(
        decompress(Compression::Zstd, &zstd, MAX_PAYLOAD_BYTES),
        TooLong(Vec::new())
    );
    // A 128 KiB window is accepted: decoding stops at the limit.
    let zstd = encode("zstd", &["-q", "--zstd=wlog=17"], &bomb);
    assert_eq!(
        decompress(Compression::Zstd, &zstd, MAX_PAYLOAD_BYTES),
        TooLong(head.clone())
    );
    let xz = encode("xz", &["-q"], &bomb);
    assert!(xz.len() < 1024);
    assert_eq!(
        decompress(Compression::Xz, &xz, MAX_PAYLOAD_BYTES),
        TooLong(head.clone())
    );
    // A 64 MiB dictionary is refused before it is allocated.
    let xz = encode("xz", &["-q", "--lzma2=dict=64MiB"], &bomb);
    assert_eq!(
        decompress(Compression::Xz, &xz, MAX_PAYLOAD_BYTES),
        TooLong(Vec::new())
    );
    let lz4 = lz4_journald(&bomb);
    match decompress(Compression::Lz4, &lz4, MAX_PAYLOAD_BYTES) {
        // The first sequence (9 literals, then a 1 MiB match) is all that fit; the name is in it.
        TooLong(h) => {
            assert_eq!(h.len(), MAX_PAYLOAD_BYTES);
            assert!(h.starts_with(b"MESSAGE=x"));
        }
        other => panic!("{other:?}"),
    }
    // An LZ4 size that lies (2^60 bytes): nothing of that size is allocated.
    let mut lying = lz4_journald(&field);
    lying[..8].copy_from_slice(&(1u64 << 60).to_le_bytes());
    assert!(matches!(
        decompress(Compression::Lz4, &lying, MAX_PAYLOAD_BYTES),
        Corrupt(_)
    ));

    // More than one compression flag: systemd refuses it too.
    assert_eq!(Compression::from_flags(0), Ok(None));
    assert_eq!(
        Compression::from_flags(OBJECT_COMPRESSED_ZSTD),
        Ok(Some(Compression::Zstd))
    );
    assert!(Compression::from_flags(OBJECT_COMPRESSED_XZ | OBJECT_COMPRESSED_LZ4).is_err());
}

fn journal_root() -> (tempfile::TempDir, PathBuf) {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("var/log/journal").join(MACHINE);
    std::fs::create_dir_all(&dir).unwrap();
    (root, dir)
}

fn poll_logins(f: &mut LoginFollower) -> Vec<Login> {
    let mut all = Vec::new();
    loop {
        let b = f.poll();
        all.extend(b.logins);
        if !b.more {
            break;
        }
    }
    all
}

fn summary(v: &[Login]) -> Vec<(String, LoginResult, Option<String>)> {
    v.iter()
        .map(|l| (l.operation.clone(), l.result, l.user_name.clone()))
        .collect()
}

#[test]
fn follows_the_journal_when_there_is_no_auth_log() {
    let (root, dir) = journal_root();
    let state = tempfile::tempdir().unwrap();
    let host = HostRoot::new(root.path());
    let active = dir.join("system.journal");
    write_journal(&active, &sample(), true);
    // A user journal is not read.
    write_journal(
        &dir.join("user-1000.journal"),
        &[(
            T,
            "sshd",
            1,
            "Failed password for bob from 192.0.2.3 port 1 ssh2",
        )],
        true,
    );

    let mut f = LoginFollower::open(host.clone(), state.path(), StartAt::Beginning);
    let got = poll_logins(&mut f);
    assert_eq!(
        summary(&got),
        vec![
            (
                "sshd:publickey".into(),
                LoginResult::Success,
                Some("alice".into())
            ),
            // One attempt: PAM's line and sshd's line.
            (
                "sshd:password".into(),
                LoginResult::Fail,
                Some("root".into())
            ),
            ("sudo".into(), LoginResult::Success, Some("alice".into())),
        ]
    );
    assert_eq!(got[1].extra_details["Source"], JOURNAL_SOURCE);
    assert_eq!(got[1].remote_address, Some("198.51.100.7".parse().unwrap()));
    assert_eq!(got[1].process_id, 101);
    assert_eq!(got[2].extra_details["Command"], "/usr/bin/id");
    assert!(f.present().contains(&JOURNAL_SOURCE));
    f.save().unwrap();
    drop(f);

    // A restart neither repeats nor skips: one new entry, read once.
    write_journal(
        &active,
        &[(T + 10, "sshd", 200, "Invalid user x from 192.0.2.4 port 2")],
        true,
    );
    let mut f = LoginFollower::open(host.clone(), state.path(), StartAt::Beginning);
    assert!(
        poll_logins(&mut f).is_empty(),
        "held until its connection ends"
    );
    let held = f.flush_held();
    assert_eq!(
        summary(&held),
        vec![(
            "sshd:invalid-user".into(),
            LoginResult::Fail,
            Some("x".into())
        )]
    );
    f.save().unwrap();

    // Rotation: journald renames the active file and starts a new one.
    let archived = dir.join(format!(
        "system@{MACHINE}-0000000000000001-0006000000000000.journal"
    ));
    std::fs::rename(&active, &archived).unwrap();
    write_journal(
        &archived,
        &[(
            T + 20,
            "sshd",
            300,
            "Failed password for root from 192.0.2.5 port 3 ssh2",
        )],
        true,
    );
    write_journal(
        &active,
        &[(
            T + 30,
            "sshd",
            301,
            "Failed password for admin from 192.0.2.6 port 4 ssh2",
        )],
        true,
    );
    let got = poll_logins(&mut f);
    assert_eq!(
        summary(&got),
        vec![
            (
                "sshd:password".into(),
                LoginResult::Fail,
                Some("root".into())
            ),
            (
                "sshd:password".into(),
                LoginResult::Fail,
                Some("admin".into())
            ),
        ]
    );
    f.save().unwrap();
    drop(f);
    let mut f = LoginFollower::open(host.clone(), state.path(), StartAt::Beginning);
    assert!(
        poll_logins(&mut f).is_empty(),
        "both files were read before the restart"
    );

    // With an auth.log, the journal is not read (rsyslog copied the same lines there).
    std::fs::create_dir_all(root.path().join("var/log")).unwrap();
    std::fs::write(root.path().join("var/log/auth.log"), "").unwrap();
    write_journal(
        &active,
        &[(
            T + 40,
            "sshd",
            302,
            "Failed password for admin from 192.0.2.6 port 4 ssh2",
        )],
        true,
    );
    let mut f = LoginFollower::open(host, state.path(), StartAt::Beginning);
    assert!(poll_logins(&mut f).is_empty());
}

#[test]
fn first_start_begins_at_the_end_of_the_journal() {
    let (root, dir) = journal_root();
    let state = tempfile::tempdir().unwrap();
    let active = dir.join("system.journal");
    write_journal(&active, &sample(), false);
    let mut f = LoginFollower::open(HostRoot::new(root.path()), state.path(), StartAt::End);
    assert!(poll_logins(&mut f).is_empty());
    write_journal(
        &active,
        &[(
            T + 10,
            "sshd",
            9,
            "Failed password for root from 192.0.2.5 port 3 ssh2",
        )],
        false,
    );
    let got = poll_logins(&mut f);
    assert_eq!(
        summary(&got),
        vec![(
            "sshd:password".into(),
            LoginResult::Fail,
            Some("root".into())
        )]
    );
}

/// A real file with bytes changed all over it (and cut at many lengths): every read ends in
/// entries or an error, never a panic or a hang.
#[test]
fn corrupt_journal_files_never_panic() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("x.journal");
    write_journal(&path, &sample(), true);
    // A ZSTD-compressed field too, for the bytes changed in it.
    let long = format!("Invalid user {} from 192.0.2.9 port 1", "z".repeat(1500));
    write_journal(&path, &[(T + 5, "sshd", 9, &long)], true);
    let good = std::fs::read(&path).unwrap();
    // The part of the file in use (journald preallocates the rest).
    let used = {
        let jf = JournalFile::open(std::fs::File::open(&path).unwrap()).unwrap();
        (jf.header.header_size + jf.header.arena_size) as usize
    };
    let bad = dir.path().join("bad.journal");
    let mut seed = 0x2545_f491_4f6c_dd1d_u64;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let mut errors = 0;
    for round in 0..400 {
        let mut b = good[..used.min(good.len())].to_vec();
        if round % 4 == 0 {
            b.truncate((next() as usize) % b.len());
        } else {
            for _ in 0..1 + round % 8 {
                let at = (next() as usize) % b.len();
                b[at] = next() as u8;
            }
        }
        std::fs::write(&bad, &b).unwrap();
        match JournalFile::open(std::fs::File::open(&bad).unwrap()) {
            Ok(jf) => {
                let mut walk = Walk::default();
                for _ in 0..10 {
                    match jf.read_entries(&mut walk, 3, 0) {
                        Ok(e) if e.entries.is_empty() && !e.more => break,
                        Ok(_) => {}
                        Err(_) => {
                            errors += 1;
                            break;
                        }
                    }
                }
            }
            Err(_) => errors += 1,
        }
    }
    assert!(errors > 50, "corruption was noticed ({errors} of 400)");

    // Through the follower: a corrupt file is counted once, not every poll.
    let (root, jdir) = journal_root();
    let mut b = good.clone();
    b[176..184].copy_from_slice(&u64::MAX.to_le_bytes()); // entry_array_offset
    std::fs::write(jdir.join("system.journal"), &b).unwrap();
    std::fs::write(jdir.join("junk.journal"), b"LPKSHHRH").unwrap();
    let state = tempfile::tempdir().unwrap();
    let mut f = LoginFollower::open(HostRoot::new(root.path()), state.path(), StartAt::Beginning);
    let first = f.poll();
    assert_eq!(first.journal_corrupt, 2);
    assert_eq!(f.poll().journal_corrupt, 0);
}

/// The fuzz target's seeds (fuzz/make_seeds.py builds them to the format document, without
/// hash tables; the `compact-*` ones with MESSAGE compressed) read as the real files do.
#[test]
fn fuzz_seed_journals_read() {
    for name in [
        "regular",
        "compact",
        "compact-xz",
        "compact-lz4",
        "compact-zstd",
    ] {
        let path = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("fuzz/corpus/login_journal")
            .join(name);
        let jf = JournalFile::open(std::fs::File::open(&path).unwrap()).unwrap();
        assert_eq!(jf.header.compact(), name.starts_with("compact"));
        let got = jf.read_entries(&mut Walk::default(), 10, 0).unwrap();
        assert_eq!((got.compressed_failed, got.oversized), (0, 0), "{name}");
        if name.starts_with("compact-") {
            assert!(
                got.entries[0].message.as_ref().unwrap().len() > 600,
                "{name}"
            );
        }
        let seen: Vec<_> = got
            .entries
            .iter()
            .map(|e| {
                (
                    e.seqnum,
                    e.identifier.as_deref(),
                    e.pid,
                    e.message.as_deref().map(|m| &m[..6]),
                )
            })
            .collect();
        assert_eq!(
            seen,
            vec![
                (1, Some("sshd"), Some(1234), Some("Failed")),
                (2, Some("sshd"), Some(1234), Some("Accept"))
            ],
            "{name}"
        );
    }
}
