//! Wiring: opens the store, builds providers and the mailer, and runs the
//! SMTP server, the dispatcher and the reply sender until shutdown.

use crate::config::Config;
use crate::dispatch::Dispatcher;
use crate::pipeline::Pipeline;
use crate::replies::Mailer;
use crate::replies::sender::ReplySender;
use crate::shutdown::{self, Shutdown, Trigger};
use crate::store::Store;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::net::TcpListener;
use tokio::sync::Notify;
use tokio::task::JoinSet;

/// Why the daemon could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The store could not be opened.
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    /// A provider could not be set up.
    #[error(transparent)]
    Provider(#[from] crate::providers::ProviderError),
    /// The reply transport or templates are unusable.
    #[error("replies: {0}")]
    Replies(#[from] crate::replies::ReplyError),
    /// The SMTP address cannot be bound.
    #[error("smtp.listen {addr}: {source}")]
    Bind {
        /// The address.
        addr: String,
        /// The error.
        source: std::io::Error,
    },
    /// The implicit-TLS SMTP address cannot be bound.
    #[error("smtp.listen_tls {addr}: {source}")]
    BindTls {
        /// The address.
        addr: String,
        /// The error.
        source: std::io::Error,
    },
    /// The TLS certificate or key is unusable.
    #[error(transparent)]
    Tls(#[from] crate::smtp::TlsError),
}

/// The parts shared by `serve` and `deliver`.
pub struct Core {
    /// The store.
    pub store: Arc<dyn Store>,
    /// Email → stored request.
    pub pipeline: Arc<Pipeline>,
    /// Rung when jobs are queued.
    pub dispatch_wake: Arc<Notify>,
    /// Rung when replies are queued.
    pub replies_wake: Arc<Notify>,
}

impl Core {
    /// Opens the store and builds the pipeline.
    pub async fn open(config: &Config) -> Result<Core, StartError> {
        if !crate::request::phone::warm_up() {
            tracing::warn!("phone number metadata did not read a sample number as expected");
        }
        let store = crate::store::open(&config.store).await?;
        let dispatch_wake = Arc::new(Notify::new());
        let replies_wake = Arc::new(Notify::new());
        let pipeline = Arc::new(Pipeline::new(
            config.pipeline_setup(),
            store.clone(),
            dispatch_wake.clone(),
            replies_wake.clone(),
        ));
        pipeline.seed_limits().await?;
        Ok(Core {
            store,
            pipeline,
            dispatch_wake,
            replies_wake,
        })
    }
}

/// A running daemon.
pub struct Running {
    /// Where SMTP listens (the real port when the config said 0).
    pub smtp_addr: SocketAddr,
    /// Where implicit-TLS SMTP listens (`smtp.listen_tls`), if it does.
    pub smtp_tls_addr: Option<SocketAddr>,
    /// The TLS identity SMTP uses, if any: [`crate::smtp::ServerTls::reload`]
    /// re-reads it (SIGHUP does).
    pub smtp_tls: Option<Arc<crate::smtp::ServerTls>>,
    /// The store, for inspection.
    pub store: Arc<dyn Store>,
    /// Stops everything.
    trigger: Trigger,
    /// The daemon's tasks.
    tasks: JoinSet<()>,
}

/// Starts the daemon: binds `smtp.listen` and runs every task.
pub async fn start(config: Config) -> Result<Running, StartError> {
    let listener = TcpListener::bind(&config.smtp.listen)
        .await
        .map_err(|source| StartError::Bind {
            addr: config.smtp.listen.clone(),
            source,
        })?;
    start_with_listener(config, listener).await
}

/// Starts the daemon on an already bound listener.
pub async fn start_with_listener(
    config: Config,
    listener: TcpListener,
) -> Result<Running, StartError> {
    let smtp_addr = listener.local_addr().map_err(|source| StartError::Bind {
        addr: config.smtp.listen.clone(),
        source,
    })?;
    let smtp_tls = crate::smtp::ServerTls::from_config(&config.smtp)?;
    let tls_listener = match &config.smtp.listen_tls {
        Some(addr) => {
            Some(
                TcpListener::bind(addr)
                    .await
                    .map_err(|source| StartError::BindTls {
                        addr: addr.clone(),
                        source,
                    })?,
            )
        }
        None => None,
    };
    let smtp_tls_addr = match &tls_listener {
        Some(listener) => Some(
            listener
                .local_addr()
                .map_err(|source| StartError::BindTls {
                    addr: config.smtp.listen_tls.clone().unwrap_or_default(),
                    source,
                })?,
        ),
        None => None,
    };
    let core = Core::open(&config).await?;
    let providers = crate::providers::build_with_clock(&config.providers, &config.clock)?;
    let mailer = Arc::new(Mailer::new(&config.replies)?);
    let (trigger, listen) = shutdown::channel();
    let mut tasks = JoinSet::new();

    let dispatcher = Arc::new(Dispatcher::new(
        config.dispatch_setup(),
        core.store.clone(),
        providers,
        core.dispatch_wake.clone(),
        core.replies_wake.clone(),
    ));
    tasks.spawn(dispatcher.run(listen.clone()));
    let replies = ReplySender::new(
        &config.replies,
        core.store.clone(),
        mailer,
        core.replies_wake.clone(),
    );
    tasks.spawn(replies.run(listen.clone()));
    if config.store.retention_days > 0 {
        tasks.spawn(crate::store::retention(
            core.store.clone(),
            config.store.retention_days,
            listen.clone(),
        ));
    }
    let smtp_config = Arc::new(config.smtp.clone());
    let handler: Arc<dyn crate::smtp::Handler> = core.pipeline.clone();
    {
        // Always listened to (SIGHUP's default action would end the
        // daemon: `systemctl reload` must never do that), from here, before
        // `start` returns: a SIGHUP sent once the daemon is up is never
        // missed.
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) {
            Ok(hangup) => {
                tasks.spawn(reload_on_sighup(
                    core.pipeline.clone(),
                    smtp_tls.clone(),
                    hangup,
                    listen.clone(),
                ));
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot listen to SIGHUP: groups files and the TLS certificate will not be re-read");
            }
        }
    }
    let mut smtp_stop: Shutdown = listen;
    let listeners = crate::smtp::Listeners {
        plain: listener,
        implicit_tls: tls_listener,
    };
    tasks.spawn(crate::smtp::serve(
        listeners,
        smtp_config,
        handler,
        smtp_tls.clone(),
        async move { smtp_stop.wait().await },
    ));
    tracing::info!(%smtp_addr, ?smtp_tls_addr, "mail2sms is running");
    Ok(Running {
        smtp_addr,
        smtp_tls_addr,
        smtp_tls,
        store: core.store,
        trigger,
        tasks,
    })
}

/// Re-reads what SIGHUP re-reads, at each one until shutdown: the alert
/// accounts' `groups_file`s (a bad file keeps its account's old groups,
/// logged by the pipeline) and the SMTP certificate and key (a bad new pair
/// is logged and the one in use kept).
async fn reload_on_sighup(
    pipeline: Arc<Pipeline>,
    tls: Option<Arc<crate::smtp::ServerTls>>,
    mut hangup: tokio::signal::unix::Signal,
    mut stop: Shutdown,
) {
    loop {
        tokio::select! {
            () = stop.wait() => return,
            got = hangup.recv() => {
                if got.is_none() {
                    return;
                }
                if pipeline.has_groups_files() {
                    // Reading files blocks: not on the runtime's threads.
                    let rereading = pipeline.clone();
                    match tokio::task::spawn_blocking(move || rereading.reload_groups()).await {
                        Ok(errors) => tracing::info!(errors = errors.len(), "SIGHUP: groups files re-read"),
                        Err(error) => tracing::error!(%error, "SIGHUP: re-reading groups files failed"),
                    }
                } else if tls.is_none() {
                    tracing::info!("SIGHUP: nothing to re-read (no groups_file, no TLS certificate)");
                }
                let Some(tls) = &tls else { continue };
                // Reading files blocks: not on the runtime's threads.
                let reloading = tls.clone();
                match tokio::task::spawn_blocking(move || reloading.reload()).await {
                    Ok(Ok(())) => tracing::info!("SMTP TLS certificate and key reloaded"),
                    Ok(Err(error)) => tracing::error!(%error, "SMTP TLS reload failed; keeping the certificate in use"),
                    Err(error) => tracing::error!(%error, "SMTP TLS reload failed"),
                }
            }
        }
    }
}

impl Running {
    /// Stops accepting mail, lets work in progress finish, and returns.
    pub async fn stop(mut self) {
        self.trigger.fire();
        while self.tasks.join_next().await.is_some() {}
    }

    /// Runs until one of the tasks ends (they only end on shutdown).
    pub async fn wait(&mut self) {
        let _ = self.tasks.join_next().await;
    }
}
