//! `[director]`: the database URL, `DEBUG`, `METRICS_ALLOW`, `REAPER` and the listener's
//! connection limits.

use super::*;

impl Builder<'_> {
    pub(super) fn database_url(&mut self) -> Checked<DatabaseUrl> {
        let (url, value) = self.required_value(
            "director",
            "database_uri",
            EXPECTED_DATABASE_URI,
            parse_database_url,
        )?;
        if let DatabaseUrl::Sqlite(path) = &url
            && path.is_relative()
        {
            self.warn(
                "director",
                Some(value.line),
                Some("DATABASE_URI"),
                WarningKind::RelativePath {
                    path: path.display().to_string(),
                },
            );
        }
        Ok(url)
    }

    /// `DEBUG` as a boolean; 1.2 turned debug mode on whenever the key existed.
    pub(super) fn debug(&mut self) -> Checked<bool> {
        let Some(value) = self.find("director", "debug")? else {
            return Ok(false);
        };
        let on = if value.text.is_empty() {
            false
        } else {
            parse_bool(&value.text)
                .map_err(|expected| self.invalid("director", &value, expected))?
        };
        if !on {
            self.warn(
                "director",
                Some(value.line),
                Some("DEBUG"),
                WarningKind::DebugPresence { value: value.text },
            );
        }
        Ok(on)
    }

    /// `MAX_CONNECTIONS` to `WRITE_TIMEOUT`. The anonymous share defaults to half of
    /// `MAX_CONNECTIONS` and may not exceed it: past it no place would be left for clients
    /// with a certificate, which is the point of the share.
    pub(super) fn connection_limits(&mut self) -> Checked<ConnectionLimits> {
        let max_connections = self.optional("director", "max_connections", parse_count);
        let max_anonymous = self.optional("director", "max_anonymous_connections", parse_count);
        let per_address =
            self.optional("director", "max_connections_per_address", parse_cap_or_off);
        let per_network =
            self.optional("director", "max_connections_per_network", parse_cap_or_off);
        let request_body_timeout = self.optional("director", "request_body_timeout", parse_timeout);
        let write_timeout = self.optional("director", "write_timeout", parse_timeout);
        let (
            Ok(max_connections),
            Ok(max_anonymous),
            Ok(per_address),
            Ok(per_network),
            Ok(request_body_timeout),
            Ok(write_timeout),
        ) = (
            max_connections,
            max_anonymous,
            per_address,
            per_network,
            request_body_timeout,
            write_timeout,
        )
        else {
            return Err(Reported);
        };
        let max_connections = max_connections.unwrap_or(DEFAULT_MAX_CONNECTIONS);
        let max_anonymous_connections = match max_anonymous {
            Some(anonymous) if anonymous > max_connections => {
                // The key parsed, so it is there; its line names the problem.
                let value = self.find("director", "max_anonymous_connections")?;
                return Err(match value {
                    Some(value) => self.invalid(
                        "director",
                        &value,
                        format!(
                            "a whole number between 1 and MAX_CONNECTIONS ({max_connections}); \
                             lower it or raise MAX_CONNECTIONS"
                        ),
                    ),
                    None => Reported,
                });
            }
            Some(anonymous) => anonymous,
            None => default_max_anonymous_connections(max_connections),
        };
        Ok(ConnectionLimits {
            max_connections,
            max_anonymous_connections,
            max_connections_per_address: per_address
                .unwrap_or(Some(DEFAULT_MAX_CONNECTIONS_PER_ADDRESS)),
            max_connections_per_network: per_network
                .unwrap_or(Some(DEFAULT_MAX_CONNECTIONS_PER_NETWORK)),
            request_body_timeout: request_body_timeout.unwrap_or(DEFAULT_REQUEST_BODY_TIMEOUT),
            write_timeout: write_timeout.unwrap_or(DEFAULT_WRITE_TIMEOUT),
        })
    }
}

/// The most connections any connection key may name: far above what a process's file
/// descriptors allow, low enough that no arithmetic on it overflows.
const MOST_CONNECTIONS: u64 = 1_000_000;

/// `MAX_CONNECTIONS`, `MAX_ANONYMOUS_CONNECTIONS`: 1 to a million.
fn parse_count(text: &str) -> Result<usize, String> {
    parse_integer(text, 1, MOST_CONNECTIONS)
        .ok()
        .and_then(|count| usize::try_from(count).ok())
        .ok_or_else(|| format!("a whole number between 1 and {MOST_CONNECTIONS}"))
}

/// `MAX_CONNECTIONS_PER_ADDRESS`, `MAX_CONNECTIONS_PER_NETWORK`: 1 to a million, or `off` (no
/// cap: behind a load balancer every client has the balancer's address).
fn parse_cap_or_off(text: &str) -> Result<Option<usize>, String> {
    if text.trim().eq_ignore_ascii_case("off") {
        return Ok(None);
    }
    parse_count(text)
        .map(Some)
        .map_err(|_| format!("a whole number between 1 and {MOST_CONNECTIONS}, or off"))
}

/// `REQUEST_BODY_TIMEOUT`, `WRITE_TIMEOUT`: whole seconds, 1 s to an hour.
fn parse_timeout(text: &str) -> Result<Duration, String> {
    parse_integer(text, 1, 3600)
        .map(Duration::from_secs)
        .map_err(|_| "a whole number of seconds between 1 and 3600".to_owned())
}

/// `METRICS_ALLOW`: IP addresses and networks (`127.0.0.1`, `10.0.0.0/8`, `::1`), separated
/// by commas or spaces; `none` for none (the frontend's certificate only).
pub(super) fn parse_metrics_allow(text: &str) -> Result<Vec<ipnet::IpNet>, String> {
    const EXPECTED: &str =
        "IP addresses or networks separated by commas (127.0.0.1, ::1, 10.0.0.0/8), or none";
    if text.trim().eq_ignore_ascii_case("none") {
        return Ok(Vec::new());
    }
    text.split(|c: char| c == ',' || c.is_whitespace())
        .filter(|item| !item.is_empty())
        .map(|item| {
            item.parse::<ipnet::IpNet>()
                .map(|net| net.trunc())
                .or_else(|_| item.parse::<std::net::IpAddr>().map(ipnet::IpNet::from))
                .map_err(|_| EXPECTED.to_owned())
        })
        .collect()
}

/// `REAPER`: `on`, `report` or `off`, in any case.
pub(super) fn parse_reaper_mode(text: &str) -> Result<ReaperMode, String> {
    match text.trim().to_ascii_lowercase().as_str() {
        "on" => Ok(ReaperMode::On),
        "report" => Ok(ReaperMode::Report),
        "off" => Ok(ReaperMode::Off),
        _ => Err("on, report or off".to_owned()),
    }
}
