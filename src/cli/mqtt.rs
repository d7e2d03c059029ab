//! Subcommands that talk over a broker: serve (the daemon), host (expert
//! server and HTTP endpoint), ask (a small MQTT client).

use std::path::PathBuf;
use std::time::Duration;

use moe_edge::bundle::{Verify, DEFAULT_BUNDLE};
use moe_edge::config::Board;
use moe_edge::transport::MqttConfig;

/// How to authenticate to an MQTT broker: TLS files and credentials (serve,
/// host and ask take the same flags).
#[derive(clap::Args)]
pub struct BrokerAuthArgs {
    /// PEM CA certificates for mqtts:// (default: the webpki roots).
    #[arg(long)]
    ca: Option<PathBuf>,
    /// PEM client certificate chain (mutual TLS), with --key.
    #[arg(long)]
    cert: Option<PathBuf>,
    #[arg(long)]
    key: Option<PathBuf>,
    #[arg(long)]
    username: Option<String>,
    #[arg(long, env = "MOE_EDGE_MQTT_PASSWORD", hide_env_values = true)]
    password: Option<String>,
}

impl BrokerAuthArgs {
    fn config(&self, url: &str) -> anyhow::Result<MqttConfig> {
        Ok(moe_edge::serve::broker_config(
            url,
            self.ca.as_deref(),
            self.cert.as_deref(),
            self.key.as_deref(),
            self.username.as_deref(),
            self.password.as_deref(),
        )?)
    }
}

#[derive(clap::Args)]
pub struct BrokerArgs {
    /// MQTT broker: mqtt://[user[:pass]@]host[:port] or mqtts://...
    #[arg(long)]
    broker: Option<String>,
    #[command(flatten)]
    auth: BrokerAuthArgs,
    /// MQTT session expiry: the broker keeps subscriptions and queued QoS 1 requests this
    /// many seconds across a disconnect or broker restart (0 = a clean session each
    /// connect). Default: 3600 for serve (nothing accepted is lost), 0 for host.
    #[arg(long)]
    session_expiry_s: Option<u64>,
}

impl BrokerArgs {
    fn config(&self, url: &str, default_expiry_s: u64) -> anyhow::Result<MqttConfig> {
        let mut c = self.auth.config(url)?;
        let expiry = self.session_expiry_s.unwrap_or(default_expiry_s);
        if expiry > 0 {
            c.clean_start = false;
            c.session_expiry = Duration::from_secs(expiry);
        }
        Ok(c)
    }
}

/// Session expiry of the daemon's connection unless `--session-expiry-s` says otherwise.
const SERVE_SESSION_EXPIRY_S: u64 = 3600;

#[derive(clap::Args)]
pub struct ServeArgs {
    #[arg(long, default_value = DEFAULT_BUNDLE)]
    bundle: PathBuf,
    #[arg(long, default_value = "host-cpu")]
    board: String,
    /// Topic id of this device (default: the host name, sanitised).
    #[arg(long)]
    device_id: Option<String>,
    /// The embedded broker's MQTT 5 listener (MQTT 3.1.1 on port + 1).
    #[arg(long, default_value = moe_edge::serve::DEFAULT_LISTEN, conflicts_with = "broker")]
    listen: std::net::SocketAddr,
    #[command(flatten)]
    mqtt: BrokerArgs,
    /// Print the resolved board/bundle plan and exit.
    #[arg(long)]
    dry_run: bool,
    /// How long running requests may take to finish at shutdown.
    #[arg(long, default_value_t = 10_000)]
    drain_timeout_ms: u64,
    /// Also offer the OpenAI HTTP endpoint (/v1/chat/completions, /v1/models) here, for
    /// local tools; requests go through the daemon (admission, cascade) like an app's.
    #[arg(long)]
    http: Option<std::net::SocketAddr>,
    /// Send the experts this device lacks to `moe-edge host --broker` on the daemon's broker
    /// (also on when the board says `offload.enabled`).
    #[arg(long)]
    offload: bool,
    /// Skip the remote round trip when every token's missing router weight is below this
    /// (substitute instead; 0 = always ask the host; only with on_miss = substitute).
    #[arg(long, default_value_t = 0.0)]
    offload_skip_below: f32,
}

fn device_id(given: Option<String>) -> anyhow::Result<moe_edge::wire::DeviceId> {
    Ok(match given {
        Some(id) => moe_edge::wire::DeviceId::new(id)?,
        None => moe_edge::serve::default_device_id(),
    })
}

pub fn serve(a: ServeArgs) -> anyhow::Result<()> {
    use moe_edge::serve::{self, BrokerChoice, DaemonOptions};
    let board = Board::load(&a.board)?;
    let device = device_id(a.device_id)?;
    let (broker, desc) = match &a.mqtt.broker {
        Some(url) => (
            BrokerChoice::External(Box::new(a.mqtt.config(url, SERVE_SESSION_EXPIRY_S)?)),
            url.clone(),
        ),
        None => (
            BrokerChoice::Embedded(a.listen),
            format!("embedded mqtt5={} mqtt311=port+1", a.listen),
        ),
    };
    if a.dry_run {
        print!(
            "{}",
            serve::describe_plan(&board, &a.bundle, &device, &desc)
        );
        return Ok(());
    }
    let opts = DaemonOptions {
        bundle: a.bundle,
        board,
        device,
        broker,
        drain_timeout: Duration::from_millis(a.drain_timeout_ms),
        http: a.http,
        offload: a.offload,
        offload_skip_below: a.offload_skip_below,
    };
    Ok(serve::serve_blocking(
        opts,
        moe_edge::process::shutdown_signal(),
    )?)
}

#[derive(clap::Args)]
pub struct HostArgs {
    #[arg(long, default_value = DEFAULT_BUNDLE)]
    bundle: PathBuf,
    #[arg(long, default_value = "host-cpu")]
    board: String,
    /// Serve /v1/chat/completions and /v1/models here (e.g. 0.0.0.0:8080; port 0 picks one).
    #[arg(long)]
    http: Option<std::net::SocketAddr>,
    /// Run the expert server (remote expert compute for devices) on the MQTT broker given by
    /// --broker (with --ca/--cert/--key/--username/--password as for serve).
    #[command(flatten)]
    mqtt: BrokerArgs,
    /// Shared-subscription group of the expert server (hosts in one group split the load).
    #[arg(long, default_value = moe_edge::wire::topics::HOST_GROUP)]
    group: String,
    /// Expert compute threads.
    #[arg(long, default_value_t = 2)]
    workers: usize,
    /// Expert requests waiting for a thread; one more is answered `busy`.
    #[arg(long, default_value_t = 32)]
    queue: usize,
    /// Hold every expert reply back this long (simulated network delay, for benches and tests).
    #[arg(long, default_value_t = 0)]
    delay_ms: u64,
    /// Most expert requests one pass serves: requests of one layer that are
    /// waiting together (from any devices) share a read of each expert; 1 turns it off.
    #[arg(long, default_value_t = 16)]
    max_batch: usize,
    /// MQTT client id of the expert server (default: moe-edge-host-{pid}).
    #[arg(long)]
    host_id: Option<String>,
}

pub fn host(a: HostArgs) -> anyhow::Result<()> {
    use moe_edge::host::{self, experts::ExpertServerConfig, HostOptions};
    anyhow::ensure!(
        a.http.is_some() || a.mqtt.broker.is_some(),
        "give --http ADDR (the OpenAI endpoint) and/or --broker URL (the expert server)"
    );
    let experts = match &a.mqtt.broker {
        Some(url) => {
            let mut mqtt = a.mqtt.config(url, 0)?;
            mqtt.client_id = a
                .host_id
                .clone()
                .unwrap_or_else(|| format!("moe-edge-host-{}", std::process::id()));
            let mut cfg = ExpertServerConfig::new(a.bundle.clone(), mqtt);
            cfg.verify = Verify::Full;
            cfg.group = a.group.clone();
            cfg.workers = a.workers;
            cfg.queue = a.queue;
            cfg.delay = Duration::from_millis(a.delay_ms);
            cfg.max_batch = a.max_batch;
            Some(cfg)
        }
        None => None,
    };
    let opts = HostOptions {
        bundle: a.bundle,
        board: Board::load(&a.board)?,
        http: None,
        experts,
        verify: Verify::Full,
    };
    Ok(host::run_blocking(
        opts,
        a.http,
        moe_edge::process::shutdown_signal(),
    )?)
}

#[derive(clap::Args)]
pub struct AskArgs {
    /// The user message.
    text: String,
    #[arg(long, default_value = "mqtt://127.0.0.1:1883")]
    broker: String,
    #[command(flatten)]
    auth: BrokerAuthArgs,
    /// The daemon's device id (default: this host's name, sanitised).
    #[arg(long)]
    device_id: Option<String>,
    /// Ask for a streamed reply and print text as it arrives.
    #[arg(long)]
    stream: bool,
    #[arg(long, default_value_t = 30_000)]
    timeout_ms: u64,
    /// Tools offered (OpenAI `tools` array, or a catalogue with a `tools` key).
    #[arg(long, default_value = "models/assist-moe/tools.json")]
    tools: PathBuf,
    /// Send no tools.
    #[arg(long)]
    no_tools: bool,
    #[arg(long)]
    system: Option<String>,
    #[arg(long)]
    max_tokens: Option<u64>,
    /// x-priority: 0..=9 or safety|high|normal|low.
    #[arg(long)]
    priority: Option<String>,
    /// x-deadline-ms.
    #[arg(long)]
    deadline_ms: Option<u64>,
    /// Print the whole chat.completion JSON.
    #[arg(long)]
    json: bool,
}

pub fn ask(a: AskArgs) -> anyhow::Result<()> {
    use moe_edge::openai::PriorityField;
    use moe_edge::serve::ask::{ask_blocking, AskOptions};
    use std::io::Write;
    let tools = if a.no_tools {
        Vec::new()
    } else {
        moe_edge::eval::load_tools(&a.tools)?
    };
    let mut request = super::request(a.system, a.text, tools, a.max_tokens);
    request.stream = a.stream.then_some(true);
    request.x_priority = a.priority.map(|p| match p.parse::<i64>() {
        Ok(n) => PriorityField::Level(n),
        Err(_) => PriorityField::Name(p),
    });
    request.x_deadline_ms = a.deadline_ms;
    let opts = AskOptions {
        mqtt: a.auth.config(&a.broker)?,
        device: device_id(a.device_id)?,
        request,
        timeout: Duration::from_millis(a.timeout_ms),
        client_name: None,
    };
    let streamed = a.stream && !a.json;
    let completion = ask_blocking(opts, |t| {
        if streamed {
            print!("{t}");
            let _ = std::io::stdout().flush();
        }
    })?;
    if a.json {
        println!("{}", serde_json::to_string_pretty(&completion)?);
        return Ok(());
    }
    let r = moe_edge::chat::local::render_text(&completion);
    if streamed {
        // The text is out already: end its line.
        println!();
    } else {
        print!("{}", r.content);
    }
    print!("{}", r.calls);
    eprintln!("{}", r.info);
    Ok(())
}
