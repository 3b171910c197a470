//! `[director]`: the database URL and `DEBUG`.

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
