//! Just enough of a `Cargo.toml` reader for the tidy checks, without a TOML crate: the
//! package name, `publish`, `[lints] workspace`, every dependency with its kind (in
//! `[dependencies]`, `[dev-dependencies]`, `[build-dependencies]`, their `[target.*]`
//! forms and `[dependencies.name]` tables, following `package = "..."` renames), and the
//! root's `workspace.members`.
//!
//! It reads TOML statements the way TOML does: comments are dropped, strings (basic,
//! literal and multi-line) are opaque, and a value continues over lines while brackets
//! or braces are open.

/// Which dependency table a dependency was declared in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum DepKind {
    Normal,
    Dev,
    Build,
}

#[derive(Debug, PartialEq, Eq)]
pub(super) struct Dep {
    /// The package depended on (after a `package = "..."` rename).
    pub(super) package: String,
    pub(super) kind: DepKind,
    /// 1-based line of the declaration.
    pub(super) line: usize,
}

#[derive(Debug, Default)]
pub(super) struct Manifest {
    pub(super) name: Option<String>,
    /// The raw value of `package.publish`, e.g. `false`.
    pub(super) publish: Option<String>,
    pub(super) lints_workspace: bool,
    pub(super) deps: Vec<Dep>,
    /// The raw strings of `workspace.members` (root manifest only).
    pub(super) members: Vec<String>,
}

pub(super) fn parse(text: &str) -> Result<Manifest, String> {
    let mut manifest = Manifest::default();
    let mut table: Vec<String> = Vec::new();
    // Dependencies declared in the current table, by key: dotted keys
    // (`name.workspace = true`, `name.package = "x"`) spread one over several lines.
    let mut table_deps: Vec<(String, usize)> = Vec::new();
    for (line, statement) in statements(text) {
        if let Some(header) = statement.strip_prefix('[') {
            let header = header.strip_prefix('[').unwrap_or(header);
            let (path, _) = dotted_key(header)
                .filter(|(_, rest)| rest.starts_with(']'))
                .ok_or_else(|| format!("line {line}: cannot read table header `{statement}`"))?;
            table = path;
            table_deps.clear();
            // `[dependencies.name]` declares the dependency itself.
            if let Some((kind, Some(key))) = dependency_table(&table) {
                manifest.deps.push(Dep {
                    package: key.to_owned(),
                    kind,
                    line,
                });
                table_deps.push((String::new(), manifest.deps.len() - 1));
            }
            continue;
        }
        let (key, rest) = dotted_key(&statement)
            .ok_or_else(|| format!("line {line}: cannot read `{statement}`"))?;
        let value = rest
            .strip_prefix('=')
            .ok_or_else(|| format!("line {line}: expected `key = value`, got `{statement}`"))?
            .trim();
        let key: Vec<&str> = key.iter().map(String::as_str).collect();
        let table_path: Vec<&str> = table.iter().map(String::as_str).collect();
        match (table_path.as_slice(), key.as_slice()) {
            (["package"], ["name"]) => manifest.name = string_value(value),
            (["package"], ["publish"]) => manifest.publish = Some(value.to_owned()),
            (["lints"], ["workspace"]) => manifest.lints_workspace = value == "true",
            (["workspace"], ["members"]) => manifest.members = string_array(value),
            _ => match dependency_table(&table) {
                // Inside `[dependencies]`: `name = ...`, `name.workspace = true`,
                // `name.package = "real"`.
                Some((kind, None)) => {
                    let name = key[0];
                    let renamed = match key.as_slice() {
                        [_, "package"] => string_value(value),
                        [_] => inline_table_get(value, "package").and_then(|v| string_value(&v)),
                        _ => None,
                    };
                    let index = match table_deps.iter().find(|(k, _)| k == name) {
                        Some(&(_, index)) => index,
                        None => {
                            manifest.deps.push(Dep {
                                package: name.to_owned(),
                                kind,
                                line,
                            });
                            table_deps.push((name.to_owned(), manifest.deps.len() - 1));
                            manifest.deps.len() - 1
                        }
                    };
                    if let Some(renamed) = renamed {
                        manifest.deps[index].package = renamed;
                    }
                }
                // Inside `[dependencies.name]`.
                Some((_, Some(_))) if key == ["package"] => {
                    if let (Some(&(_, index)), Some(renamed)) =
                        (table_deps.first(), string_value(value))
                    {
                        manifest.deps[index].package = renamed;
                    }
                }
                _ => {}
            },
        }
    }
    Ok(manifest)
}

/// The kind of dependency table `path` is, and the dependency it names if it is a
/// `[dependencies.name]` table.
fn dependency_table(path: &[String]) -> Option<(DepKind, Option<&str>)> {
    let path = match path {
        [target, _cfg, rest @ ..] if target == "target" => rest,
        rest => rest,
    };
    let (table, name) = match path {
        [table] => (table, None),
        [table, name] => (table, Some(name.as_str())),
        _ => return None,
    };
    let kind = match table.as_str() {
        "dependencies" => DepKind::Normal,
        "dev-dependencies" | "dev_dependencies" => DepKind::Dev,
        "build-dependencies" | "build_dependencies" => DepKind::Build,
        _ => return None,
    };
    Some((kind, name))
}

/// Splits TOML text into statements (a header or a `key = value`), comments removed,
/// multi-line values joined, each with the line it starts on.
fn statements(text: &str) -> Vec<(usize, String)> {
    let chars: Vec<char> = text.chars().collect();
    let mut out = Vec::new();
    let mut current = String::new();
    let (mut line, mut start) = (1, 1);
    let mut depth = 0i32;
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if current.trim().is_empty() && !c.is_whitespace() {
            start = line;
        }
        match c {
            '"' | '\'' => {
                let end = string_end(&chars, i);
                let literal: String = chars[i..end].iter().collect();
                line += literal.matches('\n').count();
                current.push_str(&literal);
                i = end;
                continue;
            }
            '#' => {
                while i < chars.len() && chars[i] != '\n' {
                    i += 1;
                }
                continue;
            }
            '[' | '{' => depth += 1,
            ']' | '}' => depth -= 1,
            '\n' => {
                line += 1;
                if depth <= 0 {
                    let statement = current.trim();
                    if !statement.is_empty() {
                        out.push((start, statement.to_owned()));
                    }
                    current.clear();
                    depth = 0;
                } else {
                    current.push(' ');
                }
                i += 1;
                continue;
            }
            _ => {}
        }
        current.push(c);
        i += 1;
    }
    let statement = current.trim();
    if !statement.is_empty() {
        out.push((start, statement.to_owned()));
    }
    out
}

/// The index just past the string that starts at `chars[start]` (a quote).
fn string_end(chars: &[char], start: usize) -> usize {
    let quote = chars[start];
    let triple = chars.get(start + 1) == Some(&quote) && chars.get(start + 2) == Some(&quote);
    let mut i = start + if triple { 3 } else { 1 };
    while i < chars.len() {
        if quote == '"' && chars[i] == '\\' {
            i += 2;
            continue;
        }
        if chars[i] == quote {
            if !triple {
                return i + 1;
            }
            if chars.get(i + 1) == Some(&quote) && chars.get(i + 2) == Some(&quote) {
                return i + 3;
            }
        }
        if chars[i] == '\n' && !triple {
            return i;
        }
        i += 1;
    }
    chars.len()
}

/// Reads a dotted key (`a.b."c.d"`) and returns its segments and the rest of the text.
fn dotted_key(text: &str) -> Option<(Vec<String>, &str)> {
    let mut segments = Vec::new();
    let mut rest = text.trim_start();
    loop {
        let (segment, after) = if let Some(quoted) = rest.strip_prefix('"') {
            let end = quoted.find('"')?;
            (quoted[..end].to_owned(), &quoted[end + 1..])
        } else if let Some(quoted) = rest.strip_prefix('\'') {
            let end = quoted.find('\'')?;
            (quoted[..end].to_owned(), &quoted[end + 1..])
        } else {
            let end = rest
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '-' || c == '_'))
                .unwrap_or(rest.len());
            if end == 0 {
                return None;
            }
            (rest[..end].to_owned(), &rest[end..])
        };
        segments.push(segment);
        rest = after.trim_start();
        match rest.strip_prefix('.') {
            Some(after) => rest = after.trim_start(),
            None => return Some((segments, rest)),
        }
    }
}

/// `"x"` or `'x'` (escapes are not interpreted: names and paths have none).
fn string_value(value: &str) -> Option<String> {
    let value = value.trim();
    for quote in ['"', '\''] {
        if let Some(inner) = value
            .strip_prefix(quote)
            .and_then(|v| v.strip_suffix(quote))
        {
            return Some(inner.to_owned());
        }
    }
    None
}

/// The strings of an array value such as `["a", "b"]`.
fn string_array(value: &str) -> Vec<String> {
    let Some(inner) = value
        .trim()
        .strip_prefix('[')
        .and_then(|v| v.strip_suffix(']'))
    else {
        return Vec::new();
    };
    split_top_level(inner)
        .iter()
        .filter_map(|item| string_value(item))
        .collect()
}

/// The raw value of `key` in an inline table such as `{ workspace = true, package = "x" }`.
fn inline_table_get(value: &str, key: &str) -> Option<String> {
    let inner = value.trim().strip_prefix('{')?.strip_suffix('}')?;
    split_top_level(inner).into_iter().find_map(|item| {
        let (k, rest) = dotted_key(&item)?;
        let v = rest.strip_prefix('=')?;
        (k == [key]).then(|| v.trim().to_owned())
    })
}

/// Splits on commas that are not inside strings, brackets or braces.
fn split_top_level(text: &str) -> Vec<String> {
    let chars: Vec<char> = text.chars().collect();
    let mut items = Vec::new();
    let mut current = String::new();
    let mut depth = 0;
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        match c {
            '"' | '\'' => {
                let end = string_end(&chars, i);
                current.extend(&chars[i..end]);
                i = end;
                continue;
            }
            '[' | '{' => depth += 1,
            ']' | '}' => depth -= 1,
            ',' if depth == 0 => {
                items.push(std::mem::take(&mut current).trim().to_owned());
                i += 1;
                continue;
            }
            _ => {}
        }
        current.push(c);
        i += 1;
    }
    if !current.trim().is_empty() {
        items.push(current.trim().to_owned());
    }
    items
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_every_way_of_declaring_a_dependency() {
        let text = r#"
[package]
name = "demo"   # a comment with "quotes" and [brackets]
description = """
[dependencies]
not = "a dependency"
"""
publish = false

[lints]
workspace = true

[dependencies]
plain = "1"
inherited.workspace = true
table = { workspace = true, features = ["a", "b"] }
renamed = { package = "real-name", version = "1" }
dotted.workspace = true
dotted.package = "dotted-real"
"quoted" = "1"
multi = { version = "1", features = [
    "x", # trailing comment
    "y=z",
] }

[dependencies.subtable]
version = "1"
features = [
  "x",
]

[dependencies.subrenamed]
package = "sub-real"

[dev-dependencies]
devdep.workspace = true

[target.'cfg(unix)'.dependencies]
unixdep = "1"

[target."cfg(windows)".build-dependencies]
builddep = "1"

[features]
default = ["dep:plain"]
"#;
        let manifest = parse(text).unwrap();
        assert_eq!(manifest.name.as_deref(), Some("demo"));
        assert_eq!(manifest.publish.as_deref(), Some("false"));
        assert!(manifest.lints_workspace);
        let deps: Vec<(&str, DepKind)> = manifest
            .deps
            .iter()
            .map(|d| (d.package.as_str(), d.kind))
            .collect();
        use DepKind::*;
        assert_eq!(
            deps,
            [
                ("plain", Normal),
                ("inherited", Normal),
                ("table", Normal),
                ("real-name", Normal),
                ("dotted-real", Normal),
                ("quoted", Normal),
                ("multi", Normal),
                ("subtable", Normal),
                ("sub-real", Normal),
                ("devdep", Dev),
                ("unixdep", Normal),
                ("builddep", Build),
            ]
        );
        let line_of = |name: &str| {
            manifest
                .deps
                .iter()
                .find(|d| d.package == name)
                .unwrap()
                .line
        };
        assert_eq!(line_of("plain"), 14);
        assert_eq!(line_of("multi"), 21);
        assert_eq!(line_of("devdep"), 36);
    }

    #[test]
    fn reads_workspace_members() {
        let text =
            "[workspace]\nresolver = \"3\"\nmembers = [\n  \"crates/a\", # one\n  'xtask',\n]\n";
        assert_eq!(parse(text).unwrap().members, ["crates/a", "xtask"]);
    }
}
