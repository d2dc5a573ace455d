//! `[cookies]`: DNS cookies (RFC 7873, server cookies as RFC 9018 builds them) and where their
//! secret comes from: made at start and rotated by lbns, or read from a file peers share.

use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

use super::{Cx, key};

/// Default rotation of a secret lbns makes itself (Knot rotates its own every 26 h).
pub(crate) const DEFAULT_COOKIE_ROTATION: Duration = Duration::from_secs(24 * 3600);
/// Shortest rotation: a server cookie is good for an hour (RFC 9018 §4.3), and only the
/// previous secret is kept, so a shorter one would cut cookies short.
const MIN_ROTATION: Duration = Duration::from_secs(3600);
/// Most secrets a file may list (the first makes cookies, the rest are still accepted).
const MAX_SECRETS: usize = 8;
/// A secret file is a few lines; anything bigger is not one.
const MAX_FILE: u64 = 4096;

/// `[cookies]` as written. Every key is optional.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawCookies {
    /// Answer DNS cookies (default true).
    pub(crate) enabled: Option<bool>,
    /// A file of secrets, 32 hexadecimal digits per line: the first makes server cookies, every
    /// one is accepted. Peers serving the same addresses share it. Relative to the config file.
    pub(crate) secret_file: Option<Spanned<String>>,
    /// Without `secret_file`: how often lbns replaces the secret it made (default `"1d"`).
    pub(crate) rotation: Option<Spanned<String>>,
}

/// A 128-bit SipHash key for server cookies (RFC 9018 §4.4). Its `Debug` does not show it.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) struct CookieSecret(pub(crate) [u8; 16]);

impl fmt::Debug for CookieSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("CookieSecret(..)")
    }
}

/// Where the secret comes from.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum CookieSecrets {
    /// lbns makes its own and replaces it every `rotation`, still accepting the previous one.
    Rotating(Duration),
    /// Read from `secret_file`: the first makes server cookies, all are accepted.
    Shared {
        /// The file, joined with the config's directory (a reload reads it again).
        file: PathBuf,
        secrets: Vec<CookieSecret>,
    },
}

/// The validated `[cookies]`.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct CookiesConfig {
    pub(crate) enabled: bool,
    pub(crate) secrets: CookieSecrets,
}

impl Cx<'_> {
    pub(super) fn cookies(&mut self, raw: RawCookies, table: Range<usize>) -> CookiesConfig {
        let RawCookies {
            enabled,
            secret_file,
            rotation,
        } = raw;
        let (rotation_text, rotation_at) = key(rotation, &table);
        let rotation = match &rotation_text {
            None => DEFAULT_COOKIE_ROTATION,
            Some(t) => match humantime::parse_duration(t) {
                Ok(d) if d >= MIN_ROTATION => d,
                Ok(_) => {
                    self.invalid(
                        rotation_at.clone(),
                        "cookies rotation must be at least 1h: a server cookie is good for an hour",
                    );
                    DEFAULT_COOKIE_ROTATION
                }
                Err(e) => {
                    self.invalid(
                        rotation_at.clone(),
                        format!("cookies rotation: `{t}` is not a duration such as \"1d\": {e}"),
                    );
                    DEFAULT_COOKIE_ROTATION
                }
            },
        };
        let secrets = match key(secret_file, &table) {
            (None, _) => CookieSecrets::Rotating(rotation),
            (Some(file), at) => {
                if rotation_text.is_some() {
                    self.invalid(
                        rotation_at,
                        "cookies rotation applies to a secret lbns makes; with secret_file, \
                         rotate by rewriting the file (new secret first) and reloading",
                    );
                }
                let file = self.relative_to_config(&file);
                let secrets = match read_secrets(&file) {
                    Ok(s) => s,
                    Err(message) => {
                        self.invalid(
                            at,
                            format!("cookies secret_file {}: {message}", file.display()),
                        );
                        Vec::new()
                    }
                };
                CookieSecrets::Shared { file, secrets }
            }
        };
        CookiesConfig {
            enabled: enabled.unwrap_or(true),
            secrets,
        }
    }
}

/// The secrets of a secret file: one per line as 32 hexadecimal digits; blank lines and lines
/// starting with `#` are skipped. Errors name the line, never its text.
pub(crate) fn read_secrets(file: &Path) -> Result<Vec<CookieSecret>, String> {
    let meta = std::fs::metadata(file).map_err(|e| format!("cannot read: {e}"))?;
    if !meta.is_file() {
        return Err("not a regular file".to_owned());
    }
    if meta.len() > MAX_FILE {
        return Err(format!("larger than {MAX_FILE} bytes: not a secret file"));
    }
    let text = std::fs::read(file).map_err(|e| format!("cannot read: {e}"))?;
    let text = String::from_utf8(text).map_err(|_| "not text".to_owned())?;
    let mut secrets = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let secret = parse_secret(line).ok_or_else(|| {
            format!(
                "line {}: not a secret (expected 32 hexadecimal digits, 128 bits)",
                i + 1
            )
        })?;
        secrets.push(secret);
    }
    match secrets.len() {
        0 => Err("holds no secret (expected 32 hexadecimal digits on a line)".to_owned()),
        n if n > MAX_SECRETS => Err(format!("holds {n} secrets; at most {MAX_SECRETS}")),
        _ => Ok(secrets),
    }
}

fn parse_secret(text: &str) -> Option<CookieSecret> {
    if text.len() != 32 || !text.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    let mut out = [0u8; 16];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&text[2 * i..2 * i + 2], 16).ok()?;
    }
    Some(CookieSecret(out))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_files_are_read_line_by_line_and_never_quoted() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("secret");
        std::fs::write(
            &path,
            "# rotated 2026-11-30\n445536bcd2513298075a5d379663c962\n\nDD3BDF9344B678B185A6F5CB60FCA715\n",
        )
        .unwrap();
        let secrets = read_secrets(&path).unwrap();
        assert_eq!(secrets.len(), 2);
        assert_eq!(secrets[0].0[..2], [0x44, 0x55]);
        assert_eq!(secrets[1].0[15], 0x15);
        assert_eq!(format!("{:?}", secrets[0]), "CookieSecret(..)");

        for (text, wanted) in [
            ("password123\n", "line 1: not a secret"),
            ("\n\n", "holds no secret"),
            ("445536bcd2513298075a5d379663c96\n", "line 1: not a secret"),
            (
                "445536bcd2513298075a5d379663c962\nzz5536bcd2513298075a5d379663c962\n",
                "line 2",
            ),
        ] {
            std::fs::write(&path, text).unwrap();
            let e = read_secrets(&path).unwrap_err();
            assert!(e.contains(wanted), "{text:?}: {e}");
            assert!(!e.contains("password") && !e.contains("zz55"), "{e}");
        }
        std::fs::write(&path, "0".repeat(5000)).unwrap();
        assert!(read_secrets(&path).unwrap_err().contains("larger than"));
        assert!(
            read_secrets(&dir.path().join("missing"))
                .unwrap_err()
                .starts_with("cannot read")
        );
    }
}
