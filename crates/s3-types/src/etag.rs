//! Entity tags.

use std::fmt;

use serde::{Deserialize, Serialize};

/// An entity tag exactly as the server sent it (usually with its double quotes).
///
/// The raw form is kept because `If-Match` and CompleteMultipartUpload must echo the
/// server's value byte for byte; [`ETag::kind`] interprets it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ETag(pub String);

/// What an ETag says about the object's content.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ETagKind {
    /// 32 hex digits: the MD5 of the whole object (single-part upload without SSE-KMS/SSE-C).
    Md5([u8; 16]),
    /// `<md5 of the part md5s>-<parts>`: an object assembled by CompleteMultipartUpload.
    Multipart {
        /// MD5 of the concatenated binary MD5s of the parts.
        digest: [u8; 16],
        /// Number of parts.
        parts: u32,
    },
    /// Anything else (weak tags, other servers' schemes): usable only for `If-Match`.
    Opaque,
}

impl ETag {
    /// Wraps an ETag as received.
    pub fn new(raw: impl Into<String>) -> Self {
        Self(raw.into())
    }

    /// The ETag exactly as received, quotes included.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The ETag without surrounding double quotes (and without a weak `W/` prefix).
    pub fn unquoted(&self) -> &str {
        let s = self.0.trim();
        let s = s.strip_prefix("W/").unwrap_or(s);
        s.strip_prefix('"')
            .and_then(|s| s.strip_suffix('"'))
            .unwrap_or(s)
    }

    /// Whether both tags name the same version, ignoring quoting; the case of the digits
    /// is ignored only where both are S3's hex forms (an MD5 or a multipart tag), since
    /// another server's opaque tags may differ in case alone.
    pub fn same_as(&self, other: &ETag) -> bool {
        let (a, b) = (self.unquoted(), other.unquoted());
        match (self.kind(), other.kind()) {
            (ETagKind::Opaque, _) | (_, ETagKind::Opaque) => a == b,
            _ => a.eq_ignore_ascii_case(b),
        }
    }

    /// Tells a plain MD5 from a multipart `-N` ETag; a weak tag (`W/"..."`) is opaque
    /// whatever it holds, as it promises no byte-for-byte content.
    pub fn kind(&self) -> ETagKind {
        if self.0.trim().starts_with("W/") {
            return ETagKind::Opaque;
        }
        let s = self.unquoted();
        let (hex_part, parts) = match s.split_once('-') {
            // Comparing with the canonical rendering rejects `+5` and `007`, which
            // `parse` accepts but S3 never writes.
            Some((h, n_str)) => match n_str.parse::<u32>() {
                Ok(n) if n >= 1 && n.to_string() == n_str => (h, Some(n)),
                _ => return ETagKind::Opaque,
            },
            None => (s, None),
        };
        let mut digest = [0u8; 16];
        if hex_part.len() != 32 || hex::decode_to_slice(hex_part, &mut digest).is_err() {
            return ETagKind::Opaque;
        }
        match parts {
            None => ETagKind::Md5(digest),
            Some(parts) => ETagKind::Multipart { digest, parts },
        }
    }

    /// The MD5 digest if the tag is a plain MD5 (a single-part upload).
    pub fn as_md5(&self) -> Option<[u8; 16]> {
        match self.kind() {
            ETagKind::Md5(d) => Some(d),
            _ => None,
        }
    }

    /// The part count of a multipart `<md5>-N` tag.
    pub fn multipart_parts(&self) -> Option<u32> {
        match self.kind() {
            ETagKind::Multipart { parts, .. } => Some(parts),
            _ => None,
        }
    }
}

impl fmt::Display for ETag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MD5: &str = "0123456789abcdef0123456789abcdef";

    #[test]
    fn kinds() {
        assert!(matches!(
            ETag::new(format!("\"{MD5}\"")).kind(),
            ETagKind::Md5(_)
        ));
        assert_eq!(ETag::new(format!("\"{MD5}-3\"")).multipart_parts(), Some(3));
        for opaque in [
            format!("\"{MD5}-0\""),
            format!("\"{MD5}-007\""),
            format!("\"{MD5}-+5\""),
            "\"abc\"".to_owned(),
            String::new(),
        ] {
            assert_eq!(
                ETag::new(opaque.clone()).kind(),
                ETagKind::Opaque,
                "{opaque}"
            );
        }
    }

    #[test]
    fn comparison_ignores_quotes_and_the_case_of_s3_hex_tags_only() {
        let a = ETag::new(format!("\"{MD5}\""));
        assert!(a.same_as(&ETag::new(MD5)));
        assert!(a.same_as(&ETag::new(format!("\"{}\"", MD5.to_uppercase()))));
        assert!(!a.same_as(&ETag::new(format!("\"{MD5}-1\""))));
        // Another server's opaque tags: exact.
        assert!(ETag::new("\"v1-Ab\"").same_as(&ETag::new("v1-Ab")));
        assert!(!ETag::new("\"v1-Ab\"").same_as(&ETag::new("\"v1-ab\"")));
        // A weak tag holds no MD5 and compares exactly.
        let weak = ETag::new(format!("W/\"{MD5}\""));
        assert_eq!(weak.kind(), ETagKind::Opaque);
        assert_eq!(weak.as_md5(), None);
        assert!(weak.same_as(&a));
        assert!(!weak.same_as(&ETag::new(MD5.to_uppercase())));
        assert_eq!(a.unquoted(), MD5);
        assert_eq!(a.as_str(), format!("\"{MD5}\""));
    }
}

/// The opaque id S3 gives a multipart upload.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct UploadId(pub String);

impl UploadId {
    /// Wraps an upload id as received from CreateMultipartUpload or a checkpoint.
    pub fn new(id: impl Into<String>) -> Self {
        Self(id.into())
    }

    /// The id as S3 sent it.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for UploadId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}
