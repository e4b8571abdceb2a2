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
    cmd.current_dir(dir).env("RUST_LOG", "warn");
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

/// Runs an operator command on `db_url`; returns its parsed `--json` output.
fn operate(dir: &Path, db_url: &str, args: &[&str]) -> serde_json::Value {
    let output = gateway(dir)
        .args(args)
        .args(["--database-url", db_url, "--json"])
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).unwrap_or_else(|e| {
        panic!(
            "{args:?}: not JSON ({e}): {}",
            String::from_utf8_lossy(&output.stdout)
        )
    })
}

#[test]
fn operators_manage_users_keys_and_prices_from_the_terminal() {
    let dir = tempfile::tempdir().unwrap();
    let db = "sqlite://ops.db";
    let user = operate(
        dir.path(),
        db,
        &[
            "users",
            "create",
            "--id",
            "ops",
            "--email",
            "Ops@Example.com",
            "--admin",
        ],
    );
    assert_eq!(user["user_id"], "ops");
    assert_eq!(user["email"], "ops@example.com");
    assert_eq!(user["role"], "admin");
    let credited = operate(
        dir.path(),
        db,
        &["users", "credit", "ops@example.com", "12.50"],
    );
    assert_eq!(credited["balance_nanos"], 12_500_000_000i64);
    let credited = operate(
        dir.path(),
        db,
        &["users", "credit", "ops", "-2.5", "--note", "refund"],
    );
    assert_eq!(credited["balance"], "10.00");
    let listed = operate(dir.path(), db, &["users", "list"]);
    assert_eq!(listed.as_array().unwrap().len(), 1);
    let demoted = operate(dir.path(), db, &["users", "set-role", "ops", "user"]);
    assert_eq!(demoted["role"], "user");

    let key = operate(
        dir.path(),
        db,
        &[
            "keys",
            "create",
            "--user",
            "ops",
            "--allowed-models",
            "openai:*,gpt-4o",
            "--rpm-limit",
            "5",
        ],
    );
    assert!(key["key"].as_str().unwrap().starts_with("llm_sk_"));
    assert_eq!(
        key["allowed_models"],
        serde_json::json!(["openai:*", "gpt-4o"])
    );
    let id = key["id"].as_str().unwrap().to_string();
    let keys = operate(dir.path(), db, &["keys", "list", "--user", "ops"]);
    assert!(
        keys[0].get("key").is_none(),
        "listing never shows plaintext"
    );
    let revoked = operate(dir.path(), db, &["keys", "revoke", &id]);
    assert_eq!(revoked["is_active"], false);

    let price = operate(
        dir.path(),
        db,
        &[
            "pricing",
            "set",
            "groq:llama-3.1-8b",
            "0.05",
            "0.08",
            "--margin-percent",
            "12.5",
        ],
    );
    assert_eq!(price["margin_percent"], 12.5);
    let prices = operate(dir.path(), db, &["pricing", "list"]);
    assert!(prices
        .as_array()
        .unwrap()
        .iter()
        .any(|p| p["model_key"] == "groq:llama-3.1-8b" && p["input_price_per_million"] == "0.05"));

    // Errors are plain messages and a failing exit status.
    for args in [
        &["users", "credit", "ops", "-100"][..],
        &["users", "credit", "nobody", "1"],
        &["users", "create", "--id", "ops"],
        &["pricing", "set", "no-provider", "1", "1"],
        &["keys", "revoke", "key_missing"],
    ] {
        let output = gateway(dir.path())
            .args(args)
            .args(["--database-url", db])
            .output()
            .unwrap();
        assert!(!output.status.success(), "{args:?} should fail");
        assert!(String::from_utf8_lossy(&output.stderr).starts_with("error: "));
    }
}
