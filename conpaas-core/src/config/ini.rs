//! A reader for director.cfg with Python 2 `ConfigParser` semantics that keeps every key's line.
//!
//! Hand-written on purpose: the INI crates (rust-ini, configparser, ini) each
//! differ from Python 2's `ConfigParser` in a way existing files notice (inline
//! `;` only after whitespace, `#` never inline, `rem` comments, indented lines
//! continuing a value, `[DEFAULT]` visible everywhere, `%(name)s` re-expanded
//! until stable, `""` meaning empty), and none keeps line numbers, which every
//! error message needs. The rules reproduced are those of Python 2.7's
//! `ConfigParser.RawConfigParser._read` and `ConfigParser._interpolate`
//! (`spec/config.md` §1).

use std::path::{Path, PathBuf};

use super::error::{Location, Problem, ProblemKind, Warning, WarningKind};
use super::values::shown_value;

/// The section whose keys every other section sees.
pub(crate) const DEFAULT_SECTION: &str = "DEFAULT";

/// How many rounds of `%(name)s` expansion Python 2 runs before giving up.
const MAX_INTERPOLATION_DEPTH: usize = 10;

/// A parsed file: sections in order of first appearance, keys lower-cased.
#[derive(Debug, Clone)]
pub(crate) struct Ini {
    file: PathBuf,
    defaults: Section,
    sections: Vec<Section>,
}

/// One section; a header repeated later in the file reopens it, as in Python.
#[derive(Debug, Clone)]
pub(crate) struct Section {
    /// The name between the brackets, verbatim (case-sensitive).
    pub(crate) name: String,
    /// The line of its first header (`None` for an absent `[DEFAULT]`).
    pub(crate) header_line: Option<usize>,
    /// Options in order of first appearance; a repeated key keeps its place and takes the new value.
    pub(crate) entries: Vec<Entry>,
}

/// One option as read, before interpolation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Entry {
    /// The key, lower-cased (Python's `optionxform`).
    pub(crate) key: String,
    /// The value: inline comment removed, stripped, continuation lines joined with `\n`.
    pub(crate) raw: String,
    /// The line of the `KEY = value` line that set it.
    pub(crate) line: usize,
    /// The line of each continuation line joined into `raw`, in order.
    pub(crate) continuation_lines: Vec<usize>,
}

/// An option looked up through a section, after interpolation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Value {
    /// The key, lower-cased.
    pub(crate) key: String,
    /// The interpolated value.
    pub(crate) text: String,
    /// The line that set it.
    pub(crate) line: usize,
    /// The line of each continuation line of the value, in order (the lines of a multi-line
    /// value, such as `VPN_BOOTSTRAP_NODES`, are named one by one in messages).
    pub(crate) continuation_lines: Vec<usize>,
    /// It comes from `[DEFAULT]`.
    pub(crate) from_defaults: bool,
}

/// The shape of one physical line, independent of what came before.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum LineShape<'a> {
    /// Blank, or a comment (`#`, `;` or `rem` in the first column).
    Skip,
    /// Starts with whitespace: continues the previous value when there is one.
    Indented(&'a str),
    /// `[name]` (anything after the `]` is ignored, as in Python).
    Header(&'a str),
    /// `key = value` or `key: value`; `key` lower-cased, `value` as stored.
    Option {
        /// The key, lower-cased.
        key: String,
        /// The value, inline comment removed and stripped.
        value: String,
    },
    /// Anything else.
    Invalid,
}

/// Python 2's `str.isspace` for one ASCII character.
pub(crate) fn is_py_space(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\n' | '\r' | '\x0b' | '\x0c')
}

/// Python 2's `str.strip()`.
pub(crate) fn py_strip(text: &str) -> &str {
    text.trim_matches(is_py_space)
}

/// Classifies one line (without its `\n`), as `RawConfigParser._read` does.
pub(crate) fn shape(line: &str) -> LineShape<'_> {
    let Some(first) = line.chars().next() else {
        return LineShape::Skip;
    };
    if py_strip(line).is_empty() || first == '#' || first == ';' {
        return LineShape::Skip;
    }
    // Python: `line.split(None, 1)[0].lower() == 'rem' and line[0] in "rR"`.
    if (first == 'r' || first == 'R')
        && line
            .split(is_py_space)
            .next()
            .is_some_and(|word| word.eq_ignore_ascii_case("rem"))
    {
        return LineShape::Skip;
    }
    if is_py_space(first) {
        return LineShape::Indented(py_strip(line));
    }
    // SECTCRE = r'\[(?P<header>[^]]+)\]', matched at the start only.
    if let Some(rest) = line.strip_prefix('[')
        && let Some(end) = rest.find(']')
        && end > 0
    {
        return LineShape::Header(&rest[..end]);
    }
    // OPTCRE = r'(?P<option>[^:=\s][^:=]*)\s*(?P<vi>[:=])\s*(?P<value>.*)$': the key
    // runs to the first ':' or '=' (the first character is neither nor a space).
    let Some(delimiter) = line.find([':', '=']) else {
        return LineShape::Invalid;
    };
    if delimiter == 0 {
        return LineShape::Invalid;
    }
    let key = line[..delimiter]
        .trim_end_matches(is_py_space)
        .to_ascii_lowercase();
    let mut value = line[delimiter + 1..].trim_start_matches(is_py_space);
    // ';' starts an inline comment only when it is the first ';' and follows
    // whitespace; at position 0 Python looks at value[-1], the last character.
    if let Some(pos) = value.find(';') {
        let before = if pos == 0 {
            value.chars().next_back()
        } else {
            value[..pos].chars().next_back()
        };
        if before.is_some_and(is_py_space) {
            value = &value[..pos];
        }
    }
    let value = py_strip(value);
    // Python turns a value of exactly `""` into the empty string.
    let value = if value == "\"\"" { "" } else { value };
    LineShape::Option {
        key,
        value: value.to_owned(),
    }
}

/// Splits text into lines as Python's `readline` does (on `\n` only, so a `\r` stays and is stripped later).
pub(crate) fn lines(text: &str) -> impl Iterator<Item = &str> {
    let text = text.strip_suffix('\n').unwrap_or(text);
    let empty = text.is_empty();
    text.split('\n').filter(move |_| !empty)
}

impl Section {
    fn new(name: &str, header_line: Option<usize>) -> Section {
        Section {
            name: name.to_owned(),
            header_line,
            entries: Vec::new(),
        }
    }

    /// The option `key` (lower-case) of this section itself, without `[DEFAULT]`.
    pub(crate) fn entry(&self, key: &str) -> Option<&Entry> {
        self.entries.iter().find(|entry| entry.key == key)
    }

    fn entry_mut(&mut self, key: &str) -> Option<&mut Entry> {
        self.entries.iter_mut().find(|entry| entry.key == key)
    }
}

impl Ini {
    /// Reads `text`, the content of `file`. Like Python, a file with syntax
    /// errors is refused as a whole; unlike Python, every bad line is reported
    /// (Python stops at a missing first header, so do we).
    pub(crate) fn parse(file: &Path, text: &str) -> Result<(Ini, Vec<Warning>), Vec<Problem>> {
        let mut ini = Ini {
            file: file.to_path_buf(),
            defaults: Section::new(DEFAULT_SECTION, None),
            sections: Vec::new(),
        };
        let mut problems = Vec::new();
        let mut warnings = Vec::new();
        // Indices of the current section (None = [DEFAULT]) and of the option a
        // continuation line extends.
        let mut current: Option<Option<usize>> = None;
        let mut current_key: Option<String> = None;
        // A byte-order mark never worked with 1.2 (it made the first header
        // invalid); skipping it is harmless.
        let text = text.strip_prefix('\u{feff}').unwrap_or(text);
        for (index, line) in lines(text).enumerate() {
            let line_no = index + 1;
            let section_name = |ini: &Ini, current: Option<Option<usize>>| -> Option<String> {
                current.map(|idx| ini.section_at(idx).name.clone())
            };
            match shape(line) {
                LineShape::Skip => {}
                LineShape::Indented(value) if current.is_some() && current_key.is_some() => {
                    let (Some(idx), Some(key)) = (current, current_key.as_deref()) else {
                        continue;
                    };
                    if value.starts_with('#') || value.starts_with(';') {
                        warnings.push(Warning {
                            location: Location::new(
                                file,
                                Some(line_no),
                                Some(&ini.section_at(idx).name),
                                None,
                            ),
                            kind: WarningKind::IndentedComment {
                                key: key.to_ascii_uppercase(),
                            },
                        });
                    }
                    if let Some(entry) = ini.section_at_mut(idx).entry_mut(key) {
                        entry.raw.push('\n');
                        entry.raw.push_str(value);
                        entry.continuation_lines.push(line_no);
                    }
                }
                LineShape::Header(name) => {
                    current = Some(ini.open_section(name, line_no));
                    current_key = None;
                }
                LineShape::Option { key, value } if current.is_some() => {
                    let Some(idx) = current else { continue };
                    let section = ini.section_at_mut(idx);
                    match section.entry_mut(&key) {
                        Some(entry) => {
                            let first_line = entry.line;
                            entry.raw = value;
                            entry.line = line_no;
                            entry.continuation_lines.clear();
                            warnings.push(Warning {
                                location: Location::new(
                                    file,
                                    Some(line_no),
                                    Some(&section.name),
                                    Some(&key),
                                ),
                                kind: WarningKind::RepeatedKey { first_line },
                            });
                        }
                        None => section.entries.push(Entry {
                            key: key.clone(),
                            raw: value,
                            line: line_no,
                            continuation_lines: Vec::new(),
                        }),
                    }
                    current_key = Some(key);
                }
                LineShape::Indented(_) | LineShape::Option { .. } | LineShape::Invalid
                    if current.is_none() =>
                {
                    // Python raises MissingSectionHeaderError at once.
                    problems.push(Problem {
                        location: Location::new(file, Some(line_no), None, None),
                        kind: ProblemKind::NoSectionHeader {
                            line: line.to_owned(),
                        },
                    });
                    return Err(problems);
                }
                LineShape::Indented(_) | LineShape::Option { .. } | LineShape::Invalid => {
                    problems.push(Problem {
                        location: Location::new(
                            file,
                            Some(line_no),
                            section_name(&ini, current).as_deref(),
                            None,
                        ),
                        kind: ProblemKind::Syntax {
                            line: line.to_owned(),
                        },
                    });
                }
            }
        }
        if problems.is_empty() {
            Ok((ini, warnings))
        } else {
            Err(problems)
        }
    }

    fn open_section(&mut self, name: &str, line_no: usize) -> Option<usize> {
        if name == DEFAULT_SECTION {
            self.defaults.header_line.get_or_insert(line_no);
            return None;
        }
        if let Some(idx) = self
            .sections
            .iter()
            .position(|section| section.name == name)
        {
            return Some(idx);
        }
        self.sections.push(Section::new(name, Some(line_no)));
        Some(self.sections.len() - 1)
    }

    fn section_at(&self, idx: Option<usize>) -> &Section {
        match idx.and_then(|idx| self.sections.get(idx)) {
            Some(section) => section,
            None => &self.defaults,
        }
    }

    fn section_at_mut(&mut self, idx: Option<usize>) -> &mut Section {
        match idx {
            Some(idx) if idx < self.sections.len() => &mut self.sections[idx],
            _ => &mut self.defaults,
        }
    }

    /// The file this was read from.
    pub(crate) fn file(&self) -> &Path {
        &self.file
    }

    /// The sections other than `[DEFAULT]`, in order of first appearance.
    pub(crate) fn sections(&self) -> &[Section] {
        &self.sections
    }

    /// A section other than `[DEFAULT]` (Python's `has_section` is false for it too).
    pub(crate) fn section(&self, name: &str) -> Option<&Section> {
        self.sections.iter().find(|section| section.name == name)
    }

    /// `get(section, key)`: the section's value or `[DEFAULT]`'s, interpolated.
    /// `Ok(None)` when the key (or the section) is absent.
    pub(crate) fn get(&self, section: &str, key: &str) -> Result<Option<Value>, Box<Problem>> {
        let key = key.to_ascii_lowercase();
        let key = key.as_str();
        let Some(found) = self.section(section) else {
            return Ok(None);
        };
        let (entry, from_defaults) = match found.entry(key) {
            Some(entry) => (entry, false),
            None => match self.defaults.entry(key) {
                Some(entry) => (entry, true),
                None => return Ok(None),
            },
        };
        self.value(found, entry, from_defaults).map(Some)
    }

    /// `items(section)`: `[DEFAULT]`'s keys first (a key the section overrides
    /// keeps its place), then the section's own, all interpolated. Every
    /// interpolation error is reported.
    pub(crate) fn items(&self, section: &Section) -> Result<Vec<Value>, Vec<Problem>> {
        let mut values = Vec::new();
        let mut problems = Vec::new();
        let defaults =
            self.defaults
                .entries
                .iter()
                .map(|default| match section.entry(&default.key) {
                    Some(own) => (own, false),
                    None => (default, true),
                });
        let own = section
            .entries
            .iter()
            .filter(|entry| self.defaults.entry(&entry.key).is_none())
            .map(|entry| (entry, false));
        for (entry, from_defaults) in defaults.chain(own) {
            match self.value(section, entry, from_defaults) {
                Ok(value) => values.push(value),
                Err(problem) => problems.push(*problem),
            }
        }
        if problems.is_empty() {
            Ok(values)
        } else {
            Err(problems)
        }
    }

    fn value(
        &self,
        section: &Section,
        entry: &Entry,
        from_defaults: bool,
    ) -> Result<Value, Box<Problem>> {
        let lookup = |name: &str| -> Option<&str> {
            // `%(__name__)s` is the section's name: Python keeps it among the options.
            if name == "__name__" {
                return Some(&section.name);
            }
            section
                .entry(name)
                .or_else(|| self.defaults.entry(name))
                .map(|entry| entry.raw.as_str())
        };
        match interpolate(&entry.raw, lookup) {
            Ok(text) => Ok(Value {
                key: entry.key.clone(),
                text,
                line: entry.line,
                continuation_lines: entry.continuation_lines.clone(),
                from_defaults,
            }),
            Err(expected) => Err(Box::new(Problem {
                location: Location::new(
                    &self.file,
                    Some(entry.line),
                    Some(&section.name),
                    Some(&entry.key),
                ),
                kind: ProblemKind::Invalid {
                    expected,
                    got: shown_value(&entry.key, &entry.raw),
                },
            })),
        }
    }
}

/// Python 2 `ConfigParser._interpolate`: while the value contains `%(`, one
/// round of `%` formatting against the section's raw values (`%%` -> `%`,
/// `%(name)s` -> the raw value of `name`, lower-cased), at most 10 rounds.
/// A value without `%(` is left alone, whatever other `%` it holds.
///
/// Because substituted text is expanded again in the next round, a literal
/// `%(` cannot be written (`%%(x)s` becomes `%(x)s`, then x's value), exactly
/// as in 1.2. The error is the "expected ..." half of a message.
/// The longest value interpolation may produce; real values are paths and URLs.
const MAX_INTERPOLATED_LEN: usize = 64 * 1024;

pub(crate) fn interpolate<'a>(
    raw: &str,
    lookup: impl Fn(&str) -> Option<&'a str>,
) -> Result<String, String> {
    let mut value = raw.to_owned();
    for _ in 0..MAX_INTERPOLATION_DEPTH {
        if !value.contains("%(") {
            return Ok(value);
        }
        value = interpolation_round(&value, &lookup)?;
    }
    if value.contains("%(") {
        return Err(format!(
            "%(name)s references that end within {MAX_INTERPOLATION_DEPTH} levels"
        ));
    }
    Ok(value)
}

fn interpolation_round<'a>(
    value: &str,
    lookup: &impl Fn(&str) -> Option<&'a str>,
) -> Result<String, String> {
    let mut out = String::with_capacity(value.len());
    let mut rest = value;
    while let Some(pos) = rest.find('%') {
        out.push_str(&rest[..pos]);
        let after = &rest[pos + 1..];
        if let Some(tail) = after.strip_prefix('%') {
            out.push('%');
            rest = tail;
        } else if let Some(inner) = after.strip_prefix('(')
            && let Some(close) = inner.find(')')
            && inner[close + 1..].starts_with('s')
        {
            let name = inner[..close].to_ascii_lowercase();
            match lookup(&name) {
                // A value naming itself several times grows geometrically with each round
                // (found by fuzzing: 300 bytes exhausted 2 GiB); Python died the same way.
                Some(text) if out.len() + text.len() > MAX_INTERPOLATED_LEN => {
                    return Err(format!(
                        "%(name)s references that expand to at most {MAX_INTERPOLATED_LEN} bytes"
                    ));
                }
                Some(text) => out.push_str(text),
                None => {
                    return Err(format!(
                        "%({name})s to name a key of this section or of [DEFAULT]"
                    ));
                }
            }
            rest = &inner[close + 2..];
        } else {
            return Err("%(name)s or %% after each % in a value containing %(".to_owned());
        }
    }
    out.push_str(rest);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Parses `text` and renders every section's `items()` (or the problems) as lines to compare.
    fn render(text: &str) -> String {
        let file = Path::new("director.cfg");
        let (ini, warnings) = match Ini::parse(file, text) {
            Ok(parsed) => parsed,
            Err(problems) => {
                return problems
                    .iter()
                    .map(|problem| format!("error {problem}\n"))
                    .collect();
            }
        };
        let mut out = String::new();
        for section in ini.sections() {
            out.push_str(&format!("[{}]@{:?}\n", section.name, section.header_line));
            match ini.items(section) {
                Ok(values) => {
                    for value in values {
                        let origin = if value.from_defaults {
                            " (default)"
                        } else {
                            ""
                        };
                        out.push_str(&format!(
                            "{}={:?}@{}{origin}\n",
                            value.key, value.text, value.line
                        ));
                    }
                }
                Err(problems) => {
                    for problem in problems {
                        out.push_str(&format!("error {problem}\n"));
                    }
                }
            }
        }
        for warning in warnings {
            out.push_str(&format!("warning {warning}\n"));
        }
        out
    }

    fn check(text: &str, expect: &str) {
        let got = render(text);
        assert_eq!(
            got, expect,
            "input:\n{text}\n--- got:\n{got}--- expected:\n{expect}"
        );
    }

    #[test]
    fn reader_cases() {
        // (input, expected rendering)
        let cases: &[(&str, &str)] = &[
            // `=` or `:`, whitespace stripped, case-insensitive keys, empty values.
            (
                "[s]\nKey = v\nOther: w x \nEMPTY =\nQuoted = \"\"\n",
                "[s]@Some(1)\nkey=\"v\"@2\nother=\"w x\"@3\nempty=\"\"@4\nquoted=\"\"@5\n",
            ),
            // The first ':' or '=' ends the key.
            (
                "[s]\nURL = http://h:4567\nA: b = c\n",
                "[s]@Some(1)\nurl=\"http://h:4567\"@2\na=\"b = c\"@3\n",
            ),
            // Comments in the first column; `rem` lines; `#` never inline.
            (
                "# c\n; c\n[s]\n#k = 1\nREM a remark\nremark = kept\nk = a # b\n",
                "[s]@Some(3)\nremark=\"kept\"@6\nk=\"a # b\"@7\n",
            ),
            // Inline `;` only after whitespace, and only the first `;`.
            (
                "[s]\na = x ; c\nb = x;y ; c\nc = x\t;c\n",
                "[s]@Some(1)\na=\"x\"@2\nb=\"x;y ; c\"@3\nc=\"x\"@4\n",
            ),
            // A value starting with `;`: Python looks at the last character.
            (
                "[s]\na = ;x\nb = ;x \n",
                "[s]@Some(1)\na=\";x\"@2\nb=\"\"@3\n",
            ),
            // Continuation lines, blank lines between them, CRLF line ends.
            (
                "[s]\r\nnodes = a\r\n  b\r\n\r\n\tc\r\nnext = d\r\n",
                "[s]@Some(1)\nnodes=\"a\\nb\\nc\"@2\nnext=\"d\"@6\n",
            ),
            // An indented comment continues the value (with a warning).
            (
                "[s]\nk = v\n  # not a comment\n",
                "[s]@Some(1)\nk=\"v\\n# not a comment\"@2\nwarning director.cfg:3: [s]: this indented line continues the value of K; an indented # or ; does not start a comment\n",
            ),
            // Section names are case-sensitive and verbatim; text after `]` is ignored.
            (
                "[Iaas]\na = 1\n[iaas] # c\nb = 2\n",
                "[Iaas]@Some(1)\na=\"1\"@2\n[iaas]@Some(3)\nb=\"2\"@4\n",
            ),
            // Repeated keys: the last wins, in the first one's place; reopened sections merge.
            (
                "[s]\na = 1\nb = 2\n[t]\n[s]\na = 3\n",
                "[s]@Some(1)\na=\"3\"@6\nb=\"2\"@3\n[t]@Some(4)\nwarning director.cfg:6: [s] A: repeated key: this value replaces the one on line 2\n",
            ),
            // [DEFAULT] keys come first in every section, overridden in place.
            (
                "[DEFAULT]\nd = 1\ne = 2\n[s]\nx = 3\ne = 4\n",
                "[s]@Some(4)\nd=\"1\"@2 (default)\ne=\"4\"@6\nx=\"3\"@5\n",
            ),
            // Interpolation from the section, from [DEFAULT], nested, case-insensitive names.
            (
                "[DEFAULT]\nroot = /etc/cps\ncerts = %(ROOT)s/certs\n[s]\nroot = /srv\nk = %(certs)s\npct = %(root)s 100%%\n",
                "[s]@Some(4)\nroot=\"/srv\"@5\ncerts=\"/srv/certs\"@3 (default)\nk=\"/srv/certs\"@6\npct=\"/srv 100%\"@7\n",
            ),
            // Without `%(`, any `%` is literal; `%(__name__)s` is the section.
            (
                "[s]\ncost = $ 1.00/600 50%\nme = %(__name__)s\n",
                "[s]@Some(1)\ncost=\"$ 1.00/600 50%\"@2\nme=\"s\"@3\n",
            ),
            // Interpolation errors name the key and the line.
            (
                "[s]\na = %(nope)s\nb = %(a)d %(a)s\nc = %(c)s\n",
                "[s]@Some(1)\nerror director.cfg:2: [s] A: expected %(nope)s to name a key of this section or of [DEFAULT], got \"%(nope)s\"\nerror director.cfg:3: [s] B: expected %(name)s or %% after each % in a value containing %(, got \"%(a)d %(a)s\"\nerror director.cfg:4: [s] C: expected %(name)s references that end within 10 levels, got \"%(c)s\"\n",
            ),
            // Python re-expands what `%%(` produced.
            (
                "[s]\na = 1\nb = %%(a)s\n",
                "[s]@Some(1)\na=\"1\"@2\nb=\"1\"@3\n",
            ),
            // Syntax errors: every bad line; an option before any header stops at once.
            (
                "[s]\nno delimiter\n=v\n[]\n",
                "error director.cfg:2: [s]: expected a [section] header, a KEY = value option, a comment or an indented continuation, got \"no delimiter\"\nerror director.cfg:3: [s]: expected a [section] header, a KEY = value option, a comment or an indented continuation, got \"=v\"\nerror director.cfg:4: [s]: expected a [section] header, a KEY = value option, a comment or an indented continuation, got \"[]\"\n",
            ),
            (
                "# c\nk = v\n[s]\n",
                "error director.cfg:2: expected a [section] header before the first option, got \"k = v\"\n",
            ),
            // An indented line right after a header has no value to continue.
            (
                "[s]\n  x = 1\n",
                "error director.cfg:2: [s]: expected a [section] header, a KEY = value option, a comment or an indented continuation, got \"  x = 1\"\n",
            ),
            // Empty file, byte-order mark, no final newline.
            ("", ""),
            ("\u{feff}[s]\nk = v", "[s]@Some(1)\nk=\"v\"@2\n"),
        ];
        for (text, expect) in cases {
            check(text, expect);
        }
    }

    #[test]
    fn get_reads_defaults_and_reports_absence() {
        let (ini, _) =
            Ini::parse(Path::new("f.cfg"), "[DEFAULT]\nd = x\n[s]\nk = %(d)s\n").unwrap();
        let value = ini.get("s", "k").unwrap().unwrap();
        assert_eq!(
            (value.text.as_str(), value.line, value.from_defaults),
            ("x", 4, false)
        );
        let value = ini.get("s", "d").unwrap().unwrap();
        assert!(value.from_defaults);
        assert_eq!(ini.get("s", "missing").unwrap(), None);
        assert_eq!(ini.get("nosuch", "d").unwrap(), None);
        assert_eq!(ini.get(DEFAULT_SECTION, "d").unwrap(), None);
    }
}
