//! Process plumbing shared by the subcommands: the tokio runtime and the
//! shutdown signal. tokio lives at the edges: the library's pure modules
//! never see these.

use std::future::Future;

/// A multi-threaded tokio runtime with `workers` worker threads.
pub fn runtime(workers: usize) -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(workers.max(1))
        .enable_all()
        .build()
}

/// Resolves on ctrl-c or SIGTERM (the one shutdown signal of every long
/// running subcommand; pass it as the `shutdown` future).
pub async fn shutdown_signal() {
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => log::info!("ctrl-c received"),
        _ = term => log::info!("SIGTERM received"),
    }
}

/// One shutdown future shared by several tasks: each [`Stop::wait`] resolves
/// once the future given to [`Stop::new`] has (call it on a runtime).
#[derive(Clone)]
pub struct Stop(tokio::sync::watch::Receiver<bool>);

impl Stop {
    pub fn new(shutdown: impl Future<Output = ()> + Send + 'static) -> Stop {
        let (tx, rx) = tokio::sync::watch::channel(false);
        tokio::spawn(async move {
            shutdown.await;
            let _ = tx.send(true);
        });
        Stop(rx)
    }

    /// Resolves when shutdown has begun.
    pub fn wait(&self) -> impl Future<Output = ()> + Send + 'static {
        let mut rx = self.0.clone();
        async move {
            let _ = rx.wait_for(|s| *s).await;
        }
    }
}
