//! Where requests go: endpoints, addressing styles and URI encoding of keys.

use std::fmt;
use std::net::IpAddr;

use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};

use crate::error::RequestError;
use crate::limits::MAX_KEY_LENGTH;

/// Everything but RFC 3986 unreserved characters is escaped, as SigV4 requires.
const QUERY_VALUE: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// Like [`QUERY_VALUE`] but `/` stays, so keys keep their path shape.
const KEY_PATH: &AsciiSet = &QUERY_VALUE.remove(b'/');

/// Percent-encodes an object key for the URI path: every byte but unreserved
/// characters and `/` is escaped. Leading and repeated slashes are preserved.
pub fn encode_key(key: &str) -> String {
    utf8_percent_encode(key, KEY_PATH).to_string()
}

/// Percent-encodes a query parameter name or value (`/` is escaped too).
pub fn encode_query_value(value: &str) -> String {
    utf8_percent_encode(value, QUERY_VALUE).to_string()
}

/// `http` or `https`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Scheme {
    /// Plain HTTP (local test servers).
    Http,
    /// HTTP over TLS.
    Https,
}

impl Scheme {
    /// `"http"` or `"https"`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Http => "http",
            Self::Https => "https",
        }
    }

    fn default_port(self) -> u16 {
        match self {
            Self::Http => 80,
            Self::Https => 443,
        }
    }
}

/// A service endpoint: scheme, host and optional port, without a path.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Endpoint {
    scheme: Scheme,
    host: String,
    port: Option<u16>,
}

impl Endpoint {
    /// The AWS regional endpoint `https://s3.{region}.amazonaws.com`.
    pub fn aws(region: &str) -> Result<Self, RequestError> {
        Self::parse(&format!("https://s3.{region}.amazonaws.com"))
    }

    /// A custom endpoint such as `http://127.0.0.1:9000` or `https://rgw.example.com`
    /// (MinIO, Ceph RGW, test servers). A trailing `/` is accepted; any other path,
    /// a query or user info is refused because S3 paths are built from bucket and key.
    pub fn parse(url: &str) -> Result<Self, RequestError> {
        let bad = |why: &str| RequestError::InvalidEndpoint {
            endpoint: url.to_owned(),
            reason: why.to_owned(),
        };
        let uri: http::Uri = url.parse().map_err(|_| bad("not a valid URL"))?;
        let scheme = match uri.scheme_str() {
            Some(s) if s.eq_ignore_ascii_case("https") => Scheme::Https,
            Some(s) if s.eq_ignore_ascii_case("http") => Scheme::Http,
            Some(_) => return Err(bad("the scheme must be http or https")),
            None => return Err(bad("the URL needs a scheme (http:// or https://)")),
        };
        let authority = uri.authority().ok_or_else(|| bad("the URL has no host"))?;
        if authority.as_str().contains('@') {
            return Err(bad("credentials do not belong in the endpoint URL"));
        }
        if !matches!(uri.path(), "" | "/") || uri.query().is_some() {
            return Err(bad("the endpoint URL must not have a path or query"));
        }
        let host = authority.host().to_ascii_lowercase();
        if host.is_empty() {
            return Err(bad("the URL has no host"));
        }
        let port = authority.port_u16().filter(|p| *p != scheme.default_port());
        Ok(Self { scheme, host, port })
    }

    /// The scheme.
    pub fn scheme(&self) -> Scheme {
        self.scheme
    }

    /// The host name or IP literal (IPv6 in brackets).
    pub fn host(&self) -> &str {
        &self.host
    }

    /// The port, unless it is the scheme's default.
    pub fn port(&self) -> Option<u16> {
        self.port
    }

    /// True for IP literals and `localhost`, where virtual-hosted addressing cannot work.
    pub fn is_ip_or_localhost(&self) -> bool {
        let h = self.host.trim_start_matches('[').trim_end_matches(']');
        h.parse::<IpAddr>().is_ok() || h == "localhost" || h.ends_with(".localhost")
    }

    fn authority_with(&self, host_prefix: Option<&str>) -> String {
        let mut s = String::new();
        if let Some(prefix) = host_prefix {
            s.push_str(prefix);
            s.push('.');
        }
        s.push_str(&self.host);
        if let Some(p) = self.port {
            s.push(':');
            s.push_str(&p.to_string());
        }
        s
    }
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}://{}",
            self.scheme.as_str(),
            self.authority_with(None)
        )
    }
}

/// How the bucket name appears in requests.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub enum Addressing {
    /// `https://bucket.host/key`: what AWS recommends.
    VirtualHosted,
    /// `https://host/bucket/key`: what most self-hosted servers expect.
    PathStyle,
    /// Virtual-hosted where it can work, path-style for IP addresses, `localhost`, and
    /// bucket names that are not usable as a DNS label (including names with dots on
    /// HTTPS, which would not match the server's wildcard certificate).
    #[default]
    Auto,
}

/// True when `bucket` can be the first label of a host name: 3-63 characters of
/// lowercase letters, digits, `-` and `.`, starting and ending with a letter or digit,
/// no empty labels, and not shaped like an IPv4 address.
pub fn is_dns_compatible_bucket(bucket: &str) -> bool {
    let b = bucket.as_bytes();
    (3..=63).contains(&b.len())
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-' || *c == b'.')
        && b[0].is_ascii_alphanumeric()
        && b[b.len() - 1].is_ascii_alphanumeric()
        && !bucket.contains("..")
        && !bucket.contains(".-")
        && !bucket.contains("-.")
        && bucket.parse::<std::net::Ipv4Addr>().is_err()
}

/// Region, endpoint and addressing: what every request builder needs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct S3Config {
    region: String,
    endpoint: Endpoint,
    addressing: Addressing,
}

impl S3Config {
    /// AWS S3 in `region`, at its regional endpoint, with [`Addressing::Auto`].
    pub fn aws(region: impl Into<String>) -> Result<Self, RequestError> {
        let region = region.into();
        let endpoint = Endpoint::aws(&region)?;
        Ok(Self {
            region,
            endpoint,
            addressing: Addressing::Auto,
        })
    }

    /// A custom endpoint; `region` is still needed for signing (`us-east-1` suits most
    /// self-hosted servers).
    pub fn custom(region: impl Into<String>, endpoint: Endpoint, addressing: Addressing) -> Self {
        Self {
            region: region.into(),
            endpoint,
            addressing,
        }
    }

    /// Replaces the addressing style.
    pub fn with_addressing(mut self, addressing: Addressing) -> Self {
        self.addressing = addressing;
        self
    }

    /// The signing region.
    pub fn region(&self) -> &str {
        &self.region
    }

    /// The endpoint.
    pub fn endpoint(&self) -> &Endpoint {
        &self.endpoint
    }

    /// The configured addressing style (possibly `Auto`).
    pub fn addressing(&self) -> Addressing {
        self.addressing
    }

    /// True when requests for `bucket` go path-style under this configuration.
    pub fn uses_path_style(&self, bucket: &str) -> bool {
        match self.addressing {
            Addressing::PathStyle => true,
            Addressing::VirtualHosted => false,
            Addressing::Auto => {
                self.endpoint.is_ip_or_localhost()
                    || !is_dns_compatible_bucket(bucket)
                    || (self.endpoint.scheme == Scheme::Https && bucket.contains('.'))
            }
        }
    }

    /// The URI of `bucket` (key `None`) or of an object, with an already encoded
    /// query string (without `?`). The `Host` header value is returned alongside.
    pub(crate) fn uri(
        &self,
        bucket: &str,
        key: Option<&str>,
        query: &str,
    ) -> Result<(http::Uri, String), RequestError> {
        validate_bucket(bucket)?;
        if let Some(k) = key {
            validate_key(k)?;
        }
        let path_style = self.uses_path_style(bucket);
        if !path_style && !is_dns_compatible_bucket(bucket) {
            return Err(RequestError::InvalidBucket {
                bucket: bucket.to_owned(),
                reason: "virtual-hosted addressing needs a DNS-compatible bucket name; use path-style addressing".to_owned(),
            });
        }
        let (authority, mut path) = if path_style {
            (
                self.endpoint.authority_with(None),
                format!("/{}", encode_query_value(bucket)),
            )
        } else {
            (self.endpoint.authority_with(Some(bucket)), String::new())
        };
        match key {
            Some(k) => {
                path.push('/');
                path.push_str(&encode_key(k));
            }
            None if path.is_empty() => path.push('/'),
            None => {}
        }
        let mut s = format!("{}://{}{}", self.endpoint.scheme.as_str(), authority, path);
        if !query.is_empty() {
            s.push('?');
            s.push_str(query);
        }
        let uri = s
            .parse::<http::Uri>()
            .map_err(|e| RequestError::InvalidKey {
                key: key.unwrap_or_default().to_owned(),
                reason: format!("cannot form a URI: {e}"),
            })?;
        Ok((uri, authority))
    }
}

fn validate_bucket(bucket: &str) -> Result<(), RequestError> {
    let bad = |why: &str| RequestError::InvalidBucket {
        bucket: bucket.to_owned(),
        reason: why.to_owned(),
    };
    if bucket.is_empty() {
        return Err(bad("the bucket name is empty"));
    }
    if bucket.len() > 255 {
        return Err(bad("the bucket name is longer than 255 characters"));
    }
    // Path-style servers accept more than DNS names, but never a separator or control byte.
    if bucket
        .bytes()
        .any(|b| b == b'/' || b.is_ascii_control() || b == b' ')
    {
        return Err(bad(
            "the bucket name contains '/', a space or a control character",
        ));
    }
    Ok(())
}

fn validate_key(key: &str) -> Result<(), RequestError> {
    if key.is_empty() {
        return Err(RequestError::InvalidKey {
            key: String::new(),
            reason: "the object key is empty".to_owned(),
        });
    }
    if key.len() > MAX_KEY_LENGTH {
        return Err(RequestError::InvalidKey {
            key: key.chars().take(64).collect::<String>() + "...",
            reason: format!("the object key is longer than {MAX_KEY_LENGTH} bytes"),
        });
    }
    Ok(())
}

/// Builds an encoded query string from `(name, value)` pairs; a `None` value writes the
/// bare name (`?uploads`).
pub(crate) fn query_string(pairs: &[(&str, Option<&str>)]) -> String {
    let mut out = String::new();
    for (name, value) in pairs {
        if !out.is_empty() {
            out.push('&');
        }
        out.push_str(&encode_query_value(name));
        if let Some(v) = value {
            out.push('=');
            out.push_str(&encode_query_value(v));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_encoding() {
        assert_eq!(encode_key("test$file.text"), "test%24file.text");
        assert_eq!(
            encode_key("a b+c=d&e?f#g%h~i"),
            "a%20b%2Bc%3Dd%26e%3Ff%23g%25h~i"
        );
        assert_eq!(encode_key("/lead//double/"), "/lead//double/");
        assert_eq!(
            encode_key("ключ/ü.txt"),
            "%D0%BA%D0%BB%D1%8E%D1%87/%C3%BC.txt"
        );
        assert_eq!(encode_query_value("a/b c"), "a%2Fb%20c");
    }

    #[test]
    fn endpoints() {
        let e = Endpoint::aws("eu-west-1").unwrap();
        assert_eq!(e.to_string(), "https://s3.eu-west-1.amazonaws.com");
        let e = Endpoint::parse("http://127.0.0.1:9000/").unwrap();
        assert_eq!(
            (e.scheme(), e.host(), e.port()),
            (Scheme::Http, "127.0.0.1", Some(9000))
        );
        assert!(e.is_ip_or_localhost());
        let e = Endpoint::parse("https://RGW.example.com:443").unwrap();
        assert_eq!(e.to_string(), "https://rgw.example.com");
        assert!(!e.is_ip_or_localhost());
        assert!(
            Endpoint::parse("http://[::1]:8080")
                .unwrap()
                .is_ip_or_localhost()
        );
        assert!(
            Endpoint::parse("http://localhost:8080")
                .unwrap()
                .is_ip_or_localhost()
        );
        for bad in [
            "ftp://x",
            "s3.amazonaws.com",
            "https://x/prefix",
            "https://u:p@x",
            "https://x/?a=b",
        ] {
            assert!(Endpoint::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn dns_compatibility() {
        for ok in ["abc", "my-bucket", "my.bucket.v2", "a1b"] {
            assert!(is_dns_compatible_bucket(ok), "{ok}");
        }
        for bad in [
            "ab",
            "My-Bucket",
            "-abc",
            "abc-",
            "a..b",
            "a.-b",
            "192.168.5.4",
            "a_b",
            &"a".repeat(64),
        ] {
            assert!(!is_dns_compatible_bucket(bad), "{bad}");
        }
    }

    #[test]
    fn auto_addressing() {
        let aws = S3Config::aws("us-west-2").unwrap();
        let (uri, host) = aws.uri("my-bucket", Some("a b/c"), "").unwrap();
        assert_eq!(
            uri.to_string(),
            "https://my-bucket.s3.us-west-2.amazonaws.com/a%20b/c"
        );
        assert_eq!(host, "my-bucket.s3.us-west-2.amazonaws.com");
        let (uri, _) = aws.uri("my.bucket", Some("k"), "").unwrap();
        assert_eq!(
            uri.to_string(),
            "https://s3.us-west-2.amazonaws.com/my.bucket/k"
        );
        let (uri, _) = aws.uri("Legacy_Bucket", None, "list-type=2").unwrap();
        assert_eq!(
            uri.to_string(),
            "https://s3.us-west-2.amazonaws.com/Legacy_Bucket?list-type=2"
        );
        let (uri, _) = aws.uri("my-bucket", None, "").unwrap();
        assert_eq!(
            uri.to_string(),
            "https://my-bucket.s3.us-west-2.amazonaws.com/"
        );

        let local = S3Config::custom(
            "us-east-1",
            Endpoint::parse("http://127.0.0.1:9000").unwrap(),
            Addressing::Auto,
        );
        let (uri, host) = local.uri("bucket", Some("//x"), "uploads").unwrap();
        assert_eq!(uri.to_string(), "http://127.0.0.1:9000/bucket///x?uploads");
        assert_eq!(uri.path(), "/bucket///x");
        assert_eq!(host, "127.0.0.1:9000");

        let forced = local.clone().with_addressing(Addressing::VirtualHosted);
        assert!(forced.uri("Bad_Name", Some("k"), "").is_err());
        assert!(local.uri("bucket", Some(""), "").is_err());
        assert!(local.uri("", Some("k"), "").is_err());
        assert!(local.uri("bucket", Some(&"k".repeat(1025)), "").is_err());
    }

    #[test]
    fn query_strings() {
        assert_eq!(
            query_string(&[
                ("uploadId", Some("a/b+c==")),
                ("partNumber", Some("2")),
                ("uploads", None)
            ]),
            "uploadId=a%2Fb%2Bc%3D%3D&partNumber=2&uploads"
        );
    }
}
