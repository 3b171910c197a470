//! `set_director_url`: cpsconf.py's rewrite of `DIRECTOR_URL`, touching only that line.

use std::fs;
use std::io;
use std::path::Path;

use super::error::Error;
use super::ini::{LineShape, shape};
use super::values::DirectorUrl;

/// Sets `[director] DIRECTOR_URL = https://<hostname>:<port>` in the file at
/// `path`, as `cpsconf.py` (`director init`) does, and returns the URL written.
///
/// The first `DIRECTOR_URL` option of `[director]` is replaced (with any
/// continuation lines); comments are never touched, where 1.2 replaced the
/// first line merely containing the text. Without one, the option goes right
/// after the `[director]` header, and without that section, a new section is
/// appended. Every other line stays byte for byte. The new file replaces the
/// old one atomically (temporary file and rename in the same directory), with
/// the old file's owner, group (when allowed: root may) and mode.
pub fn set_director_url(
    path: &Path,
    hostname: &str,
    port: Option<u16>,
) -> Result<DirectorUrl, Error> {
    let url = DirectorUrl::new(hostname, port)?;
    // Write through a symbolic link rather than replacing it.
    let target = fs::canonicalize(path)
        .map_err(|source| io_error(path, "find the configuration", source))?;
    let text = fs::read_to_string(&target)
        .map_err(|source| io_error(path, "read the configuration", source))?;
    let new_text = with_director_url(&text, &url);
    if new_text != text {
        write_atomically(&target, &new_text)?;
    }
    Ok(url)
}

fn io_error(path: &Path, action: &'static str, source: io::Error) -> Error {
    if source.kind() == io::ErrorKind::NotFound {
        return Error::FileNotFound {
            path: path.to_path_buf(),
        };
    }
    Error::Io {
        path: path.to_path_buf(),
        action,
        source,
    }
}

/// The text with `DIRECTOR_URL` set; line ends follow the file's first line.
pub(crate) fn with_director_url(text: &str, url: &DirectorUrl) -> String {
    let eol = match text.split_inclusive('\n').next() {
        Some(first) if first.ends_with("\r\n") => "\r\n",
        _ => "\n",
    };
    let new_line = format!("DIRECTOR_URL = {url}");
    let mut out = String::with_capacity(text.len() + new_line.len() + 16);
    let mut section: Option<&str> = None;
    let mut in_option = false;
    let mut replaced = false;
    // Continuation lines of the replaced option are dropped with it.
    let mut dropping = false;
    let mut director_header_end: Option<usize> = None;
    for raw_line in text.split_inclusive('\n') {
        let line = raw_line.strip_suffix('\n').unwrap_or(raw_line);
        match shape(line) {
            LineShape::Skip => {}
            LineShape::Indented(_) if in_option => {
                if dropping {
                    continue;
                }
            }
            LineShape::Header(name) => {
                section = Some(name);
                in_option = false;
                dropping = false;
                if name == "director" && director_header_end.is_none() {
                    out.push_str(raw_line);
                    if !raw_line.ends_with('\n') {
                        out.push_str(eol);
                    }
                    director_header_end = Some(out.len());
                    continue;
                }
            }
            LineShape::Option { key, .. } => {
                in_option = true;
                dropping = false;
                if !replaced && section == Some("director") && key == "director_url" {
                    replaced = true;
                    dropping = true;
                    out.push_str(&new_line);
                    if raw_line.ends_with('\n') {
                        out.push_str(if raw_line.ends_with("\r\n") {
                            "\r\n"
                        } else {
                            "\n"
                        });
                    }
                    continue;
                }
            }
            LineShape::Indented(_) | LineShape::Invalid => {
                dropping = false;
            }
        }
        out.push_str(raw_line);
    }
    if replaced {
        return out;
    }
    match director_header_end {
        Some(position) => out.insert_str(position, &format!("{new_line}{eol}")),
        None => {
            if !out.is_empty() {
                if !out.ends_with('\n') {
                    out.push_str(eol);
                }
                out.push_str(eol);
            }
            out.push_str(&format!("[director]{eol}{new_line}{eol}"));
        }
    }
    out
}

/// Replaces `target` by a file holding `text`, keeping its owner, group and mode.
fn write_atomically(target: &Path, text: &str) -> Result<(), Error> {
    // A new configuration file is one the generated data directory would have: 0600.
    crate::data_files::replace(
        target,
        text.as_bytes(),
        crate::data_files::Mode::KeptOr(0o600),
    )
    .map_err(|source| Error::Io {
        path: target.to_path_buf(),
        action: "replace the configuration",
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(before: &str, after: &str) {
        let url = DirectorUrl::new("new.example.org", Some(5555)).unwrap();
        assert_eq!(with_director_url(before, &url), after, "before:\n{before}");
    }

    #[test]
    fn rewrite_cases() {
        let cases: &[(&str, &str)] = &[
            // Replaces the option, not the commented example above it (1.2 replaced the comment).
            (
                "[director]\n#DIRECTOR_URL = https://director.example.org:5555\nDIRECTOR_URL = https://old:5555\nDEBUG = true\n",
                "[director]\n#DIRECTOR_URL = https://director.example.org:5555\nDIRECTOR_URL = https://new.example.org:5555\nDEBUG = true\n",
            ),
            // Only in [director]; lower-case keys and `:` count; continuation lines go with it.
            (
                "[conpaas]\nDIRECTOR_URL = x\n[director]\ndirector_url: https://old\n  more\n\nDEBUG = 1\n",
                "[conpaas]\nDIRECTOR_URL = x\n[director]\nDIRECTOR_URL = https://new.example.org:5555\n\nDEBUG = 1\n",
            ),
            // Absent: inserted right after the header; only the first of two is replaced.
            (
                "[director]\n# the URL\nDEBUG = true\n",
                "[director]\nDIRECTOR_URL = https://new.example.org:5555\n# the URL\nDEBUG = true\n",
            ),
            (
                "[director]\nDIRECTOR_URL = a\nDIRECTOR_URL = b\n",
                "[director]\nDIRECTOR_URL = https://new.example.org:5555\nDIRECTOR_URL = b\n",
            ),
            // A header on the last line without a newline.
            (
                "[director]",
                "[director]\nDIRECTOR_URL = https://new.example.org:5555\n",
            ),
            // No [director]: a new section at the end, CRLF kept.
            (
                "[conpaas]\r\nCONF_DIR = /x\r\n",
                "[conpaas]\r\nCONF_DIR = /x\r\n\r\n[director]\r\nDIRECTOR_URL = https://new.example.org:5555\r\n",
            ),
            (
                "[iaas]\nDRIVER = dummy",
                "[iaas]\nDRIVER = dummy\n\n[director]\nDIRECTOR_URL = https://new.example.org:5555\n",
            ),
            (
                "",
                "[director]\nDIRECTOR_URL = https://new.example.org:5555\n",
            ),
            // The last line without a newline stays without one.
            (
                "[director]\nDIRECTOR_URL = old",
                "[director]\nDIRECTOR_URL = https://new.example.org:5555",
            ),
        ];
        for (before, after) in cases {
            check(before, after);
        }
    }
}
