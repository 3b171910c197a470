//! Password hashes: argon2id PHC strings, and the unsalted MD5 hex of ConPaaS 1.2
//! accepted once so an adopted account can log in and be upgraded.
//!
//! Argon2 is deliberately slow: call these from `Store::run` (a blocking thread),
//! never on the async runtime.

use std::sync::OnceLock;

use argon2::Argon2;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use md5::{Digest, Md5};
use subtle::ConstantTimeEq;

use super::Error;

/// The lowercase hexadecimal MD5 of the UTF-8 bytes of `password`.
///
/// The PHP frontend checks `/login`'s answer by comparing its `password` member
/// with the MD5 of what the user typed, so the wire carries this digest of the
/// password the caller *just sent*, never the stored hash.
pub fn md5_hex(password: &str) -> String {
    hex::encode(Md5::digest(password.as_bytes()))
}

/// Hashes `password` with argon2id (default parameters, random salt) into a PHC string.
pub fn hash_password(password: &str) -> Result<String, Error> {
    let salt = SaltString::generate(&mut rand::rngs::OsRng);
    let hash = Argon2::default().hash_password(password.as_bytes(), &salt)?;
    Ok(hash.to_string())
}

/// Whether a stored hash is a ConPaaS 1.2 one: exactly 32 lowercase hex digits.
pub fn is_legacy_md5(stored: &str) -> bool {
    stored.len() == 32
        && stored
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// Whether `stored` is a hash this module can verify: a PHC string (argon2) or a
/// 1.2 MD5 digest. Guards against storing a plaintext password as a "hash".
pub fn is_known_hash(stored: &str) -> bool {
    is_legacy_md5(stored) || PasswordHash::new(stored).is_ok()
}

/// The outcome of checking a password against a stored hash.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Verification {
    /// The password does not match (or the stored hash is unreadable).
    Mismatch,
    /// The password matches an argon2 hash.
    Match,
    /// The password matches a 1.2 MD5 hash, which should now be replaced.
    MatchLegacy,
}

/// Checks `password` against a stored hash (argon2 PHC string or 1.2 MD5 hex).
pub fn verify_password(stored: &str, password: &str) -> Verification {
    if is_legacy_md5(stored) {
        // Constant time, so the comparison does not tell how many leading digits matched.
        let given = md5_hex(password);
        return if bool::from(given.as_bytes().ct_eq(stored.as_bytes())) {
            Verification::MatchLegacy
        } else {
            Verification::Mismatch
        };
    }
    let Ok(parsed) = PasswordHash::new(stored) else {
        // Neither format: nobody can log in with it. The hash itself is never logged.
        tracing::warn!("a stored password hash is in no known format");
        return Verification::Mismatch;
    };
    match Argon2::default().verify_password(password.as_bytes(), &parsed) {
        Ok(()) => Verification::Match,
        Err(_) => Verification::Mismatch,
    }
}

/// Spends about the time of a real verification, so that an unknown user name is
/// not told apart from a wrong password by the answer's delay.
pub(crate) fn waste_verification(password: &str) {
    static DUMMY: OnceLock<Option<String>> = OnceLock::new();
    let dummy = DUMMY.get_or_init(|| hash_password("conpaas-dummy-password").ok());
    if let Some(dummy) = dummy {
        let _ = verify_password(dummy, password);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn md5_matches_python_hexdigest() {
        // hashlib.md5("secret".encode("utf-8")).hexdigest()
        assert_eq!(md5_hex("secret"), "5ebe2294ecd0e0f08eab7690d2a6ee69");
        assert_eq!(md5_hex(""), "d41d8cd98f00b204e9800998ecf8427e");
        // Non-ASCII passwords are hashed as UTF-8, as 1.2 did.
        assert_eq!(md5_hex("é"), hex::encode(Md5::digest("é".as_bytes())));
    }

    #[test]
    fn legacy_detection() {
        let check =
            |stored: &str, expect: bool| assert_eq!(is_legacy_md5(stored), expect, "{stored}");
        check("5ebe2294ecd0e0f08eab7690d2a6ee69", true);
        check("5EBE2294ECD0E0F08EAB7690D2A6EE69", false);
        check("5ebe2294ecd0e0f08eab7690d2a6ee6", false);
        check("5ebe2294ecd0e0f08eab7690d2a6ee69a", false);
        check("$argon2id$v=19$m=19456,t=2,p=1$abc$def", false);
        check("", false);
    }

    #[test]
    fn argon2_round_trip() {
        let stored = hash_password("pässword").unwrap();
        assert!(stored.starts_with("$argon2id$"));
        assert_eq!(verify_password(&stored, "pässword"), Verification::Match);
        assert_eq!(verify_password(&stored, "password"), Verification::Mismatch);
        // A random salt: hashing twice gives two strings.
        assert_ne!(stored, hash_password("pässword").unwrap());
    }

    #[test]
    fn legacy_md5() {
        let stored = md5_hex("secret");
        assert_eq!(
            verify_password(&stored, "secret"),
            Verification::MatchLegacy
        );
        assert_eq!(verify_password(&stored, "Secret"), Verification::Mismatch);
    }

    #[test]
    fn known_hashes() {
        assert!(is_known_hash(&md5_hex("x")));
        assert!(is_known_hash(&hash_password("x").unwrap()));
        assert!(!is_known_hash("hunter2"));
        assert!(!is_known_hash(""));
    }

    #[test]
    fn unknown_format_never_matches() {
        assert_eq!(
            verify_password("plaintext", "plaintext"),
            Verification::Mismatch
        );
        assert_eq!(verify_password("", ""), Verification::Mismatch);
    }
}
