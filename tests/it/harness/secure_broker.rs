//! A Mosquitto started with the repository's own deployment files:
//! `deploy/mosquitto/mosquitto.conf` (paths and port rewritten to a temp dir),
//! `deploy/mosquitto/acl` and certificates + password file made by
//! `deploy/mosquitto/make-certs.sh`. What the tests check is what is deployed.

#![allow(dead_code)]

use std::path::PathBuf;
use std::process::{Command, Stdio};

use moe_edge::transport::{MqttConfig, TlsConfig};

use super::mosquitto::{find_bin, free_port, Mosquitto};

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

/// Mosquitto with TLS, passwords and the ACL (the deployed files); killed on drop.
pub struct SecureBroker {
    m: Mosquitto,
    pub port: u16,
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
        Some(SecureBroker {
            m: Mosquitto::launch(bin, dir, port, &conf),
            port,
        })
    }

    pub fn spawn(&mut self) {
        self.m.spawn();
    }

    /// SIGKILL (no chance to save: persistence comes from the autosave and
    /// the save on a clean stop) or, with `graceful`, SIGTERM.
    pub fn stop(&mut self, graceful: bool) {
        self.m.stop(graceful);
    }

    pub fn url(&self) -> String {
        format!("mqtts://127.0.0.1:{}", self.port)
    }

    pub fn ca(&self) -> PathBuf {
        self.m.dir.path().join("ca.pem")
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
        self.m.log()
    }
}
