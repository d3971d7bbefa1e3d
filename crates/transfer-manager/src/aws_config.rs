//! AWS CLI-compatible settings: environment variables and the shared config files.
//!
//! [`resolve`] finds the profile, credentials, region, endpoint URL and S3 addressing
//! style the way the AWS CLI v2 does, from environment variables and the shared
//! `credentials` and `config` files, with no dependency beyond `std`. Only static
//! settings are read: roles to assume, SSO, `credential_process` and instance metadata
//! are out of scope, and a profile that relies on them resolves with no credentials.
//!
//! # Precedence, highest first
//!
//! - **Profile**: [`Overrides::profile`] (the CLI's `--profile`), `AWS_PROFILE`,
//!   `AWS_DEFAULT_PROFILE` (legacy), then `default`. A named profile found in neither
//!   file is an error; a missing `default` profile is not.
//! - **Credentials**: `AWS_ACCESS_KEY_ID` + `AWS_SECRET_ACCESS_KEY` (+ `AWS_SESSION_TOKEN`)
//!   — skipped when [`Overrides::profile`] is given, since `--profile` beats environment
//!   credentials while `AWS_PROFILE` does not; then the profile's `aws_access_key_id`,
//!   `aws_secret_access_key` and `aws_session_token` in the credentials file; then the
//!   same keys in the config file. One of key id and secret without the other at a level
//!   is an error, not a fall-through. No credentials anywhere is not an error.
//! - **Region**: [`Overrides::region`], `AWS_REGION`, `AWS_DEFAULT_REGION`, the config
//!   profile's `region`.
//! - **Endpoint URL**: [`Overrides::endpoint_url`], `AWS_ENDPOINT_URL_S3`,
//!   `AWS_ENDPOINT_URL`, `endpoint_url` under `s3 =` in the `[services NAME]` section the
//!   profile names with `services = NAME`, `endpoint_url` under `s3 =` in the profile
//!   itself (an extension some tools accept; not in the AWS specification), the
//!   profile's `endpoint_url`. When `AWS_IGNORE_CONFIGURED_ENDPOINT_URLS` (or, when that
//!   variable is unset, the profile's `ignore_configured_endpoint_urls`) is `true`, only
//!   the override is used.
//! - **Addressing style**: `addressing_style` (`path`, `virtual` or `auto`) under `s3 =`
//!   in the config profile.
//! - **CA bundle**: `AWS_CA_BUNDLE`, the config profile's `ca_bundle`.
//!
//! # Files
//!
//! `AWS_SHARED_CREDENTIALS_FILE` (default `~/.aws/credentials`) has sections `[NAME]`;
//! `AWS_CONFIG_FILE` (default `~/.aws/config`) has `[profile NAME]`, plus `[default]`
//! for the default profile (`[profile default]` wins when both exist) and
//! `[services NAME]`. A leading `~` in either variable is the home directory. Missing
//! files are treated as empty.
//!
//! The INI dialect is that of the AWS SDKs' shared-file specification: whole-line
//! comments start with `#` or `;`; on property lines a `#` or `;` preceded by whitespace
//! starts a comment; whitespace around `=` is ignored; property names are
//! case-insensitive (lower-cased), profile names are not; an indented line after a
//! property with an empty value (`s3 =`) is a nested `name = value` of that property,
//! and an indented line after a property with a value continues that value on a new
//! line; the last definition of a property wins and repeated sections merge.
//!
//! Secrets are never part of an error message or of `Debug` output, and parse errors
//! never quote the offending line.

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};

/// What [`resolve`] found. `Debug` redacts the secret access key and the session token.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct AwsSettings {
    /// The profile whose file settings were used (`default` unless one was chosen).
    pub(crate) profile: String,
    /// Access key id, when credentials were found.
    pub(crate) access_key_id: Option<String>,
    /// Secret access key, when credentials were found. Never printed.
    pub(crate) secret_access_key: Option<String>,
    /// Session token of temporary credentials. Never printed.
    pub(crate) session_token: Option<String>,
    /// Signing region, when configured anywhere.
    pub(crate) region: Option<String>,
    /// Custom endpoint URL, when configured anywhere.
    pub(crate) endpoint_url: Option<String>,
    /// `Some(true)` for `addressing_style = path`, `Some(false)` for `virtual`, `None` for
    /// `auto` or when unset.
    pub(crate) path_style: Option<bool>,
    /// PEM file of the certificate authorities to trust: `AWS_CA_BUNDLE`, else the
    /// profile's `ca_bundle`.
    pub(crate) ca_bundle: Option<PathBuf>,
    /// Where the credentials came from, for error messages: `environment`,
    /// `shared credentials file (PATH) profile NAME`, `config file (PATH) profile NAME`,
    /// or `none`.
    pub(crate) credentials_source: String,
}

impl fmt::Debug for AwsSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AwsSettings")
            .field("profile", &self.profile)
            .field("access_key_id", &self.access_key_id)
            .field(
                "secret_access_key",
                &Redacted(self.secret_access_key.is_some()),
            )
            .field("session_token", &Redacted(self.session_token.is_some()))
            .field("region", &self.region)
            .field("endpoint_url", &self.endpoint_url)
            .field("path_style", &self.path_style)
            .field("ca_bundle", &self.ca_bundle)
            .field("credentials_source", &self.credentials_source)
            .finish()
    }
}

/// `Debug` stand-in for an optional secret: `Some(<redacted>)` or `None`.
struct Redacted(bool);

impl fmt::Debug for Redacted {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.0 { "Some(<redacted>)" } else { "None" })
    }
}

/// Explicit choices that beat every other source, as the CLI's `--profile`, `--region`
/// and `--endpoint-url` do. An empty string counts as not given.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Overrides<'a> {
    /// Profile to use; also makes environment credentials ignored.
    pub(crate) profile: Option<&'a str>,
    /// Region to use.
    pub(crate) region: Option<&'a str>,
    /// Endpoint URL to use, even when configured endpoints are ignored.
    pub(crate) endpoint_url: Option<&'a str>,
}

/// Why settings could not be resolved. No variant ever holds a secret.
#[derive(Debug)]
pub(crate) enum AwsConfigError {
    /// A named profile is in neither the credentials nor the config file.
    ProfileNotFound {
        /// The profile asked for.
        profile: String,
        /// The files looked in (those whose location is known).
        searched: Vec<PathBuf>,
    },
    /// A settings file exists but could not be read.
    Unreadable {
        /// The file.
        path: PathBuf,
        /// What reading it reported.
        source: std::io::Error,
    },
    /// A settings file is not valid, or holds an invalid value.
    Malformed {
        /// The file.
        path: PathBuf,
        /// 1-based line number.
        line: usize,
        /// What is wrong (never the line's text).
        reason: String,
    },
    /// An access key id without a secret access key, or the reverse.
    IncompleteCredentials {
        /// Where the half credentials are: `environment variables`, or a file and profile.
        source_desc: String,
        /// The setting that is missing.
        missing: &'static str,
    },
}

impl fmt::Display for AwsConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AwsConfigError::ProfileNotFound { profile, searched } => {
                write!(f, "AWS profile `{profile}` not found")?;
                if searched.is_empty() {
                    f.write_str(
                        " (no home directory, and neither AWS_SHARED_CREDENTIALS_FILE \
                         nor AWS_CONFIG_FILE is set)",
                    )
                } else {
                    f.write_str(" in ")?;
                    for (i, path) in searched.iter().enumerate() {
                        if i > 0 {
                            f.write_str(" or ")?;
                        }
                        write!(f, "{}", path.display())?;
                    }
                    Ok(())
                }
            }
            AwsConfigError::Unreadable { path, source } => {
                write!(
                    f,
                    "cannot read AWS settings file {}: {source}",
                    path.display()
                )
            }
            AwsConfigError::Malformed { path, line, reason } => {
                write!(
                    f,
                    "invalid AWS settings file {}, line {line}: {reason}",
                    path.display()
                )
            }
            AwsConfigError::IncompleteCredentials {
                source_desc,
                missing,
            } => {
                write!(
                    f,
                    "incomplete AWS credentials in {source_desc}: {missing} is missing"
                )
            }
        }
    }
}

impl std::error::Error for AwsConfigError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            AwsConfigError::Unreadable { source, .. } => Some(source),
            _ => None,
        }
    }
}

/// [`resolve`] with the process environment and home directory (`HOME`, else
/// `USERPROFILE`).
pub(crate) fn resolve_from_process(
    overrides: &Overrides<'_>,
) -> Result<AwsSettings, AwsConfigError> {
    let env = |name: &str| std::env::var(name).ok();
    let home = ["HOME", "USERPROFILE"]
        .into_iter()
        .filter_map(std::env::var_os)
        .find(|value| !value.is_empty())
        .map(PathBuf::from);
    resolve(&env, home.as_deref(), overrides)
}

/// Resolves settings from `env` (an environment variable lookup), the shared files under
/// `home` (or where `AWS_SHARED_CREDENTIALS_FILE` / `AWS_CONFIG_FILE` point) and
/// `overrides`, with the precedence described in the [module docs](self). Empty
/// environment variables count as unset.
pub(crate) fn resolve(
    env: &dyn Fn(&str) -> Option<String>,
    home: Option<&Path>,
    overrides: &Overrides<'_>,
) -> Result<AwsSettings, AwsConfigError> {
    let var = |name: &str| env(name).filter(|value| !value.trim().is_empty());
    let explicit_profile = non_empty(overrides.profile);
    let profile = explicit_profile
        .map(str::to_owned)
        .or_else(|| var("AWS_PROFILE"))
        .or_else(|| var("AWS_DEFAULT_PROFILE"))
        .unwrap_or_else(|| DEFAULT_PROFILE.to_owned());

    let credentials_path = file_path(var("AWS_SHARED_CREDENTIALS_FILE"), home, "credentials");
    let config_path = file_path(var("AWS_CONFIG_FILE"), home, "config");
    let credentials_file = load(credentials_path.as_deref())?;
    let config_file = load(config_path.as_deref())?;
    let credentials_section = credentials_file
        .as_ref()
        .and_then(|file| file.credentials_profile(&profile));
    let config_section = config_file
        .as_ref()
        .and_then(|file| file.config_profile(&profile));
    if profile != DEFAULT_PROFILE && credentials_section.is_none() && config_section.is_none() {
        return Err(AwsConfigError::ProfileNotFound {
            profile,
            searched: [credentials_path, config_path]
                .into_iter()
                .flatten()
                .collect(),
        });
    }

    // Credentials.
    let mut credentials = None;
    if explicit_profile.is_none() {
        credentials = environment_credentials(&var)?;
    }
    if credentials.is_none()
        && let (Some(file), Some(section)) = (&credentials_file, credentials_section)
    {
        credentials = section_credentials(section, || {
            format!(
                "shared credentials file ({}) profile {profile}",
                file.path.display()
            )
        })?;
    }
    if credentials.is_none()
        && let (Some(file), Some(section)) = (&config_file, config_section)
    {
        credentials = section_credentials(section, || {
            format!("config file ({}) profile {profile}", file.path.display())
        })?;
    }

    // Region.
    let region = non_empty(overrides.region)
        .map(str::to_owned)
        .or_else(|| var("AWS_REGION"))
        .or_else(|| var("AWS_DEFAULT_REGION"))
        .or_else(|| {
            config_section
                .and_then(|s| s.value("region"))
                .map(str::to_owned)
        });

    // Endpoint URL.
    let ignore_configured = match var("AWS_IGNORE_CONFIGURED_ENDPOINT_URLS") {
        Some(value) => is_true(&value),
        None => config_section
            .and_then(|s| s.value("ignore_configured_endpoint_urls"))
            .is_some_and(is_true),
    };
    let endpoint_url = if let Some(url) = non_empty(overrides.endpoint_url) {
        Some(url.to_owned())
    } else if ignore_configured {
        None
    } else {
        var("AWS_ENDPOINT_URL_S3")
            .or_else(|| var("AWS_ENDPOINT_URL"))
            .or_else(|| {
                let name = config_section?.value("services")?;
                let services = config_file.as_ref()?.services(name)?;
                services
                    .nested("s3", "endpoint_url")
                    .map(|p| p.value.clone())
            })
            .or_else(|| {
                config_section?
                    .nested("s3", "endpoint_url")
                    .map(|p| p.value.clone())
            })
            .or_else(|| config_section?.value("endpoint_url").map(str::to_owned))
    };

    // Addressing style.
    let mut path_style = None;
    if let (Some(file), Some(style)) = (
        &config_file,
        config_section.and_then(|s| s.nested("s3", "addressing_style")),
    ) {
        let value = style.value.as_str();
        if value.eq_ignore_ascii_case("path") {
            path_style = Some(true);
        } else if value.eq_ignore_ascii_case("virtual") {
            path_style = Some(false);
        } else if !value.is_empty() && !value.eq_ignore_ascii_case("auto") {
            return Err(AwsConfigError::Malformed {
                path: file.path.clone(),
                line: style.line,
                reason: format!(
                    "s3 addressing_style must be `path`, `virtual` or `auto`, not `{value}`"
                ),
            });
        }
    }

    let ca_bundle = var("AWS_CA_BUNDLE")
        .or_else(|| config_section?.value("ca_bundle").map(str::to_owned))
        .map(PathBuf::from);

    let (access_key_id, secret_access_key, session_token, credentials_source) = match credentials {
        Some(c) => (
            Some(c.access_key_id),
            Some(c.secret_access_key),
            c.session_token,
            c.source,
        ),
        None => (None, None, None, "none".to_owned()),
    };
    Ok(AwsSettings {
        profile,
        access_key_id,
        secret_access_key,
        session_token,
        region,
        endpoint_url,
        path_style,
        ca_bundle,
        credentials_source,
    })
}

const DEFAULT_PROFILE: &str = "default";

fn non_empty(value: Option<&str>) -> Option<&str> {
    value.filter(|v| !v.trim().is_empty())
}

fn is_true(value: &str) -> bool {
    value.trim().eq_ignore_ascii_case("true")
}

/// The file named by an environment variable (with `~` expanded), else `~/.aws/NAME`.
fn file_path(from_env: Option<String>, home: Option<&Path>, name: &str) -> Option<PathBuf> {
    match from_env {
        Some(path) => {
            let rest = path.strip_prefix('~').filter(|rest| {
                rest.is_empty()
                    || rest.starts_with('/')
                    || rest.starts_with(std::path::MAIN_SEPARATOR)
            });
            match (rest, home) {
                (Some(rest), Some(home)) => {
                    Some(home.join(rest.trim_start_matches(['/', std::path::MAIN_SEPARATOR])))
                }
                _ => Some(PathBuf::from(path)),
            }
        }
        None => home.map(|home| home.join(".aws").join(name)),
    }
}

/// Credentials found at one level, with a description of where.
struct FoundCredentials {
    access_key_id: String,
    secret_access_key: String,
    session_token: Option<String>,
    source: String,
}

fn environment_credentials(
    var: &dyn Fn(&str) -> Option<String>,
) -> Result<Option<FoundCredentials>, AwsConfigError> {
    let incomplete = |missing| AwsConfigError::IncompleteCredentials {
        source_desc: "environment variables".to_owned(),
        missing,
    };
    match (var("AWS_ACCESS_KEY_ID"), var("AWS_SECRET_ACCESS_KEY")) {
        (Some(access_key_id), Some(secret_access_key)) => Ok(Some(FoundCredentials {
            access_key_id,
            secret_access_key,
            // AWS_SECURITY_TOKEN is the legacy name botocore still reads.
            session_token: var("AWS_SESSION_TOKEN").or_else(|| var("AWS_SECURITY_TOKEN")),
            source: "environment".to_owned(),
        })),
        (Some(_), None) => Err(incomplete("AWS_SECRET_ACCESS_KEY")),
        (None, Some(_)) => Err(incomplete("AWS_ACCESS_KEY_ID")),
        (None, None) => Ok(None),
    }
}

fn section_credentials(
    section: &Section,
    describe: impl FnOnce() -> String,
) -> Result<Option<FoundCredentials>, AwsConfigError> {
    let get = |key| {
        section
            .value(key)
            .filter(|v| !v.is_empty())
            .map(str::to_owned)
    };
    match (get("aws_access_key_id"), get("aws_secret_access_key")) {
        (Some(access_key_id), Some(secret_access_key)) => Ok(Some(FoundCredentials {
            access_key_id,
            secret_access_key,
            session_token: get("aws_session_token").or_else(|| get("aws_security_token")),
            source: describe(),
        })),
        (Some(_), None) => Err(AwsConfigError::IncompleteCredentials {
            source_desc: describe(),
            missing: "aws_secret_access_key",
        }),
        (None, Some(_)) => Err(AwsConfigError::IncompleteCredentials {
            source_desc: describe(),
            missing: "aws_access_key_id",
        }),
        (None, None) => Ok(None),
    }
}

// ---------------------------------------------------------------------------------------
// INI parsing
// ---------------------------------------------------------------------------------------

/// A value and the line it was defined on.
#[derive(Debug, Default)]
struct Property {
    value: String,
    line: usize,
}

/// The properties of one section, with nested ones (`s3 =` then indented lines) apart.
#[derive(Debug, Default)]
struct Section {
    properties: HashMap<String, Property>,
    nested: HashMap<String, HashMap<String, Property>>,
}

impl Section {
    fn value(&self, key: &str) -> Option<&str> {
        self.properties.get(key).map(|p| p.value.as_str())
    }

    fn nested(&self, parent: &str, key: &str) -> Option<&Property> {
        self.nested.get(parent)?.get(key)
    }
}

/// A section header: `[NAME]` or `[PREFIX NAME]` (`profile`, `services`, `sso-session`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Header {
    Plain(String),
    Prefixed(String, String),
}

struct IniFile {
    path: PathBuf,
    sections: HashMap<Header, Section>,
}

impl IniFile {
    /// `[NAME]` of a credentials file.
    fn credentials_profile(&self, name: &str) -> Option<&Section> {
        self.sections.get(&Header::Plain(name.to_owned()))
    }

    /// `[profile NAME]` of a config file; for `default`, `[default]` when there is no
    /// `[profile default]`.
    fn config_profile(&self, name: &str) -> Option<&Section> {
        let prefixed = self
            .sections
            .get(&Header::Prefixed("profile".to_owned(), name.to_owned()));
        if name == DEFAULT_PROFILE {
            prefixed.or_else(|| self.sections.get(&Header::Plain(name.to_owned())))
        } else {
            prefixed
        }
    }

    /// `[services NAME]` of a config file.
    fn services(&self, name: &str) -> Option<&Section> {
        self.sections
            .get(&Header::Prefixed("services".to_owned(), name.to_owned()))
    }
}

/// Reads and parses `path`; a missing file (or no known path) is `None`.
fn load(path: Option<&Path>) -> Result<Option<IniFile>, AwsConfigError> {
    let Some(path) = path else { return Ok(None) };
    match std::fs::read_to_string(path) {
        Ok(text) => parse_ini(&text, path).map(Some),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(AwsConfigError::Unreadable {
            path: path.to_owned(),
            source,
        }),
    }
}

fn parse_ini(text: &str, path: &Path) -> Result<IniFile, AwsConfigError> {
    let malformed = |line: usize, reason: &str| AwsConfigError::Malformed {
        path: path.to_owned(),
        line,
        reason: reason.to_owned(),
    };
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut sections: HashMap<Header, Section> = HashMap::new();
    let mut current: Option<Header> = None;
    // The last top-level property of the current section, for indented lines.
    let mut last_key: Option<String> = None;

    for (index, raw) in text.lines().enumerate() {
        let line = index + 1;
        let trimmed = raw.trim();
        if trimmed.is_empty() || trimmed.starts_with('#') || trimmed.starts_with(';') {
            continue;
        }
        if trimmed.starts_with('[') {
            let Some(close) = trimmed.find(']') else {
                return Err(malformed(line, "section header without a closing `]`"));
            };
            let after = trimmed[close + 1..].trim_start();
            if !after.is_empty() && !after.starts_with('#') && !after.starts_with(';') {
                return Err(malformed(line, "unexpected text after a section header"));
            }
            let inner = trimmed[1..close].trim();
            if inner.is_empty() {
                return Err(malformed(line, "empty section name"));
            }
            let header = match inner.split_once(char::is_whitespace) {
                Some((prefix, name)) => Header::Prefixed(prefix.to_owned(), name.trim().to_owned()),
                None => Header::Plain(inner.to_owned()),
            };
            sections.entry(header.clone()).or_default();
            current = Some(header);
            last_key = None;
            continue;
        }
        let Some(header) = &current else {
            return Err(malformed(line, "setting outside of any `[section]`"));
        };
        let section = sections.entry(header.clone()).or_default();
        let indented = raw.starts_with([' ', '\t']);
        if indented && let Some(parent) = &last_key {
            let Some(parent_property) = section.properties.get_mut(parent) else {
                unreachable!("last_key is always a property of the current section");
            };
            if parent_property.value.is_empty() {
                let Some((key, value)) = split_property(trimmed) else {
                    return Err(malformed(
                        line,
                        "expected `name = value` in a nested setting",
                    ));
                };
                if key.is_empty() {
                    return Err(malformed(line, "nested setting with an empty name"));
                }
                section
                    .nested
                    .entry(parent.clone())
                    .or_default()
                    .insert(key, Property { value, line });
            } else {
                parent_property.value.push('\n');
                parent_property.value.push_str(trimmed);
            }
            continue;
        }
        let Some((key, value)) = split_property(trimmed) else {
            return Err(malformed(line, "expected `name = value`"));
        };
        if key.is_empty() {
            return Err(malformed(line, "setting with an empty name"));
        }
        // A redefinition replaces the old value, nested settings included.
        section.nested.remove(&key);
        section
            .properties
            .insert(key.clone(), Property { value, line });
        last_key = Some(key);
    }
    Ok(IniFile {
        path: path.to_owned(),
        sections,
    })
}

/// `name = value # comment` into (`name` lower-cased, `value`).
fn split_property(line: &str) -> Option<(String, String)> {
    let (key, value) = line.split_once('=')?;
    Some((
        key.trim().to_ascii_lowercase(),
        strip_comment(value).trim().to_owned(),
    ))
}

/// Cuts a `#` or `;` comment that follows whitespace.
fn strip_comment(value: &str) -> &str {
    let mut previous_is_space = false;
    for (i, c) in value.char_indices() {
        if (c == '#' || c == ';') && previous_is_space {
            return &value[..i];
        }
        previous_is_space = c.is_whitespace();
    }
    value
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    const SECRET: &str = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYSECRETKEY";
    const TOKEN: &str = "FwoGZXIvYXdzEXAMPLETOKEN";

    /// A fake home directory under the system temp dir, removed on drop.
    struct Home {
        dir: PathBuf,
    }

    impl Home {
        fn new() -> Home {
            static NEXT: AtomicUsize = AtomicUsize::new(0);
            let n = NEXT.fetch_add(1, Ordering::Relaxed);
            let dir =
                std::env::temp_dir().join(format!("s3tm-aws-config-{}-{n}", std::process::id()));
            let _ = std::fs::remove_dir_all(&dir);
            std::fs::create_dir_all(dir.join(".aws")).unwrap();
            Home { dir }
        }

        fn with(credentials: &str, config: &str) -> Home {
            let home = Home::new();
            if !credentials.is_empty() {
                home.write(".aws/credentials", credentials);
            }
            if !config.is_empty() {
                home.write(".aws/config", config);
            }
            home
        }

        fn write(&self, relative: &str, text: &str) -> PathBuf {
            let path = self.dir.join(relative);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(&path, text).unwrap();
            path
        }

        fn path(&self) -> Option<&Path> {
            Some(&self.dir)
        }
    }

    impl Drop for Home {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }

    fn run(
        home: Option<&Path>,
        vars: &[(&str, &str)],
        overrides: Overrides<'_>,
    ) -> Result<AwsSettings, AwsConfigError> {
        let vars: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        resolve(&|name| vars.get(name).cloned(), home, &overrides)
    }

    fn ok(home: &Home, vars: &[(&str, &str)], overrides: Overrides<'_>) -> AwsSettings {
        run(home.path(), vars, overrides).unwrap()
    }

    fn profile(name: &str) -> Overrides<'_> {
        Overrides {
            profile: Some(name),
            ..Overrides::default()
        }
    }

    const NONE: Overrides<'static> = Overrides {
        profile: None,
        region: None,
        endpoint_url: None,
    };

    // ---- profile selection ------------------------------------------------------------

    #[test]
    fn nothing_configured_is_default_profile_without_anything() {
        let home = Home::new();
        let s = ok(&home, &[], NONE);
        assert_eq!(s.profile, "default");
        assert_eq!(s.access_key_id, None);
        assert_eq!(s.secret_access_key, None);
        assert_eq!(s.session_token, None);
        assert_eq!(s.region, None);
        assert_eq!(s.endpoint_url, None);
        assert_eq!(s.path_style, None);
        assert_eq!(s.ca_bundle, None);
        assert_eq!(s.credentials_source, "none");
        // No home directory at all is fine too.
        assert_eq!(run(None, &[], NONE).unwrap().profile, "default");
    }

    #[test]
    fn ca_bundle_from_the_environment_beats_the_profile() {
        let home = Home::with("", "[default]\nca_bundle = /etc/profile-ca.pem\n");
        assert_eq!(
            ok(&home, &[], NONE).ca_bundle,
            Some(PathBuf::from("/etc/profile-ca.pem"))
        );
        assert_eq!(
            ok(&home, &[("AWS_CA_BUNDLE", "/etc/env-ca.pem")], NONE).ca_bundle,
            Some(PathBuf::from("/etc/env-ca.pem"))
        );
    }

    #[test]
    fn profile_precedence_override_then_aws_profile_then_aws_default_profile() {
        let home = Home::with(
            "",
            "[default]\nregion = r-default\n[profile a]\nregion = r-a\n\
             [profile b]\nregion = r-b\n[profile c]\nregion = r-c\n",
        );
        let all = [("AWS_PROFILE", "b"), ("AWS_DEFAULT_PROFILE", "c")];
        let s = ok(&home, &all, profile("a"));
        assert_eq!(
            (s.profile.as_str(), s.region.as_deref()),
            ("a", Some("r-a"))
        );
        let s = ok(&home, &all, NONE);
        assert_eq!(
            (s.profile.as_str(), s.region.as_deref()),
            ("b", Some("r-b"))
        );
        let s = ok(&home, &[("AWS_DEFAULT_PROFILE", "c")], NONE);
        assert_eq!(
            (s.profile.as_str(), s.region.as_deref()),
            ("c", Some("r-c"))
        );
        let s = ok(&home, &[], NONE);
        assert_eq!(
            (s.profile.as_str(), s.region.as_deref()),
            ("default", Some("r-default"))
        );
        // Empty values count as unset.
        let s = ok(
            &home,
            &[("AWS_PROFILE", ""), ("AWS_DEFAULT_PROFILE", "c")],
            profile(""),
        );
        assert_eq!(s.profile, "c");
    }

    #[test]
    fn missing_named_profile_is_an_error_naming_both_files() {
        let home = Home::with("[default]\nregion = x\n", "[profile other]\n");
        for (vars, overrides) in [
            (&[][..], profile("nope")),
            (&[("AWS_PROFILE", "nope")][..], NONE),
        ] {
            let err = run(home.path(), vars, overrides).unwrap_err();
            let AwsConfigError::ProfileNotFound { profile, searched } = &err else {
                panic!("{err:?}")
            };
            assert_eq!(profile, "nope");
            assert_eq!(
                searched,
                &[
                    home.dir.join(".aws/credentials"),
                    home.dir.join(".aws/config")
                ]
            );
            let message = err.to_string();
            assert!(message.contains("`nope`"), "{message}");
            assert!(message.contains(&home.dir.join(".aws/credentials").display().to_string()));
            assert!(message.contains(&home.dir.join(".aws/config").display().to_string()));
        }
        // Even with credentials in the environment, as the CLI does.
        let env_creds = [
            ("AWS_PROFILE", "nope"),
            ("AWS_ACCESS_KEY_ID", "AKID"),
            ("AWS_SECRET_ACCESS_KEY", SECRET),
        ];
        assert!(matches!(
            run(home.path(), &env_creds, NONE),
            Err(AwsConfigError::ProfileNotFound { .. })
        ));
        // A missing default profile is fine, with or without files.
        assert_eq!(
            ok(&home, &[("AWS_PROFILE", "default")], NONE).profile,
            "default"
        );
        let empty = Home::with("[x]\n", "[profile y]\n");
        assert_eq!(ok(&empty, &[], NONE).credentials_source, "none");
        // Without a home directory nothing is searched, and the message says why.
        let err = run(None, &[], profile("nope")).unwrap_err();
        assert!(
            matches!(&err, AwsConfigError::ProfileNotFound { searched, .. } if searched.is_empty())
        );
        assert!(err.to_string().contains("no home directory"), "{err}");
    }

    #[test]
    fn named_profile_in_either_file_exists() {
        let home = Home::with("[only-creds]\n", "[profile only-config]\n[bare]\n");
        assert_eq!(ok(&home, &[], profile("only-creds")).profile, "only-creds");
        assert_eq!(
            ok(&home, &[], profile("only-config")).profile,
            "only-config"
        );
        // `[bare]` in the config file is not a profile: only `[default]` may omit `profile`.
        assert!(matches!(
            run(home.path(), &[], profile("bare")),
            Err(AwsConfigError::ProfileNotFound { .. })
        ));
        // And `[profile x]` in the credentials file is not profile `x`.
        let home = Home::with(
            "[profile x]\naws_access_key_id = A\naws_secret_access_key = S\n",
            "",
        );
        assert!(matches!(
            run(home.path(), &[], profile("x")),
            Err(AwsConfigError::ProfileNotFound { .. })
        ));
    }

    // ---- credentials ------------------------------------------------------------------

    const FILES_CREDS: &str = "[default]\naws_access_key_id = AKID_CREDS\naws_secret_access_key = S_CREDS\n\
                               [p]\naws_access_key_id = AKID_P\naws_secret_access_key = S_P\naws_session_token = T_P\n";
    const CONFIG_CREDS: &str = "[default]\naws_access_key_id = AKID_CONFIG\naws_secret_access_key = S_CONFIG\n\
                                [profile q]\naws_access_key_id = AKID_Q\naws_secret_access_key = S_Q\n";

    #[test]
    fn environment_credentials_win_over_files_and_aws_profile() {
        let home = Home::with(FILES_CREDS, CONFIG_CREDS);
        let env = [
            ("AWS_ACCESS_KEY_ID", "AKID_ENV"),
            ("AWS_SECRET_ACCESS_KEY", SECRET),
            ("AWS_SESSION_TOKEN", TOKEN),
            ("AWS_PROFILE", "p"),
        ];
        let s = ok(&home, &env, NONE);
        assert_eq!(s.profile, "p");
        assert_eq!(s.access_key_id.as_deref(), Some("AKID_ENV"));
        assert_eq!(s.secret_access_key.as_deref(), Some(SECRET));
        assert_eq!(s.session_token.as_deref(), Some(TOKEN));
        assert_eq!(s.credentials_source, "environment");
        // Without a token.
        let s = ok(&home, &env[..2], NONE);
        assert_eq!(s.session_token, None);
        // The legacy token name.
        let s = ok(
            &home,
            &[env[0], env[1], ("AWS_SECURITY_TOKEN", "LEGACY")],
            NONE,
        );
        assert_eq!(s.session_token.as_deref(), Some("LEGACY"));
    }

    #[test]
    fn explicit_profile_beats_environment_credentials() {
        let home = Home::with(FILES_CREDS, CONFIG_CREDS);
        let env = [
            ("AWS_ACCESS_KEY_ID", "AKID_ENV"),
            ("AWS_SECRET_ACCESS_KEY", SECRET),
        ];
        let s = ok(&home, &env, profile("p"));
        assert_eq!(s.access_key_id.as_deref(), Some("AKID_P"));
        assert_eq!(s.session_token.as_deref(), Some("T_P"));
        let path = home.dir.join(".aws/credentials");
        assert_eq!(
            s.credentials_source,
            format!("shared credentials file ({}) profile p", path.display())
        );
        // Even `--profile default`.
        let s = ok(&home, &env, profile("default"));
        assert_eq!(s.access_key_id.as_deref(), Some("AKID_CREDS"));
        // Half credentials in the environment do not matter then.
        let s = ok(&home, &[("AWS_ACCESS_KEY_ID", "AKID_ENV")], profile("p"));
        assert_eq!(s.access_key_id.as_deref(), Some("AKID_P"));
    }

    #[test]
    fn credentials_file_beats_config_file_which_is_the_fallback() {
        let home = Home::with(FILES_CREDS, CONFIG_CREDS);
        let s = ok(&home, &[], NONE);
        assert_eq!(s.access_key_id.as_deref(), Some("AKID_CREDS"));
        assert_eq!(s.secret_access_key.as_deref(), Some("S_CREDS"));
        assert_eq!(s.session_token, None);
        // Profile q has credentials only in the config file.
        let s = ok(&home, &[], profile("q"));
        assert_eq!(s.access_key_id.as_deref(), Some("AKID_Q"));
        let path = home.dir.join(".aws/config");
        assert_eq!(
            s.credentials_source,
            format!("config file ({}) profile q", path.display())
        );
        // A credentials-file section without keys falls through to the config file.
        let home = Home::with("[default]\nregion = ignored\n", CONFIG_CREDS);
        assert_eq!(
            ok(&home, &[], NONE).access_key_id.as_deref(),
            Some("AKID_CONFIG")
        );
    }

    #[test]
    fn half_credentials_are_an_error_naming_where_and_never_the_secret() {
        let home = Home::new();
        let err = run(home.path(), &[("AWS_ACCESS_KEY_ID", "AKID")], NONE).unwrap_err();
        assert!(matches!(
            &err,
            AwsConfigError::IncompleteCredentials { missing: "AWS_SECRET_ACCESS_KEY", source_desc }
                if source_desc == "environment variables"
        ));
        let err = run(home.path(), &[("AWS_SECRET_ACCESS_KEY", SECRET)], NONE).unwrap_err();
        assert!(matches!(
            &err,
            AwsConfigError::IncompleteCredentials {
                missing: "AWS_ACCESS_KEY_ID",
                ..
            }
        ));
        assert!(!err.to_string().contains(SECRET) && !format!("{err:?}").contains(SECRET));

        let creds = Home::with(
            &format!("[default]\naws_secret_access_key = {SECRET}\n"),
            CONFIG_CREDS,
        );
        let err = run(creds.path(), &[], NONE).unwrap_err();
        let message = err.to_string();
        assert!(message.contains("shared credentials file"), "{message}");
        assert!(message.contains("profile default"), "{message}");
        assert!(
            message.contains("aws_access_key_id is missing"),
            "{message}"
        );
        assert!(!message.contains(SECRET) && !format!("{err:?}").contains(SECRET));

        let config = Home::with("", "[profile z]\naws_access_key_id = AKID\n");
        let err = run(config.path(), &[], profile("z")).unwrap_err();
        let message = err.to_string();
        assert!(
            message.contains("config file") && message.contains("profile z"),
            "{message}"
        );
        assert!(
            message.contains("aws_secret_access_key is missing"),
            "{message}"
        );
    }

    // ---- region -----------------------------------------------------------------------

    #[test]
    fn region_precedence() {
        let home = Home::with(
            "[default]\nregion = from-credentials-file\n",
            "[default]\nregion = from-config\n",
        );
        let all = [
            ("AWS_REGION", "from-aws-region"),
            ("AWS_DEFAULT_REGION", "from-default-region"),
        ];
        let with_override = Overrides {
            region: Some("from-override"),
            ..NONE
        };
        assert_eq!(
            ok(&home, &all, with_override).region.as_deref(),
            Some("from-override")
        );
        assert_eq!(
            ok(&home, &all, NONE).region.as_deref(),
            Some("from-aws-region")
        );
        assert_eq!(
            ok(&home, &all[1..], NONE).region.as_deref(),
            Some("from-default-region")
        );
        assert_eq!(ok(&home, &[], NONE).region.as_deref(), Some("from-config"));
        // The credentials file does not provide a region.
        let home = Home::with("[default]\nregion = from-credentials-file\n", "");
        assert_eq!(ok(&home, &[], NONE).region, None);
    }

    // ---- endpoint URL -----------------------------------------------------------------

    const ENDPOINT_CONFIG: &str = "\
[default]
endpoint_url = https://profile-global
services = shared
s3 =
  endpoint_url = https://profile-nested-s3
[profile nested]
endpoint_url = https://nested-global
s3 =
  endpoint_url = https://nested-s3
[profile global-only]
endpoint_url = https://global-only
[profile ignoring]
endpoint_url = https://ignored
ignore_configured_endpoint_urls = true
[services shared]
s3 =
  endpoint_url = https://services-s3
dynamodb =
  endpoint_url = https://services-dynamodb
";

    #[test]
    fn endpoint_precedence() {
        let home = Home::with("", ENDPOINT_CONFIG);
        let env = [
            ("AWS_ENDPOINT_URL_S3", "https://env-s3"),
            ("AWS_ENDPOINT_URL", "https://env-global"),
        ];
        let with_override = Overrides {
            endpoint_url: Some("https://override"),
            ..NONE
        };
        let endpoint = |vars: &[(&str, &str)], o| ok(&home, vars, o).endpoint_url;
        assert_eq!(
            endpoint(&env, with_override).as_deref(),
            Some("https://override")
        );
        assert_eq!(endpoint(&env, NONE).as_deref(), Some("https://env-s3"));
        assert_eq!(
            endpoint(&env[1..], NONE).as_deref(),
            Some("https://env-global")
        );
        assert_eq!(endpoint(&[], NONE).as_deref(), Some("https://services-s3"));
        assert_eq!(
            endpoint(&[], profile("nested")).as_deref(),
            Some("https://nested-s3")
        );
        assert_eq!(
            endpoint(&[], profile("global-only")).as_deref(),
            Some("https://global-only")
        );
        // A `services` name with no such section is ignored.
        let home = Home::with(
            "",
            "[default]\nservices = missing\nendpoint_url = https://g\n",
        );
        assert_eq!(
            ok(&home, &[], NONE).endpoint_url.as_deref(),
            Some("https://g")
        );
        // The credentials file does not provide endpoints.
        let home = Home::with("[default]\nendpoint_url = https://nope\n", "");
        assert_eq!(ok(&home, &[], NONE).endpoint_url, None);
    }

    #[test]
    fn ignore_configured_endpoint_urls_keeps_only_the_override() {
        let home = Home::with("", ENDPOINT_CONFIG);
        let env = [
            ("AWS_ENDPOINT_URL_S3", "https://env-s3"),
            ("AWS_ENDPOINT_URL", "https://env-global"),
            ("AWS_IGNORE_CONFIGURED_ENDPOINT_URLS", "TRUE"),
        ];
        assert_eq!(ok(&home, &env, NONE).endpoint_url, None);
        assert_eq!(ok(&home, &env[2..], NONE).endpoint_url, None);
        let with_override = Overrides {
            endpoint_url: Some("https://override"),
            ..NONE
        };
        assert_eq!(
            ok(&home, &env, with_override).endpoint_url.as_deref(),
            Some("https://override")
        );
        // The profile setting ignores the environment's endpoints too...
        assert_eq!(ok(&home, &env[..2], profile("ignoring")).endpoint_url, None);
        // ...unless the environment variable says otherwise.
        let not_ignoring = [("AWS_IGNORE_CONFIGURED_ENDPOINT_URLS", "false")];
        assert_eq!(
            ok(&home, &not_ignoring, profile("ignoring"))
                .endpoint_url
                .as_deref(),
            Some("https://ignored")
        );
    }

    // ---- addressing style -------------------------------------------------------------

    #[test]
    fn nested_s3_addressing_style() {
        let config = "\
[default]
region = us-east-1
s3 =
  max_concurrent_requests = 10
  addressing_style = path
output = json
[profile virtual]
s3 =
\tAddressing_Style=virtual   # tab-indented, mixed-case key, comment
[profile auto]
s3 =
    addressing_style = auto
[profile bad]
s3 =
    addressing_style = sideways
";
        let home = Home::with("", config);
        let s = ok(&home, &[], NONE);
        assert_eq!(s.path_style, Some(true));
        assert_eq!(s.region.as_deref(), Some("us-east-1"));
        assert_eq!(ok(&home, &[], profile("virtual")).path_style, Some(false));
        assert_eq!(ok(&home, &[], profile("auto")).path_style, None);
        let err = run(home.path(), &[], profile("bad")).unwrap_err();
        let AwsConfigError::Malformed { path, line, reason } = &err else {
            panic!("{err:?}")
        };
        assert_eq!((path, *line), (&home.dir.join(".aws/config"), 15));
        assert!(reason.contains("sideways"), "{reason}");
        // Nested settings stay nested: `output` after the block is top-level again.
        let file = parse_ini(config, Path::new("c")).unwrap();
        let default = file.config_profile("default").unwrap();
        assert_eq!(default.value("output"), Some("json"));
        assert_eq!(default.value("s3"), Some(""));
        assert_eq!(
            default
                .nested("s3", "max_concurrent_requests")
                .unwrap()
                .value,
            "10"
        );
        assert_eq!(default.value("addressing_style"), None);
    }

    // ---- INI details ------------------------------------------------------------------

    #[test]
    fn ini_comments_whitespace_case_and_merging() {
        let config = "\u{feff}# leading comment\r\n\
; another\r\n\
[default] # comment after a header\r\n\
REGION=eu-west-1 ; trailing comment\r\n\
endpoint_url   =    http://localhost:9000/path#fragment   \r\n\
\r\n\
\x20  # indented comment\r\n\
[profile default]\r\n\
region = from-profile-default\r\n\
[ profile   spaced ]\r\n\
region = r-spaced\r\n\
[profile dup]\r\n\
region = first\r\n\
[profile dup]\r\n\
region = second\r\n\
output = text\r\n\
[profile Case]\r\n\
region = upper\r\n";
        let file = parse_ini(config, Path::new("config")).unwrap();
        let plain = file.sections.get(&Header::Plain("default".into())).unwrap();
        assert_eq!(plain.value("region"), Some("eu-west-1"));
        assert_eq!(
            plain.value("endpoint_url"),
            Some("http://localhost:9000/path#fragment")
        );
        // `[profile default]` wins over `[default]` as a whole.
        assert_eq!(
            file.config_profile("default").unwrap().value("region"),
            Some("from-profile-default")
        );
        assert_eq!(
            file.config_profile("default")
                .unwrap()
                .value("endpoint_url"),
            None
        );
        assert_eq!(
            file.config_profile("spaced").unwrap().value("region"),
            Some("r-spaced")
        );
        let dup = file.config_profile("dup").unwrap();
        assert_eq!(
            (dup.value("region"), dup.value("output")),
            (Some("second"), Some("text"))
        );
        // Profile names are case-sensitive.
        assert!(file.config_profile("Case").is_some());
        assert!(file.config_profile("case").is_none());

        let home = Home::with("", config);
        let s = ok(&home, &[], NONE);
        assert_eq!(s.region.as_deref(), Some("from-profile-default"));
        // `[default]` alone is used when there is no `[profile default]`.
        let home = Home::with("", "[default]\nregion=plain\n");
        assert_eq!(ok(&home, &[], NONE).region.as_deref(), Some("plain"));
    }

    #[test]
    fn ini_continuation_lines_and_redefinition() {
        let text =
            "[default]\nregion = us-\n  west-2\ns3 =\n  addressing_style = path\ns3 = replaced\n";
        let file = parse_ini(text, Path::new("c")).unwrap();
        let section = file.config_profile("default").unwrap();
        assert_eq!(section.value("region"), Some("us-\nwest-2"));
        assert_eq!(section.value("s3"), Some("replaced"));
        assert!(section.nested("s3", "addressing_style").is_none());
        // An indented first line of a section is an ordinary setting.
        let file = parse_ini("[default]\n  region = r\n", Path::new("c")).unwrap();
        assert_eq!(
            file.config_profile("default").unwrap().value("region"),
            Some("r")
        );
    }

    #[test]
    fn malformed_files_report_the_line_but_not_its_text() {
        let cases = [
            ("region = x\n[default]\n", 1, "outside"),
            ("[default]\nregion = x\n[profile broken\n", 3, "`]`"),
            ("[default]\n[profile x] junk\n", 2, "after a section header"),
            ("[]\n", 1, "empty section name"),
            (
                &*format!("[default]\naws_secret_access_key {SECRET}\n"),
                2,
                "name = value",
            ),
            (&*format!("[default]\ns3 =\n  {SECRET}\n"), 3, "nested"),
            ("[default]\n = value\n", 2, "empty name"),
        ];
        for (text, want_line, want_reason) in cases {
            let home = Home::with(text, "");
            let err = run(home.path(), &[], NONE).unwrap_err();
            let AwsConfigError::Malformed { path, line, reason } = &err else {
                panic!("{text:?}: {err:?}")
            };
            assert_eq!(path, &home.dir.join(".aws/credentials"), "{text:?}");
            assert_eq!(*line, want_line, "{text:?}");
            assert!(reason.contains(want_reason), "{text:?}: {reason}");
            assert!(!err.to_string().contains(SECRET) && !format!("{err:?}").contains(SECRET));
        }
    }

    #[test]
    fn unreadable_file_is_an_error_with_its_source() {
        let home = Home::new();
        // A directory where the config file should be.
        std::fs::create_dir_all(home.dir.join(".aws/config")).unwrap();
        let err = run(home.path(), &[], NONE).unwrap_err();
        let AwsConfigError::Unreadable { path, .. } = &err else {
            panic!("{err:?}")
        };
        assert_eq!(path, &home.dir.join(".aws/config"));
        assert!(std::error::Error::source(&err).is_some());
        assert!(err.to_string().contains(&path.display().to_string()));
        // Invalid UTF-8.
        let home = Home::new();
        std::fs::write(
            home.dir.join(".aws/credentials"),
            b"[default]\nregion = \xff\n",
        )
        .unwrap();
        assert!(matches!(
            run(home.path(), &[], NONE),
            Err(AwsConfigError::Unreadable { .. })
        ));
    }

    #[test]
    fn file_locations_from_the_environment() {
        let home = Home::new();
        let creds = home.write(
            "elsewhere/creds",
            "[p]\naws_access_key_id = AKID_ELSEWHERE\naws_secret_access_key = S\n",
        );
        home.write("elsewhere/conf", "[profile p]\nregion = r-elsewhere\n");
        // The default locations hold something else, which must not be read.
        home.write(
            ".aws/credentials",
            "[p]\naws_access_key_id = AKID_DEFAULT\naws_secret_access_key = S\n",
        );
        let vars = [
            ("AWS_SHARED_CREDENTIALS_FILE", creds.to_str().unwrap()),
            ("AWS_CONFIG_FILE", "~/elsewhere/conf"),
        ];
        let s = ok(&home, &vars, profile("p"));
        assert_eq!(s.access_key_id.as_deref(), Some("AKID_ELSEWHERE"));
        assert_eq!(s.region.as_deref(), Some("r-elsewhere"));
        assert!(
            s.credentials_source.contains("elsewhere"),
            "{}",
            s.credentials_source
        );
        // A named file that does not exist is simply empty.
        let vars = [
            ("AWS_CONFIG_FILE", "~/nowhere"),
            ("AWS_SHARED_CREDENTIALS_FILE", "~/nowhere"),
        ];
        let err = run(home.path(), &vars, profile("p")).unwrap_err();
        assert!(
            matches!(&err, AwsConfigError::ProfileNotFound { searched, .. }
            if searched == &[home.dir.join("nowhere"), home.dir.join("nowhere")])
        );
        // Files named by the environment are read without a home directory.
        let s = run(
            None,
            &[("AWS_SHARED_CREDENTIALS_FILE", creds.to_str().unwrap())],
            profile("p"),
        )
        .unwrap();
        assert_eq!(s.access_key_id.as_deref(), Some("AKID_ELSEWHERE"));
    }

    #[test]
    fn debug_redacts_secret_and_token() {
        let home = Home::new();
        let env = [
            ("AWS_ACCESS_KEY_ID", "AKIDVISIBLE"),
            ("AWS_SECRET_ACCESS_KEY", SECRET),
            ("AWS_SESSION_TOKEN", TOKEN),
        ];
        let s = ok(&home, &env, NONE);
        for text in [format!("{s:?}"), format!("{s:#?}")] {
            assert!(!text.contains(SECRET), "{text}");
            assert!(!text.contains(TOKEN), "{text}");
            assert!(text.contains("AKIDVISIBLE"), "{text}");
            assert!(text.contains("<redacted>"), "{text}");
        }
        let none = format!("{:?}", ok(&home, &[], NONE));
        assert!(!none.contains("<redacted>"), "{none}");
    }

    #[test]
    fn resolve_from_process_runs() {
        // Whatever this machine has configured, resolving must not panic; with an
        // explicit profile that surely does not exist it must say so.
        let err = resolve_from_process(&Overrides {
            profile: Some("s3tm-test-profile-that-does-not-exist"),
            ..NONE
        });
        assert!(matches!(
            err,
            Err(AwsConfigError::ProfileNotFound { .. }
                | AwsConfigError::Malformed { .. }
                | AwsConfigError::Unreadable { .. })
        ));
    }
}
