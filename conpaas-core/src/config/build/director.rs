//! `[director]`: the database URL, `DEBUG`, `METRICS_ALLOW` and `REAPER`.

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
