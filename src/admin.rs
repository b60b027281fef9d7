//! The admin socket: a Unix socket (by default `<data_dir>/admin.sock`) through which
//! `ferromq users add|delete|list` changes the users of a running broker, as `rabbitmqctl`
//! does for RabbitMQ. Run-time users are journaled by the core, so they survive restarts.
//!
//! Access control is the operating system's: the socket file is made mode 0600 and every
//! connection's peer credentials are checked (`SO_PEERCRED`), so only the broker's own user
//! and root get an answer.
//!
//! The protocol is one request per connection: a line of tab-separated fields, answered
//! with `ok` (followed, for a list, by one line per user) or one `error<TAB>why` line, after
//! which the broker closes the connection.
//!
//! | request | fields after the verb |
//! |---|---|
//! | `user-put` | name, password hash, vhosts (comma-separated), tags (comma-separated), loopback only (`0`/`1`) |
//! | `user-delete` | name |
//! | `user-list` | — (answer lines: name, vhosts, tags, loopback only, `configured` or `runtime`) |

use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use ferromq_core::{Broker, UserRecord};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt};
use tokio::net::{UnixListener, UnixStream};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// Bounds of the admin socket (`[admin]`).
#[derive(Clone, Copy, Debug)]
pub struct AdminLimits {
    /// Longest request line accepted, newline included.
    pub request_max_bytes: usize,
    /// How long a client may take to send its request and read the answer.
    pub timeout: Duration,
}

/// Why an admin request failed, on either side.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    /// No broker answers on the socket.
    #[error("cannot reach the broker's admin socket {path}: {source} (is the broker running with this configuration?)")]
    Connect {
        /// The socket.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The exchange broke off.
    #[error("admin socket: {0}")]
    Io(#[from] std::io::Error),
    /// The broker refused the request.
    #[error("{0}")]
    Refused(String),
    /// A field cannot be carried by the protocol.
    #[error("{0}")]
    Invalid(String),
}

/// Binds the admin socket at `path`, replacing a stale file that nothing answers on, and
/// makes it reachable by the owner only.
pub(crate) fn bind(path: &Path) -> std::io::Result<UnixListener> {
    use std::os::unix::fs::PermissionsExt;
    if path.exists() {
        if std::os::unix::net::UnixStream::connect(path).is_ok() {
            return Err(std::io::Error::new(
                std::io::ErrorKind::AddrInUse,
                "another broker answers on it",
            ));
        }
        std::fs::remove_file(path)?;
    }
    let listener = UnixListener::bind(path)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    Ok(listener)
}

/// Serves admin requests one at a time until shutdown, then removes the socket file.
pub(crate) fn serve(
    listener: UnixListener,
    path: PathBuf,
    broker: Broker,
    limits: AdminLimits,
    shutdown: CancellationToken,
    tasks: &TaskTracker,
) {
    tasks.spawn(async move {
        // SAFETY: geteuid has no preconditions and no memory effects.
        let own_uid = unsafe { libc::geteuid() };
        loop {
            let stream = tokio::select! {
                _ = shutdown.cancelled() => break,
                accepted = listener.accept() => match accepted {
                    Ok((stream, _)) => stream,
                    Err(e) => {
                        tracing::warn!(%e, "admin socket: accept failed");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                },
            };
            let allowed = stream
                .peer_cred()
                .is_ok_and(|c| c.uid() == own_uid || c.uid() == 0);
            if !allowed {
                tracing::warn!("admin socket: refused a client of another user");
                continue;
            }
            // One at a time, each bounded by the timeout: requests are rare and short.
            let handled = tokio::select! {
                _ = shutdown.cancelled() => break,
                r = tokio::time::timeout(limits.timeout, handle(stream, &broker, limits)) => r,
            };
            match handled {
                Ok(Ok(())) => {}
                Ok(Err(e)) => tracing::debug!(%e, "admin socket: client went away"),
                Err(_) => tracing::warn!("admin socket: a request timed out"),
            }
        }
        let _ = std::fs::remove_file(&path);
    });
}

async fn handle(stream: UnixStream, broker: &Broker, limits: AdminLimits) -> std::io::Result<()> {
    let (read, mut write) = stream.into_split();
    let mut line = String::new();
    let mut reader = tokio::io::BufReader::new(read.take(limits.request_max_bytes as u64));
    let n = reader.read_line(&mut line).await?;
    let answer = if n == 0 || !line.ends_with('\n') {
        Err(format!(
            "a request is one line of at most {} bytes, ended by a newline",
            limits.request_max_bytes
        ))
    } else {
        execute(line.trim_end_matches('\n'), broker).await
    };
    let text = match answer {
        Ok(rows) => {
            let mut s = String::from("ok\n");
            for r in rows {
                s.push_str(&r);
                s.push('\n');
            }
            s
        }
        Err(why) => format!("error\t{}\n", why.replace(['\t', '\n'], " ")),
    };
    write.write_all(text.as_bytes()).await?;
    write.shutdown().await?;
    // Read what is left of an over-long request (up to the same bound again), so that
    // closing with unread input does not reset the connection before the client has read
    // why it was refused.
    let mut rest = reader.into_inner().into_inner();
    tokio::io::copy(
        &mut (&mut rest).take(limits.request_max_bytes as u64),
        &mut tokio::io::sink(),
    )
    .await?;
    Ok(())
}

/// Carries out one request line; the answer rows, or why not.
async fn execute(line: &str, broker: &Broker) -> Result<Vec<String>, String> {
    let fields: Vec<&str> = line.split('\t').collect();
    let ticket = match fields.as_slice() {
        ["user-put", name, hash, vhosts, tags, loopback] => {
            let loopback_only = match *loopback {
                "0" => false,
                "1" => true,
                other => return Err(format!("loopback-only is 0 or 1, not '{other}'")),
            };
            let record = UserRecord {
                name: (*name).into(),
                password_hash: (*hash).into(),
                vhosts: list(vhosts),
                tags: list(tags),
                loopback_only,
            };
            broker.put_user(record).map_err(|e| e.to_string())?
        }
        ["user-delete", name] => broker.delete_user(name).map_err(|e| e.to_string())?,
        ["user-list"] => {
            let users = broker.users();
            let mut names = users.names();
            names.sort();
            return Ok(names
                .iter()
                .filter_map(|n| users.get(n))
                .map(|u| {
                    format!(
                        "{}\t{}\t{}\t{}\t{}",
                        u.name,
                        u.vhosts.join(","),
                        u.tags.join(","),
                        u8::from(u.loopback_only),
                        if users.is_configured(&u.name) {
                            "configured"
                        } else {
                            "runtime"
                        }
                    )
                })
                .collect());
        }
        [verb, ..] => {
            return Err(format!(
                "unknown request '{verb}' or wrong number of fields"
            ))
        }
        [] => return Err("empty request".into()),
    };
    // Answer only once the change is on disk, so that "ok" means it survives a crash.
    if let (Some(ticket), Some(mut waiter)) = (ticket, broker.sync_waiter()) {
        waiter.wait(ticket).await.map_err(|e| e.to_string())?;
    }
    Ok(Vec::new())
}

fn list(s: &str) -> Vec<String> {
    s.split(',')
        .filter(|p| !p.is_empty())
        .map(str::to_string)
        .collect()
}

/// Sends one request to the broker at `path` and returns the answer's rows (the client side,
/// used by `ferromq users`). Blocking: the command line has no runtime.
pub fn request(path: &Path, fields: &[&str]) -> Result<Vec<String>, AdminError> {
    for f in fields {
        if f.contains(['\t', '\n', '\r']) {
            return Err(AdminError::Invalid(format!(
                "'{}' contains a tab or a line break",
                f.escape_debug()
            )));
        }
    }
    let mut stream =
        std::os::unix::net::UnixStream::connect(path).map_err(|source| AdminError::Connect {
            path: path.to_path_buf(),
            source,
        })?;
    stream.set_read_timeout(Some(Duration::from_secs(30)))?;
    let mut line = fields.join("\t");
    line.push('\n');
    stream.write_all(line.as_bytes())?;
    let mut answer = BufReader::new(stream.take(64 << 20));
    let mut head = String::new();
    answer.read_line(&mut head)?;
    match head.trim_end_matches('\n').split_once('\t') {
        None if head == "ok\n" => answer.lines().collect::<Result<_, _>>().map_err(Into::into),
        Some(("error", why)) => Err(AdminError::Refused(why.to_string())),
        _ => Err(AdminError::Refused(format!(
            "unexpected answer from the broker: {:?}",
            head
        ))),
    }
}

/// The fields of a `user-put` request; vhost and tag names may not contain commas.
pub fn user_put_fields(record: &UserRecord) -> Result<Vec<String>, AdminError> {
    for v in record.vhosts.iter().chain(&record.tags) {
        if v.is_empty() || v.contains(',') {
            return Err(AdminError::Invalid(format!(
                "vhost and tag names are not empty and have no comma: '{v}'"
            )));
        }
    }
    Ok(vec![
        "user-put".into(),
        record.name.clone(),
        record.password_hash.clone(),
        record.vhosts.join(","),
        record.tags.join(","),
        if record.loopback_only { "1" } else { "0" }.into(),
    ])
}
