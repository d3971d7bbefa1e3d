//! The workspace as the rules see it, from cargo itself: `cargo metadata --format-version
//! 1` for the members, what each declares and the resolved dependency graph, and
//! `cargo tree` for the features a package has when one crate is built alone. The one
//! manifest fact cargo metadata does not report, `[lints] workspace = true`, and the
//! `clippy.toml` files are read with the `toml` crate.
//!
//! The resolved graph is the whole workspace's: an optional dependency that any member's
//! features switch on is an edge for every crate that reaches its parent. The
//! reachability rules therefore see at least what a crate built alone links (never
//! less), which is the safe side for a rule that forbids edges.

use std::collections::{HashMap, VecDeque};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use serde_json::Value;

/// Which table a dependency is declared in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum DepKind {
    Normal,
    Dev,
    Build,
}

impl DepKind {
    fn from_json(kind: &Value) -> DepKind {
        match kind.as_str() {
            Some("dev") => DepKind::Dev,
            Some("build") => DepKind::Build,
            _ => DepKind::Normal,
        }
    }
}

/// A dependency as a member's manifest declares it.
pub(super) struct Dep {
    /// The package depended on (its real name, whatever it is renamed to).
    pub(super) package: String,
    pub(super) kind: DepKind,
}

/// A workspace member.
pub(super) struct Member {
    pub(super) name: String,
    /// Absolute.
    pub(super) dir: PathBuf,
    /// Relative to the workspace root, e.g. `crates/transfer-core`.
    pub(super) rel_dir: String,
    /// `package.publish`: `Some([])` for `publish = false`, `None` for anywhere.
    pub(super) publish: Option<Vec<String>>,
    pub(super) is_library: bool,
    pub(super) deps: Vec<Dep>,
}

impl Member {
    pub(super) fn manifest_path(&self) -> PathBuf {
        self.dir.join("Cargo.toml")
    }
}

/// A dependency graph by package name: each package's normal (non-dev, non-build)
/// dependencies, for every platform.
#[derive(Default)]
pub(super) struct Graph {
    normal: HashMap<String, Vec<String>>,
}

impl Graph {
    pub(super) fn add(&mut self, from: &str, to: &str) {
        let deps = self.normal.entry(from.to_owned()).or_default();
        if !deps.iter().any(|d| d == to) {
            deps.push(to.to_owned());
        }
    }

    /// Every edge from a package `root` reaches into one of `targets`, each as the
    /// path that reaches it first (breadth-first: a shortest one), `root` first and the
    /// target last. Targets are not looked into: what they bring is their own business,
    /// so one edge into a runtime crate is one finding, not one per crate below it.
    pub(super) fn edges_into(&self, root: &str, targets: &[&str]) -> Vec<Vec<String>> {
        let mut found = Vec::new();
        let mut parent: HashMap<&str, &str> = HashMap::new();
        let mut queue = VecDeque::from([root]);
        parent.insert(root, root);
        while let Some(at) = queue.pop_front() {
            for dep in self.normal.get(at).into_iter().flatten() {
                if targets.contains(&dep.as_str()) {
                    let mut path = vec![dep.clone()];
                    let mut node = at;
                    loop {
                        path.push(node.to_owned());
                        if node == root {
                            break;
                        }
                        node = parent[node];
                    }
                    path.reverse();
                    found.push(path);
                } else if !parent.contains_key(dep.as_str()) {
                    parent.insert(dep, at);
                    queue.push_back(dep);
                }
            }
        }
        found
    }
}

pub(super) struct Workspace {
    pub(super) root: PathBuf,
    pub(super) members: Vec<Member>,
    /// The resolved graph, by package name (the workspace resolves each name to one
    /// version here; two versions of one package share a name, which only merges their
    /// edges).
    pub(super) graph: Graph,
}

/// The workspace, read once per test run.
pub(super) fn workspace() -> &'static Workspace {
    static WORKSPACE: OnceLock<Workspace> = OnceLock::new();
    WORKSPACE.get_or_init(|| {
        let root = crate::project_root();
        let json = cargo(&root, &["metadata", "--format-version", "1", "--locked"]);
        let metadata: Value = serde_json::from_str(&json)
            .unwrap_or_else(|e| panic!("`cargo metadata` printed no JSON: {e}"));
        from_metadata(&root, &metadata)
    })
}

fn from_metadata(root: &Path, metadata: &Value) -> Workspace {
    let members: Vec<&str> = strings(&metadata["workspace_members"]);
    let packages = array(&metadata["packages"]);
    let name_of: HashMap<&str, &str> = packages
        .iter()
        .map(|p| (str_of(&p["id"]), str_of(&p["name"])))
        .collect();
    let mut workspace_members = Vec::new();
    for package in packages
        .iter()
        .filter(|p| members.contains(&str_of(&p["id"])))
    {
        let manifest = PathBuf::from(str_of(&package["manifest_path"]));
        let dir = manifest
            .parent()
            .expect("a manifest path has a directory")
            .to_path_buf();
        let rel_dir = dir.strip_prefix(root).unwrap_or(&dir).display().to_string();
        let publish = package["publish"]
            .as_array()
            .map(|registries| registries.iter().map(|r| str_of(r).to_owned()).collect());
        let is_library = array(&package["targets"]).iter().any(|t| {
            strings(&t["kind"])
                .iter()
                .any(|k| matches!(*k, "lib" | "rlib" | "dylib" | "proc-macro"))
        });
        let deps = array(&package["dependencies"])
            .iter()
            .map(|d| Dep {
                package: str_of(&d["name"]).to_owned(),
                kind: DepKind::from_json(&d["kind"]),
            })
            .collect();
        workspace_members.push(Member {
            name: str_of(&package["name"]).to_owned(),
            dir,
            rel_dir,
            publish,
            is_library,
            deps,
        });
    }
    let mut graph = Graph::default();
    for node in array(&metadata["resolve"]["nodes"]) {
        let from = name_of[str_of(&node["id"])];
        for dep in array(&node["deps"]) {
            let normal = array(&dep["dep_kinds"])
                .iter()
                .any(|k| DepKind::from_json(&k["kind"]) == DepKind::Normal);
            if normal {
                graph.add(from, name_of[str_of(&dep["pkg"])]);
            }
        }
    }
    assert!(
        !workspace_members.is_empty(),
        "`cargo metadata` lists no workspace member"
    );
    // Messages in a stable order.
    workspace_members.sort_by(|a, b| a.rel_dir.cmp(&b.rel_dir));
    Workspace {
        root: root.to_path_buf(),
        members: workspace_members,
        graph,
    }
}

impl Workspace {
    pub(super) fn member(&self, name: &str) -> Option<&Member> {
        self.members.iter().find(|m| m.name == name)
    }

    pub(super) fn is_member(&self, name: &str) -> bool {
        self.member(name).is_some()
    }

    /// The features `package` has when `krate` alone is built for any platform, without
    /// its dev-dependencies (`cargo tree -e normal -p KRATE -i PACKAGE`).
    pub(super) fn features_alone(&self, krate: &str, package: &str) -> Vec<String> {
        let out = cargo(
            &self.root,
            &[
                "tree", "--locked", "-e", "normal", "--target", "all", "-p", krate, "-i", package,
                "--depth", "0", "--prefix", "none", "--format", "{p}|{f}",
            ],
        );
        let mut features: Vec<String> = out
            .lines()
            .filter_map(|line| line.split_once('|'))
            .flat_map(|(_, features)| {
                features
                    .split(" (*)")
                    .next()
                    .unwrap_or("")
                    .split(',')
                    .map(str::trim)
                    .filter(|f| !f.is_empty())
                    .map(str::to_owned)
                    .collect::<Vec<_>>()
            })
            .collect();
        features.sort();
        features.dedup();
        features
    }

    pub(super) fn relative(&self, path: &Path) -> String {
        path.strip_prefix(&self.root)
            .unwrap_or(path)
            .display()
            .to_string()
    }
}

/// Reads a TOML file (a manifest, a `clippy.toml`) into a table, panicking with the file
/// named if it cannot.
pub(super) fn read_toml(path: &Path) -> toml::Table {
    let text = std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("{}: cannot read: {e}", path.display()));
    text.parse::<toml::Table>()
        .unwrap_or_else(|e| panic!("{}: not TOML: {e}", path.display()))
}

/// Runs the cargo that runs the tests in `dir` and returns what it prints.
fn cargo(dir: &Path, args: &[&str]) -> String {
    let program = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let output = Command::new(program)
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap_or_else(|e| panic!("cannot run `cargo {}`: {e}", args.join(" ")));
    assert!(
        output.status.success(),
        "`cargo {}` failed ({}):\n{}",
        args.join(" "),
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout)
        .unwrap_or_else(|e| panic!("`cargo {}` printed non-UTF-8: {e}", args.join(" ")))
}

fn array(value: &Value) -> &[Value] {
    value.as_array().map_or(&[], Vec::as_slice)
}

fn str_of(value: &Value) -> &str {
    value.as_str().unwrap_or_default()
}

fn strings(value: &Value) -> Vec<&str> {
    array(value).iter().map(str_of).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn graph(edges: &[(&str, &str)]) -> Graph {
        let mut g = Graph::default();
        for (from, to) in edges {
            g.add(from, to);
        }
        g
    }

    #[test]
    fn edges_into_targets_with_a_shortest_path() {
        let g = graph(&[
            ("core", "serde"),
            ("proto", "sigv4"),
            ("proto", "runtime-api"),
            ("sigv4", "creds"),
            ("creds", "async"),
            ("runtime-api", "async"),
            ("async", "tokio"),
            ("runtime-api", "tokio"),
            ("tokio", "mio"),
        ]);
        assert!(g.edges_into("core", &["tokio", "mio"]).is_empty());
        let mut found = g.edges_into("proto", &["tokio", "mio"]);
        found.sort();
        assert_eq!(
            found,
            [
                vec!["proto", "runtime-api", "async", "tokio"],
                vec!["proto", "runtime-api", "tokio"],
            ]
        );
        // A direct dependency is a path of two.
        assert_eq!(g.edges_into("async", &["tokio"]), [vec!["async", "tokio"]]);
    }

    #[test]
    fn reads_cargo_metadata() {
        let root = Path::new("/ws");
        let metadata = serde_json::json!({
            "workspace_members": ["path+file:///ws/a#0.1.0", "path+file:///ws/crates/b#0.1.0"],
            "packages": [
                {"id": "path+file:///ws/a#0.1.0", "name": "a", "manifest_path": "/ws/a/Cargo.toml",
                 "publish": [], "targets": [{"kind": ["bin"]}],
                 "dependencies": [
                    {"name": "b", "kind": null},
                    {"name": "anyhow", "kind": "dev", "rename": "ah"},
                 ]},
                {"id": "path+file:///ws/crates/b#0.1.0", "name": "b",
                 "manifest_path": "/ws/crates/b/Cargo.toml", "publish": null,
                 "targets": [{"kind": ["lib"]}], "dependencies": [{"name": "c", "kind": "build"}]},
                {"id": "registry+x#c@1.0.0", "name": "c", "manifest_path": "/r/c/Cargo.toml",
                 "publish": null, "targets": [{"kind": ["lib"]}], "dependencies": []},
            ],
            "resolve": {"nodes": [
                {"id": "path+file:///ws/a#0.1.0", "deps": [
                    {"pkg": "path+file:///ws/crates/b#0.1.0", "dep_kinds": [{"kind": null, "target": null}]},
                ]},
                {"id": "path+file:///ws/crates/b#0.1.0", "deps": [
                    {"pkg": "registry+x#c@1.0.0", "dep_kinds": [{"kind": "build", "target": null}]},
                ]},
                {"id": "registry+x#c@1.0.0", "deps": []},
            ]},
        });
        let ws = from_metadata(root, &metadata);
        let names: Vec<(&str, &str)> = ws
            .members
            .iter()
            .map(|m| (m.name.as_str(), m.rel_dir.as_str()))
            .collect();
        assert_eq!(names, [("a", "a"), ("b", "crates/b")]);
        let a = ws.member("a").unwrap();
        assert_eq!(a.publish.as_deref(), Some(&[][..]));
        assert!(!a.is_library);
        assert_eq!(a.deps[1].package, "anyhow");
        assert_eq!(a.deps[1].kind, DepKind::Dev);
        let b = ws.member("b").unwrap();
        assert!(b.is_library && b.publish.is_none());
        assert_eq!(b.deps[0].kind, DepKind::Build);
        // Build edges are not normal ones.
        assert_eq!(ws.graph.edges_into("a", &["b"]), [vec!["a", "b"]]);
        assert!(ws.graph.edges_into("a", &["c"]).is_empty());
    }
}
