//! The `segments` command: API server, migrations, OpenAPI export and
//! workspace administration.

mod import;
mod seed;
mod telemetry;

use std::net::TcpListener;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use clap::{Parser, Subcommand};
use segments::app::materialization;
use segments::{Application, Settings};
use segments_conditions::Registry;
use segments_domain::Label;
use segments_store::Store;

#[derive(Debug, Parser)]
#[command(
    name = "segments",
    version,
    about = "Contacts grouped into static and dynamic segments"
)]
struct Cli {
    /// Directory holding default.toml and <SEGMENTS_ENV>.toml.
    #[arg(
        long,
        env = "SEGMENTS_CONFIG_DIR",
        default_value = "config",
        global = true
    )]
    config_dir: PathBuf,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the HTTP API, and a materializer worker unless --no-worker.
    Serve {
        /// Serve the API only; run workers separately with `segments worker`.
        #[arg(long)]
        no_worker: bool,
    },
    /// Run materializer workers only (any number may run against one database and Redis).
    Worker,
    /// Print each segment's drift between its Redis set and the database; exit 1 if any.
    Verify,
    /// Reconcile now: rebuild time-dependent segments, repair drift, sweep the change log.
    Reconcile,
    /// Apply pending database migrations and exit.
    Migrate,
    /// Print the OpenAPI document.
    Openapi,
    /// Create a workspace of generated contacts (deterministic; for benchmarks).
    Seed {
        /// How many contacts to generate.
        #[arg(long, default_value_t = 10_000)]
        contacts: u64,
        /// The random seed: the same seed gives the same contacts.
        #[arg(long, default_value_t = 1)]
        seed: u64,
    },
    /// Import contacts from a CSV or NDJSON file, by external_id (re-running updates, never duplicates).
    ///
    /// Exits 2 when some rows were rejected (they are listed with their line numbers).
    Import {
        /// The file: `.csv`, or `.ndjson`/`.jsonl` with one contact object per line.
        file: PathBuf,
        /// The workspace the contacts belong to.
        #[arg(long)]
        workspace: i64,
        /// Override the format the file name suggests.
        #[arg(long, value_enum)]
        format: Option<import::Format>,
        /// Do not draw a progress bar.
        #[arg(long)]
        quiet: bool,
    },
    /// Manage workspaces.
    Workspace {
        #[command(subcommand)]
        command: WorkspaceCommand,
    },
}

#[derive(Debug, Subcommand)]
enum WorkspaceCommand {
    /// Create a workspace and print its first API key.
    Create {
        /// A name for the workspace.
        name: String,
    },
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    if let Command::Openapi = cli.command {
        print!("{}", segments_api::openapi::document(&registry()));
        return Ok(());
    }
    let settings = Settings::load(&cli.config_dir).context("loading configuration")?;
    telemetry::init(&settings.telemetry);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let result = runtime.block_on(run(cli.command, settings));
    if let Err(e) = &result {
        tracing::error!(error = format!("{e:#}"), "segments stopped on an error");
    }
    result
}

/// The one registry of condition types: the API, the workers and the
/// OpenAPI document all read it, so a type registered here is known to
/// each. A deployment's plugins register here.
fn registry() -> Registry {
    Registry::builtin()
}

async fn run(command: Command, settings: Settings) -> anyhow::Result<()> {
    if let Command::Serve { no_worker } = command {
        return serve(settings, !no_worker).await;
    }
    // The other commands read through this store (or another over the same
    // registry).
    let store = Store::connect(&settings.database(), Arc::new(registry()))
        .await
        .context("connecting to the database")?;
    match command {
        Command::Openapi => Ok(()),
        Command::Migrate => {
            store.migrate().await.context("applying migrations")?;
            tracing::info!("migrations applied");
            Ok(())
        }
        Command::Workspace {
            command: WorkspaceCommand::Create { name },
        } => {
            store.migrate().await.context("applying migrations")?;
            let name = Label::parse(&name).map_err(|e| anyhow::anyhow!("workspace name {e}"))?;
            let (workspace, key) = store.create_workspace(&name).await?;
            println!("workspace {} ({}) created", workspace.id, workspace.name);
            println!("API key (shown once, keep it safe): {}", key.secret);
            Ok(())
        }
        Command::Seed { contacts, seed } => {
            store.migrate().await.context("applying migrations")?;
            seed::run(&store, contacts, seed).await
        }
        Command::Import {
            file,
            workspace,
            format,
            quiet,
        } => {
            store.migrate().await.context("applying migrations")?;
            let jobs = match materialization(&store, &settings).await {
                Ok(m) => m.map(|(_, jobs)| jobs),
                Err(e) => {
                    tracing::warn!(
                        error = format!("{e:#}"),
                        "no materializer: the reconciler will pick the import up"
                    );
                    None
                }
            };
            let request = import::Request {
                path: file,
                workspace: segments_domain::WorkspaceId(workspace),
                format,
                progress: !quiet,
            };
            let summary = import::run(&store, jobs.as_ref(), &request).await?;
            summary.print();
            if summary.rejected > 0 {
                std::process::exit(2);
            }
            Ok(())
        }
        // Handled before the store is connected: `Application` connects its own.
        Command::Serve { .. } => Ok(()),
        Command::Worker => {
            let (materializer, jobs) = materialization(&store, &settings).await?.context(
                "redis is disabled in the configuration: there is nothing for a worker to do",
            )?;
            let metrics = match metrics_recorder(&settings)? {
                Some(handle) if !settings.worker.metrics_bind.is_empty() => {
                    let listener = TcpListener::bind(&settings.worker.metrics_bind)
                        .with_context(|| format!("binding {}", settings.worker.metrics_bind))?;
                    tracing::info!(address = %listener.local_addr()?, "serving /metrics");
                    let exposition = segments_api::metrics::Exposition {
                        handle,
                        jobs: Some(jobs),
                    };
                    Some(segments_api::metrics_server(listener, exposition)?)
                }
                _ => None,
            };
            let metrics_handle = metrics.as_ref().map(actix_web::dev::Server::handle);
            if let Some(server) = metrics {
                tokio::spawn(server);
            }
            let shutdown = shutdown_signal();
            segments_worker::run(materializer, settings.worker(), shutdown).await?;
            if let Some(handle) = metrics_handle {
                handle.stop(true).await;
            }
            Ok(())
        }
        Command::Verify => {
            let (materializer, _) = materialization(&store, &settings)
                .await?
                .context("redis is disabled")?;
            let drifts = materializer.verify().await?;
            let mut dirty = 0;
            for d in &drifts {
                println!(
                    "workspace {} segment {}: {} (missing {}, extra {})",
                    d.workspace,
                    d.segment,
                    if d.unbuilt {
                        "not built"
                    } else if d.is_clean() {
                        "in sync"
                    } else {
                        "DRIFT"
                    },
                    d.missing,
                    d.extra
                );
                if !d.is_clean() {
                    dirty += 1;
                }
            }
            println!("{} segment(s), {dirty} with drift", drifts.len());
            if dirty > 0 {
                std::process::exit(1);
            }
            Ok(())
        }
        Command::Reconcile => {
            let (materializer, _) = materialization(&store, &settings)
                .await?
                .context("redis is disabled")?;
            let report = materializer.reconcile().await?;
            println!(
                "swept {} change(s); built {} segment(s), rebuilt {} built for an earlier definition; moved {} member(s) that time moved in {} segment(s), rebuilt {}; removed {} deleted segment(s); checked {} segment(s) for drift, repaired {} member(s) in {} segment(s)",
                report.swept_changes,
                report.built,
                report.redefined,
                report.time_moved,
                report.time_updates,
                report.time_rebuilds,
                report.stray_segments,
                report.drift_checked,
                report.repaired_members,
                report.repaired_segments,
            );
            Ok(())
        }
    }
}

/// The process's Prometheus recorder, unless metrics are off.
fn metrics_recorder(
    settings: &Settings,
) -> anyhow::Result<Option<metrics_exporter_prometheus::PrometheusHandle>> {
    if !settings.telemetry.metrics {
        return Ok(None);
    }
    Ok(Some(segments_api::metrics::recorder()?))
}

async fn serve(settings: Settings, with_worker: bool) -> anyhow::Result<()> {
    let app = Application::start(&settings, Arc::new(registry()), with_worker).await?;
    app.run_until(shutdown_signal()).await?;
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = async {
        if let Err(e) = tokio::signal::ctrl_c().await {
            tracing::warn!(error = %e, "cannot listen for Ctrl-C");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = terminate => {}
    }
}
