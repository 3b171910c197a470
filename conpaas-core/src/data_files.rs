//! Files the director writes into a data directory that may already exist (`director init`,
//! certificate renewals, the database file, the templates, the journal's compaction): written
//! atomically, and owned as the file they replace was, or as their directory is. Root renewing
//! a certificate of a director that runs as its own user must not take the key from that user.

use std::fs::{self, DirBuilder, File, Metadata, OpenOptions};
use std::io::{self, Write as _};
use std::os::unix::fs::{DirBuilderExt as _, MetadataExt as _, OpenOptionsExt as _};
use std::os::unix::fs::{PermissionsExt as _, fchown, lchown};
use std::path::{Path, PathBuf};

use rand::RngCore as _;

/// The mode of a file this module writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mode {
    /// A secret (a private key, the journal): 0600, whatever the file it replaces had.
    Private,
    /// Kept from the file it replaces; this mode (less the umask) for a new file.
    KeptOr(u32),
}

impl Mode {
    /// The mode a new file is created with (the umask applies).
    fn new_file(self) -> u32 {
        match self {
            Mode::Private => 0o600,
            Mode::KeptOr(mode) => mode,
        }
    }
}

/// Whose a file is.
#[derive(Debug, Clone, Copy)]
struct Owner {
    uid: u32,
    gid: u32,
}

impl Owner {
    fn of(metadata: &Metadata) -> Owner {
        Owner {
            uid: metadata.uid(),
            gid: metadata.gid(),
        }
    }

    /// The owner of the directory `path` is written into, whom a new file there goes to.
    fn of_directory_of(path: &Path) -> io::Result<Owner> {
        Ok(Owner::of(&fs::metadata(parent(path))?))
    }

    /// Gives `file` to this owner as far as this process may. Root may give it to anyone;
    /// another user keeps a file of their own (what they could write anyway), with the group
    /// when it is one of theirs. So failing is not an error.
    fn give(self, file: &File) {
        if fchown(file, Some(self.uid), Some(self.gid)).is_err() {
            let _ = fchown(file, None, Some(self.gid));
        }
    }

    /// [`give`](Self::give) for a directory just created at `path`. `lchown`: should the
    /// parent's owner have put a symbolic link in its place meanwhile, the link changes owner,
    /// never what it points to.
    fn give_path(self, path: &Path) {
        if lchown(path, Some(self.uid), Some(self.gid)).is_err() {
            let _ = lchown(path, None, Some(self.gid));
        }
    }
}

/// The directory holding `path` (`.` for a bare file name).
fn parent(path: &Path) -> &Path {
    match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    }
}

/// Replaces `path` by a file holding `contents`, atomically: a temporary file beside it is
/// written and synced, then renamed over it (a reader sees the old file or the new one, never
/// half of one), and the directory synced.
///
/// The new file gets the owner, group and mode of the regular file it replaces ([`Mode::Private`]:
/// 0600 whatever the old mode was), or, where there was none, the owner and group of the
/// directory and `mode`'s mode less the umask. A symbolic link at `path` is replaced, not
/// followed: its target's owner says nothing about the file.
pub(crate) fn replace(path: &Path, contents: &[u8], mode: Mode) -> io::Result<()> {
    let old = fs::symlink_metadata(path)
        .ok()
        .filter(|metadata| metadata.file_type().is_file());
    let (owner, kept_mode) = match &old {
        Some(old) => (
            Owner::of(old),
            Some(match mode {
                Mode::Private => 0o600,
                Mode::KeptOr(_) => old.mode() & 0o777,
            }),
        ),
        None => (Owner::of_directory_of(path)?, None),
    };
    let temp = temp_path(path)?;
    let written = (|| {
        // A replacement is 0600 until it has its owner and mode; a new file is made with its
        // mode (less the umask), as `open` makes any.
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(kept_mode.map_or(mode.new_file(), |_| 0o600))
            .open(&temp)?;
        owner.give(&file);
        if let Some(kept_mode) = kept_mode {
            file.set_permissions(fs::Permissions::from_mode(kept_mode))?;
        }
        file.write_all(contents)?;
        file.sync_all()?;
        fs::rename(&temp, path)
    })();
    if let Err(error) = written {
        // Best effort: the error that matters is the one returned.
        let _ = fs::remove_file(&temp);
        return Err(error);
    }
    sync_directory(parent(path));
    Ok(())
}

/// Creates `path`, which must not exist (an error of kind `AlreadyExists` otherwise, so that
/// two processes racing cannot both win), with `contents`, `mode`'s mode less the umask, and
/// the owner and group of its directory; removed again when writing fails, so no truncated
/// file is left.
pub(crate) fn create_new(path: &Path, contents: &[u8], mode: Mode) -> io::Result<()> {
    let mut file = create_file(path, mode)?;
    file.write_all(contents)
        .and_then(|()| file.sync_all())
        .inspect_err(|_| {
            let _ = fs::remove_file(path);
        })
}

/// Opens a new, empty file at `path` for writing (`AlreadyExists` when there is one), with
/// `mode`'s mode less the umask, given to the owner and group of its directory.
pub(crate) fn create_file(path: &Path, mode: Mode) -> io::Result<File> {
    let owner = Owner::of_directory_of(path)?;
    let file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode.new_file())
        .open(path)?;
    owner.give(&file);
    Ok(file)
}

/// Creates the directory `dir` and its missing parents with `mode` (less the umask), each new
/// one given to the owner and group of the directory it is made in; directories already there
/// keep their mode and owner.
pub(crate) fn create_dir_all(dir: &Path, mode: u32) -> io::Result<()> {
    // The missing directories, innermost first, and the owner of the first one there.
    let mut missing: Vec<&Path> = Vec::new();
    let mut current = dir;
    let owner = loop {
        match fs::metadata(current) {
            Ok(metadata) => break Owner::of(&metadata),
            Err(error) if error.kind() == io::ErrorKind::NotFound => {
                missing.push(current);
                current = parent(current);
                if missing.last() == Some(&current) {
                    // `.` itself is missing: nothing can be made.
                    return Err(error);
                }
            }
            Err(error) => return Err(error),
        }
    };
    for path in missing.into_iter().rev() {
        match DirBuilder::new().mode(mode).create(path) {
            Ok(()) => owner.give_path(path),
            // Made by another process meanwhile: theirs.
            Err(error) if error.kind() == io::ErrorKind::AlreadyExists && path.is_dir() => {}
            Err(error) => return Err(error),
        }
    }
    Ok(())
}

/// `.name.<random>.tmp` beside `path`, so the rename stays on one file system.
fn temp_path(path: &Path) -> io::Result<PathBuf> {
    let mut random = [0u8; 8];
    rand::rngs::OsRng
        .try_fill_bytes(&mut random)
        .map_err(io::Error::other)?;
    let name = path
        .file_name()
        .map(|name| name.to_string_lossy())
        .unwrap_or_default();
    Ok(path.with_file_name(format!(".{name}.{}.tmp", hex::encode(random))))
}

/// Syncs a directory, so that a rename in it survives a crash. Failing that is not worth an
/// error: the new file is complete either way.
fn sync_directory(dir: &Path) {
    if let Ok(dir) = File::open(dir) {
        let _ = dir.sync_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mode_of(path: &Path) -> u32 {
        fs::metadata(path).unwrap().mode() & 0o7777
    }

    fn owner_of(path: &Path) -> (u32, u32) {
        let metadata = fs::symlink_metadata(path).unwrap();
        (metadata.uid(), metadata.gid())
    }

    /// Whether this process may give files away (the tests run as root here and in CI).
    fn is_root(dir: &Path) -> bool {
        let probe = dir.join(".probe");
        File::create(&probe).unwrap();
        let root = owner_of(&probe).0 == 0;
        fs::remove_file(probe).unwrap();
        root
    }

    /// An unprivileged owner, as a director's own user would be.
    const NOBODY: (u32, u32) = (65534, 65534);

    #[test]
    fn replace_keeps_the_mode_but_private_files_are_0600() {
        let dir = tempfile::tempdir().unwrap();
        let cert = dir.path().join("cert.pem");
        create_new(&cert, b"old", Mode::KeptOr(0o644)).unwrap();
        fs::set_permissions(&cert, fs::Permissions::from_mode(0o640)).unwrap();
        replace(&cert, b"new", Mode::KeptOr(0o644)).unwrap();
        assert_eq!(mode_of(&cert), 0o640);
        assert_eq!(fs::read(&cert).unwrap(), b"new");

        let key = dir.path().join("key.pem");
        create_new(&key, b"old", Mode::Private).unwrap();
        fs::set_permissions(&key, fs::Permissions::from_mode(0o644)).unwrap();
        replace(&key, b"new", Mode::Private).unwrap();
        assert_eq!(mode_of(&key), 0o600);

        // A new file by `replace` gets the mode asked for, less the umask (022 or stricter).
        let fresh = dir.path().join("fresh.pem");
        replace(&fresh, b"x", Mode::KeptOr(0o644)).unwrap();
        assert_eq!(mode_of(&fresh) & !0o644, 0, "{:o}", mode_of(&fresh));
        assert_eq!(mode_of(&fresh) & 0o600, 0o600);
        // No temporary file left behind.
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 3);
    }

    #[test]
    fn a_symbolic_link_is_replaced_not_followed() {
        let dir = tempfile::tempdir().unwrap();
        let elsewhere = dir.path().join("elsewhere");
        fs::write(&elsewhere, b"untouched").unwrap();
        let link = dir.path().join("key.pem");
        std::os::unix::fs::symlink(&elsewhere, &link).unwrap();
        replace(&link, b"key", Mode::Private).unwrap();
        assert_eq!(fs::read(&elsewhere).unwrap(), b"untouched");
        assert!(fs::symlink_metadata(&link).unwrap().file_type().is_file());
        assert_eq!(mode_of(&link), 0o600);
    }

    #[test]
    fn create_new_refuses_an_existing_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ca_key.pem");
        create_new(&path, b"one", Mode::Private).unwrap();
        assert_eq!(mode_of(&path), 0o600);
        let error = create_new(&path, b"two", Mode::Private).unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::AlreadyExists);
        assert_eq!(fs::read(&path).unwrap(), b"one");
    }

    /// As root (when the test runs as root): a replaced file keeps its owner and group, a new
    /// file or directory takes its directory's.
    #[test]
    fn files_stay_with_the_owner_of_the_data_directory() {
        let temp = tempfile::tempdir().unwrap();
        if !is_root(temp.path()) {
            eprintln!("SKIP: giving files to another user needs root");
            return;
        }
        let data = temp.path().join("data");
        fs::create_dir(&data).unwrap();
        lchown(&data, Some(NOBODY.0), Some(NOBODY.1)).unwrap();

        create_dir_all(&data.join("certs/deeper"), 0o700).unwrap();
        assert_eq!(owner_of(&data.join("certs")), NOBODY);
        assert_eq!(owner_of(&data.join("certs/deeper")), NOBODY);
        assert_eq!(mode_of(&data.join("certs")), 0o700);

        let key = data.join("certs/key.pem");
        create_new(&key, b"first", Mode::Private).unwrap();
        assert_eq!(owner_of(&key), NOBODY);
        let cfg = data.join("director.cfg");
        replace(&cfg, b"[director]\n", Mode::KeptOr(0o600)).unwrap();
        assert_eq!(owner_of(&cfg), NOBODY);

        // Another owner and group of the file itself are kept.
        lchown(&cfg, Some(0), Some(NOBODY.1)).unwrap();
        fs::set_permissions(&cfg, fs::Permissions::from_mode(0o640)).unwrap();
        replace(&cfg, b"[director]\nDEBUG = 1\n", Mode::KeptOr(0o600)).unwrap();
        assert_eq!(owner_of(&cfg), (0, NOBODY.1));
        assert_eq!(mode_of(&cfg), 0o640);

        replace(&key, b"second", Mode::Private).unwrap();
        assert_eq!(owner_of(&key), NOBODY);
        assert_eq!(mode_of(&key), 0o600);
        assert_eq!(fs::read(&key).unwrap(), b"second");
    }
}
