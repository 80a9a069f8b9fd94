//! The exec tracepoint's inputs (`exec_trace::Format`): a tracepoint `format` file and raw ring
//! records, both from the kernel but parsed as untrusted bytes. Checks that a record's file name
//! lies inside the record and stops at the first NUL, and that any format that parses can read
//! any record without panicking.
#![no_main]

use edgeguard::collectors::process::exec_trace::Format;
use libfuzzer_sys::fuzz_target;

/// `sched_process_exec`'s format on kernel 6.x.
const FORMAT: &str = "name: sched_process_exec
ID: 312
format:
\tfield:unsigned short common_type;\toffset:0;\tsize:2;\tsigned:0;
\tfield:int common_pid;\toffset:4;\tsize:4;\tsigned:1;
\tfield:__data_loc char[] filename;\toffset:8;\tsize:4;\tsigned:0;
\tfield:pid_t pid;\toffset:12;\tsize:4;\tsigned:1;
\tfield:pid_t old_pid;\toffset:16;\tsize:4;\tsigned:1;
";

fuzz_target!(|data: &[u8]| {
    let kernel = Format::parse(FORMAT).expect("the kernel's format parses");
    if let Some((_, name)) = kernel.read(data) {
        assert!(name.len() <= data.len());
        assert!(!name.contains(&0), "the name ends at its NUL");
    }
    if let Ok(text) = std::str::from_utf8(data)
        && let Some(format) = Format::parse(text)
    {
        let _ = format.read(data);
        let _ = format.read(FORMAT.as_bytes());
    }
});
