//! The tidy rules: each `#[test]` fails naming the file and the rule; ARCHITECTURE.md
//! explains why each rule exists.

use std::fmt;
use std::path::Path;

use super::SANS_IO_CRATES;
use super::workspace::{DepKind, Workspace, read_toml, workspace};

/// The workspace crates each crate may depend on: (crate, normal and build
/// dependencies, dev-dependencies). A new crate must be added here, deliberately.
const ARROWS: &[(&str, &[&str], &[&str])] = &[
    // S3's vocabulary (ETags, checksum algorithms and their combining rules), defined
    // once for the wire and the machines: a leaf of pure functions and value types.
    ("s3-types", &[], &[]),
    // The sans-IO state machines: self-contained but for the vocabulary, tested against
    // an in-memory model.
    ("transfer-core", &["s3-types"], &[]),
    ("s3-protocol", &["s3-types"], &["s3-testkit"]),
    ("resume-store", &[], &["s3-testkit"]),
    // The test harness: every crate may dev-depend on it, so it may use only the
    // bottom, sans-IO layer (to sign its own setup requests).
    ("s3-testkit", &["s3-protocol"], &["s3-protocol", "s3-types"]),
    (
        "transfer-manager",
        &["s3-protocol", "transfer-core", "resume-store"],
        &["s3-protocol", "transfer-core", "resume-store", "s3-testkit"],
    ),
    (
        "cli-demo",
        &["transfer-manager"],
        &["transfer-manager", "s3-testkit"],
    ),
    // `demo`, `serve` and `bench` run the embedded s3s-fs server in xtask's process.
    ("xtask", &["s3-testkit"], &[]),
];

/// Runtime, socket and HTTP-client packages: a sans-IO crate may reach none of them
/// through its normal dependencies, at any depth, but for [`RUNTIME_ALLOWED`].
/// Dev-dependencies are fine: tests may run a server.
const IO_PACKAGES: &[&str] = &[
    "tokio",
    "tokio-util",
    "async-std",
    "async-io",
    "smol",
    "mio",
    "polling",
    "socket2",
    "hyper",
    "hyper-util",
    "hyper-rustls",
    "h2",
    "reqwest",
    "ureq",
    "isahc",
    "curl",
];

/// A runtime package a sans-IO crate reaches, and may: only through these parents, and
/// with no more than these features when the crate is built alone.
struct RuntimeEdge {
    krate: &'static str,
    package: &'static str,
    via: &'static [&'static str],
    features: &'static [&'static str],
    why: &'static str,
}

/// Every runtime edge a sans-IO crate may have. ARCHITECTURE.md states the same facts;
/// an entry no longer reached fails too, so that this list and the document stay true.
const RUNTIME_ALLOWED: &[RuntimeEdge] = &[RuntimeEdge {
    krate: "s3-protocol",
    package: "tokio",
    via: &["aws-smithy-async", "aws-smithy-runtime-api"],
    features: &["default", "sync"],
    why: "aws-sigv4 needs aws-credential-types and aws-smithy-runtime-api, which depend \
          on aws-smithy-async and on tokio's `sync` feature unconditionally (their async \
          credential and sleep traits); no feature of theirs removes it. With `sync` alone \
          tokio has no runtime, no IO driver and no clock, and s3-protocol calls none of it",
}];

/// The bans each sans-IO crate's `clippy.toml` must at least hold (it may hold more):
/// (crate, `disallowed-methods`, `disallowed-types`).
const REQUIRED_BANS: &[(&str, &[&str], &[&str])] = &[
    (
        "s3-types",
        &[
            "std::time::Instant::now",
            "std::time::SystemTime::now",
            "std::thread::spawn",
            "std::thread::sleep",
            "std::fs::read",
            "std::fs::write",
            "std::io::Read::read",
            "std::io::Write::write",
        ],
        &[
            "std::fs::File",
            "std::net::TcpStream",
            "std::process::Command",
        ],
    ),
    (
        "transfer-core",
        &[
            "std::time::Instant::now",
            "std::time::SystemTime::now",
            "std::thread::spawn",
            "std::thread::sleep",
            "std::fs::read",
            "std::fs::write",
            "std::net::ToSocketAddrs::to_socket_addrs",
            "std::io::Read::read",
            "std::io::Write::write",
            "std::process::exit",
        ],
        &[
            "std::fs::File",
            "std::net::TcpStream",
            "std::net::TcpListener",
            "std::net::UdpSocket",
            "std::thread::Builder",
            "std::process::Command",
        ],
    ),
    (
        "s3-protocol",
        &[
            "std::time::Instant::now",
            "std::time::SystemTime::now",
            "std::thread::spawn",
            "std::thread::sleep",
            "std::fs::read",
            "std::net::ToSocketAddrs::to_socket_addrs",
        ],
        &[
            "std::fs::File",
            "std::net::TcpStream",
            "std::net::TcpListener",
            "std::net::UdpSocket",
            "std::process::Command",
        ],
    ),
];

#[test]
fn dependency_arrows() {
    let ws = workspace();
    let mut v = Violations::new(ws, "dependency-arrows");
    for krate in &ws.members {
        let manifest = krate.manifest_path();
        let Some(&(_, normal, dev)) = ARROWS.iter().find(|(name, ..)| *name == krate.name) else {
            v.push(
                &manifest,
                format!(
                    "workspace crate `{}` has no entry in ARROWS (xtask/src/tidy/rules.rs): \
                     decide which crates it may depend on, and add it to ARCHITECTURE.md's \
                     code map",
                    krate.name
                ),
            );
            continue;
        };
        for dep in krate.deps.iter().filter(|d| ws.is_member(&d.package)) {
            let (allowed, table) = match dep.kind {
                DepKind::Normal => (normal, "dependency"),
                DepKind::Build => (normal, "build-dependency"),
                DepKind::Dev => (dev, "dev-dependency"),
            };
            let message = if dep.package == "xtask" {
                "xtask is not a dependency of anything".to_owned()
            } else if dep.package == "s3-testkit"
                && dep.kind != DepKind::Dev
                && krate.name != "xtask"
            {
                "s3-testkit may only be a dev-dependency".to_owned()
            } else if allowed.contains(&dep.package.as_str()) {
                continue;
            } else {
                format!(
                    "`{}` may not have `{}` as a {table} (allowed: {})",
                    krate.name,
                    dep.package,
                    list_or_none(allowed)
                )
            };
            v.push(&manifest, message);
        }
    }
    v.finish();
}

#[test]
fn sans_io_crates_reach_no_runtime() {
    let ws = workspace();
    let mut v = Violations::new(ws, "sans-io-dependencies");
    for &name in SANS_IO_CRATES {
        let Some(krate) = ws.member(name) else {
            v.push(
                &ws.root.join("Cargo.toml"),
                format!("`{name}` is not a member"),
            );
            continue;
        };
        let manifest = krate.manifest_path();
        let mut reached: Vec<&RuntimeEdge> = Vec::new();
        for path in ws.graph.edges_into(name, IO_PACKAGES) {
            let (package, parent) = (&path[path.len() - 1], &path[path.len() - 2]);
            let allowed = RUNTIME_ALLOWED.iter().find(|e| {
                e.krate == name && e.package == package && e.via.contains(&parent.as_str())
            });
            match allowed {
                Some(edge) => reached.push(edge),
                None => v.push(
                    &manifest,
                    format!(
                        "`{name}` is sans-IO but reaches `{package}` through its normal \
                         dependencies: {} (see `cargo tree -e normal -p {name} -i {package}`; \
                         a dev-dependency is fine)",
                        path.join(" → ")
                    ),
                ),
            }
        }
        for edge in RUNTIME_ALLOWED.iter().filter(|e| e.krate == name) {
            if !reached.iter().any(|r| std::ptr::eq(*r, edge)) {
                v.push(
                    &manifest,
                    format!(
                        "`{name}` no longer reaches `{}` through {}: remove that entry from \
                         RUNTIME_ALLOWED (xtask/src/tidy/rules.rs) and say so in \
                         ARCHITECTURE.md",
                        edge.package,
                        edge.via.join(" or ")
                    ),
                );
                continue;
            }
            let extra: Vec<String> = ws
                .features_alone(name, edge.package)
                .into_iter()
                .filter(|f| !edge.features.contains(&f.as_str()))
                .collect();
            if !extra.is_empty() {
                v.push(
                    &manifest,
                    format!(
                        "`{name}` gets `{}` with {} when built alone, beyond the {} it may \
                         have (see `cargo tree -e normal,features -p {name} -i {}`); it may \
                         reach it at all only because {}",
                        edge.package,
                        extra.join(", "),
                        edge.features.join(", "),
                        edge.package,
                        edge.why,
                    ),
                );
            }
        }
    }
    v.finish();
}

#[test]
fn sans_io_crates_have_clippy_bans() {
    let ws = workspace();
    let mut v = Violations::new(ws, "sans-io-clippy-bans");
    for krate in &ws.members {
        let path = krate.dir.join("clippy.toml");
        let sans_io = SANS_IO_CRATES.contains(&krate.name.as_str());
        if !path.is_file() {
            if sans_io {
                v.push(
                    &krate.manifest_path(),
                    format!(
                        "`{}` is sans-IO but has no clippy.toml naming what it may not call",
                        krate.name
                    ),
                );
            }
            continue;
        }
        if !sans_io {
            v.push(
                &path,
                format!(
                    "only the crates in SANS_IO_CRATES (xtask/src/tidy.rs) are linted with \
                     their clippy.toml's bans forbidden; add `{}` there or drop this file",
                    krate.name
                ),
            );
            continue;
        }
        let config = read_toml(&path);
        let (_, methods, types) = REQUIRED_BANS
            .iter()
            .find(|(name, ..)| *name == krate.name)
            .copied()
            .unwrap_or((&krate.name, &[], &[]));
        for (key, required) in [("disallowed-methods", methods), ("disallowed-types", types)] {
            let listed = banned_paths(&config, key);
            for missing in required.iter().filter(|p| !listed.contains(p)) {
                v.push(&path, format!("`{key}` lacks `{missing}`"));
            }
        }
    }
    v.finish();
}

/// The paths of a `disallowed-*` list, whether written as strings or as tables.
fn banned_paths<'a>(config: &'a toml::Table, key: &str) -> Vec<&'a str> {
    config
        .get(key)
        .and_then(toml::Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default()
        .iter()
        .filter_map(|entry| match entry {
            toml::Value::String(path) => Some(path.as_str()),
            toml::Value::Table(t) => t.get("path").and_then(toml::Value::as_str),
            _ => None,
        })
        .collect()
}

#[test]
fn libraries_do_not_depend_on_anyhow() {
    let ws = workspace();
    let mut v = Violations::new(ws, "no-anyhow-in-libraries");
    for krate in ws.members.iter().filter(|c| c.is_library) {
        if krate
            .deps
            .iter()
            .any(|d| d.package == "anyhow" && d.kind != DepKind::Dev)
        {
            v.push(
                &krate.manifest_path(),
                format!(
                    "library crate `{}` depends on anyhow; libraries return typed errors a \
                     caller can match on (binaries and tests may use anyhow)",
                    krate.name
                ),
            );
        }
    }
    v.finish();
}

#[test]
fn test_harness_is_not_published() {
    let ws = workspace();
    let mut v = Violations::new(ws, "s3-testkit-unpublished");
    match ws.member("s3-testkit") {
        None => v.push(
            &ws.root.join("Cargo.toml"),
            "s3-testkit is not a workspace member",
        ),
        Some(testkit) if !testkit.publish.as_ref().is_some_and(Vec::is_empty) => v.push(
            &testkit.manifest_path(),
            "s3-testkit must say `publish = false`: it is a test harness, not a library",
        ),
        Some(_) => {}
    }
    v.finish();
}

#[test]
fn every_crate_uses_workspace_lints() {
    let ws = workspace();
    let mut v = Violations::new(ws, "workspace-lints");
    for krate in &ws.members {
        if !inherits_workspace_lints(&read_toml(&krate.manifest_path())) {
            v.push(
                &krate.manifest_path(),
                "lacks `[lints] workspace = true` (unsafe code forbidden, missing docs, \
                 todo!/dbg! denied by clippy -D warnings)",
            );
        }
    }
    v.finish();
}

fn inherits_workspace_lints(manifest: &toml::Table) -> bool {
    manifest
        .get("lints")
        .and_then(|lints| lints.get("workspace"))
        .and_then(toml::Value::as_bool)
        == Some(true)
}

#[test]
fn ci_runs_the_documented_test_command() {
    const COMMAND: &str = "cargo xtask test";
    let ws = workspace();
    let mut v = Violations::new(ws, "test-command");
    let ci = ws.root.join(".ci/run");
    let script = std::fs::read_to_string(&ci).unwrap_or_default();
    if !script.lines().any(|line| runs_command(line, COMMAND)) {
        v.push(&ci, format!("does not run `{COMMAND}`"));
    }
    let readme = ws.root.join("README.md");
    if !std::fs::read_to_string(&readme).is_ok_and(|text| text.contains(COMMAND)) {
        v.push(
            &readme,
            format!("does not name `{COMMAND}` as the test command"),
        );
    }
    v.finish();
}

/// Whether a shell line runs `command` (its words, in order, as a whole command), outside
/// a comment.
fn runs_command(line: &str, command: &str) -> bool {
    let code = line.split('#').next().unwrap_or("");
    let wanted: Vec<&str> = command.split_whitespace().collect();
    code.split(['&', '|', ';'])
        .map(|part| part.split_whitespace().collect::<Vec<_>>())
        .any(|words| {
            let words = match words.first() {
                Some(&"exec") => &words[1..],
                _ => &words[..],
            };
            words.starts_with(&wanted)
        })
}

#[test]
fn architecture_md_maps_every_crate() {
    let ws = workspace();
    let mut v = Violations::new(ws, "architecture-code-map");
    let path = ws.root.join("ARCHITECTURE.md");
    let text = std::fs::read_to_string(&path).unwrap_or_default();
    for krate in &ws.members {
        let listed = text
            .lines()
            .any(|l| l.starts_with('#') && l.contains(&format!("`{}`", krate.rel_dir)));
        if !listed {
            v.push(
                &path,
                format!("has no code-map heading naming `{}`", krate.rel_dir),
            );
        }
    }
    v.finish();
}

// ---- the rules' own tests ----

#[test]
fn rule_helpers() {
    assert!(runs_command("cargo xtask test", "cargo xtask test"));
    assert!(runs_command(
        "set -e; exec cargo xtask test  ",
        "cargo xtask test"
    ));
    assert!(!runs_command("# cargo xtask test", "cargo xtask test"));
    assert!(!runs_command("echo cargo xtask test", "cargo xtask test"));
    assert!(!runs_command("cargo xtask tests", "cargo xtask test"));

    let config: toml::Table = r#"
        disallowed-methods = ["std::fs::read", { path = "std::time::Instant::now", reason = "no" }]
    "#
    .parse()
    .unwrap();
    assert_eq!(
        banned_paths(&config, "disallowed-methods"),
        ["std::fs::read", "std::time::Instant::now"]
    );
    assert!(banned_paths(&config, "disallowed-types").is_empty());

    let with: toml::Table = "[lints]\nworkspace = true\n".parse().unwrap();
    let without: toml::Table = "[lints.rust]\nunsafe_code = \"forbid\"\n".parse().unwrap();
    assert!(inherits_workspace_lints(&with));
    assert!(!inherits_workspace_lints(&without));
}

fn list_or_none(names: &[&str]) -> String {
    if names.is_empty() {
        "no workspace crate".to_owned()
    } else {
        names.join(", ")
    }
}

/// Collects the violations of one rule and fails the test listing all of them.
struct Violations<'w> {
    ws: &'w Workspace,
    rule: &'static str,
    found: Vec<String>,
}

impl<'w> Violations<'w> {
    fn new(ws: &'w Workspace, rule: &'static str) -> Violations<'w> {
        Violations {
            ws,
            rule,
            found: Vec::new(),
        }
    }

    fn push(&mut self, file: &Path, message: impl fmt::Display) {
        self.found.push(format!(
            "{}: [{}] {message}",
            self.ws.relative(file),
            self.rule
        ));
    }

    fn finish(self) {
        if !self.found.is_empty() {
            panic!(
                "tidy rule `{}` is broken in {} place(s):\n{}\n",
                self.rule,
                self.found.len(),
                self.found.join("\n")
            );
        }
    }
}
