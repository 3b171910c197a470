//! What a name may hold, and the key user names are compared by: so that `Alice`, `ALICE`,
//! full-width `ａｌｉｃｅ` and the NFD spelling of `alíce` cannot be registered beside `alice`
//! and `alíce` (issue 15). Existing accounts keep their names as stored; logins compare names
//! exactly, as 1.2 did.

use unicode_normalization::UnicodeNormalization as _;
use unicode_properties::{GeneralCategory, UnicodeGeneralCategory as _};

/// The most characters of a user name: the `CN` of the user's certificate holds it, and a CN
/// holds at most 64 (RFC 5280 `ub-common-name`; the column's `VARCHAR(80)` is wider).
pub const MAX_USERNAME_CHARS: usize = 64;
/// The most bytes of a user name: [`MAX_USERNAME_CHARS`] characters of at most 4 bytes each
/// (UTF-8).
pub const MAX_USERNAME_BYTES: usize = 4 * MAX_USERNAME_CHARS;

/// Whether `name` is short enough to name an account: at most [`MAX_USERNAME_CHARS`]
/// characters. A longer one names no account (none can be created), so a login with it is
/// refused before it costs anything (issue 22: 1 MB names were kept by the throttle and
/// logged whole). The bytes are checked first, so a megabyte is refused without reading it.
pub fn fits_username(name: &str) -> bool {
    name.len() <= MAX_USERNAME_BYTES && name.chars().count() <= MAX_USERNAME_CHARS
}

/// The most characters of an application or service name (`VARCHAR(256)`).
pub const MAX_NAME_CHARS: usize = 256;
/// The most characters of a first or last name or an affiliation (`VARCHAR(256)`).
pub const MAX_TEXT_CHARS: usize = 256;

/// The key two user names collide by: NFKC, then case folded (upper- then lowercased, which
/// folds `ß` to `ss` and `ς` to `σ` as Unicode's default case folding does), then NFKC again
/// (Unicode's "compatibility caseless match", D146, to within Rust's case mappings).
pub fn username_key(name: &str) -> String {
    let compatible: String = name.nfkc().collect();
    let folded = compatible.to_uppercase().to_lowercase();
    folded.nfkc().collect()
}

/// Why a name is refused, in words for the user (the field is named by the caller).
pub fn name_problem(name: &str, max_chars: usize) -> Option<String> {
    let n_chars = name.chars().count();
    if n_chars == 0 || n_chars > max_chars {
        return Some(format!("expected 1 to {max_chars} characters"));
    }
    if name.starts_with(char::is_whitespace) || name.ends_with(char::is_whitespace) {
        return Some("expected no leading or trailing spaces".to_owned());
    }
    if name.chars().any(is_hidden) {
        return Some("expected no control or invisible format characters".to_owned());
    }
    None
}

/// Control characters (Cc: NUL, ESC, CR, LF...), format characters (Cf: zero-width spaces
/// and joiners, bidirectional overrides, soft hyphens...), and the line and paragraph
/// separators.
fn is_hidden(c: char) -> bool {
    matches!(
        c.general_category(),
        GeneralCategory::Control
            | GeneralCategory::Format
            | GeneralCategory::LineSeparator
            | GeneralCategory::ParagraphSeparator
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_names_fit_in_64_characters_of_any_width() {
        assert!(fits_username(&"a".repeat(64)));
        assert!(fits_username(&"\u{10348}".repeat(64)));
        assert!(!fits_username(&"a".repeat(65)));
        assert!(!fits_username(&"\u{e9}".repeat(65)));
        assert!(!fits_username(&"a".repeat(1 << 20)));
    }

    #[test]
    fn look_alikes_share_a_key() {
        let nfc = "al\u{ed}ce";
        let nfd = "ali\u{301}ce";
        assert_ne!(nfc, nfd);
        for (a, b) in [
            ("alice", "Alice"),
            ("alice", "ALICE"),
            ("alice", "\u{ff41}\u{ff4c}\u{ff49}\u{ff43}\u{ff45}"),
            (nfc, nfd),
            (nfc, "AL\u{cd}CE"),
            ("strasse", "Stra\u{df}e"),
            ("\u{3c3}", "\u{3c2}"),
            ("file", "\u{fb01}le"),
        ] {
            assert_eq!(username_key(a), username_key(b), "{a:?} vs {b:?}");
        }
        for (a, b) in [("alice", "alíce"), ("alice", "alice2"), ("alice", "аlice")] {
            assert_ne!(username_key(a), username_key(b), "{a:?} vs {b:?}");
        }
    }

    #[test]
    fn hidden_characters_and_surrounding_spaces_are_refused() {
        for bad in [
            "",
            " alice",
            "alice ",
            "\talice",
            "ali\u{0}ce",
            "ali\u{1b}ce",
            "ali\r\nce",
            "ali\u{200b}ce",
            "ali\u{200d}ce",
            "ali\u{feff}ce",
            "ali\u{202e}ce",
            "ali\u{ad}ce",
            "ali\u{2028}ce",
        ] {
            assert!(name_problem(bad, 64).is_some(), "{bad:?}");
        }
        for good in [
            "alice",
            "New Application",
            "al\u{ed}ce",
            "Zoë's app",
            "日本",
        ] {
            assert_eq!(name_problem(good, 64), None, "{good:?}");
        }
        assert_eq!(name_problem(&"x".repeat(64), 64), None);
        assert!(name_problem(&"x".repeat(65), 64).is_some());
        assert_eq!(
            name_problem(&"é".repeat(64), 64),
            None,
            "characters, not bytes"
        );
    }
}
