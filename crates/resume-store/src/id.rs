use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::StoreError;

/// The identifier of a stored transfer.
///
/// Ids become file names, so they are restricted to 1 to
/// [`TransferId::MAX_LEN`] characters from `[A-Za-z0-9_-]`. That excludes path
/// separators, `.` and `..`, hidden files and anything a shell would mangle,
/// so an id can never name a file outside the store's directory.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct TransferId(String);

impl TransferId {
    /// The longest id accepted; well below common file-name limits (255 bytes)
    /// even with the store's suffixes added.
    pub const MAX_LEN: usize = 128;

    /// Validates `id` and wraps it.
    pub fn new(id: impl Into<String>) -> Result<Self, StoreError> {
        let id = id.into();
        match check(&id) {
            Ok(()) => Ok(TransferId(id)),
            Err(reason) => Err(StoreError::InvalidId {
                id: shorten(&id),
                reason,
            }),
        }
    }

    /// The id as a string slice.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

fn check(id: &str) -> Result<(), &'static str> {
    if id.is_empty() {
        return Err("it is empty");
    }
    if id.len() > TransferId::MAX_LEN {
        return Err("it is longer than 128 characters");
    }
    if !id
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    {
        return Err("only letters, digits, '-' and '_' are allowed");
    }
    Ok(())
}

// Error messages echo the id; a hostile multi-megabyte id should not be.
fn shorten(id: &str) -> String {
    const SHOWN: usize = 64;
    match id.char_indices().nth(SHOWN) {
        Some((cut, _)) => format!("{}...", &id[..cut]),
        None => id.to_owned(),
    }
}

impl fmt::Display for TransferId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl FromStr for TransferId {
    type Err = StoreError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        TransferId::new(s)
    }
}

impl TryFrom<String> for TransferId {
    type Error = StoreError;

    fn try_from(s: String) -> Result<Self, Self::Error> {
        TransferId::new(s)
    }
}

impl From<TransferId> for String {
    fn from(id: TransferId) -> String {
        id.0
    }
}

impl AsRef<str> for TransferId {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_safe_ids() {
        for ok in ["a", "0", "01HZX-abc_DEF", &"x".repeat(128)] {
            assert_eq!(TransferId::new(ok).unwrap().as_str(), ok);
        }
    }

    #[test]
    fn rejects_ids_that_could_escape_or_confuse() {
        let long = "x".repeat(129);
        for bad in [
            "", ".", "..", "../etc", "a/b", "a\\b", ".hidden", "a.lock", "a b", "a\0b", "é",
            "a\nb", &long,
        ] {
            match TransferId::new(bad) {
                Err(StoreError::InvalidId { .. }) => {}
                other => panic!("{bad:?} gave {other:?}"),
            }
        }
    }

    #[test]
    fn error_message_shortens_huge_ids() {
        let err = TransferId::new("/".repeat(10_000)).unwrap_err();
        assert!(err.to_string().len() < 200, "{err}");
    }

    #[test]
    fn serde_validates() {
        let id: TransferId = serde_json::from_str("\"abc\"").unwrap();
        assert_eq!(id.as_str(), "abc");
        assert!(serde_json::from_str::<TransferId>("\"../x\"").is_err());
    }
}
