//! The `llm-gateway` binary: configuration precedence and startup errors.
#![cfg(feature = "ssr")]

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_llm-gateway");

/// A command with a clean environment: no inherited GATEWAY_* or LEPTOS_*.
fn gateway(dir: &Path) -> Command {
    let mut cmd = Command::new(BIN);
    for (key, _) in std::env::vars() {
        if key.starts_with("GATEWAY_") || key.starts_with("LEPTOS_") {
            cmd.env_remove(key);
        }
    }
    cmd.current_dir(dir)
        .env(
            "LEPTOS_CONFIG",
            concat!(env!("CARGO_MANIFEST_DIR"), "/Leptos.toml"),
        )
        .env("RUST_LOG", "warn");
    cmd
}

/// Starts `serve` and returns the address it reports, then stops it.
fn serve_address(mut cmd: Command) -> String {
    let mut child: Child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("binary runs");
    let stdout = child.stdout.take().unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut address = None;
    for line in BufReader::new(stdout).lines() {
        let line = line.unwrap();
        if let Some(addr) = line.strip_prefix("llm-gateway listening on http://") {
            address = Some(addr.to_string());
            break;
        }
        assert!(Instant::now() < deadline, "no listening line in time");
    }
    let _ = child.kill();
    let output = child.wait_with_output().unwrap();
    address.unwrap_or_else(|| {
        panic!(
            "server did not start: {}",
            String::from_utf8_lossy(&output.stderr)
        )
    })
}

fn write_config(dir: &Path, body: &str) -> std::path::PathBuf {
    let path = dir.join("config.yml");
    std::fs::write(&path, body).unwrap();
    path
}

#[test]
fn flags_beat_environment_beat_file() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(
        dir.path(),
        "host: 127.0.0.2\nport: 0\ndatabase_url: sqlite://from-file.db\nproviders: {}\npricing: {}\n",
    );

    let mut cmd = gateway(dir.path());
    cmd.args(["serve", "--config"]).arg(&config);
    assert!(serve_address(cmd).starts_with("127.0.0.2:"));
    assert!(dir.path().join("from-file.db").exists());

    let mut cmd = gateway(dir.path());
    cmd.args(["serve", "--config"])
        .arg(&config)
        .env("GATEWAY_HOST", "127.0.0.3")
        .env("GATEWAY_DATABASE_URL", "sqlite://from-env.db");
    assert!(serve_address(cmd).starts_with("127.0.0.3:"));
    assert!(dir.path().join("from-env.db").exists());

    let mut cmd = gateway(dir.path());
    cmd.args(["serve", "--config"])
        .arg(&config)
        .args([
            "--host",
            "127.0.0.4",
            "--database-url",
            "sqlite://from-flag.db",
        ])
        .env("GATEWAY_HOST", "127.0.0.3")
        .env("GATEWAY_DATABASE_URL", "sqlite://from-env.db");
    assert!(serve_address(cmd).starts_with("127.0.0.4:"));
    assert!(dir.path().join("from-flag.db").exists());
}

#[test]
fn config_file_comes_from_gateway_config() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(
        dir.path(),
        "host: 127.0.0.5\nport: 0\ndatabase_url: sqlite://env-config.db\n",
    );
    let mut cmd = gateway(dir.path());
    cmd.arg("serve").env("GATEWAY_CONFIG", &config);
    assert!(serve_address(cmd).starts_with("127.0.0.5:"));
}

fn startup_error(dir: &Path, yaml: &str, env: &[(&str, &str)]) -> String {
    let config = write_config(dir, yaml);
    let mut cmd = gateway(dir);
    cmd.args(["serve", "--config"])
        .arg(&config)
        .envs(env.iter().copied());
    let output = cmd.output().unwrap();
    assert!(!output.status.success(), "must not start with {yaml:?}");
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[test]
fn unknown_keys_and_bad_values_stop_startup() {
    let dir = tempfile::tempdir().unwrap();
    let stderr = startup_error(dir.path(), "port: 0\nmaster_kye: abc\n", &[]);
    assert!(stderr.contains("master_kye"), "{stderr}");
    let stderr = startup_error(
        dir.path(),
        "port: 0\nproviders:\n  openai: {api_base: x, tls: true}\n",
        &[],
    );
    assert!(
        stderr.contains("tls") && stderr.contains("providers.openai"),
        "{stderr}"
    );
    let stderr = startup_error(dir.path(), "port: seventy\n", &[]);
    assert!(stderr.contains("port"), "{stderr}");
    let stderr = startup_error(dir.path(), "port: 0\n", &[("GATEWAY_PORT", "-1")]);
    assert!(stderr.contains("GATEWAY_PORT"), "{stderr}");
}

#[test]
fn unset_variables_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let stderr = startup_error(
        dir.path(),
        "port: 0\nmaster_key: ${GATEWAY_MASTER_KEY}\n",
        &[],
    );
    assert!(stderr.contains("GATEWAY_MASTER_KEY"), "{stderr}");
}

#[test]
fn the_example_config_starts() {
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = gateway(dir.path());
    cmd.args([
        "serve",
        "--config",
        concat!(env!("CARGO_MANIFEST_DIR"), "/config.example.yml"),
    ])
    .args(["--port", "0", "--database-url", "sqlite://example.db"])
    .env("GATEWAY_MASTER_KEY", "example-master-key-123456");
    assert!(serve_address(cmd).starts_with("127.0.0.1:"));
}

#[test]
fn migrate_creates_the_database_and_its_folder() {
    let dir = tempfile::tempdir().unwrap();
    let output = gateway(dir.path())
        .args(["migrate", "--database-url", "sqlite://deep/folder/gw.db"])
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(dir.path().join("deep/folder/gw.db").exists());
}
