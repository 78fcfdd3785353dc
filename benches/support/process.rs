//! The `talkstore-server` binary as a process of its own, for benches that measure it from the
//! outside (its RSS, or load from another core).

use std::{
    io::BufRead,
    process::{Child, Command, Stdio},
};

/// The server binary on core 0 (if `taskset` exists); kills it when dropped.
pub(crate) struct ServerProcess(Child);

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl ServerProcess {
    /// Starts the server on `data` with one app, on any free port; returns it with its
    /// address (`host:port`).
    pub(crate) fn start(data: &std::path::Path, app: &str, secret: &str) -> (Self, String) {
        let binary = env!("CARGO_BIN_EXE_talkstore-server");
        let pinned = Command::new("taskset").arg("-V").output().is_ok();
        let mut command = if pinned {
            let mut c = Command::new("taskset");
            c.args(["-c", "0", binary]);
            c
        } else {
            Command::new(binary)
        };
        let mut child = command
            .args(["--listen", "127.0.0.1:0", "--log", "info", "--app"])
            .arg(format!("{app}:{secret}"))
            .arg("--data-dir")
            .arg(data)
            .stdout(Stdio::piped())
            .spawn()
            .expect("the server binary starts");
        let mut lines = std::io::BufReader::new(child.stdout.take().unwrap()).lines();
        let addr = loop {
            let line = lines.next().expect("the server logs its address").unwrap();
            if let Some(rest) = line.split("addr=").nth(1) {
                break rest.split_whitespace().next().unwrap().to_owned();
            }
        };
        std::thread::spawn(move || for _ in lines {});
        (ServerProcess(child), addr)
    }

    /// Resident set size in KiB.
    pub(crate) fn rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.0.id()));
        status
            .ok()
            .and_then(|s| {
                let line = s.lines().find(|l| l.starts_with("VmRSS:"))?.to_owned();
                line.split_whitespace().nth(1)?.parse().ok()
            })
            .unwrap_or(0)
    }
}
