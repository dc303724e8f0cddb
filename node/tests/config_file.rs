//! `--config FILE` against the relaycast binary and a real environment: a flag beats its
//! `RELAYCAST_*` variable, which beats the file, which beats the default; `RELAYCAST_CONFIG`
//! names the file. Observed through `relaycast token`, which keeps the API secret it signs with
//! in `DATA_DIR/api-secret`.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// A fresh scratch directory for one case.
fn scratch(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("config-file-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("creating the scratch dir");
    dir
}

/// Runs `relaycast ARGS token --publish room` with only the given `RELAYCAST_*` variables set.
fn token(args: &[&str], env: &[(&str, &Path)]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_relaycast"));
    for (k, _) in std::env::vars() {
        if k.starts_with("RELAYCAST_") {
            cmd.env_remove(k);
        }
    }
    cmd.args(args).args(["token", "--publish", "room"]).env("RELAYCAST_LOG", "warn");
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().expect("running relaycast token");
    assert!(out.status.success(), "relaycast token failed: {}", String::from_utf8_lossy(&out.stderr));
    out
}

/// Which of the candidate data dirs received the API secret.
fn used(dirs: &[&Path]) -> Vec<usize> {
    (0..dirs.len()).filter(|&i| dirs[i].join("api-secret").exists()).collect()
}

#[test]
fn flag_beats_env_beats_file() {
    let root = scratch("precedence");
    let (from_file, from_env, from_flag) = (root.join("file"), root.join("env"), root.join("flag"));
    let config = root.join("relaycast.toml");
    std::fs::write(&config, format!("data-dir = {:?}\nmax-sessions = 10\n", from_file.display().to_string())).unwrap();
    let dirs = [from_file.as_path(), from_env.as_path(), from_flag.as_path()];
    let cfg = config.to_str().unwrap();

    token(&["--config", cfg], &[]);
    assert_eq!(used(&dirs), [0], "the file beats the default");
    std::fs::remove_dir_all(&from_file).unwrap();

    token(&["--config", cfg], &[("RELAYCAST_DATA_DIR", &from_env)]);
    assert_eq!(used(&dirs), [1], "the environment beats the file");
    std::fs::remove_dir_all(&from_env).unwrap();

    token(&["--config", cfg, "--data-dir", from_flag.to_str().unwrap()], &[("RELAYCAST_DATA_DIR", &from_env)]);
    assert_eq!(used(&dirs), [2], "the flag beats the environment");
    std::fs::remove_dir_all(&from_flag).unwrap();

    token(&[], &[("RELAYCAST_CONFIG", &config)]);
    assert_eq!(used(&dirs), [0], "RELAYCAST_CONFIG names the file");
    let _ = std::fs::remove_dir_all(&root);
}

#[test]
fn a_bad_file_stops_the_binary_with_the_key_and_reason() {
    let root = scratch("bad");
    let config = root.join("relaycast.toml");
    std::fs::write(&config, "max-sesions = 10\n").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_relaycast"))
        .args(["--config", config.to_str().unwrap(), "--http", "127.0.0.1:0"])
        .env("RUST_BACKTRACE", "0")
        .output()
        .expect("running relaycast");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("unknown key `max-sesions` (did you mean `max-sessions`?)"), "{stderr}");

    std::fs::write(&config, "max-sessions = \"many\"\n").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_relaycast"))
        .args(["--config", config.to_str().unwrap(), "--http", "127.0.0.1:0"])
        .env("RUST_BACKTRACE", "0")
        .output()
        .expect("running relaycast");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("key `max-sessions`: invalid value \"many\""), "{stderr}");
    let _ = std::fs::remove_dir_all(&root);
}
