//! One way to run a real Mosquitto in a test: a config file in a temp dir,
//! a free port, the process killed on drop. `Mosquitto::start` is a plain
//! anonymous broker; `start_with` adds listener lines (TLS files written into
//! the dir); `launch` runs any config (the deployed one, `secure_broker`).
//! Also the small helpers those need (free port, binaries, waiting on a port).

#![allow(dead_code)]

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How long a port may take to open or close.
const PORT_WAIT: Duration = Duration::from_secs(20);

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// `name` in the usual sbin/bin directories, then on `PATH`.
pub fn find_bin(name: &str) -> Option<PathBuf> {
    for d in ["/usr/sbin", "/usr/local/sbin", "/usr/bin", "/usr/local/bin"] {
        let p = Path::new(d).join(name);
        if p.exists() {
            return Some(p);
        }
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(name))
        .find(|p| p.exists())
}

pub fn running_as_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .and_then(|l| l.split_whitespace().nth(2).map(|euid| euid == "0"))
        })
        .unwrap_or(false)
}

/// Waits until 127.0.0.1:`port` accepts connections (`up`) or refuses them.
pub fn wait_port(port: u16, up: bool) {
    let addr: SocketAddr = ([127, 0, 0, 1], port).into();
    let start = Instant::now();
    while start.elapsed() < PORT_WAIT {
        let ok = TcpStream::connect_timeout(&addr, Duration::from_millis(100)).is_ok();
        if ok == up {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!(
        "port {port} did not become {}",
        if up { "open" } else { "closed" }
    );
}

/// A Mosquitto process with its own config; killed on drop.
pub struct Mosquitto {
    bin: PathBuf,
    pub dir: tempfile::TempDir,
    pub port: u16,
    child: Option<Child>,
}

impl Mosquitto {
    /// An anonymous broker without persistence; `None` (after printing a
    /// notice) when mosquitto is not installed.
    pub fn start(test: &str) -> Option<Mosquitto> {
        Mosquitto::start_with(test, |_| String::new())
    }

    /// Like `start`; `extra` writes files into the config dir and returns
    /// config lines for the listener.
    pub fn start_with(test: &str, extra: impl FnOnce(&Path) -> String) -> Option<Mosquitto> {
        let Some(bin) = find_bin("mosquitto") else {
            eprintln!("SKIPPED {test}: mosquitto is not installed (apt-get install mosquitto)");
            return None;
        };
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let conf = format!(
            "per_listener_settings false\nallow_anonymous true\npersistence false\n\
             log_type error\nlog_type warning\nlog_type notice\nmax_packet_size 1048576\n\
             listener {port} 127.0.0.1\n{}",
            extra(dir.path())
        );
        Some(Mosquitto::launch(bin, dir, port, &conf))
    }

    /// Writes `conf` (plus a log file in `dir`, and `user root` when running
    /// as root, where Mosquitto would otherwise drop to user `mosquitto`) as
    /// `dir/mosquitto.conf` and starts the broker; returns once `port` is open.
    pub fn launch(bin: PathBuf, dir: tempfile::TempDir, port: u16, conf: &str) -> Mosquitto {
        let mut conf = format!(
            "log_dest file {}\n{conf}",
            dir.path().join("mosquitto.log").display()
        );
        if running_as_root() {
            conf.push_str("user root\n");
        }
        std::fs::write(dir.path().join("mosquitto.conf"), conf).unwrap();
        let mut m = Mosquitto {
            bin,
            dir,
            port,
            child: None,
        };
        m.spawn();
        m
    }

    /// (Re)starts the process on the same config and port.
    pub fn spawn(&mut self) {
        let child = Command::new(&self.bin)
            .arg("-c")
            .arg(self.dir.path().join("mosquitto.conf"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn mosquitto");
        self.child = Some(child);
        wait_port(self.port, true);
    }

    /// SIGKILL (no chance to save) or, with `graceful`, SIGTERM; returns once
    /// the port is closed.
    pub fn stop(&mut self, graceful: bool) {
        if let Some(mut c) = self.child.take() {
            if graceful {
                let _ = Command::new("kill")
                    .args(["-TERM", &c.id().to_string()])
                    .status();
            } else {
                let _ = c.kill();
            }
            let _ = c.wait();
        }
        wait_port(self.port, false);
    }

    pub fn kill(&mut self) {
        self.stop(false);
    }

    pub fn url(&self) -> String {
        format!("mqtt://127.0.0.1:{}", self.port)
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("mosquitto.log")).unwrap_or_default()
    }
}

impl Drop for Mosquitto {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}
