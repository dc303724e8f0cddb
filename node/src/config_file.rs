//! `--config FILE`: a TOML file that names the node's flags by their long names
//! (`http = "0.0.0.0:8080"`, `webhook = ["https://a", "https://b"]`, `watch-auth = true`).
//!
//! Precedence: command-line flag > environment variable > config file > default. The file's
//! settings become command-line items placed before the real ones, but only for flags that
//! neither the command line nor the environment set; clap then parses and checks everything
//! together (value parsers, `requires` between flags, subcommands).

use std::ffi::OsString;
use std::path::Path;

use anyhow::{Context, bail};
use clap::parser::ValueSource;
use clap::{Arg, ArgAction, CommandFactory, Parser};

use crate::config::Args;

/// Ids of top-level arguments that the file cannot set.
const NOT_IN_FILE: [&str; 3] = ["help", "version", "config"];

/// Parses the process's command line, environment and `--config` file. Help, version and
/// command-line errors print and exit as clap does; an unreadable or invalid config file is an
/// error that names the file and the key.
pub fn parse() -> anyhow::Result<Args> {
    match parse_from(std::env::args_os()) {
        Ok(args) => Ok(args),
        Err(e) => match e.downcast::<clap::Error>() {
            Ok(clap_err) => clap_err.exit(),
            Err(e) => Err(e),
        },
    }
}

/// Like [`parse`], for the given command line; clap's own errors (including help and version)
/// come back as a `clap::Error` inside the `anyhow::Error`.
pub fn parse_from<I, T>(argv: I) -> anyhow::Result<Args>
where
    I: IntoIterator<Item = T>,
    T: Into<OsString> + Clone,
{
    let argv: Vec<OsString> = argv.into_iter().map(Into::into).collect();
    // First pass: where the config file is and which flags the command line or the
    // environment already set. Errors here are left for the second pass to report.
    let first = Args::command().ignore_errors(true).try_get_matches_from(&argv);
    let Ok(first) = first else {
        return Ok(Args::try_parse_from(&argv)?);
    };
    let Some(path) = first.get_one::<std::path::PathBuf>("config").cloned() else {
        return Ok(Args::try_parse_from(&argv)?);
    };
    let text = std::fs::read_to_string(&path).with_context(|| format!("reading config file {}", path.display()))?;
    let items = file_items(&path, &text, |arg| {
        matches!(first.value_source(arg.get_id().as_str()), Some(ValueSource::CommandLine | ValueSource::EnvVariable))
            || on_command_line(&argv, arg)
    })?;
    let mut full = Vec::with_capacity(argv.len() + items.len());
    full.extend(argv.first().cloned());
    full.extend(items);
    full.extend(argv.iter().skip(1).cloned());
    Ok(Args::try_parse_from(&full)?)
}

/// Whether `argv` names the flag (`--long` or `--long=VALUE`) before any `--`, also when its
/// value did not parse (the first pass then has no value for it).
fn on_command_line(argv: &[OsString], arg: &Arg) -> bool {
    let Some(long) = arg.get_long() else { return false };
    let flag = format!("--{long}");
    let with_value = format!("--{long}=");
    argv.iter()
        .skip(1)
        .filter_map(|a| a.to_str())
        .take_while(|a| *a != "--")
        .any(|a| a == flag || a.starts_with(&with_value))
}

#[cfg(test)]
/// The long names the config file accepts: every top-level flag of `relaycast` but `--help`,
/// `--version` and `--config`.
pub fn keys() -> Vec<String> {
    file_args().iter().filter_map(|a| a.get_long().map(str::to_owned)).collect()
}

/// The top-level arguments that the file may set.
fn file_args() -> Vec<Arg> {
    let mut cmd = Args::command();
    cmd.build();
    cmd.get_arguments()
        .filter(|a| a.get_long().is_some() && !NOT_IN_FILE.contains(&a.get_id().as_str()))
        .cloned()
        .collect()
}

/// How a flag takes its value(s).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// `--flag` alone: `true` or `false` in the file.
    Switch,
    /// `--flag VALUE`, once.
    One,
    /// `--flag VALUE`, repeatable: an array (or one value) in the file.
    Many,
}

fn kind(arg: &Arg) -> Kind {
    match arg.get_action() {
        ArgAction::SetTrue | ArgAction::SetFalse => Kind::Switch,
        ArgAction::Append => Kind::Many,
        _ => Kind::One,
    }
}

/// The command-line items for the settings of the file `path` with contents `text`, skipping
/// flags for which `already_set` holds. Every key and value is checked: an unknown key, a
/// value of the wrong TOML type or one the flag's parser refuses is an error naming the key.
fn file_items(path: &Path, text: &str, already_set: impl Fn(&Arg) -> bool) -> anyhow::Result<Vec<OsString>> {
    let table: toml::Table = text.parse().with_context(|| format!("config file {}: not valid TOML", path.display()))?;
    let args = file_args();
    let mut items = Vec::new();
    for (key, value) in &table {
        let Some(arg) = args.iter().find(|a| a.get_long() == Some(key.as_str())) else {
            let hint = match closest_key(key, &args) {
                Some(k) => format!(" (did you mean `{k}`?)"),
                None => String::new(),
            };
            bail!("config file {}: unknown key `{key}`{hint}", path.display());
        };
        let values = values_of(arg, value).map_err(|reason| anyhow::anyhow!("config file {}: key `{key}`: {reason}", path.display()))?;
        for v in &values {
            check_value(arg, v).map_err(|reason| anyhow::anyhow!("config file {}: key `{key}`: {reason}", path.display()))?;
        }
        if already_set(arg) {
            continue;
        }
        match kind(arg) {
            Kind::Switch => {
                if values.first().map(String::as_str) == Some("true") {
                    items.push(OsString::from(format!("--{key}")));
                }
            }
            Kind::One | Kind::Many => {
                items.extend(values.iter().map(|v| OsString::from(format!("--{key}={v}"))));
            }
        }
    }
    Ok(items)
}

/// The TOML value of a key as the flag's textual values, or why it does not fit the flag.
fn values_of(arg: &Arg, value: &toml::Value) -> Result<Vec<String>, String> {
    use toml::Value;
    let scalar = |v: &Value| match v {
        Value::String(s) => Ok(s.clone()),
        Value::Integer(i) => Ok(i.to_string()),
        Value::Float(f) => Ok(f.to_string()),
        other => Err(format!("expected a string or a number, found {}", other.type_str())),
    };
    match (kind(arg), value) {
        (Kind::Switch, Value::Boolean(b)) => Ok(vec![b.to_string()]),
        (Kind::Switch, other) => Err(format!("expected true or false, found {}", other.type_str())),
        (Kind::Many, Value::Array(items)) => items.iter().map(scalar).collect(),
        (Kind::One, Value::Array(_)) => Err("takes one value, not an array".into()),
        (_, v) => scalar(v).map(|s| vec![s]),
    }
}

/// Runs the flag's own value parser on `value` (a switch's value is already checked).
fn check_value(arg: &Arg, value: &str) -> Result<(), String> {
    if kind(arg) == Kind::Switch {
        return Ok(());
    }
    let mut probe = Arg::new("value").long("value").value_parser(arg.get_value_parser().clone()).action(ArgAction::Set);
    if let Some(d) = arg.get_value_delimiter() {
        probe = probe.value_delimiter(d).action(ArgAction::Append);
    }
    let cmd = clap::Command::new("relaycast").arg(probe);
    match cmd.try_get_matches_from([OsString::from("relaycast"), OsString::from(format!("--value={value}"))]) {
        Ok(_) => Ok(()),
        Err(e) => Err(reason(&e, value)),
    }
}

/// The reason in a clap value error, without clap's decoration.
fn reason(e: &clap::Error, value: &str) -> String {
    use clap::error::{ContextKind, ContextValue};
    if let Some(source) = std::error::Error::source(e) {
        return format!("invalid value {value:?}: {source}");
    }
    if let Some(ContextValue::Strings(valid)) = e.get(ContextKind::ValidValue) {
        return format!("invalid value {value:?}: expected one of {}", valid.join(", "));
    }
    let text = e.render().to_string();
    let first = text.lines().next().unwrap_or("invalid value");
    first.trim_start_matches("error: ").to_string()
}

/// The known key nearest to a misspelt one (at most two edits away).
fn closest_key<'a>(key: &str, args: &'a [Arg]) -> Option<&'a str> {
    args.iter()
        .filter_map(|a| a.get_long())
        .map(|k| (edit_distance(key, k), k))
        .filter(|(d, _)| *d <= 2)
        .min_by_key(|(d, _)| *d)
        .map(|(_, k)| k)
}

/// Levenshtein distance between two short strings.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut prev = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let cur = row[j + 1];
            row[j + 1] = if ca == *cb { prev } else { 1 + prev.min(cur).min(row[j]) };
            prev = cur;
        }
    }
    row[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    /// A config file with `text` in a fresh temporary directory.
    fn file(name: &str, text: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("relaycast-config-{name}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("creating the temp dir");
        let path = dir.join("relaycast.toml");
        std::fs::write(&path, text).expect("writing the config file");
        path
    }

    fn parse_with(path: &Path, extra: &[&str]) -> anyhow::Result<Args> {
        let mut argv = vec![OsString::from("relaycast"), OsString::from("--config"), path.as_os_str().to_owned()];
        argv.extend(extra.iter().map(OsString::from));
        parse_from(argv)
    }

    fn error_of(path: &Path) -> String {
        format!("{:#}", parse_with(path, &[]).expect_err("the config file must be refused"))
    }

    #[test]
    fn file_beats_default_and_flag_beats_file() {
        let path = file("precedence", "max-sessions = 7\nhttp = \"0.0.0.0:9000\"\nregion = \"eu\"\n");
        let args = parse_with(&path, &[]).unwrap();
        assert_eq!(args.max_sessions, 7);
        assert_eq!(args.http.to_string(), "0.0.0.0:9000");
        assert_eq!(args.mesh.region.as_deref(), Some("eu"));
        assert_eq!(args.media_port, 50000, "keys absent from the file keep their default");

        let args = parse_with(&path, &["--max-sessions", "9", "--http=127.0.0.1:1"]).unwrap();
        assert_eq!(args.max_sessions, 9);
        assert_eq!(args.http.to_string(), "127.0.0.1:1");
        assert_eq!(args.mesh.region.as_deref(), Some("eu"));
    }

    #[test]
    fn repeatable_flags_and_switches() {
        let path = file(
            "repeatable",
            "webhook = [\"http://a.example/h\", \"http://b.example/h\"]\ntrusted-proxy = [\"10.0.0.0/8\", \"192.0.2.1\"]\n\
             p2p = \"/ip4/0.0.0.0/tcp/7001\"\nwatch-auth = true\nno-turn = true\nno-mdns = false\nturn-max-bitrate = 1000\n",
        );
        let args = parse_with(&path, &[]).unwrap();
        assert_eq!(args.webhooks, ["http://a.example/h", "http://b.example/h"]);
        assert_eq!(args.http_opts.trusted_proxy.len(), 2);
        assert_eq!(args.mesh.p2p.len(), 1, "one value for a repeatable key is a list of one");
        assert!(args.watch_auth);
        assert!(args.no_turn);
        assert!(!args.mesh.no_mdns);
        assert_eq!(args.turn.turn_max_bitrate, 1000);

        // A repeatable flag on the command line replaces the file's list.
        let args = parse_with(&path, &["--webhook", "http://c.example/h"]).unwrap();
        assert_eq!(args.webhooks, ["http://c.example/h"]);
    }

    #[test]
    fn unknown_keys_are_refused_by_name() {
        let err = error_of(&file("unknown", "http = \"127.0.0.1:8080\"\nhtpp = \"0.0.0.0:80\"\n"));
        assert!(err.contains("unknown key `htpp`"), "{err}");
        assert!(err.contains("did you mean `http`"), "{err}");
        let err = error_of(&file("unknown2", "config = \"/etc/other.toml\"\n"));
        assert!(err.contains("unknown key `config`"), "{err}");
        let err = error_of(&file("unknown3", "[mesh]\nregion = \"eu\"\n"));
        assert!(err.contains("unknown key `mesh`"), "{err}");
    }

    #[test]
    fn bad_values_name_the_key_and_the_reason() {
        let cases = [
            ("max-sessions = \"lots\"\n", "key `max-sessions`: invalid value \"lots\": invalid digit"),
            ("max-sessions = -1\n", "key `max-sessions`: invalid value \"-1\""),
            ("watch-auth = \"yes\"\n", "key `watch-auth`: expected true or false, found string"),
            ("http = [\"127.0.0.1:1\"]\n", "key `http`: takes one value, not an array"),
            ("http = \"nowhere\"\n", "key `http`: invalid value \"nowhere\""),
            ("archive-layer = \"x\"\n", "key `archive-layer`: invalid value \"x\": expected one of q, h, f"),
            ("webhook = [1.5, true]\n", "key `webhook`: expected a string or a number, found boolean"),
            ("trusted-proxy = [\"10.0.0.0/99\"]\n", "key `trusted-proxy`: invalid value \"10.0.0.0/99\""),
            ("region = { a = 1 }\n", "key `region`: expected a string or a number, found table"),
            ("http = \n", "not valid TOML"),
        ];
        for (i, (text, want)) in cases.iter().enumerate() {
            let path = file(&format!("bad{i}"), text);
            let err = error_of(&path);
            assert!(err.contains(want), "{text:?}: {err}");
            assert!(err.contains(&path.display().to_string()), "{err}");
        }
        // A bad value is refused even when the command line overrides it.
        let path = file("bad-overridden", "max-sessions = \"lots\"\n");
        assert!(parse_with(&path, &["--max-sessions", "5"]).is_err());
    }

    #[test]
    fn paired_flags_may_come_from_the_file_and_the_command_line() {
        let path = file("pair", "tls-key = \"/etc/relaycast/key.pem\"\n");
        let args = parse_with(&path, &["--tls-cert", "/etc/relaycast/cert.pem"]).unwrap();
        assert_eq!(args.http_opts.tls_cert, Some(PathBuf::from("/etc/relaycast/cert.pem")));
        assert_eq!(args.http_opts.tls_key, Some(PathBuf::from("/etc/relaycast/key.pem")));
        // One of a pair alone is still refused.
        let err = parse_with(&path, &[]).expect_err("tls-key without tls-cert");
        assert!(err.downcast_ref::<clap::Error>().is_some(), "{err:#}");
    }

    #[test]
    fn the_file_applies_to_subcommands_wherever_config_is_given() {
        let path = file("subcommand", "data-dir = \"/tmp/relaycast-from-file\"\n");
        let args = parse_with(&path, &["token", "--publish", "room"]).unwrap();
        assert!(matches!(args.command, Some(crate::ipfs_cmd::Command::Token(_))));
        assert_eq!(args.data_dir, PathBuf::from("/tmp/relaycast-from-file"));
        let argv = ["relaycast", "token", "--publish", "room", "--config", path.to_str().unwrap()];
        let args = parse_from(argv).unwrap();
        assert_eq!(args.data_dir, PathBuf::from("/tmp/relaycast-from-file"));
    }

    #[test]
    fn a_missing_file_is_an_error() {
        let err = parse_from(["relaycast", "--config", "/nonexistent/relaycast.toml"]).expect_err("missing file");
        assert!(format!("{err:#}").contains("reading config file /nonexistent/relaycast.toml"), "{err:#}");
    }

    #[test]
    fn every_flag_is_a_key() {
        let keys = keys();
        for k in ["http", "tls-cert", "trusted-proxy", "webhook", "turn", "turn-allow-peer", "p2p", "trusted-peer", "no-turn"] {
            assert!(keys.iter().any(|x| x == k), "{k} missing from {keys:?}");
        }
        assert!(!keys.iter().any(|x| x == "config" || x == "help" || x == "version"));
    }

    /// `dist/relaycast.toml`, the example installed as /etc/relaycast/relaycast.toml.
    fn example() -> (PathBuf, String) {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../dist/relaycast.toml");
        let text = std::fs::read_to_string(&path).expect("reading dist/relaycast.toml");
        (path, text)
    }

    /// The example with every commented-out setting (`# key = value`) switched on.
    fn uncommented(text: &str) -> String {
        text.lines()
            .map(|l| match l.strip_prefix("# ") {
                Some(rest) if rest.split_once(" = ").is_some_and(|(k, _)| !k.is_empty() && k.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')) => rest,
                _ => l,
            })
            .collect::<Vec<_>>()
            .join("\n")
    }

    #[test]
    fn the_shipped_example_names_every_flag_and_parses() {
        let (path, text) = example();
        parse_with(&path, &[]).expect("the example as shipped");
        let all = uncommented(&text);
        let table: toml::Table = all.parse().expect("the example with every setting on is TOML");
        for k in keys() {
            assert!(table.contains_key(&k), "dist/relaycast.toml does not show `{k}`");
        }
        // Every setting, switched on, is valid (tls-cert and tls-key come as a pair).
        let on = file("example-all", &all);
        let args = parse_with(&on, &[]).expect("the example with every setting on");
        assert!(args.http_opts.tls_cert.is_some());
    }
}
