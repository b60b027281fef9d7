//! The real ActiveMQ JMS client (Debian's `libactivemq-java`) against the broker: one JVM
//! runs every scenario of `interop/jms/JmsScenarios.java` and reports each one.
//! `scripts/test.sh` installs the package; without it (or without a JDK) this test fails
//! and says what to install.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

const JARS: [&str; 6] = [
    "activemq-client.jar",
    "geronimo-jms_1.1_spec.jar",
    "geronimo-j2ee-management-1.1-spec.jar",
    "hawtbuf.jar",
    "slf4j-api.jar",
    "slf4j-nop.jar",
];

fn classpath() -> String {
    let dir = Path::new("/usr/share/java");
    let missing: Vec<&str> = JARS
        .iter()
        .copied()
        .filter(|j| !dir.join(j).exists())
        .collect();
    assert!(
        missing.is_empty(),
        "missing {missing:?} in /usr/share/java: install Debian's libactivemq-java (scripts/test.sh does)"
    );
    JARS.iter()
        .map(|j| dir.join(j).display().to_string())
        .collect::<Vec<_>>()
        .join(":")
}

fn compile(cp: &str) -> PathBuf {
    let out = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("jms-classes");
    std::fs::create_dir_all(&out).expect("class output dir");
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("interop/jms/JmsScenarios.java");
    let status = Command::new("javac")
        .args(["-nowarn", "-d"])
        .arg(&out)
        .args(["-cp", cp])
        .arg(&src)
        .status()
        .expect("javac runs (install a JDK, e.g. openjdk-17-jdk-headless)");
    assert!(status.success(), "javac failed on {}", src.display());
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jms_client_scenarios() {
    let cp = classpath();
    let classes = compile(&cp);
    let server = common::broker(|_| {}).await;
    let ow = server.openwire_addr().expect("openwire listener").port();
    let stomp = server.stomp_addr().expect("stomp listener").port();
    let run_cp = format!("{}:{cp}", classes.display());
    let output = tokio::task::spawn_blocking(move || {
        Command::new("java")
            .args([
                "-cp",
                &run_cp,
                "JmsScenarios",
                &ow.to_string(),
                &stomp.to_string(),
            ])
            .output()
            .expect("java runs")
    })
    .await
    .expect("java task");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    let passed = stdout.lines().filter(|l| l.starts_with("PASS ")).count();
    let failed: Vec<&str> = stdout.lines().filter(|l| l.starts_with("FAIL ")).collect();
    server.shutdown().await;
    assert!(
        output.status.success() && failed.is_empty() && passed >= 18,
        "JMS scenarios: {passed} passed, failures:\n{}\nstdout:\n{stdout}\nstderr:\n{stderr}",
        failed.join("\n")
    );
}
