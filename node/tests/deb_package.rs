//! The Debian package: `cargo deb` (cargo-deb, as the README tells users) packs the already
//! built binary with the systemd unit and the example settings; the test reads the `.deb` with
//! `dpkg-deb --info/--contents`, unpacks it into a scratch directory (never into this
//! machine's system), verifies the unit with `systemd-analyze verify` and runs the unpacked
//! binary with the unpacked config file.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// Runs `cmd`, failing the test with its output when it does not succeed.
fn run(cmd: &mut Command) -> Output {
    let out = cmd.output().unwrap_or_else(|e| panic!("running {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed ({}):\n{}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn text(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The repository root.
fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("the workspace root").to_path_buf()
}

#[test]
fn the_deb_installs_the_binary_the_unit_and_the_config() {
    let bin = Path::new(env!("CARGO_BIN_EXE_relaycast"));
    // target/<profile>/relaycast: cargo-deb packs the binary of that profile in that target dir.
    let profile_dir = bin.parent().expect("the profile dir");
    let target_dir = profile_dir.parent().expect("the target dir");
    let profile = match profile_dir.file_name().and_then(|n| n.to_str()) {
        Some("debug") => "dev",
        Some(p) => p,
        None => panic!("no profile in {}", bin.display()),
    };
    let scratch = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("deb-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&scratch);
    std::fs::create_dir_all(&scratch).unwrap();
    let deb = scratch.join("relaycast.deb");

    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let has_cargo_deb = Command::new(&cargo).args(["deb", "--version"]).output().is_ok_and(|o| o.status.success());
    assert!(has_cargo_deb, "cargo-deb is not installed: `cargo install cargo-deb --locked --version 3.8.0` (scripts/test.sh does)");
    let started = std::time::Instant::now();
    run(Command::new(&cargo)
        .current_dir(repo())
        .args(["deb", "-p", "relaycast", "--no-build", "--fast", "--quiet", "--profile", profile, "--output"])
        .arg(&deb)
        .env("CARGO_TARGET_DIR", target_dir));
    eprintln!("cargo deb took {:?}", started.elapsed());

    let info = text(&run(Command::new("dpkg-deb").arg("--info").arg(&deb)));
    assert!(info.contains("Package: relaycast"), "{info}");
    assert!(info.contains(&format!("Version: {}", env!("CARGO_PKG_VERSION"))), "{info}");
    assert!(info.contains("Depends:") && info.contains("libc6"), "dependencies from the binary: {info}");
    assert!(info.contains("Section: net"), "{info}");

    let contents = text(&run(Command::new("dpkg-deb").arg("--contents").arg(&deb)));
    for path in ["./usr/bin/relaycast", "./etc/relaycast/relaycast.toml", "/systemd/system/relaycast.service", "./usr/share/relaycast/grafana/relaycast.json"] {
        assert!(contents.contains(path), "{path} not in the package:\n{contents}");
    }

    // Control files: the config is a conffile; the unit is registered by the maintainer scripts.
    let control = scratch.join("DEBIAN");
    run(Command::new("dpkg-deb").arg("--control").arg(&deb).arg(&control));
    let conffiles = std::fs::read_to_string(control.join("conffiles")).expect("a conffiles list");
    assert!(conffiles.lines().any(|l| l == "/etc/relaycast/relaycast.toml"), "{conffiles}");
    let postinst = std::fs::read_to_string(control.join("postinst")).expect("a postinst script");
    assert!(postinst.contains("relaycast.service"), "{postinst}");

    // Unpacked into a scratch root, never installed on this machine.
    let root = scratch.join("root");
    run(Command::new("dpkg-deb").arg("-x").arg(&deb).arg(&root));
    let unit_path = ["lib/systemd/system/relaycast.service", "usr/lib/systemd/system/relaycast.service"]
        .iter()
        .map(|p| root.join(p))
        .find(|p| p.exists())
        .expect("the unit in the package");
    let unit = std::fs::read_to_string(&unit_path).unwrap();
    assert_eq!(unit, std::fs::read_to_string(repo().join("dist/relaycast.service")).unwrap());
    let config = root.join("etc/relaycast/relaycast.toml");
    assert_eq!(std::fs::read_to_string(&config).unwrap(), std::fs::read_to_string(repo().join("dist/relaycast.toml")).unwrap());
    for line in ["ExecStart=/usr/bin/relaycast --config /etc/relaycast/relaycast.toml", "StateDirectory=relaycast", "Restart=on-failure", "LimitNOFILE=1048576"] {
        assert!(unit.lines().any(|l| l == line), "the unit lacks {line}");
    }

    let installed = root.join("usr/bin/relaycast");
    let version = text(&run(Command::new(&installed).arg("--version")));
    assert_eq!(version.trim(), format!("relaycast {}", env!("CARGO_PKG_VERSION")));
    // The installed binary reads the installed config (its data-dir overridden: the scratch root).
    let data = scratch.join("data");
    let token = text(&run(Command::new(&installed)
        .arg("--config")
        .arg(&config)
        .arg("--data-dir")
        .arg(&data)
        .args(["token", "--publish", "room"])
        .env("RELAYCAST_LOG", "warn")));
    assert_eq!(token.trim().split('.').count(), 3, "a JWT: {token}");
    assert!(data.join("api-secret").exists());

    // systemd checks the unit as it would load it, with ExecStart pointing at the unpacked binary;
    // its sandboxing must keep the exposure score at 2.0 or below (`--threshold` is in tenths).
    let verify_dir = scratch.join("verify");
    std::fs::create_dir_all(&verify_dir).unwrap();
    let checked = unit.replace("ExecStart=/usr/bin/relaycast ", &format!("ExecStart={} ", installed.display()));
    let checked_path = verify_dir.join("relaycast.service");
    std::fs::write(&checked_path, checked).unwrap();
    let verify = run(Command::new("systemd-analyze").arg("verify").arg(&checked_path));
    let complaints = String::from_utf8_lossy(&verify.stderr);
    assert!(!complaints.contains("relaycast.service"), "systemd-analyze verify: {complaints}");
    let security = run(Command::new("systemd-analyze").args(["security", "--offline=yes", "--threshold=20"]).arg(&checked_path));
    let summary = text(&security);
    eprintln!("{}", summary.lines().last().unwrap_or(""));

    let _ = std::fs::remove_dir_all(&scratch);
}
