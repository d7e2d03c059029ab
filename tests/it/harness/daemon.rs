//! An in-process `moe-edge serve` daemon for tests: started on a given
//! engine, board and broker, ready when it has subscribed, stopped through
//! its graceful shutdown.

use std::sync::Arc;
use std::time::Duration;

use moe_edge::config::Board;
use moe_edge::engine::Engine;
use moe_edge::serve::{self, BrokerChoice, Ready, ServeConfig};
use moe_edge::wire::DeviceId;
use tokio::sync::oneshot;

const WAIT: Duration = Duration::from_secs(20);

/// An in-process daemon; `stop` runs the graceful shutdown.
pub struct Daemon {
    pub ready: Ready,
    pub device: DeviceId,
    stop: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<Result<(), serve::ServeError>>,
}

impl Daemon {
    /// Starts `serve::run` and waits until it is subscribed; `tweak` edits
    /// the config first.
    pub async fn start(
        engine: Arc<Engine>,
        board: Board,
        device: DeviceId,
        broker: BrokerChoice,
        tweak: impl FnOnce(&mut ServeConfig),
    ) -> Daemon {
        let mut config = ServeConfig::new(engine, board, device.clone(), broker);
        let (ready_tx, ready_rx) = oneshot::channel();
        config.on_ready = Some(ready_tx);
        tweak(&mut config);
        let (stop, stop_rx) = oneshot::channel::<()>();
        let task = tokio::spawn(serve::run(config, async move {
            let _ = stop_rx.await;
        }));
        let ready = tokio::time::timeout(WAIT, ready_rx)
            .await
            .expect("daemon ready in time")
            .expect("daemon started");
        Daemon {
            ready,
            device,
            stop: Some(stop),
            task,
        }
    }

    /// The broker's port.
    pub fn port(&self) -> u16 {
        self.ready
            .broker_url
            .rsplit(':')
            .next()
            .unwrap()
            .parse()
            .unwrap()
    }

    pub async fn stop(mut self) {
        let _ = self.stop.take().unwrap().send(());
        tokio::time::timeout(WAIT, &mut self.task)
            .await
            .expect("daemon stops in time")
            .unwrap()
            .expect("daemon stops cleanly");
    }
}
