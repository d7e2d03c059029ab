//! A Mosquitto started with the repository's own deployment files:
//! `deploy/mosquitto/mosquitto.conf` (paths and port rewritten to a temp dir),
//! `deploy/mosquitto/acl` and certificates + password file made by
//! `deploy/mosquitto/make-certs.sh`. What the tests check is what is deployed.

#![allow(dead_code)]

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use moe_edge::transport::{MqttConfig, TlsConfig};

/// The users of `deploy/mosquitto/acl`.
pub const DEVICE: &str = "edge-1";
pub const HOST: &str = "host-1";
pub const APP_A: &str = "app-a";
pub const APP_B: &str = "app-b";

/// The password the test gives `user`.
pub fn password(user: &str) -> String {
    format!("{user}-pw-7f3a")
}

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn find_bin(name: &str) -> Option<PathBuf> {
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

fn running_as_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .and_then(|l| l.split_whitespace().nth(2).map(|euid| euid == "0"))
        })
        .unwrap_or(false)
}

fn wait_port(port: u16, up: bool) {
    let addr: SocketAddr = ([127, 0, 0, 1], port).into();
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(10) {
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

/// Mosquitto with TLS, passwords and the ACL; killed on drop.
pub struct SecureBroker {
    bin: PathBuf,
    pub dir: tempfile::TempDir,
    pub port: u16,
    child: Option<Child>,
}

impl SecureBroker {
    /// `None` (after printing a notice) when mosquitto, mosquitto_passwd or
    /// openssl is missing (scripts/test.sh installs them).
    pub fn start(test: &str) -> Option<SecureBroker> {
        let (Some(bin), Some(_), Some(_)) = (
            find_bin("mosquitto"),
            find_bin("mosquitto_passwd"),
            find_bin("openssl"),
        ) else {
            eprintln!("SKIPPED {test}: needs mosquitto, mosquitto_passwd and openssl");
            return None;
        };
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let users: String = [DEVICE, HOST, APP_A, APP_B]
            .iter()
            .map(|u| format!("{u} {}\n", password(u)))
            .collect();
        std::fs::write(d.join("users"), users).unwrap();
        let st = Command::new(repo().join("deploy/mosquitto/make-certs.sh"))
            .arg(d)
            .stdout(Stdio::null())
            .status()
            .expect("run deploy/mosquitto/make-certs.sh");
        assert!(st.success(), "make-certs.sh failed");
        std::fs::copy(repo().join("deploy/mosquitto/acl"), d.join("acl")).unwrap();
        let port = free_port();
        let conf = std::fs::read_to_string(repo().join("deploy/mosquitto/mosquitto.conf"))
            .unwrap()
            .replace("/etc/mosquitto/moe-edge", &d.display().to_string())
            .replace(
                "persistence_location /var/lib/mosquitto/",
                &format!("persistence_location {}/", d.display()),
            )
            .replace("listener 8883", &format!("listener {port} 127.0.0.1"));
        assert!(conf.contains(&format!("listener {port}")), "{conf}");
        let mut conf = format!(
            "log_dest file {}\n{conf}",
            d.join("mosquitto.log").display()
        );
        if running_as_root() {
            // Started as root, Mosquitto would drop to user `mosquitto`.
            conf.push_str("user root\n");
        }
        std::fs::write(d.join("mosquitto.conf"), conf).unwrap();
        let mut b = SecureBroker {
            bin,
            dir,
            port,
            child: None,
        };
        b.spawn();
        Some(b)
    }

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

    /// SIGKILL (no chance to save: persistence comes from the autosave and
    /// the save on a clean stop) or, with `graceful`, SIGTERM.
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

    pub fn url(&self) -> String {
        format!("mqtts://127.0.0.1:{}", self.port)
    }

    pub fn ca(&self) -> PathBuf {
        self.dir.path().join("ca.pem")
    }

    /// TLS trusting the test CA, logged in as `user` with `password`.
    pub fn config_as(&self, client_id: &str, user: &str, password: &str) -> MqttConfig {
        let mut c = MqttConfig::from_url(&self.url(), client_id).unwrap();
        c.tls = Some(TlsConfig {
            ca_file: Some(self.ca()),
            ..TlsConfig::default()
        });
        c.username = Some(user.to_string());
        c.password = Some(password.to_string());
        c
    }

    /// `config_as` with the user's right password.
    pub fn config(&self, client_id: &str, user: &str) -> MqttConfig {
        self.config_as(client_id, user, &password(user))
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("mosquitto.log")).unwrap_or_default()
    }
}

impl Drop for SecureBroker {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}
