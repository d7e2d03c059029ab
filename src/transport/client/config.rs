//! Connection options: [`MqttConfig`] from a `mqtt://` / `mqtts://` URL plus
//! fields, validated; TLS with rustls + ring; the last will. Turned into
//! rumqttc's options (`mqtt_options`) by the driver's `connect`.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use rumqttc::v5::MqttOptions;

use super::QoS;
use crate::transport::TransportError;

/// TLS settings for `mqtts://`.
#[derive(Debug, Clone, Default)]
pub struct TlsConfig {
    /// PEM file of CA certificates; `None` trusts the webpki (Mozilla) roots.
    pub ca_file: Option<PathBuf>,
    /// PEM client certificate chain and private key, for mutual TLS.
    pub client_cert: Option<PathBuf>,
    pub client_key: Option<PathBuf>,
}

/// The message the broker publishes if this client vanishes.
#[derive(Debug, Clone)]
pub struct LastWill {
    pub topic: String,
    pub payload: Vec<u8>,
    pub qos: QoS,
    pub retain: bool,
}

/// Everything needed to connect.
#[derive(Clone)]
pub struct MqttConfig {
    pub host: String,
    pub port: u16,
    /// `Some` for `mqtts://`.
    pub tls: Option<TlsConfig>,
    pub client_id: String,
    pub username: Option<String>,
    pub password: Option<String>,
    /// At least 5 s (rumqttc asserts it).
    pub keep_alive: Duration,
    pub clean_start: bool,
    /// MQTT 5 Session Expiry Interval: with `clean_start = false`, how long
    /// the broker keeps the session (subscriptions, queued QoS 1 messages)
    /// after a disconnect. Zero: the session ends with the connection.
    pub session_expiry: Duration,
    pub last_will: Option<LastWill>,
    /// Largest packet we accept from the broker (rumqttc's default is 10 KiB).
    pub max_packet_size: u32,
    /// Incoming messages held for the application (also Receive Maximum).
    pub inbox_capacity: usize,
    /// Outgoing requests queued towards the event loop.
    pub request_capacity: usize,
    /// Deadline for TCP + TLS + CONNECT/CONNACK (whole seconds, ≥ 1).
    pub connect_timeout: Duration,
    /// Deadline for handing a request to the event loop (publish, subscribe).
    pub request_timeout: Duration,
    /// Reconnect backoff: first wait, doubled per failure up to `backoff_max`
    /// (2 s by default: a restarted broker sees the client back within 2 s,
    /// and a persistent session keeps what arrives meanwhile).
    pub backoff_min: Duration,
    pub backoff_max: Duration,
    /// How long the driver waits for inbox room for a QoS ≥ 1 message.
    pub overflow_wait: Duration,
}

impl std::fmt::Debug for MqttConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MqttConfig")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("tls", &self.tls)
            .field("client_id", &self.client_id)
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "***"))
            .field("keep_alive", &self.keep_alive)
            .field("clean_start", &self.clean_start)
            .field("session_expiry", &self.session_expiry)
            .field("last_will", &self.last_will.as_ref().map(|w| &w.topic))
            .field("max_packet_size", &self.max_packet_size)
            .field("inbox_capacity", &self.inbox_capacity)
            .finish_non_exhaustive()
    }
}

impl MqttConfig {
    /// Defaults for a plain TCP connection.
    pub fn new(host: impl Into<String>, port: u16, client_id: impl Into<String>) -> MqttConfig {
        MqttConfig {
            host: host.into(),
            port,
            tls: None,
            client_id: client_id.into(),
            username: None,
            password: None,
            keep_alive: Duration::from_secs(30),
            clean_start: true,
            session_expiry: Duration::ZERO,
            last_will: None,
            max_packet_size: 1 << 20,
            inbox_capacity: 64,
            request_capacity: 64,
            connect_timeout: Duration::from_secs(5),
            request_timeout: Duration::from_secs(5),
            backoff_min: Duration::from_millis(100),
            backoff_max: Duration::from_secs(2),
            overflow_wait: Duration::from_millis(200),
        }
    }

    /// Parses `mqtt://[user[:password]@]host[:port]` or `mqtts://...`
    /// (default ports 1883 / 8883; IPv6 hosts in brackets; user and password
    /// percent-decoded). `mqtts` trusts the webpki roots until `tls` is changed.
    pub fn from_url(url: &str, client_id: impl Into<String>) -> Result<MqttConfig, TransportError> {
        let bad = |reason: &str| TransportError::BadUrl {
            url: redact_url(url),
            reason: reason.to_string(),
        };
        let (scheme, rest) = url.split_once("://").ok_or_else(|| bad("no scheme"))?;
        let (tls, default_port) = match scheme {
            "mqtt" | "tcp" => (None, 1883),
            "mqtts" | "ssl" => (Some(TlsConfig::default()), 8883),
            _ => return Err(bad("scheme must be mqtt or mqtts")),
        };
        let authority = rest.strip_suffix('/').unwrap_or(rest);
        if authority.contains(['/', '?', '#']) {
            return Err(bad("no path or query allowed"));
        }
        let (userinfo, hostport) = match authority.rsplit_once('@') {
            Some((u, h)) => (Some(u), h),
            None => (None, authority),
        };
        let (host, port) = if let Some(v6) = hostport.strip_prefix('[') {
            let (host, after) = v6.split_once(']').ok_or_else(|| bad("unclosed '['"))?;
            let port = match after {
                "" => None,
                p => Some(p.strip_prefix(':').ok_or_else(|| bad("junk after ']'"))?),
            };
            (host, port)
        } else {
            match hostport.rsplit_once(':') {
                Some((h, p)) => (h, Some(p)),
                None => (hostport, None),
            }
        };
        if host.is_empty() {
            return Err(bad("empty host"));
        }
        let port = match port {
            None => default_port,
            // u16::from_str would accept "+1883"; a URL port is digits only.
            Some(p) if !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()) => {
                match p.parse::<u16>() {
                    Ok(p) if p > 0 => p,
                    _ => return Err(bad("bad port")),
                }
            }
            Some(_) => return Err(bad("bad port")),
        };
        let mut cfg = MqttConfig::new(host, port, client_id);
        cfg.tls = tls;
        if let Some(userinfo) = userinfo {
            let (user, pass) = match userinfo.split_once(':') {
                Some((u, p)) => (u, Some(p)),
                None => (userinfo, None),
            };
            cfg.username = Some(percent_decode(user).ok_or_else(|| bad("bad %-escape"))?);
            cfg.password = pass
                .map(|p| percent_decode(p).ok_or_else(|| bad("bad %-escape")))
                .transpose()?;
        }
        Ok(cfg)
    }

    fn validate(&self) -> Result<(), TransportError> {
        let bad = |s: String| Err(TransportError::BadOption(s));
        if self.client_id.is_empty() || self.client_id.len() > 256 {
            return bad("client id must be 1..=256 bytes".into());
        }
        if self.keep_alive < Duration::from_secs(5) {
            return bad(format!(
                "keep-alive {:?} is below rumqttc's 5 s minimum",
                self.keep_alive
            ));
        }
        if self.inbox_capacity == 0 || self.request_capacity == 0 {
            return bad("inbox and request capacities must be > 0".into());
        }
        if self.max_packet_size < 1024 {
            return bad("max packet size below 1 KiB".into());
        }
        if self.backoff_min.is_zero() || self.backoff_max < self.backoff_min {
            return bad("backoff must be 0 < min <= max".into());
        }
        if self.password.is_some() && self.username.is_none() {
            return bad("a password needs a username".into());
        }
        Ok(())
    }

    pub(super) fn mqtt_options(&self) -> Result<MqttOptions, TransportError> {
        self.validate()?;
        let mut o = MqttOptions::new(self.client_id.clone(), self.host.clone(), self.port);
        o.set_keep_alive(self.keep_alive);
        o.set_clean_start(self.clean_start);
        if !self.session_expiry.is_zero() {
            o.set_session_expiry_interval(Some(
                self.session_expiry.as_secs().clamp(1, u32::MAX as u64) as u32,
            ));
        }
        if let Some(user) = &self.username {
            o.set_credentials(user.clone(), self.password.clone().unwrap_or_default());
        }
        if let Some(w) = &self.last_will {
            o.set_last_will(rumqttc::v5::mqttbytes::v5::LastWill::new(
                w.topic.clone(),
                w.payload.clone(),
                w.qos,
                w.retain,
                None,
            ));
        }
        o.set_max_packet_size(Some(self.max_packet_size));
        o.set_receive_maximum(Some(self.inbox_capacity.min(u16::MAX as usize) as u16));
        o.set_manual_acks(true);
        let secs = self.connect_timeout.as_secs().max(1);
        o.set_connection_timeout(secs);
        let mut net = rumqttc::NetworkOptions::new();
        net.set_tcp_nodelay(true);
        net.set_connection_timeout(secs);
        o.set_network_options(net);
        if let Some(tls) = &self.tls {
            let config = rustls_config(tls)?;
            o.set_transport(rumqttc::Transport::Tls(rumqttc::TlsConfiguration::Rustls(
                config,
            )));
        }
        Ok(o)
    }
}

/// Hides a password in a URL for error messages.
pub(super) fn redact_url(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s => {
            let userinfo = &url[s + 3..at];
            match userinfo.split_once(':') {
                Some((u, _)) => format!("{}{u}:***{}", &url[..s + 3], &url[at..]),
                None => url.to_string(),
            }
        }
        _ => url.to_string(),
    }
}

pub(super) fn percent_decode(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = s.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

pub(super) fn rustls_config(tls: &TlsConfig) -> Result<Arc<rustls::ClientConfig>, TransportError> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let pem_err = |path: &PathBuf, e: rustls::pki_types::pem::Error| {
        TransportError::Tls(format!("{}: {e}", path.display()))
    };
    let mut roots = rustls::RootCertStore::empty();
    match &tls.ca_file {
        Some(path) => {
            let certs = CertificateDer::pem_file_iter(path)
                .map_err(|e| pem_err(path, e))?
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| pem_err(path, e))?;
            if certs.is_empty() {
                return Err(TransportError::Tls(format!(
                    "{}: no certificates",
                    path.display()
                )));
            }
            for c in certs {
                roots
                    .add(c)
                    .map_err(|e| TransportError::Tls(format!("{}: {e}", path.display())))?;
            }
        }
        None => roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| TransportError::Tls(e.to_string()))?
        .with_root_certificates(roots);
    let config = match (&tls.client_cert, &tls.client_key) {
        (None, None) => builder.with_no_client_auth(),
        (Some(cert), Some(key)) => {
            let chain = CertificateDer::pem_file_iter(cert)
                .map_err(|e| pem_err(cert, e))?
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| pem_err(cert, e))?;
            let key = PrivateKeyDer::from_pem_file(key).map_err(|e| pem_err(key, e))?;
            builder
                .with_client_auth_cert(chain, key)
                .map_err(|e| TransportError::Tls(e.to_string()))?
        }
        _ => {
            return Err(TransportError::Tls(
                "client certificate and key go together".into(),
            ))
        }
    };
    Ok(Arc::new(config))
}
