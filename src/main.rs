//! The `ferromq` command.

use std::io::BufRead;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use ferromq::{admin, Config};

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
  or, while the broker runs, are added with `ferromq users add NAME` (kept across restarts).

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
    /// Add, delete or list the users of the running broker (through its admin socket,
    /// `<data_dir>/admin.sock`). Such users are kept across restarts; users of the
    /// configuration file cannot be changed this way.
    Users {
        /// The broker's TOML configuration file (to find its data directory).
        #[arg(long, short, global = true)]
        config: Option<PathBuf>,
        #[command(subcommand)]
        action: UsersAction,
    },
}

#[derive(Subcommand)]
enum UsersAction {
    /// Create a user, or replace one made with this command (reads the password from
    /// standard input when not given).
    Add {
        /// Login name.
        name: String,
        /// The password.
        password: Option<String>,
        /// A vhost the user may open (repeatable; `*` for all). Default: `/`.
        #[arg(long = "vhost")]
        vhosts: Vec<String>,
        /// A tag such as `administrator` (repeatable).
        #[arg(long = "tag")]
        tags: Vec<String>,
        /// The user may connect from a loopback address only.
        #[arg(long)]
        loopback_only: bool,
    },
    /// Delete a user made with `users add`.
    Delete {
        /// Login name.
        name: String,
    },
    /// List every user: name, vhosts, tags, loopback only, and whether it comes from the
    /// configuration or was added at run time.
    List,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::HashPassword { password } => match password_or_stdin(password) {
            Some(password) => {
                println!("{}", ferromq_core::hash_password(&password));
                ExitCode::SUCCESS
            }
            None => ExitCode::FAILURE,
        },
        Command::Serve { config } => serve(config),
        Command::Users { config, action } => users(config, action),
    }
}

/// The password given, or the first line of standard input.
fn password_or_stdin(given: Option<String>) -> Option<String> {
    if given.is_some() {
        return given;
    }
    let mut line = String::new();
    match std::io::stdin().lock().read_line(&mut line) {
        Ok(n) if n > 0 => Some(line.trim_end_matches(['\r', '\n']).to_string()),
        _ => {
            eprintln!("ferromq: cannot read a password from standard input");
            None
        }
    }
}

fn users(config_path: Option<PathBuf>, action: UsersAction) -> ExitCode {
    let config = match Config::load(config_path.as_deref(), std::env::vars()) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("ferromq: {e}");
            return ExitCode::FAILURE;
        }
    };
    let Some(socket) = config.admin_socket() else {
        eprintln!("ferromq: the admin socket is turned off ([admin] socket = \"\")");
        return ExitCode::FAILURE;
    };
    let fields = match action {
        UsersAction::Add {
            name,
            password,
            vhosts,
            tags,
            loopback_only,
        } => {
            let Some(password) = password_or_stdin(password) else {
                return ExitCode::FAILURE;
            };
            let record = ferromq_core::UserRecord {
                name,
                password_hash: ferromq_core::hash_password(&password),
                vhosts: if vhosts.is_empty() {
                    vec!["/".into()]
                } else {
                    vhosts
                },
                tags,
                loopback_only,
            };
            match admin::user_put_fields(&record) {
                Ok(f) => f,
                Err(e) => {
                    eprintln!("ferromq: {e}");
                    return ExitCode::FAILURE;
                }
            }
        }
        UsersAction::Delete { name } => vec!["user-delete".into(), name],
        UsersAction::List => vec!["user-list".into()],
    };
    let fields: Vec<&str> = fields.iter().map(String::as_str).collect();
    match admin::request(&socket, &fields) {
        Ok(rows) => {
            for r in rows {
                println!("{r}");
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("ferromq: {e}");
            ExitCode::FAILURE
        }
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
