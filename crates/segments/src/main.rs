//! The `segments` command: API server, migrations, OpenAPI export and
//! workspace administration.

mod config;
mod seed;
mod telemetry;

use std::net::TcpListener;
use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand};
use segments_api::AppState;
use segments_domain::Label;
use segments_store::Store;

use crate::config::Settings;

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
    /// Run the HTTP API.
    Serve,
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
        print!("{}", segments_api::openapi::document());
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

async fn run(command: Command, settings: Settings) -> anyhow::Result<()> {
    let store = Store::connect(&settings.database())
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
        Command::Serve => serve(store, settings).await,
    }
}

async fn serve(store: Store, settings: Settings) -> anyhow::Result<()> {
    if settings.database.migrate_on_start {
        store.migrate().await.context("applying migrations")?;
    }
    let listener = TcpListener::bind(&settings.http.bind)
        .with_context(|| format!("binding {}", settings.http.bind))?;
    tracing::info!(address = %listener.local_addr()?, "serving HTTP; Swagger UI at /swagger-ui/");
    let state = AppState {
        engine: settings.engine(),
        ..AppState::new(store, segments_conditions::Registry::builtin())
    };
    let server = segments_api::serve(listener, state, settings.http())?;
    let handle = server.handle();
    tokio::select! {
        result = server => result.context("HTTP server failed")?,
        () = shutdown_signal() => {
            tracing::info!("shutting down: draining in-flight requests");
            handle.stop(true).await;
        }
    }
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
