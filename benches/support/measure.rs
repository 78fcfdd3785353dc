//! What the benches that measure a server from outside share: options and the server's RSS.

/// The number after `name` on the command line, or `default`.
pub(crate) fn number(name: &str, default: usize) -> usize {
    let args: Vec<String> = std::env::args().collect();
    match args.iter().position(|a| a == name) {
        Some(at) => args[at + 1].parse().expect("a number"),
        None => default,
    }
}

/// The resident set size of process `pid` in KiB (`VmRSS` of `/proc/PID/status`), 0 if
/// unknown.
pub(crate) fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"));
    status
        .ok()
        .and_then(|s| {
            let line = s.lines().find(|l| l.starts_with("VmRSS:"))?.to_owned();
            line.split_whitespace().nth(1)?.parse().ok()
        })
        .unwrap_or(0)
}
