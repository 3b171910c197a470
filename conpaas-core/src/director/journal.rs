//! The deferred-charges journal: an append-only file in the director's data directory that
//! keeps each credit charge the database could not take before its manager is told it was
//! covered, so that a crash or a stop loses none (docs/operations.md, "Credit when the
//! database fails"). Sync file IO: the director calls it on a blocking thread.
//!
//! One record per line, each written with one `write` on a file opened `O_APPEND`, then
//! `fsync`ed:
//!
//! ```text
//! charge <id> <uid> <amount> <time, UTC, RFC 3339> <checksum>
//! applied <id> <checksum>
//! ```
//!
//! The checksum (FNV-1a 64, hexadecimal) covers the text before it, so a line cut short by a
//! crash or a full disk never passes for a record (and never applies a wrong amount); it is
//! skipped with a warning. Several processes may append to one journal (replicas sharing a
//! data directory): `O_APPEND` writes of one line do not interleave, and a record starts at the
//! last record word of its line, so a line glued to the torn end of another is still read.
//! Compaction (the applied records dropped) rewrites the file through a temporary file and a
//! rename, under an exclusive lock on `<journal>.lock` that appends hold shared.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::{File, OpenOptions};
use std::io::{Read as _, Write as _};
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Path, PathBuf};

use chrono::NaiveDateTime;

use crate::model::{ChargeId, Credit, UserId};
use crate::store::Charge;

/// The journal's file name in the data directory.
pub const CHARGE_JOURNAL_FILE: &str = "deferred-charges.journal";

const CHARGE_WORD: &str = "charge ";
const APPLIED_WORD: &str = "applied ";
const TIME_FORMAT: &str = "%Y-%m-%dT%H:%M:%S%.6fZ";

/// An append-only journal of deferred credit charges (see the module's documentation).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChargeJournal {
    path: PathBuf,
}

/// What a journal holds.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct JournalContents {
    /// The charges not yet marked applied, in the order they were written.
    pub pending: Vec<Charge>,
    /// How many charges are marked applied.
    pub applied: usize,
    /// Lines that are no record (cut short by a crash, damaged): skipped.
    pub skipped: usize,
}

impl ChargeJournal {
    /// The journal at `path` (created, mode 0600, at the first append).
    pub fn new(path: impl Into<PathBuf>) -> ChargeJournal {
        ChargeJournal { path: path.into() }
    }

    /// [`CHARGE_JOURNAL_FILE`] in `data_dir`.
    pub fn in_dir(data_dir: &Path) -> ChargeJournal {
        ChargeJournal::new(data_dir.join(CHARGE_JOURNAL_FILE))
    }

    /// Where it is.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn lock_path(&self) -> PathBuf {
        let mut name = self.path.as_os_str().to_owned();
        name.push(".lock");
        PathBuf::from(name)
    }

    /// Locks `<journal>.lock`: shared for appends, exclusive for compaction.
    fn lock(&self, exclusive: bool) -> std::io::Result<File> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(self.lock_path())?;
        if exclusive {
            file.lock()?;
        } else {
            file.lock_shared()?;
        }
        Ok(file)
    }

    /// Appends `text` (whole lines) with one `write`, then `fsync`s the file and its
    /// directory. A short write is an error: what was written is a torn line readers skip.
    fn append(&self, text: &str) -> std::io::Result<()> {
        let _lock = self.lock(false)?;
        let mut file = OpenOptions::new()
            .append(true)
            .create(true)
            .mode(0o600)
            .open(&self.path)?;
        let n_written = file.write(text.as_bytes())?;
        if n_written != text.len() {
            return Err(std::io::Error::new(
                std::io::ErrorKind::WriteZero,
                format!("short write: {n_written} of {} bytes", text.len()),
            ));
        }
        file.sync_data()?;
        sync_dir(&self.path)
    }

    /// Records `charge`, durably, before its manager is told it was covered.
    pub fn append_charge(&self, charge: &Charge) -> std::io::Result<()> {
        self.append(&charge_line(charge))
    }

    /// Marks these charges applied (one write for all).
    pub fn append_applied<'a>(
        &self,
        ids: impl IntoIterator<Item = &'a ChargeId>,
    ) -> std::io::Result<()> {
        let text: String = ids.into_iter().map(applied_line).collect();
        if text.is_empty() {
            return Ok(());
        }
        self.append(&text)
    }

    /// Reads the journal (an absent file is an empty journal). Damaged lines are counted in
    /// [`JournalContents::skipped`] and logged.
    pub fn read(&self) -> std::io::Result<JournalContents> {
        let mut text = Vec::new();
        match File::open(&self.path) {
            Ok(mut file) => {
                file.read_to_end(&mut text)?;
            }
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
            Err(error) => return Err(error),
        }
        Ok(parse(&String::from_utf8_lossy(&text), &self.path))
    }

    /// Rewrites the journal with only its pending charges (temporary file, `fsync`, rename),
    /// under the exclusive lock, so no append made meanwhile is lost. Answers what it kept.
    pub fn compact(&self) -> std::io::Result<JournalContents> {
        let _lock = self.lock(true)?;
        let contents = self.read()?;
        if contents.applied == 0 && contents.skipped == 0 {
            return Ok(contents);
        }
        let text: String = contents.pending.iter().map(charge_line).collect();
        // Owned as the journal was: root running a command that compacts it must not take it
        // from the director's user.
        crate::data_files::replace(
            &self.path,
            text.as_bytes(),
            crate::data_files::Mode::Private,
        )?;
        Ok(JournalContents {
            pending: contents.pending,
            applied: 0,
            skipped: 0,
        })
    }
}

/// `fsync`s the directory holding `path`, so that a new file's entry (or a rename) survives
/// a crash.
fn sync_dir(path: &Path) -> std::io::Result<()> {
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    File::open(dir)?.sync_all()
}

/// FNV-1a, 64 bits: detects a torn or damaged line (not an attacker: the file is 0600).
fn checksum(text: &str) -> u64 {
    text.bytes().fold(0xcbf2_9ce4_8422_2325, |hash, byte| {
        (hash ^ u64::from(byte)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

fn sealed(body: String) -> String {
    let sum = checksum(&body);
    format!("{body} {sum:016x}\n")
}

fn charge_line(charge: &Charge) -> String {
    sealed(format!(
        "charge {} {} {} {}",
        charge.id,
        charge.uid,
        charge.amount,
        charge.at.format(TIME_FORMAT)
    ))
}

fn applied_line(id: &ChargeId) -> String {
    sealed(format!("applied {id}"))
}

enum Record {
    Charge(Charge),
    Applied(ChargeId),
}

/// The record of one line: from its last record word (a line may be glued to the torn end of
/// another process's line), checked against its checksum.
fn record(line: &str) -> Option<Record> {
    let start = [CHARGE_WORD, APPLIED_WORD]
        .iter()
        .filter_map(|word| line.rfind(word))
        .max()?;
    let line = &line[start..];
    let (body, sum) = line.rsplit_once(' ')?;
    if sum.len() != 16 || u64::from_str_radix(sum, 16).ok()? != checksum(body) {
        return None;
    }
    let fields: Vec<&str> = body.split(' ').collect();
    match fields.as_slice() {
        ["charge", id, uid, amount, at] => {
            let amount: i64 = amount.parse().ok()?;
            if amount < 0 {
                return None;
            }
            Some(Record::Charge(Charge {
                id: id.parse().ok()?,
                uid: UserId(uid.parse().ok()?),
                amount: Credit(amount),
                at: NaiveDateTime::parse_from_str(at, TIME_FORMAT).ok()?,
            }))
        }
        ["applied", id] => Some(Record::Applied(id.parse().ok()?)),
        _ => None,
    }
}

fn parse(text: &str, path: &Path) -> JournalContents {
    let mut charges: BTreeMap<ChargeId, (usize, Charge)> = BTreeMap::new();
    let mut applied: BTreeSet<ChargeId> = BTreeSet::new();
    let mut skipped = 0;
    for (line_idx, line) in text.split('\n').enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        match record(line) {
            Some(Record::Charge(charge)) => {
                charges
                    .entry(charge.id.clone())
                    .or_insert((line_idx, charge));
            }
            Some(Record::Applied(id)) => {
                applied.insert(id);
            }
            None => {
                skipped += 1;
                // The line is not logged: a damaged file could hold anything.
                tracing::warn!(journal = %path.display(), line = line_idx + 1, "skipping a damaged line of the deferred-charges journal (cut short by a crash or a full disk?)");
            }
        }
    }
    let n_applied = charges.keys().filter(|id| applied.contains(*id)).count();
    let mut pending: Vec<(usize, Charge)> = charges
        .into_iter()
        .filter(|(id, _)| !applied.contains(id))
        .map(|(_, entry)| entry)
        .collect();
    pending.sort_by_key(|(line_idx, _)| *line_idx);
    JournalContents {
        pending: pending.into_iter().map(|(_, charge)| charge).collect(),
        applied: n_applied,
        skipped,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn charge(amount: i64) -> Charge {
        Charge::new(UserId(3), Credit(amount))
    }

    #[test]
    fn records_round_trip_and_applied_ones_are_not_pending() {
        let dir = tempfile::tempdir().unwrap();
        let journal = ChargeJournal::in_dir(dir.path());
        let (a, b) = (charge(4), charge(125));
        journal.append_charge(&a).unwrap();
        journal.append_charge(&b).unwrap();
        journal.append_applied([&a.id]).unwrap();
        let read = journal.read().unwrap();
        assert_eq!(read.pending, vec![b.clone()]);
        assert_eq!((read.applied, read.skipped), (1, 0));
        let mode = std::os::unix::fs::PermissionsExt::mode(
            &std::fs::metadata(journal.path()).unwrap().permissions(),
        );
        assert_eq!(mode & 0o777, 0o600);
        let kept = journal.compact().unwrap();
        assert_eq!(kept.pending, vec![b.clone()]);
        assert_eq!(journal.read().unwrap().applied, 0);
        assert_eq!(journal.read().unwrap().pending, vec![b]);
    }

    #[test]
    fn a_torn_line_is_skipped_and_never_applies_a_wrong_amount() {
        let dir = tempfile::tempdir().unwrap();
        let journal = ChargeJournal::in_dir(dir.path());
        let whole = charge(125);
        let line = charge_line(&whole);
        // Every prefix of a record: none is a record (in particular not `... 12`).
        for end in 0..line.len() - 1 {
            assert!(record(&line[..end]).is_none(), "{:?}", &line[..end]);
        }
        // A torn line, then another process's whole line glued to it: the second is read.
        let next = charge(7);
        let cut = &line[..line.len() / 2];
        std::fs::write(journal.path(), format!("{cut}{}", charge_line(&next))).unwrap();
        let read = journal.read().unwrap();
        assert_eq!(read.pending, vec![next]);
        assert_eq!(read.skipped, 0);
        // A torn last line alone is skipped.
        std::fs::write(journal.path(), cut).unwrap();
        let read = journal.read().unwrap();
        assert!(read.pending.is_empty());
        assert_eq!(read.skipped, 1);
    }

    #[test]
    fn a_damaged_amount_fails_the_checksum() {
        let line = charge_line(&charge(125));
        let damaged = line.replacen(" 125 ", " 126 ", 1);
        assert!(record(&damaged).is_none());
        assert!(record(line.trim_end()).is_some());
    }
}
