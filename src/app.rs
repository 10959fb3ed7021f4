//! `herald serve`: wires the store, the ingest writer, the delivery engine
//! and the HTTP API together, and handles signals (SIGTERM/SIGINT drain,
//! SIGHUP reload).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use tokio::net::TcpListener;
use tokio::sync::{oneshot, watch};
use tracing::{info, warn};

use crate::config::Config;
use crate::delivery::{Delivery, Replica, Wakers};
use crate::ingest::writer::IngestWriter;
use crate::ingest::{AppState, Reload};
use crate::reloader::{Reloader, adapters};
use crate::web::WebChannel;

/// How long in-flight platform calls may take to finish on shutdown.
pub const DRAIN_DEADLINE: Duration = Duration::from_secs(10);

/// Run the gateway until SIGTERM/SIGINT (or until `stop` fires, for the
/// demo and tests). `bound` receives the listening address once bound.
pub async fn serve(
    config: Config,
    path: Option<PathBuf>,
    bound: Option<oneshot::Sender<SocketAddr>>,
) -> Result<()> {
    crate::redact::install(&config);
    let metrics = crate::metrics::install().context("could not install the metrics recorder")?;
    let listen = config.server.listen;
    let listener =
        std::net::TcpListener::bind(listen).with_context(|| format!("could not listen on {listen}"))?;
    listener
        .set_nonblocking(true)
        .context("could not make the listening socket non-blocking")?;
    let local = listener
        .local_addr()
        .context("could not read the bound address")?;
    info!(listen = %local, "listening; opening the store");
    let Some(store) = crate::connecting::open_store(&config.store, &listener, shutdown_signal()).await?
    else {
        info!("stopped before the store was reachable");
        return Ok(());
    };
    // Receipts an earlier process left in flight are recovered channel by
    // channel, as their leases are taken (`delivery/leases.rs`).
    let bus = crate::hints::Bus::default();
    let web = WebChannel::new(store.clone(), bus.clone());
    // The channels of events' alert policies are served like configured ones.
    let base = Arc::new(config);
    let runtime = store
        .runtime_channels()
        .await
        .context("could not read the channels of events' alert policies")?;
    let config = base.with_runtime_channels(&runtime);
    let adapters = adapters(&web, &config)?;
    let wakers = Wakers::with_bus(bus.clone());
    if let Err(e) = crate::hints::connect(&store, &bus, wakers.clone(), web.clone()).await {
        // Without hints, work another replica accepted waits for the
        // actors' next poll (seconds), nothing is lost.
        warn!(error = %e, "could not listen for the other replicas' hints; delivery relies on polling");
    }
    let replica = Replica {
        id: crate::store::new_replica_id(),
        listen: local.to_string(),
    };
    let delivery = Delivery::start(&config, &store, &adapters, &wakers, replica).await?;
    let throttles = delivery.throttles();
    info!(summary = %config.summary(), "starting");
    let (config_tx, config_rx) = watch::channel(Arc::new(config));

    let commit_wakers = wakers.clone();
    let writer = IngestWriter::start(
        store.clone(),
        config_rx.clone(),
        Box::new(move |result| {
            let accepted: usize = result.reports.iter().map(|r| r.accepted).sum();
            let duplicates: usize = result.reports.iter().map(|r| r.duplicates).sum();
            crate::metrics::ingested(accepted, duplicates, result.unrouted_tasks);
            commit_wakers.wake_urgent(&result.receipt_channels);
            commit_wakers.wake(&result.touched_channels);
        }),
    );
    let contracts = tokio::spawn(crate::contracts::watch(
        store.clone(),
        writer.clone(),
        config_rx.clone(),
        wakers.clone(),
    ));
    let reloader = Arc::new(Reloader::new(
        path,
        store.clone(),
        base,
        runtime,
        config_tx,
        delivery,
        web.clone(),
    ));
    let refreshing = tokio::spawn(reloader.clone().keep_refreshing());
    let pruning = tokio::spawn(crate::retention::keep_pruning(store.clone(), config_rx.clone()));
    let state = AppState {
        store: store.clone(),
        writer,
        config: config_rx.clone(),
        reloader: reloader.clone(),
        waker: Arc::new(wakers),
        metrics,
    };
    let telegram_poll = match adapters.for_platform(herald_messaging::Platform::Telegram) {
        Some(bot) if crate::inbound::telegram_poll::wanted(&state.config.borrow()) => Some(tokio::spawn(
            crate::inbound::telegram_poll::run(state.clone(), bot),
        )),
        _ => None,
    };
    // Slack Socket Mode and the Discord Gateway, where configured; each
    // connection stays open until `listening` is dropped.
    let mut listening = Vec::new();
    for platform in [
        herald_messaging::Platform::Slack,
        herald_messaging::Platform::Discord,
    ] {
        let wanted = crate::inbound::pushed::wanted(&state.config.borrow(), platform);
        if let Some(adapter) = adapters.for_platform(platform).filter(|_| wanted) {
            listening.extend(crate::inbound::pushed::start(state.clone(), platform, adapter).await);
        }
    }
    let app = crate::ingest::routes(state)
        .merge(crate::web::routes(web.clone(), config_rx.clone()))
        .merge(crate::web::overview::routes(
            store.clone(),
            config_rx.clone(),
            throttles,
            web.clone(),
        ))
        .fallback(crate::ingest::not_found)
        .layer(axum::middleware::from_fn_with_state(
            config_rx,
            crate::ingest::reads::guard,
        ));

    let listener = TcpListener::from_std(listener).context("could not serve on the listening socket")?;
    info!(address = %local, "ready");
    if let Some(tx) = bound {
        // The caller may have stopped waiting; serving goes on regardless.
        let _ignored = tx.send(local).is_err();
    }
    spawn_sighup(reloader.clone());
    axum::serve(listener, app)
        .with_graceful_shutdown({
            let web = web.clone();
            async move {
                shutdown_signal().await;
                web.close_viewers();
            }
        })
        .await
        .context("the HTTP server failed")?;

    info!("stopped accepting; draining in-flight deliveries");
    contracts.abort();
    refreshing.abort();
    pruning.abort();
    if let Some(polling) = telegram_poll {
        polling.abort();
    }
    drop(listening);
    if let Some(delivery) = reloader.delivery.lock().await.take() {
        delivery.shutdown(DRAIN_DEADLINE).await;
    }
    store.close().await;
    info!("stopped");
    Ok(())
}

#[cfg(unix)]
fn spawn_sighup(reloader: Arc<Reloader>) {
    use tokio::signal::unix::{SignalKind, signal};
    tokio::spawn(async move {
        let mut hup = match signal(SignalKind::hangup()) {
            Ok(s) => s,
            Err(e) => {
                warn!(error = %e, "cannot listen for SIGHUP; reload with POST /-/reload");
                return;
            }
        };
        while hup.recv().await.is_some() {
            info!("SIGHUP: reloading config");
            // Success and failure are both logged by reload itself.
            let _logged = reloader.reload().await.is_ok();
        }
    });
}

#[cfg(not(unix))]
fn spawn_sighup(_reloader: Arc<Reloader>) {}

/// Resolves on SIGTERM or SIGINT.
async fn shutdown_signal() {
    let ctrl_c = async {
        if let Err(e) = tokio::signal::ctrl_c().await {
            warn!(error = %e, "cannot listen for SIGINT");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let term = async {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(e) => {
                warn!(error = %e, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => info!("SIGINT received"),
        _ = term => info!("SIGTERM received"),
    }
}
