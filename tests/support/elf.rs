//! A tiny static x86_64 program for tests and benchmarks that need processes of a known
//! lifetime under any name: the exec storm's child, and the detection test's stand-ins for
//! tools that are not installed (a copy of `true` exits within microseconds, often before the
//! process collector reads /proc; this one stays for as long as it is told).

/// A static x86_64 Linux executable that sleeps `child_us` microseconds and exits 0:
/// ELF header, one PT_LOAD program header, 25 bytes of code, a `timespec`.
pub fn sleeper(child_us: u64) -> Vec<u8> {
    const BASE: u64 = 0x40_0000;
    const CODE: u64 = 64 + 56;
    #[rustfmt::skip]
    let code: [u8; 25] = [
        0x48, 0x8d, 0x3d, 18, 0, 0, 0, // lea rdi, [rip + 18]  (the timespec after the code)
        0x31, 0xf6,                     // xor esi, esi
        0xb8, 35, 0, 0, 0,              // mov eax, SYS_nanosleep
        0x0f, 0x05,                     // syscall
        0x31, 0xff,                     // xor edi, edi
        0xb8, 60, 0, 0, 0,              // mov eax, SYS_exit
        0x0f, 0x05,                     // syscall
    ];
    let total = CODE + code.len() as u64 + 16;
    let mut e = Vec::with_capacity(total as usize);
    e.extend_from_slice(&[0x7f, b'E', b'L', b'F', 2, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
    e.extend_from_slice(&2u16.to_le_bytes()); // ET_EXEC
    e.extend_from_slice(&0x3eu16.to_le_bytes()); // x86-64
    e.extend_from_slice(&1u32.to_le_bytes());
    e.extend_from_slice(&(BASE + CODE).to_le_bytes()); // entry
    e.extend_from_slice(&64u64.to_le_bytes()); // phoff
    e.extend_from_slice(&0u64.to_le_bytes()); // shoff
    e.extend_from_slice(&0u32.to_le_bytes()); // flags
    for v in [64u16, 56, 1, 64, 0, 0] {
        e.extend_from_slice(&v.to_le_bytes()); // ehsize, phentsize, phnum, shentsize, shnum, shstrndx
    }
    e.extend_from_slice(&1u32.to_le_bytes()); // PT_LOAD
    e.extend_from_slice(&5u32.to_le_bytes()); // R + X
    for v in [0, BASE, BASE, total, total, 0x1000u64] {
        e.extend_from_slice(&v.to_le_bytes()); // offset, vaddr, paddr, filesz, memsz, align
    }
    e.extend_from_slice(&code);
    e.extend_from_slice(&(child_us / 1_000_000).to_le_bytes());
    e.extend_from_slice(&((child_us % 1_000_000) * 1000).to_le_bytes());
    e
}
