//! The `ferromq` command.

use std::io::BufRead;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use ferromq::Config;

const ENV_HELP: &str = "\
CONFIGURATION:
  With no --config, ferromq runs with its embedded default: data in ./data, and every
  listener on 127.0.0.1 at its usual port (AMQP 5672, STOMP 61613). The guest/guest user may connect
  from loopback only.

  A TOML file (--config) overrides the defaults; FERROMQ_* environment variables override
  both. An environment variable names a key path with '__' between levels:
    FERROMQ_LISTENERS__STOMP=0.0.0.0:61613     [listeners] stomp
    FERROMQ_LISTENERS__STOMP=                  turn the STOMP listener off
    FERROMQ_STOMP__CONNECTIONS_MAX=5000        [stomp] connections_max
    FERROMQ_LISTENERS__AMQP=0.0.0.0:5672       [listeners] amqp
    FERROMQ_AMQP__HEARTBEAT_S=30               [amqp] heartbeat_s
    FERROMQ_DATA_DIR=/var/lib/ferromq          data_dir
    FERROMQ_LOG=debug                          log (RUST_LOG also works and wins)

  Users go in the file, with hashes made by `ferromq hash-password`:
    [[users]]
    name = \"app\"
    password_hash = \"...\"
    vhosts = [\"/\"]

  See README.md for every key.";

/// A multi-protocol message broker.
#[derive(Parser)]
#[command(name = "ferromq", version, about, after_help = ENV_HELP)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the broker until SIGINT or SIGTERM.
    Serve {
        /// A TOML configuration file.
        #[arg(long, short)]
        config: Option<PathBuf>,
    },
    /// Print a salted hash of a password for the `[[users]]` section (reads the password
    /// from standard input when not given).
    HashPassword {
        /// The password.
        password: Option<String>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::HashPassword { password } => {
            let password = match password {
                Some(p) => p,
                None => {
                    let mut line = String::new();
                    if std::io::stdin().lock().read_line(&mut line).is_err() {
                        eprintln!("ferromq: cannot read a password from standard input");
                        return ExitCode::FAILURE;
                    }
                    line.trim_end_matches(['\r', '\n']).to_string()
                }
            };
            println!("{}", ferromq_core::hash_password(&password));
            ExitCode::SUCCESS
        }
        Command::Serve { config } => serve(config),
    }
}

fn serve(config_path: Option<PathBuf>) -> ExitCode {
    let config = match Config::load(config_path.as_deref(), std::env::vars()) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("ferromq: {e}");
            return ExitCode::FAILURE;
        }
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .or_else(|_| tracing_subscriber::EnvFilter::try_new(&config.log))
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();

    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("ferromq: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(async {
        let server = match ferromq::start(config).await {
            Ok(s) => s,
            Err(e) => {
                tracing::error!("{e}");
                return ExitCode::FAILURE;
            }
        };
        tracing::info!(version = env!("CARGO_PKG_VERSION"), "ferromq started");
        let stop = server.shutdown_token();
        tokio::spawn(async move {
            wait_for_signal().await;
            tracing::info!("shutting down");
            stop.cancel();
        });
        server.run_until_stopped().await;
        tracing::info!("stopped");
        ExitCode::SUCCESS
    })
}

async fn wait_for_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler installs");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}
