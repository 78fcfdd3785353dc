//! The `talkstore-server` binary as a process of its own, killed when dropped so that a
//! failing test or bench leaves none behind. Shared by the integration tests and the benches
//! that measure the server from outside (`benches/soak.rs`, `benches/memory.rs`).

use std::{
    io::BufRead,
    net::SocketAddr,
    process::{Child, Command, Stdio},
};

pub(crate) struct ServerProcess(Child);

impl std::ops::Deref for ServerProcess {
    type Target = Child;
    fn deref(&self) -> &Child {
        &self.0
    }
}

impl std::ops::DerefMut for ServerProcess {
    fn deref_mut(&mut self) -> &mut Child {
        &mut self.0
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        // Already gone if the caller stopped it.
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl ServerProcess {
    /// Starts the server on `data` with one app, on any free port of 127.0.0.1, pinned to
    /// `core` if given (and `taskset` exists); returns it with its address.
    pub(crate) fn start(
        data: &std::path::Path,
        app: &str,
        secret: &str,
        core: Option<usize>,
    ) -> (Self, SocketAddr) {
        let binary = env!("CARGO_BIN_EXE_talkstore-server");
        let taskset = core.filter(|_| Command::new("taskset").arg("-V").output().is_ok());
        let mut command = match taskset {
            Some(core) => {
                let mut c = Command::new("taskset");
                c.args(["-c", &core.to_string(), binary]);
                c
            }
            None => Command::new(binary),
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
                break rest.split_whitespace().next().unwrap().parse().unwrap();
            }
        };
        // Keep draining the log so the server never blocks on a full pipe.
        std::thread::spawn(move || for _ in lines {});
        (ServerProcess(child), addr)
    }
}
