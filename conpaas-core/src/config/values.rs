//! Parsers for single values of director.cfg: booleans, numbers, addresses, URLs, database URLs.
//!
//! Each returns the "expected ..." half of an error message on failure, so the
//! caller can add file, line, key and the value found.

use std::fmt;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

use crate::cloud::{Ec2Region, EndpointUrl, UrlScheme};
use crate::store::DatabaseUrl;

use super::error::Error;

/// What a boolean key accepts (Python's `getboolean`, case-insensitive).
pub(crate) const EXPECTED_BOOL: &str = "a boolean: true, false, yes, no, on, off, 1 or 0";

/// Python's `getboolean`.
pub(crate) fn parse_bool(text: &str) -> Result<bool, String> {
    match text.to_ascii_lowercase().as_str() {
        "1" | "yes" | "true" | "on" => Ok(true),
        "0" | "no" | "false" | "off" => Ok(false),
        _ => Err(EXPECTED_BOOL.to_owned()),
    }
}

/// An unsigned integer between `min` and `max`.
pub(crate) fn parse_integer(text: &str, min: u64, max: u64) -> Result<u64, String> {
    let expected = || match (min, max) {
        (0, u64::MAX) => "a non-negative integer".to_owned(),
        (1, u64::MAX) => "a positive integer".to_owned(),
        _ => format!("an integer between {min} and {max}"),
    };
    // Only digits: Rust's parser would also take a leading `+`, Python's int() spaces and `_`.
    if text.is_empty() || !text.bytes().all(|byte| byte.is_ascii_digit()) {
        return Err(expected());
    }
    match text.parse::<u64>() {
        Ok(number) if (min..=max).contains(&number) => Ok(number),
        _ => Err(expected()),
    }
}

/// A dotted IPv4 address.
pub(crate) fn parse_ipv4(text: &str, what: &str) -> Result<Ipv4Addr, String> {
    Ipv4Addr::from_str(text).map_err(|_| format!("{what} as a dotted IPv4 address"))
}

/// A dotted IPv4 netmask: ones then zeros.
pub(crate) fn parse_netmask(text: &str) -> Result<Ipv4Addr, String> {
    let expected = || "a dotted IPv4 netmask such as 255.255.255.0".to_owned();
    let mask = Ipv4Addr::from_str(text).map_err(|_| expected())?;
    let bits = u32::from(mask);
    if bits.leading_ones() + bits.trailing_zeros() != 32 {
        return Err(expected());
    }
    Ok(mask)
}

/// The `[director] DATABASE_URI` forms we accept, for messages.
pub(crate) const EXPECTED_DATABASE_URI: &str = "a database URL in SQLAlchemy form: sqlite:///RELATIVE/PATH, \
     sqlite:////ABSOLUTE/PATH or postgresql://USER:PASSWORD@HOST[:PORT]/DATABASE \
     (also postgres:// and postgresql+psycopg2://)";

/// `DATABASE_URI`: SQLAlchemy's URL form ([`DatabaseUrl`]'s parser), but not in memory: a
/// director's accounts and services must outlive it.
pub(crate) fn parse_database_url(text: &str) -> Result<DatabaseUrl, String> {
    match text.parse::<DatabaseUrl>() {
        Ok(DatabaseUrl::SqliteMemory) => Err(format!(
            "{EXPECTED_DATABASE_URI}; an in-memory SQLite database would lose every account \
             when the director stops (Store::open_in_memory is there for tests and embedders)"
        )),
        Ok(url) => Ok(url),
        Err(_) => Err(EXPECTED_DATABASE_URI.to_owned()),
    }
}

/// Whether a key holds a secret that messages must not echo.
pub(crate) fn is_secret_key(key: &str) -> bool {
    let key = key.to_ascii_lowercase();
    key.contains("password") || key.contains("secret")
}

/// The value as a message may show it: secrets hidden, URL passwords masked.
pub(crate) fn shown_value(key: &str, value: &str) -> String {
    if value.is_empty() {
        return String::new();
    }
    if is_secret_key(key) {
        return "<hidden>".to_owned();
    }
    redact_url_password(value)
}

/// `scheme://user:password@host...` -> `scheme://user:***@host...`.
fn redact_url_password(text: &str) -> String {
    let Some(scheme_end) = text.find("://") else {
        return text.to_owned();
    };
    let authority_start = scheme_end + 3;
    let authority_end = text[authority_start..]
        .find(['/', '?', '#'])
        .map_or(text.len(), |pos| authority_start + pos);
    let authority = &text[authority_start..authority_end];
    let Some(at) = authority.rfind('@') else {
        return text.to_owned();
    };
    let Some(colon) = authority[..at].find(':') else {
        return text.to_owned();
    };
    format!(
        "{}{}:***{}",
        &text[..authority_start],
        &authority[..colon],
        &text[authority_start + at..]
    )
}

/// An `http://` or `https://` URL split into its parts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ParsedUrl {
    pub(crate) scheme: UrlScheme,
    pub(crate) host: String,
    pub(crate) port: Option<u16>,
    /// Everything after the authority (path, query, fragment), possibly empty.
    pub(crate) rest: String,
}

/// Splits `scheme://host[:port]rest`, checking host and port.
pub(crate) fn parse_http_url(text: &str) -> Option<ParsedUrl> {
    let (scheme, after) = if let Some(after) = strip_prefix_ignore_case(text, "https://") {
        (UrlScheme::Https, after)
    } else if let Some(after) = strip_prefix_ignore_case(text, "http://") {
        (UrlScheme::Http, after)
    } else {
        return None;
    };
    let authority_end = after.find(['/', '?', '#']).unwrap_or(after.len());
    let (host, port) = parse_authority(&after[..authority_end])?;
    Some(ParsedUrl {
        scheme,
        host,
        port,
        rest: after[authority_end..].to_owned(),
    })
}

fn strip_prefix_ignore_case<'a>(text: &'a str, prefix: &str) -> Option<&'a str> {
    let head = text.get(..prefix.len())?;
    head.eq_ignore_ascii_case(prefix)
        .then(|| &text[prefix.len()..])
}

/// `host[:port]` or `[v6][:port]`; no user info.
fn parse_authority(authority: &str) -> Option<(String, Option<u16>)> {
    let (host, port_text) = if let Some(bracketed) = authority.strip_prefix('[') {
        let close = bracketed.find(']')?;
        let host = &bracketed[..close];
        Ipv6Addr::from_str(host).ok()?;
        let after = &bracketed[close + 1..];
        let port = if after.is_empty() {
            None
        } else {
            Some(after.strip_prefix(':')?)
        };
        (host.to_owned(), port)
    } else {
        let (host, port) = match authority.split_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (authority, None),
        };
        if !is_host_name(host) {
            return None;
        }
        (host.to_owned(), port)
    };
    let port = match port_text {
        None => None,
        Some(text) => Some(parse_port(text)?),
    };
    Some((host, port))
}

fn parse_port(text: &str) -> Option<u16> {
    if text.is_empty() || !text.bytes().all(|byte| byte.is_ascii_digit()) {
        return None;
    }
    text.parse::<u16>().ok().filter(|port| *port != 0)
}

/// A DNS name or IPv4 address: dot-separated labels of letters, digits, `-` and `_`.
fn is_host_name(host: &str) -> bool {
    !host.is_empty()
        && host.len() <= 253
        && host.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label
                    .bytes()
                    .all(|byte| byte.is_ascii_alphanumeric() || byte == b'-' || byte == b'_')
        })
}

/// A cloud API URL: `http(s)://host[:port]`, with the path it had (which callers may refuse).
pub(crate) fn parse_endpoint(text: &str) -> Option<(EndpointUrl, String)> {
    let parsed = parse_http_url(text)?;
    Some((
        EndpointUrl {
            scheme: parsed.scheme,
            host: parsed.host,
            port: parsed.port,
        },
        parsed.rest,
    ))
}

/// `REGION`: `ec2.<region>.amazonaws.com`, e.g. `ec2.ap-southeast-2.amazonaws.com`.
pub(crate) fn parse_ec2_region(text: &str) -> Result<Ec2Region, String> {
    let expected = || {
        format!(
            "an EC2 endpoint host ec2.REGION.amazonaws.com, such as {}",
            Ec2Region::KNOWN_TO_1_2.join(", ")
        )
    };
    let name = text
        .strip_prefix("ec2.")
        .and_then(|rest| rest.strip_suffix(".amazonaws.com"))
        .ok_or_else(expected)?;
    let parts: Vec<&str> = name.split('-').collect();
    let well_formed = parts.len() >= 3
        && parts.first().is_some_and(|area| area.len() == 2)
        && parts[..parts.len() - 1]
            .iter()
            .all(|part| !part.is_empty() && part.bytes().all(|byte| byte.is_ascii_lowercase()))
        && parts.last().is_some_and(|number| {
            !number.is_empty() && number.bytes().all(|byte| byte.is_ascii_digit())
        });
    if !well_formed {
        return Err(expected());
    }
    Ok(Ec2Region {
        name: name.to_owned(),
        endpoint_host: text.to_owned(),
    })
}

/// The public URL of the director as the VMs reach it: `https://host[:port]`, no path.
///
/// The managers build their callback URLs by appending paths to it
/// (`/download`, `/callback/decrementUserCredit.php`, `/ca/get_cert.php`) and
/// derive their IPOP namespace from [`authority`](Self::authority), so it keeps
/// the port exactly as written (`https://h` and `https://h:443` differ there).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct DirectorUrl {
    host: String,
    port: Option<u16>,
}

/// The `DIRECTOR_URL` form, for messages.
pub(crate) const EXPECTED_DIRECTOR_URL: &str = "an https://HOST[:PORT] URL without a path or trailing slash, such as https://director.example.org:5555";

impl DirectorUrl {
    /// A URL for `host` (a DNS name, an IPv4 address, or an IPv6 address with
    /// or without brackets) and `port`.
    pub fn new(host: &str, port: Option<u16>) -> Result<DirectorUrl, Error> {
        let invalid = || Error::InvalidHost {
            host: host.to_owned(),
        };
        let unbracketed = host
            .strip_prefix('[')
            .and_then(|inner| inner.strip_suffix(']'))
            .unwrap_or(host);
        if unbracketed.contains(':') {
            Ipv6Addr::from_str(unbracketed).map_err(|_| invalid())?;
        } else if !is_host_name(unbracketed) {
            return Err(invalid());
        }
        if port == Some(0) {
            return Err(invalid());
        }
        Ok(DirectorUrl {
            host: unbracketed.to_owned(),
            port,
        })
    }

    /// The host: a DNS name, an IPv4 address, or an IPv6 address without brackets.
    /// It must equal the CN of the director's certificate.
    pub fn host(&self) -> &str {
        &self.host
    }

    /// The port, when the URL names one.
    pub fn port(&self) -> Option<u16> {
        self.port
    }

    /// The port to connect to: the one named, else 443.
    pub fn port_or_default(&self) -> u16 {
        self.port.unwrap_or(443)
    }

    /// `host[:port]` as written (IPv6 in brackets): the part of the IPOP namespace
    /// `cps-<host[:port]>-<APP_ID>`.
    pub fn authority(&self) -> String {
        crate::cloud::settings::authority(&self.host, self.port)
    }
}

impl fmt::Display for DirectorUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "https://{}", self.authority())
    }
}

impl FromStr for DirectorUrl {
    type Err = Error;

    /// Parses `https://host[:port]`; a path, even a lone trailing `/`, is refused
    /// because 1.2 appended paths to the URL verbatim (`...//callback/...`).
    fn from_str(text: &str) -> Result<DirectorUrl, Error> {
        let invalid = || Error::InvalidDirectorUrl {
            got: text.to_owned(),
        };
        let parsed = parse_http_url(text).ok_or_else(invalid)?;
        if parsed.scheme != UrlScheme::Https || !parsed.rest.is_empty() {
            return Err(invalid());
        }
        Ok(DirectorUrl {
            host: parsed.host,
            port: parsed.port,
        })
    }
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;

    #[test]
    fn booleans() {
        for (text, expect) in [
            ("TRUE", Some(true)),
            ("on", Some(true)),
            ("1", Some(true)),
            ("No", Some(false)),
        ] {
            assert_eq!(parse_bool(text).ok(), expect, "{text}");
        }
        assert!(parse_bool("2").is_err());
        assert!(parse_bool("").is_err());
    }

    #[test]
    fn integers() {
        assert_eq!(parse_integer("05", 0, 30), Ok(5));
        assert_eq!(
            parse_integer("+5", 0, 30),
            Err("an integer between 0 and 30".to_owned())
        );
        assert_eq!(
            parse_integer("-1", 0, u64::MAX),
            Err("a non-negative integer".to_owned())
        );
        assert_eq!(
            parse_integer("0", 1, u64::MAX),
            Err("a positive integer".to_owned())
        );
    }

    #[test]
    fn netmasks() {
        assert!(parse_netmask("255.240.0.0").is_ok());
        assert!(parse_netmask("0.0.0.0").is_ok());
        assert!(parse_netmask("255.255.255.255").is_ok());
        assert!(parse_netmask("255.0.255.0").is_err());
        assert!(parse_netmask("12").is_err());
    }

    #[test]
    fn database_urls() {
        let cases: &[(&str, Option<DatabaseUrl>)] = &[
            (
                "sqlite:////etc/cpsdirector/director.db",
                Some(DatabaseUrl::Sqlite(PathBuf::from(
                    "/etc/cpsdirector/director.db",
                ))),
            ),
            (
                "sqlite:///director-test.db",
                Some(DatabaseUrl::Sqlite(PathBuf::from("director-test.db"))),
            ),
            (
                "postgresql://u:p@h/db",
                Some(DatabaseUrl::Postgres("postgresql://u:p@h/db".to_owned())),
            ),
            (
                "postgres://h/db",
                Some(DatabaseUrl::Postgres("postgresql://h/db".to_owned())),
            ),
            (
                "postgresql+psycopg2://h:5433/db",
                Some(DatabaseUrl::Postgres("postgresql://h:5433/db".to_owned())),
            ),
            ("sqlite://", None),
            ("sqlite:///", None),
            ("sqlite:///:memory:", None),
            ("sqlite:///db?mode=ro", None),
            ("mysql://u:p@h/db", None),
            ("/etc/cpsdirector/director.db", None),
            ("postgresql+pg8000://h/db", None),
            ("SQLITE:////x", None),
        ];
        for (text, expect) in cases {
            assert_eq!(
                parse_database_url(text).ok().as_ref(),
                expect.as_ref(),
                "{text}"
            );
        }
    }

    #[test]
    fn shown_values_hide_secrets() {
        assert_eq!(shown_value("PASSWORD", "hunter2"), "<hidden>");
        assert_eq!(shown_value("password", ""), "");
        assert_eq!(
            shown_value("DATABASE_URI", "mysql://u:pw@h/db"),
            "mysql://u:***@h/db"
        );
        assert_eq!(shown_value("DATABASE_URI", "mysql://h/db"), "mysql://h/db");
        assert_eq!(shown_value("X", "plain"), "plain");
    }

    #[test]
    fn endpoints() {
        let (url, rest) = parse_endpoint("http://127.0.0.1:5000").unwrap();
        assert_eq!(
            (url.to_string(), rest.as_str()),
            ("http://127.0.0.1:5000".to_owned(), "")
        );
        let (url, rest) = parse_endpoint("HTTPS://[::1]/occi").unwrap();
        assert_eq!(
            (url.to_string(), rest.as_str()),
            ("https://[::1]".to_owned(), "/occi")
        );
        for bad in [
            "ftp://h",
            "http://",
            "http://u:p@h",
            "http://h:0",
            "http://h:99999",
            "http://h:x",
            "h:80",
        ] {
            assert!(parse_endpoint(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn regions() {
        let region = parse_ec2_region("ec2.ap-southeast-2.amazonaws.com").unwrap();
        assert_eq!(region.name, "ap-southeast-2");
        assert!(!region.is_known_to_1_2());
        assert!(parse_ec2_region("ec2.us-gov-west-1.amazonaws.com").is_ok());
        assert!(
            parse_ec2_region("ec2.us-east-1.amazonaws.com")
                .unwrap()
                .is_known_to_1_2()
        );
        for bad in [
            "us-east-1",
            "ec2.amazonaws.com",
            "ec2.US-EAST-1.amazonaws.com",
            "ec2.us-east.amazonaws.com",
        ] {
            assert!(parse_ec2_region(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn director_urls() {
        let url: DirectorUrl = "https://director.example.org:5555".parse().unwrap();
        assert_eq!(
            (url.host(), url.port(), url.port_or_default()),
            ("director.example.org", Some(5555), 5555)
        );
        assert_eq!(url.to_string(), "https://director.example.org:5555");
        let url: DirectorUrl = "https://[fe80::1]".parse().unwrap();
        assert_eq!((url.host(), url.port_or_default()), ("fe80::1", 443));
        assert_eq!(url.authority(), "[fe80::1]");
        for bad in [
            "http://h:5555",
            "https://h:5555/",
            "https://h/x",
            "https://",
            "https://h:0",
            "h:5555",
            "https://h?x",
        ] {
            assert!(bad.parse::<DirectorUrl>().is_err(), "{bad}");
        }
        assert_eq!(
            DirectorUrl::new("::1", Some(5555)).unwrap().to_string(),
            "https://[::1]:5555"
        );
        assert!(DirectorUrl::new("bad host", Some(5555)).is_err());
        assert!(DirectorUrl::new("h", Some(0)).is_err());
    }
}
