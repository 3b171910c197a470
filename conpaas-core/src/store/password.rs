//! Password hashes: argon2id PHC strings, and the unsalted MD5 hex of ConPaaS 1.2
//! accepted once so an adopted account can log in and be upgraded.
//!
//! Argon2 is deliberately slow and takes 19 MiB of memory per hash: the director runs it on
//! its [`HashingPool`](super::HashingPool); synchronous callers (the command line) call these
//! functions directly, never on the async runtime. Every hash here works in an
//! [`Argon2Memory`], which a pool worker keeps between hashes and frees when idle.

use std::sync::OnceLock;

use argon2::password_hash::{Output, ParamsString, PasswordHash, SaltString};
use argon2::{Algorithm, Argon2, Block, Params, Version};
use md5::{Digest, Md5};
use subtle::ConstantTimeEq;

use super::Error;

/// The smallest allocation made for argon2's blocks, in blocks of 1 KiB: 33 MiB, above glibc's
/// largest dynamic mmap threshold (32 MiB on 64-bit), so that glibc always maps the buffer on
/// its own and unmaps it when freed. A 19 MiB buffer would instead raise the threshold to
/// 19 MiB, be carved from a thread's arena next time and stay resident after it is freed
/// (issue 10: 1.3 GB after a burst of logins). Only the blocks a hash uses are ever touched,
/// so the rest of the reservation costs address space, not memory.
const MIN_RESERVED_BLOCKS: usize = 33 * 1024;

/// The working memory of argon2 (`m_cost` blocks of 1 KiB), reused from hash to hash.
#[derive(Default)]
pub struct Argon2Memory {
    blocks: Vec<Block>,
}

impl std::fmt::Debug for Argon2Memory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Argon2Memory")
            .field("n_blocks", &self.blocks.len())
            .finish()
    }
}

impl Argon2Memory {
    /// No memory yet: the first hash allocates it.
    pub fn new() -> Self {
        Argon2Memory::default()
    }

    /// At least `n_blocks` blocks. Their previous contents do not matter: argon2 writes every
    /// block before it reads it.
    fn blocks(&mut self, n_blocks: usize) -> Result<&mut [Block], Error> {
        if self.blocks.len() < n_blocks {
            // Free the old buffer before mapping a bigger one.
            self.blocks = Vec::new();
            let mut blocks = Vec::new();
            blocks
                .try_reserve_exact(n_blocks.max(MIN_RESERVED_BLOCKS))
                .map_err(|_| Error::HashingMemory)?;
            blocks.resize(n_blocks, Block::default());
            self.blocks = blocks;
        }
        Ok(&mut self.blocks[..n_blocks])
    }

    /// Whether memory is held.
    pub fn is_allocated(&self) -> bool {
        !self.blocks.is_empty()
    }

    /// Gives the memory back (to the system, see [`MIN_RESERVED_BLOCKS`]).
    pub fn release(&mut self) {
        self.blocks = Vec::new();
    }
}

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
    hash_password_with(&mut Argon2Memory::new(), password)
}

/// [`hash_password`] in `memory`.
pub fn hash_password_with(memory: &mut Argon2Memory, password: &str) -> Result<String, Error> {
    let salt = SaltString::generate(&mut rand::rngs::OsRng);
    let mut salt_bytes = [0u8; 64];
    let salt_bytes = salt.decode_b64(&mut salt_bytes)?;
    let params = Params::DEFAULT;
    let mut out = [0u8; Params::DEFAULT_OUTPUT_LEN];
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params.clone())
        .hash_password_into_with_memory(
            password.as_bytes(),
            salt_bytes,
            &mut out,
            memory.blocks(params.block_count())?,
        )
        .map_err(argon2::password_hash::Error::from)?;
    let phc = PasswordHash {
        algorithm: Algorithm::Argon2id.ident(),
        version: Some(Version::V0x13.into()),
        params: ParamsString::try_from(&params)?,
        salt: Some(salt.as_salt()),
        hash: Some(Output::new(&out)?),
    };
    Ok(phc.to_string())
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
    verify_password_with(&mut Argon2Memory::new(), stored, password)
}

/// [`verify_password`] in `memory`.
pub fn verify_password_with(
    memory: &mut Argon2Memory,
    stored: &str,
    password: &str,
) -> Verification {
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
    match argon2_matches(memory, &parsed, password) {
        Ok(true) => Verification::Match,
        Ok(false) => Verification::Mismatch,
        Err(_) => {
            tracing::warn!("a stored password hash has unusable argon2 parameters");
            Verification::Mismatch
        }
    }
}

/// What `argon2::PasswordVerifier` does, with the caller's memory instead of a fresh
/// allocation.
fn argon2_matches(
    memory: &mut Argon2Memory,
    stored: &PasswordHash<'_>,
    password: &str,
) -> Result<bool, Error> {
    let (Some(salt), Some(expected)) = (&stored.salt, &stored.hash) else {
        return Ok(false);
    };
    let algorithm = Algorithm::try_from(stored.algorithm)?;
    let version = stored
        .version
        .map(Version::try_from)
        .transpose()
        .map_err(argon2::password_hash::Error::from)?
        .unwrap_or_default();
    let params = Params::try_from(stored)?;
    let mut salt_bytes = [0u8; 64];
    let salt_bytes = salt.decode_b64(&mut salt_bytes)?;
    let mut out = vec![0u8; expected.len()];
    Argon2::new(algorithm, version, params.clone())
        .hash_password_into_with_memory(
            password.as_bytes(),
            salt_bytes,
            &mut out,
            memory.blocks(params.block_count())?,
        )
        .map_err(argon2::password_hash::Error::from)?;
    // Constant time, as argon2's own verifier compares.
    Ok(bool::from(out.as_slice().ct_eq(expected.as_bytes())))
}

/// Spends about the time of a real verification, so that an unknown user name is
/// not told apart from a wrong password by the answer's delay.
pub(crate) fn waste_verification(password: &str) {
    waste_verification_with(&mut Argon2Memory::new(), password);
}

/// [`waste_verification`] in `memory`.
pub(crate) fn waste_verification_with(memory: &mut Argon2Memory, password: &str) {
    static DUMMY: OnceLock<Option<String>> = OnceLock::new();
    let dummy = DUMMY.get_or_init(|| hash_password_with(memory, "conpaas-dummy-password").ok());
    if let Some(dummy) = dummy {
        let _ = verify_password_with(memory, dummy, password);
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
    fn reused_memory_agrees_with_argon2s_own_functions() {
        use argon2::password_hash::{PasswordHasher, PasswordVerifier};
        let mut memory = Argon2Memory::new();
        assert!(!memory.is_allocated());
        // Ours verifies argon2's hash and argon2 verifies ours, in the same memory each time.
        let salt = SaltString::generate(&mut rand::rngs::OsRng);
        let theirs = Argon2::default()
            .hash_password(b"pw", &salt)
            .unwrap()
            .to_string();
        assert_eq!(
            verify_password_with(&mut memory, &theirs, "pw"),
            Verification::Match
        );
        assert!(memory.is_allocated());
        assert_eq!(
            verify_password_with(&mut memory, &theirs, "pW"),
            Verification::Mismatch
        );
        let ours = hash_password_with(&mut memory, "pw").unwrap();
        let parsed = PasswordHash::new(&ours).unwrap();
        assert!(Argon2::default().verify_password(b"pw", &parsed).is_ok());
        assert!(Argon2::default().verify_password(b"px", &parsed).is_err());
        // Other parameters (a bigger memory cost than the default) grow the memory.
        let bigger = Params::new(Params::DEFAULT_M_COST * 2, 1, 1, None).unwrap();
        let big_hash = Argon2::new(Algorithm::Argon2id, Version::V0x13, bigger)
            .hash_password(b"pw", &salt)
            .unwrap()
            .to_string();
        assert_eq!(
            verify_password_with(&mut memory, &big_hash, "pw"),
            Verification::Match
        );
        assert_eq!(
            verify_password_with(&mut memory, &ours, "pw"),
            Verification::Match
        );
        memory.release();
        assert!(!memory.is_allocated());
        assert_eq!(
            verify_password_with(&mut memory, &ours, "nope"),
            Verification::Mismatch
        );
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
