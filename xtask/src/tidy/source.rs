//! Just enough Rust lexing for the tidy checks: blank out comments (so prose may say
//! "no tokio"), expand `use` trees (so `use std::{fs, io::Read}` is seen as
//! `std::fs` and `std::io::Read`), and find whole-identifier mentions of a path.

/// `text` with every comment replaced by spaces; newlines, strings and code are kept,
/// so byte offsets and line numbers stay the same.
pub(super) fn strip_comments(text: &str) -> String {
    blank(text, false)
}

/// `text` with comments and the contents of string and char literals replaced by
/// spaces (quotes kept), for finding items without being fooled by prose.
pub(super) fn strip_comments_and_strings(text: &str) -> String {
    blank(text, true)
}

fn blank(text: &str, strings: bool) -> String {
    let b = text.as_bytes();
    // Copies a literal, blanking its contents (not its delimiters) when asked.
    let literal = |out: &mut Vec<u8>, lit: &[u8], open: usize, close: usize| {
        if !strings || lit.len() < open + close {
            out.extend_from_slice(lit);
            return;
        }
        out.extend_from_slice(&lit[..open]);
        let inner = &lit[open..lit.len() - close];
        out.extend(inner.iter().map(|&c| if c == b'\n' { c } else { b' ' }));
        out.extend_from_slice(&lit[lit.len() - close..]);
    };
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        let next = b.get(i + 1).copied();
        if c == b'/' && next == Some(b'/') {
            while i < b.len() && b[i] != b'\n' {
                out.push(b' ');
                i += 1;
            }
        } else if c == b'/' && next == Some(b'*') {
            let mut depth = 0;
            while i < b.len() {
                if b[i] == b'/' && b.get(i + 1) == Some(&b'*') {
                    depth += 1;
                    out.extend_from_slice(b"  ");
                    i += 2;
                } else if b[i] == b'*' && b.get(i + 1) == Some(&b'/') {
                    depth -= 1;
                    out.extend_from_slice(b"  ");
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    out.push(if b[i] == b'\n' { b'\n' } else { b' ' });
                    i += 1;
                }
            }
        } else if let Some((open, end, close)) = raw_string_end(b, i) {
            literal(&mut out, &b[i..end], open - i, close);
            i = end;
        } else if c == b'"' {
            let mut j = i + 1;
            while j < b.len() && b[j] != b'"' {
                j += if b[j] == b'\\' { 2 } else { 1 };
            }
            let end = (j + 1).min(b.len());
            literal(&mut out, &b[i..end], 1, 1);
            i = end;
        } else if c == b'\'' {
            // A char literal ('x', '\n', '\'', '\u{..}') or a lifetime ('a).
            let end = if next == Some(b'\\') {
                let mut j = i + 3;
                while j < b.len() && b[j] != b'\'' {
                    j += 1;
                }
                j + 1
            } else if b.get(i + 2) == Some(&b'\'') {
                i + 3
            } else if next.is_some_and(|n| n >= 0x80) {
                // A multi-byte char literal: up to the closing quote within 5 bytes.
                (i + 2..(i + 6).min(b.len()))
                    .find(|&j| b[j] == b'\'')
                    .map_or(i + 1, |j| j + 1)
            } else {
                i + 1
            };
            let end = end.min(b.len());
            if end - i >= 3 {
                literal(&mut out, &b[i..end], 1, 1);
            } else {
                out.extend_from_slice(&b[i..end]);
            }
            i = end;
        } else {
            out.push(c);
            i += 1;
        }
    }
    String::from_utf8(out).expect("only ASCII bytes were replaced")
}

/// If a raw string (`r"..."`, `r#"..."#`, `br#"..."#`, `cr"..."`) starts at `i`: where
/// its contents start, where it ends, and the length of its closing delimiter.
fn raw_string_end(b: &[u8], i: usize) -> Option<(usize, usize, usize)> {
    if i > 0 && is_ident_byte(b[i - 1]) {
        return None;
    }
    let mut j = i;
    if matches!(b[j], b'b' | b'c') {
        j += 1;
    }
    if b.get(j) != Some(&b'r') {
        return None;
    }
    j += 1;
    let hashes = b[j..].iter().take_while(|&&c| c == b'#').count();
    j += hashes;
    if b.get(j) != Some(&b'"') {
        return None;
    }
    j += 1;
    let open = j;
    while j < b.len() {
        if b[j] == b'"'
            && b[j + 1..]
                .iter()
                .take(hashes)
                .filter(|&&c| c == b'#')
                .count()
                == hashes
        {
            return Some((open, j + 1 + hashes, 1 + hashes));
        }
        j += 1;
    }
    Some((open, b.len(), 0))
}

fn is_ident_byte(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'_' || c >= 0x80
}

/// A path brought into scope by a `use` item.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct UsePath {
    /// 1-based line of the `use` keyword.
    pub(super) line: usize,
    /// The full path, e.g. `std::io::Read`; a glob ends in `::*`.
    pub(super) path: String,
    /// The name it is visible under: the last segment or the `as` name; `*` for globs.
    pub(super) alias: String,
}

/// Every path imported by a `use` item in `code`.
pub(super) fn use_paths(code: &str) -> Vec<UsePath> {
    let code = &strip_comments_and_strings(code);
    let mut out = Vec::new();
    for (start, _) in code.match_indices("use") {
        let b = code.as_bytes();
        let before_ok = start == 0 || !is_ident_byte(b[start - 1]);
        let after_ok = b.get(start + 3).is_some_and(|c| c.is_ascii_whitespace());
        if !(before_ok && after_ok) {
            continue;
        }
        let Some(len) = code[start + 3..].find(';') else {
            continue;
        };
        let tree = code[start + 3..start + 3 + len]
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ");
        let line = line_of(code, start);
        let mut paths = Vec::new();
        expand("", &tree, &mut paths);
        out.extend(
            paths
                .into_iter()
                .map(|(path, alias)| UsePath { line, path, alias }),
        );
    }
    out
}

fn expand(prefix: &str, tree: &str, out: &mut Vec<(String, String)>) {
    let tree = tree.trim();
    if let Some(open) = tree.find('{') {
        let head = tree[..open].trim().trim_end_matches("::").replace(' ', "");
        let Some(close) = tree.rfind('}').filter(|&close| close > open) else {
            return;
        };
        let prefix = join(prefix, &head);
        for item in split_commas(&tree[open + 1..close]) {
            expand(&prefix, item, out);
        }
        return;
    }
    let (path, alias) = match tree.split_once(" as ") {
        Some((path, alias)) => (path.replace(' ', ""), Some(alias.trim().to_owned())),
        None => (tree.replace(' ', ""), None),
    };
    if path.is_empty() {
        return;
    }
    let mut full = join(prefix, &path);
    if let Some(parent) = full.strip_suffix("::self") {
        full = parent.to_owned();
    }
    let full = full.trim_start_matches("::").to_owned();
    let alias = alias.unwrap_or_else(|| full.rsplit("::").next().unwrap_or("").to_owned());
    out.push((full, alias));
}

fn join(prefix: &str, path: &str) -> String {
    match (prefix.is_empty(), path.is_empty()) {
        (true, _) => path.to_owned(),
        (_, true) => prefix.to_owned(),
        _ => format!("{prefix}::{path}"),
    }
}

fn split_commas(text: &str) -> Vec<&str> {
    let mut items = Vec::new();
    let (mut depth, mut start) = (0, 0);
    for (i, c) in text.char_indices() {
        match c {
            '{' => depth += 1,
            '}' => depth -= 1,
            ',' if depth == 0 => {
                items.push(&text[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    items.push(&text[start..]);
    items.into_iter().filter(|s| !s.trim().is_empty()).collect()
}

/// Byte offsets just past each whole-identifier occurrence of `path` in `code`.
pub(super) fn mentions(code: &str, path: &str) -> Vec<usize> {
    let b = code.as_bytes();
    code.match_indices(path)
        .filter(|&(start, _)| start == 0 || !is_ident_byte(b[start - 1]))
        .map(|(start, _)| start + path.len())
        .filter(|&end| end == b.len() || !is_ident_byte(b[end]))
        .collect()
}

/// The identifier after a `::` at `offset`, if any (`std::net` + `::IpAddr`).
pub(super) fn child_segment(code: &str, offset: usize) -> Option<&str> {
    let rest = code[offset..].trim_start().strip_prefix("::")?.trim_start();
    let len = rest
        .find(|c: char| !(c.is_alphanumeric() || c == '_'))
        .unwrap_or(rest.len());
    (len > 0).then(|| &rest[..len])
}

/// 1-based line number of byte `offset`.
pub(super) fn line_of(code: &str, offset: usize) -> usize {
    code[..offset].matches('\n').count() + 1
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn comments_are_blanked_and_strings_kept() {
        let text = "let a = \"// not a comment\"; // tokio\n/* std::fs /* nested */ */ x\n\
                    let c = '\"'; let l: &'static str = r#\"/* \"# ; // end\nlet d = '\\''; y";
        let code = strip_comments(text);
        assert_eq!(code.len(), text.len());
        assert_eq!(code.lines().count(), text.lines().count());
        assert!(code.contains("\"// not a comment\""));
        assert!(!code.contains("tokio"));
        assert!(!code.contains("std::fs"));
        assert!(code.contains(" x\n"));
        assert!(code.contains("r#\"/* \"#"));
        assert!(!code.contains("end"));
        assert!(code.ends_with("let d = '\\''; y"));
    }

    #[test]
    fn strings_can_be_blanked_too() {
        let text = "let a = \"use std::fs; }\"; let b = r#\"use x;\"#; let c = '{';";
        let code = strip_comments_and_strings(text);
        assert_eq!(code.len(), text.len());
        assert_eq!(
            code,
            "let a = \"              \"; let b = r#\"      \"#; let c = ' ';"
        );
        assert!(use_paths(text).is_empty());
    }

    #[test]
    fn use_trees_are_expanded() {
        let code = "use std::{fs, io::{self, Read as R}};\npub(crate) use ::std::net::*;\n\
                    fn f() { let user = 1; }\nuse std::time\n    ::Instant;";
        let paths: Vec<(usize, String, String)> = use_paths(code)
            .into_iter()
            .map(|u| (u.line, u.path, u.alias))
            .collect();
        let expected = [
            (1, "std::fs", "fs"),
            (1, "std::io", "io"),
            (1, "std::io::Read", "R"),
            (2, "std::net::*", "*"),
            (4, "std::time::Instant", "Instant"),
        ]
        .map(|(line, path, alias)| (line, path.to_owned(), alias.to_owned()));
        assert_eq!(paths, expected);
    }

    #[test]
    fn mentions_are_whole_identifiers() {
        let code = "tokio::spawn(); non_tokio(); tokio_util; std::net::IpAddr";
        assert_eq!(mentions(code, "tokio"), [5]);
        let end = mentions(code, "std::net")[0];
        assert_eq!(child_segment(code, end), Some("IpAddr"));
        assert_eq!(line_of("a\nb\nc", 4), 3);
    }
}
