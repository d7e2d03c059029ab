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
pub fn shutdown_signal() -> impl Future<Output = ()> + Send + 'static {
    async {
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
}
