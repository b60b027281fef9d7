//! `ferromq users` against a running broker: users added at run time can log in, survive a
//! restart, can be deleted; configured users and bad requests are refused with a clear
//! message, and the admin socket goes away with the broker.

mod common;

use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command as Process, Stdio};

use common::Client;
use ferromq::config::UserSection;
use ferromq_stomp::codec::Command;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// What `ferromq users …` did: exit success, standard output, standard error.
struct Run {
    ok: bool,
    out: String,
    err: String,
}

/// Runs `ferromq users <args>` for the broker whose data directory is `data`, with `stdin`
/// as its standard input (off the runtime: it blocks).
async fn users(data: &Path, args: &[&str], stdin: &str) -> Run {
    let (data, args, stdin) = (
        data.to_path_buf(),
        args.iter().map(|a| a.to_string()).collect::<Vec<_>>(),
        stdin.to_string(),
    );
    tokio::task::spawn_blocking(move || {
        let mut child = Process::new(env!("CARGO_BIN_EXE_ferromq"))
            .arg("users")
            .args(&args)
            .env("FERROMQ_DATA_DIR", &data)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run ferromq users");
        child
            .stdin
            .take()
            .unwrap()
            .write_all(stdin.as_bytes())
            .unwrap();
        let out = child.wait_with_output().unwrap();
        Run {
            ok: out.status.success(),
            out: String::from_utf8_lossy(&out.stdout).into_owned(),
            err: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    })
    .await
    .unwrap()
}

/// STOMP CONNECT as `user`; the command of the broker's answer.
async fn login(addr: SocketAddr, user: &str, pass: &str) -> Command {
    let mut c = Client::open(addr).await;
    c.send_frame(
        Command::Connect,
        &[
            ("accept-version", "1.2"),
            ("host", "/"),
            ("login", user),
            ("passcode", pass),
        ],
        b"",
    )
    .await;
    c.frame().await.command
}

fn data_dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("ferromq-admin-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    d
}

fn with_ops(data: &Path) -> impl FnOnce(&mut ferromq::Config) {
    let data = data.to_path_buf();
    move |c| {
        c.data_dir = data;
        c.users.push(UserSection {
            name: "ops".into(),
            password_hash: ferromq_core::hash_password("ops"),
            vhosts: vec!["*".into()],
            tags: vec!["administrator".into()],
            loopback_only: false,
        });
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn users_added_at_run_time_log_in_survive_a_restart_and_can_be_deleted() {
    let data = data_dir("users");
    let server = common::broker(with_ops(&data)).await;
    let stomp = server.stomp_addr().unwrap();
    assert_eq!(login(stomp, "alice", "s3cret").await, Command::Error);

    let added = users(
        &data,
        &["add", "alice", "--vhost", "/", "--tag", "app"],
        "s3cret\n",
    )
    .await;
    assert!(added.ok, "{}", added.err);
    assert_eq!(login(stomp, "alice", "s3cret").await, Command::Connected);
    assert_eq!(login(stomp, "alice", "wrong").await, Command::Error);

    let listed = users(&data, &["list"], "").await;
    assert!(listed.ok, "{}", listed.err);
    assert_eq!(
        listed.out,
        "alice\t/\tapp\t0\truntime\nops\t*\tadministrator\t0\tconfigured\n"
    );

    // Configured users belong to the configuration.
    let refused = users(&data, &["add", "ops", "other"], "").await;
    assert!(!refused.ok);
    assert!(
        refused.err.contains("defined in the configuration"),
        "{}",
        refused.err
    );
    assert_eq!(login(stomp, "ops", "ops").await, Command::Connected);

    // A restart keeps alice; the socket is gone while the broker is.
    server.shutdown().await;
    let down = users(&data, &["list"], "").await;
    assert!(!down.ok);
    assert!(down.err.contains("cannot reach"), "{}", down.err);
    let server = common::broker(with_ops(&data)).await;
    let stomp = server.stomp_addr().unwrap();
    assert_eq!(login(stomp, "alice", "s3cret").await, Command::Connected);

    let deleted = users(&data, &["delete", "alice"], "").await;
    assert!(deleted.ok, "{}", deleted.err);
    assert_eq!(login(stomp, "alice", "s3cret").await, Command::Error);
    let again = users(&data, &["delete", "alice"], "").await;
    assert!(!again.ok);
    assert!(again.err.contains("no user 'alice'"), "{}", again.err);

    // And the deletion outlives a restart too.
    server.shutdown().await;
    let server = common::broker(with_ops(&data)).await;
    assert_eq!(
        login(server.stomp_addr().unwrap(), "alice", "s3cret").await,
        Command::Error
    );
    server.shutdown().await;
    let _ = std::fs::remove_dir_all(&data);
}

/// Sends `request` on the admin socket of the broker in `data`; the whole answer.
async fn raw(data: &Path, request: &[u8]) -> String {
    let mut s = tokio::net::UnixStream::connect(data.join("admin.sock"))
        .await
        .unwrap();
    // The broker may close before reading everything it was sent: ignore a broken pipe.
    let _ = s.write_all(request).await;
    let _ = s.shutdown().await;
    let mut answer = String::new();
    let _ = s.read_to_string(&mut answer).await;
    answer
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_admin_requests_get_an_error_and_the_socket_keeps_serving() {
    let data = data_dir("bad");
    let server = common::broker(with_ops(&data)).await;

    assert!(raw(&data, b"user-drop\tx\n")
        .await
        .starts_with("error\tunknown request 'user-drop'"));
    assert!(raw(&data, b"user-put\tbob\tnot-a-hash\t/\t\t0\n")
        .await
        .starts_with("error\tINVALID_ARGUMENT - password_hash"));
    assert!(raw(&data, b"user-put\tbob\tx\t/\t\tmaybe\n")
        .await
        .starts_with("error\tloopback-only is 0 or 1"));
    // Longer than request_max_bytes (64 KiB), and a request without its newline.
    let long = vec![b'a'; 70 * 1024];
    assert!(raw(&data, &long)
        .await
        .starts_with("error\ta request is one line"));
    assert!(raw(&data, b"user-list")
        .await
        .starts_with("error\ta request is one line"));

    // Fields the protocol cannot carry are refused by the command itself.
    let comma = users(&data, &["add", "carol", "pw", "--vhost", "a,b"], "").await;
    assert!(!comma.ok);
    assert!(comma.err.contains("no comma"), "{}", comma.err);

    let listed = users(&data, &["list"], "").await;
    assert!(listed.ok, "{}", listed.err);
    assert_eq!(listed.out, "ops\t*\tadministrator\t0\tconfigured\n");

    server.shutdown().await;
    assert!(!data.join("admin.sock").exists());
    let _ = std::fs::remove_dir_all(&data);
}
