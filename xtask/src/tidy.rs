//! Tidy checks: the architecture's rules, as ordinary tests, so `cargo xtask test` (and
//! therefore CI) fails the moment one is broken. Each failure names the file and the
//! rule; ARCHITECTURE.md explains why each rule exists.
//!
//! The rules read files with plain string handling (see `manifest` and `source`) so that
//! xtask needs no parser crates and builds in seconds.

mod manifest;
mod source;

use std::fmt;
use std::fs;
use std::path::{Path, PathBuf};

use manifest::{DepKind, Manifest};

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
    // `cargo xtask bench` runs the embedded s3s-fs server in-process.
    ("xtask", &["s3-testkit"], &[]),
];

/// A path the sans-IO crates may not mention, with the children of it that are allowed
/// (pure data types such as `std::net::IpAddr`).
struct Forbidden {
    path: &'static str,
    allowed: &'static [&'static str],
    why: &'static str,
}

const fn forbid(path: &'static str, why: &'static str) -> Forbidden {
    Forbidden {
        path,
        allowed: &[],
        why,
    }
}

const TRANSFER_CORE_FORBIDDEN: &[Forbidden] = &[
    forbid(
        "tokio",
        "transfer-core spawns nothing and is runtime-agnostic",
    ),
    forbid("std::fs", "transfer-core does no IO"),
    forbid("std::net", "transfer-core does no IO"),
    forbid(
        "std::thread",
        "transfer-core spawns nothing and never sleeps",
    ),
    forbid("std::process", "transfer-core does no IO"),
    forbid("std::io::Read", "transfer-core does no IO"),
    forbid("std::io::Write", "transfer-core does no IO"),
    forbid(
        "Instant::now",
        "transfer-core reads no clock; `now` is an argument",
    ),
    forbid(
        "SystemTime::now",
        "transfer-core reads no clock; `now` is an argument",
    ),
    forbid("std::time::Instant::now", "transfer-core reads no clock"),
    forbid("std::time::SystemTime::now", "transfer-core reads no clock"),
];

/// Address types are pure values (s3-protocol parses endpoints with them); sockets and
/// name resolution are IO.
const NET_VALUE_TYPES: &[&str] = &[
    "IpAddr",
    "Ipv4Addr",
    "Ipv6Addr",
    "SocketAddr",
    "SocketAddrV4",
    "SocketAddrV6",
    "AddrParseError",
];

const S3_PROTOCOL_FORBIDDEN: &[Forbidden] = &[
    forbid("tokio", "s3-protocol is sans-IO"),
    forbid("std::fs", "s3-protocol reads no files"),
    Forbidden {
        path: "std::net",
        allowed: NET_VALUE_TYPES,
        why: "s3-protocol opens no sockets (address types are allowed)",
    },
    forbid("TcpStream", "s3-protocol opens no sockets"),
    forbid("TcpListener", "s3-protocol opens no sockets"),
    forbid("UdpSocket", "s3-protocol opens no sockets"),
    forbid("ToSocketAddrs", "s3-protocol resolves no names"),
    forbid("to_socket_addrs", "s3-protocol resolves no names"),
    forbid("hyper::Client", "s3-protocol has no HTTP client"),
    forbid("std::thread::sleep", "s3-protocol never sleeps"),
    forbid(
        "Instant::now",
        "s3-protocol reads no clock; the signing time is an argument",
    ),
    forbid(
        "SystemTime::now",
        "s3-protocol reads no clock; the signing time is an argument",
    ),
    forbid("std::time::Instant::now", "s3-protocol reads no clock"),
    forbid("std::time::SystemTime::now", "s3-protocol reads no clock"),
];

/// Runtime and HTTP-client packages the sans-IO crates may not depend on (dev-dependencies
/// are fine: tests may run a server).
const IO_PACKAGES: &[&str] = &[
    "tokio",
    "async-std",
    "smol",
    "mio",
    "hyper",
    "hyper-util",
    "hyper-rustls",
    "reqwest",
    "ureq",
];

#[test]
fn dependency_arrows() {
    let crates = workspace();
    let names: Vec<&str> = crates.iter().map(|c| c.name.as_str()).collect();
    let mut v = Violations::new("dependency-arrows");
    for krate in &crates {
        let manifest = krate.manifest_path();
        let Some(&(_, normal, dev)) = ARROWS.iter().find(|(name, ..)| *name == krate.name) else {
            v.push(
                &manifest,
                None,
                format!(
                    "workspace crate `{}` has no entry in ARROWS (xtask/src/tidy.rs): decide \
                     which crates it may depend on, and add it to ARCHITECTURE.md's code map",
                    krate.name
                ),
            );
            continue;
        };
        for dep in &krate.manifest.deps {
            if !names.contains(&dep.package.as_str()) {
                continue;
            }
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
            v.push(&manifest, Some(dep.line), message);
        }
    }
    v.finish();
}

#[test]
fn libraries_do_not_depend_on_anyhow() {
    let mut v = Violations::new("no-anyhow-in-libraries");
    for krate in workspace().iter().filter(|c| c.is_library()) {
        for dep in &krate.manifest.deps {
            if dep.package == "anyhow" && dep.kind != DepKind::Dev {
                v.push(
                    &krate.manifest_path(),
                    Some(dep.line),
                    format!(
                        "library crate `{}` depends on anyhow; libraries return typed errors \
                         a caller can match on (binaries and tests may use anyhow)",
                        krate.name
                    ),
                );
            }
        }
    }
    v.finish();
}

#[test]
fn test_harness_is_not_published() {
    let mut v = Violations::new("s3-testkit-unpublished");
    let crates = workspace();
    match crates.iter().find(|c| c.name == "s3-testkit") {
        None => v.push(
            Path::new("Cargo.toml"),
            None,
            "s3-testkit is not a workspace member",
        ),
        Some(testkit) => {
            let publish = testkit.manifest.publish.as_deref().map(str::trim);
            if !matches!(publish, Some("false" | "[]")) {
                v.push(
                    &testkit.manifest_path(),
                    None,
                    "s3-testkit must say `publish = false`: it is a test harness, not a library",
                );
            }
        }
    }
    v.finish();
}

#[test]
fn sans_io_crates_do_no_io() {
    let mut v = Violations::new("sans-io");
    for krate in workspace() {
        let forbidden = match krate.name.as_str() {
            "transfer-core" => TRANSFER_CORE_FORBIDDEN,
            "s3-protocol" => S3_PROTOCOL_FORBIDDEN,
            _ => continue,
        };
        for dep in &krate.manifest.deps {
            if dep.kind != DepKind::Dev && IO_PACKAGES.contains(&dep.package.as_str()) {
                v.push(
                    &krate.manifest_path(),
                    Some(dep.line),
                    format!(
                        "`{}` is sans-IO and may not depend on `{}` (a dev-dependency is fine)",
                        krate.name, dep.package
                    ),
                );
            }
        }
        for file in rust_files(&krate.dir.join("src")) {
            let code = source::strip_comments(&read(&file));
            for (line, message) in forbidden_uses(&code, forbidden) {
                v.push(&file, Some(line), message);
            }
        }
    }
    v.finish();
}

/// Every line of `code` that mentions or imports a forbidden path, one message per line.
fn forbidden_uses(code: &str, forbidden: &[Forbidden]) -> Vec<(usize, String)> {
    let uses = source::use_paths(code);
    let mut found: Vec<(usize, String)> = Vec::new();
    for rule in forbidden {
        let allowed = |child: Option<&str>| child.is_some_and(|c| rule.allowed.contains(&c));
        // The names under which the path is visible in this file: itself, and through
        // any import of it or of a module above it (`use std::io;` makes `io::Read`).
        let mut local_names = vec![(rule.path.to_owned(), None)];
        for u in &uses {
            if let Some(below) = u.path.strip_prefix(rule.path) {
                if let Some(below) = below.strip_prefix("::") {
                    let child = below.split("::").next();
                    if !allowed(child) {
                        found.push((u.line, format!("imports `{}`: {}", u.path, rule.why)));
                    }
                    continue;
                }
                if below.is_empty() {
                    if rule.allowed.is_empty() {
                        found.push((u.line, format!("imports `{}`: {}", u.path, rule.why)));
                    } else {
                        local_names.push((u.alias.clone(), Some(u.path.as_str())));
                    }
                    continue;
                }
            }
            let local = match u.path.strip_suffix("::*") {
                Some(module) => rule
                    .path
                    .strip_prefix(module)
                    .and_then(|rest| rest.strip_prefix("::"))
                    .map(str::to_owned),
                None => rule
                    .path
                    .strip_prefix(u.path.as_str())
                    .filter(|rest| rest.starts_with("::"))
                    .map(|rest| format!("{}{rest}", u.alias)),
            };
            if let Some(local) = local {
                local_names.push((local, Some(u.path.as_str())));
            }
        }
        for (name, via) in &local_names {
            for end in source::mentions(code, name) {
                let child = source::child_segment(code, end);
                // `use std::net;` (or `std::net as n,`) imports the module; what is then
                // used through it is checked under its local name.
                let after = code[end..].trim_start();
                let module_import = !rule.allowed.is_empty()
                    && child.is_none()
                    && (after.starts_with([';', ',', '}']) || after.starts_with("as "));
                if allowed(child) || module_import {
                    continue;
                }
                let via = via.map_or(String::new(), |p| format!(" (via `use {p}`)"));
                found.push((
                    source::line_of(code, end),
                    format!("mentions `{name}`{via}: {}", rule.why),
                ));
            }
        }
    }
    found.sort();
    found.dedup_by_key(|(line, _)| *line);
    found
}

#[test]
fn library_crate_roots() {
    let mut v = Violations::new("crate-root");
    for krate in workspace().iter().filter(|c| c.is_library()) {
        let lib = krate.dir.join("src/lib.rs");
        let text = read(&lib);
        if !forbids_unsafe(&source::strip_comments(&text)) {
            v.push(
                &lib,
                None,
                "library crate root lacks `#![forbid(unsafe_code)]`",
            );
        }
        if !has_crate_docs(&text) {
            v.push(
                &lib,
                None,
                "library crate root does not start with a `//!` crate-level doc saying what \
                 the crate does (and does not do)",
            );
        }
    }
    v.finish();
}

fn forbids_unsafe(code: &str) -> bool {
    let code: String = code.split_whitespace().collect();
    code.match_indices("#![forbid(").any(|(start, m)| {
        let args = &code[start + m.len()..];
        let args = &args[..args.find(")]").unwrap_or(args.len())];
        args.split(',').any(|lint| lint == "unsafe_code")
    })
}

/// A `//!` line with text among the leading comments and inner attributes.
fn has_crate_docs(text: &str) -> bool {
    text.lines()
        .map(str::trim)
        .take_while(|l| l.is_empty() || l.starts_with("//") || l.starts_with("#!["))
        .any(|l| {
            l.strip_prefix("//!")
                .is_some_and(|doc| !doc.trim().is_empty())
                || l.starts_with("#![doc")
        })
}

#[test]
fn no_placeholder_macros() {
    // Spelled in pieces so that this file does not trip its own rule.
    let macros = ["todo", "unimplemented", "dbg"].map(|name| format!("{name}!("));
    let mut v = Violations::new("no-placeholder-macros");
    for file in rust_files(&project_root()) {
        let text = read(&file);
        for m in &macros {
            for (offset, _) in text.match_indices(m.as_str()) {
                let line = source::line_of(&text, offset);
                v.push(&file, Some(line), format!("contains `{m}`"));
            }
        }
    }
    v.finish();
}

#[test]
fn ci_runs_the_documented_test_command() {
    const COMMAND: &str = "cargo xtask test";
    let mut v = Violations::new("test-command");
    let root = project_root();
    let ci = root.join(".ci/run");
    let runs_it = fs::read_to_string(&ci).is_ok_and(|script| {
        script.lines().any(|line| {
            let code = line.split('#').next().unwrap_or("");
            source::mentions(code, COMMAND).iter().any(|&end| {
                code[end..]
                    .chars()
                    .next()
                    .is_none_or(|c| c.is_whitespace() || c == ';')
            })
        })
    });
    if !runs_it {
        v.push(&ci, None, format!("does not run `{COMMAND}`"));
    }
    let readme = root.join("README.md");
    if !fs::read_to_string(&readme).is_ok_and(|text| text.contains(COMMAND)) {
        v.push(
            &readme,
            None,
            format!("does not name `{COMMAND}` as the test command"),
        );
    }
    v.finish();
}

#[test]
fn architecture_md_maps_every_crate() {
    let mut v = Violations::new("architecture-code-map");
    let path = project_root().join("ARCHITECTURE.md");
    let text = fs::read_to_string(&path).unwrap_or_default();
    for krate in workspace() {
        let listed = text
            .lines()
            .any(|l| l.starts_with('#') && l.contains(&format!("`{}`", krate.rel_dir)));
        if !listed {
            v.push(
                &path,
                None,
                format!("has no code-map heading naming `{}`", krate.rel_dir),
            );
        }
    }
    v.finish();
}

#[test]
fn every_crate_uses_workspace_lints() {
    let mut v = Violations::new("workspace-lints");
    for krate in workspace() {
        if !krate.manifest.lints_workspace {
            v.push(
                &krate.manifest_path(),
                None,
                "lacks `[lints] workspace = true` (unsafe_code, missing_docs, todo/dbg lints)",
            );
        }
    }
    v.finish();
}

// ---- the rules' own tests ----

#[test]
fn forbidden_paths_are_found_through_imports() {
    let code = source::strip_comments(
        "//! No tokio, no std::fs here.\n\
         use std::{fs as f, io::{self, Write}};\n\
         use std::net::{IpAddr, TcpStream};\n\
         use std::net;\n\
         fn a() { let _ = std::time::Instant::now(); }\n\
         fn b(x: net::Ipv4Addr) -> net::UdpSocket { io::Read::read(); }\n\
         fn c() -> std::net::IpAddr { tokio::spawn(f::read(\"tokio\")) }\n",
    );
    let found = |rules: &[Forbidden]| -> Vec<usize> {
        forbidden_uses(&code, rules)
            .into_iter()
            .map(|(line, _)| line)
            .collect()
    };
    assert_eq!(found(TRANSFER_CORE_FORBIDDEN), [2, 3, 4, 5, 6, 7]);
    // s3-protocol may name address types, but not sockets or the clock.
    assert_eq!(found(S3_PROTOCOL_FORBIDDEN), [2, 3, 5, 6, 7]);
    let lines_7 = forbidden_uses(&code, S3_PROTOCOL_FORBIDDEN);
    assert!(lines_7.iter().any(|(l, m)| *l == 7 && m.contains("tokio")));
}

#[test]
fn crate_root_checks() {
    assert!(forbids_unsafe("#![forbid(missing_docs, unsafe_code)]"));
    assert!(forbids_unsafe("#![forbid(\n    unsafe_code\n)]"));
    assert!(!forbids_unsafe("#![deny(unsafe_code)]"));
    assert!(!forbids_unsafe("#![forbid(unsafe_op_in_unsafe_fn)]"));
    assert!(has_crate_docs(
        "//! Does one thing.\n#![forbid(unsafe_code)]\nmod a;"
    ));
    assert!(has_crate_docs(
        "#![forbid(unsafe_code)]\n//! Does one thing.\nmod a;"
    ));
    assert!(!has_crate_docs("//!\nmod a;\n//! late"));
    assert!(!has_crate_docs("/// An item doc.\nfn main() {}"));
}

// ---- the workspace, as the rules see it ----

struct Crate {
    name: String,
    /// Absolute.
    dir: PathBuf,
    /// As in the root's `workspace.members`, e.g. `crates/transfer-core`.
    rel_dir: String,
    manifest: Manifest,
}

impl Crate {
    fn manifest_path(&self) -> PathBuf {
        self.dir.join("Cargo.toml")
    }

    fn is_library(&self) -> bool {
        self.dir.join("src/lib.rs").is_file()
    }
}

fn project_root() -> PathBuf {
    crate::project_root()
}

fn workspace() -> Vec<Crate> {
    let root = project_root();
    let root_manifest = parse_manifest(&root.join("Cargo.toml"));
    assert!(
        !root_manifest.members.is_empty(),
        "Cargo.toml: no `workspace.members` found"
    );
    root_manifest
        .members
        .iter()
        .map(|member| {
            assert!(
                !member.contains(['*', '?', '[']),
                "Cargo.toml: workspace member `{member}` is a glob; list members explicitly so \
                 the tidy rules see every crate"
            );
            let dir = root.join(member);
            let manifest = parse_manifest(&dir.join("Cargo.toml"));
            let name = manifest
                .name
                .clone()
                .unwrap_or_else(|| panic!("{member}/Cargo.toml: no `package.name`"));
            Crate {
                name,
                dir,
                rel_dir: member.clone(),
                manifest,
            }
        })
        .collect()
}

fn parse_manifest(path: &Path) -> Manifest {
    manifest::parse(&read(path)).unwrap_or_else(|e| panic!("{}: {e}", relative(path)))
}

fn read(path: &Path) -> String {
    fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: cannot read: {e}", relative(path)))
}

/// Every `.rs` file below `dir`, skipping build output and hidden directories
/// (`.git`, `.venv`, ...).
fn rust_files(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(dir) = pending.pop() {
        let Ok(entries) = fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            let name = entry.file_name();
            let name = name.to_string_lossy();
            let Ok(kind) = entry.file_type() else {
                continue;
            };
            if kind.is_dir() {
                if !name.starts_with('.') && name != "target" {
                    pending.push(path);
                }
            } else if kind.is_file() && name.ends_with(".rs") {
                files.push(path);
            }
        }
    }
    files.sort();
    files
}

fn relative(path: &Path) -> String {
    let root = project_root();
    path.strip_prefix(&root)
        .unwrap_or(path)
        .display()
        .to_string()
}

fn list_or_none(names: &[&str]) -> String {
    if names.is_empty() {
        "no workspace crate".to_owned()
    } else {
        names.join(", ")
    }
}

/// Collects the violations of one rule and fails the test listing all of them.
struct Violations {
    rule: &'static str,
    found: Vec<String>,
}

impl Violations {
    fn new(rule: &'static str) -> Violations {
        Violations {
            rule,
            found: Vec::new(),
        }
    }

    fn push(&mut self, file: &Path, line: Option<usize>, message: impl fmt::Display) {
        let location = match line {
            Some(line) => format!("{}:{line}", relative(file)),
            None => relative(file),
        };
        self.found
            .push(format!("{location}: [{}] {message}", self.rule));
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
