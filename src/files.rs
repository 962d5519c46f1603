//! Reading and writing single files safely: every read through a size cap
//! (so a device, a pipe or a runaway file cannot make memeval read without
//! end), and every write to a temporary file beside the target, renamed
//! into place, never through a device, a FIFO or a symbolic link.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};

/// Caps of the files memeval reads whole, by kind.
pub mod cap {
    /// A configuration file (`--config`, `MEMEVAL_CONFIG`, memeval.toml).
    pub const CONFIG: u64 = 1 << 20;
    /// A summarization prompt (`openai.summary_prompt_file`).
    pub const PROMPT: u64 = 1 << 20;
    /// An API key file (`openai.api_key_file`).
    pub const KEY: u64 = 64 << 10;
    /// A run's results.json or a baseline file.
    pub const RESULTS: u64 = 256 << 20;
    /// A run's metadata.json.
    pub const METADATA: u64 = 64 << 20;
    /// A public benchmark's file for `memeval import`.
    pub const DATASET: u64 = 512 << 20;
}

/// A file that could not be read or written, worded for the user.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct FileError(pub String);

/// Reads `path` whole, refusing more than `cap` bytes (read through the
/// cap: the size a device or a pipe reports is not trusted). `what` names
/// the file's role in the message, e.g. "configuration file".
pub fn read_capped(path: &Path, cap: u64, what: &str) -> Result<Vec<u8>, FileError> {
    let mut capped = open_capped(path, cap, what)?;
    let mut bytes = Vec::new();
    capped
        .read_to_end(&mut bytes)
        .map_err(|e| capped.error(e))?;
    Ok(bytes)
}

/// `path` opened to be read as a stream through the same cap as
/// [`read_capped`]: reading past `cap` bytes fails with the limit's message
/// (see [`Capped::error`]).
pub fn open_capped(path: &Path, cap: u64, what: &str) -> Result<Capped, FileError> {
    let unreadable = |e: std::io::Error| FileError(format!("{}: cannot read: {e}", path.display()));
    let meta = std::fs::metadata(path).map_err(unreadable)?;
    if meta.is_dir() {
        return Err(FileError(format!(
            "{}: {what}: is a folder, not a file",
            path.display()
        )));
    }
    if meta.len() > cap {
        return Err(over_cap(path, what, cap));
    }
    let file = std::fs::File::open(path).map_err(unreadable)?;
    Ok(Capped {
        file: std::io::BufReader::with_capacity(64 << 10, file),
        left: cap,
        cap,
        path: path.to_path_buf(),
        what: what.to_string(),
        over: false,
    })
}

fn over_cap(path: &Path, what: &str, cap: u64) -> FileError {
    FileError(format!(
        "{}: {what}: larger than the {} limit",
        path.display(),
        size(cap)
    ))
}

/// A file read through its size cap (see [`open_capped`]).
pub struct Capped {
    file: std::io::BufReader<std::fs::File>,
    left: u64,
    cap: u64,
    path: PathBuf,
    what: String,
    /// Whether a read went past the cap.
    over: bool,
}

impl Capped {
    /// The error to report for a failure while reading (an I/O error, or
    /// a parser's error at the end of what it was given): the limit's
    /// message where a read went past the cap.
    pub fn error(&self, e: impl std::fmt::Display) -> FileError {
        if self.over {
            over_cap(&self.path, &self.what, self.cap)
        } else {
            FileError(format!("{}: cannot read: {e}", self.path.display()))
        }
    }
}

impl Read for Capped {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.left == 0 {
            // One byte more than the cap means the file is over it.
            let mut probe = [0u8; 1];
            if self.file.read(&mut probe)? > 0 {
                self.over = true;
                return Err(std::io::Error::other(self.error("")));
            }
            return Ok(0);
        }
        let max = buf.len().min(self.left.min(usize::MAX as u64) as usize);
        let n = self.file.read(&mut buf[..max])?;
        self.left -= n as u64;
        Ok(n)
    }
}

/// As [`read_capped`], as UTF-8 text.
pub fn read_text_capped(path: &Path, cap: u64, what: &str) -> Result<String, FileError> {
    let bytes = read_capped(path, cap, what)?;
    String::from_utf8(bytes).map_err(|e| {
        FileError(format!(
            "{}: {what}: not UTF-8 text (invalid byte at offset {})",
            path.display(),
            e.utf8_error().valid_up_to()
        ))
    })
}

/// A size as people say it: `64 KiB`, `256 MiB`.
pub fn size(bytes: u64) -> String {
    match bytes {
        b if b >= 1 << 30 && b % (1 << 30) == 0 => format!("{} GiB", b >> 30),
        b if b >= 1 << 20 && b % (1 << 20) == 0 => format!("{} MiB", b >> 20),
        b if b >= 1 << 10 && b % (1 << 10) == 0 => format!("{} KiB", b >> 10),
        b => format!("{b} bytes"),
    }
}

/// Where a command writes one file: a path, or standard output (`-`).
#[derive(Debug, Clone, PartialEq)]
pub enum Target {
    Stdout,
    File(PathBuf),
}

impl Target {
    /// `-` is standard output; any other path a file.
    pub fn parse(path: &Path) -> Target {
        if path.as_os_str() == "-" {
            Target::Stdout
        } else {
            Target::File(path.to_path_buf())
        }
    }

    /// Refuses, before any work, a file target that is not a regular file
    /// or a missing one (see [`check_writable`]).
    pub fn check(&self) -> Result<(), FileError> {
        match self {
            Target::Stdout => Ok(()),
            Target::File(p) => check_writable(p),
        }
    }

    /// Writes `bytes` there: to standard output, or atomically to the file.
    pub fn write(&self, bytes: &[u8]) -> Result<(), FileError> {
        match self {
            Target::Stdout => std::io::stdout()
                .lock()
                .write_all(bytes)
                .map_err(|e| FileError(format!("standard output: {e}"))),
            Target::File(p) => write_atomically(p, bytes),
        }
    }
}

/// Whether memeval may write the file `path`: it is missing, or a regular
/// file (not a device such as /dev/null, a FIFO, a socket, a folder or a
/// symbolic link, which replacing would break or follow).
pub fn check_writable(path: &Path) -> Result<(), FileError> {
    if path.as_os_str().is_empty() {
        return Err(FileError("an empty path names no file".into()));
    }
    match std::fs::symlink_metadata(path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(FileError(format!("{}: {e}", path.display()))),
        Ok(m) if m.file_type().is_file() => Ok(()),
        Ok(m) => {
            let kind = if m.file_type().is_symlink() {
                "a symbolic link"
            } else if m.is_dir() {
                "a folder"
            } else {
                "not a regular file (a device, a FIFO or a socket)"
            };
            Err(FileError(format!(
                "{}: is {kind}; memeval writes only regular files (name a file, or - for standard output where the command allows it)",
                path.display()
            )))
        }
    }
}

/// Writes `bytes` to `path` through a temporary file beside it, renamed
/// into place: a reader never sees half a file, and a failed write leaves
/// what was there. Refuses a target that is not a regular file.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> Result<(), FileError> {
    check_writable(path)?;
    let fail = |e: std::io::Error| FileError(format!("{}: {e}", path.display()));
    let name = path
        .file_name()
        .ok_or_else(|| FileError(format!("{}: names a folder, not a file", path.display())))?;
    let mut tmp_name = std::ffi::OsString::from(".");
    tmp_name.push(name);
    tmp_name.push(format!(".{}.tmp", std::process::id()));
    let tmp = path.with_file_name(tmp_name);
    let written = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&tmp)
        .and_then(|mut f| f.write_all(bytes).and_then(|()| f.sync_all()));
    if let Err(e) = written.and_then(|()| std::fs::rename(&tmp, path)) {
        let _ = std::fs::remove_file(&tmp);
        return Err(fail(e));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_stop_at_the_cap() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("f");
        std::fs::write(&p, vec![b'a'; 100]).unwrap();
        assert_eq!(read_capped(&p, 100, "test").unwrap().len(), 100);
        let e = read_capped(&p, 99, "test file").unwrap_err().0;
        assert!(e.contains("test file") && e.contains("99 bytes"), "{e}");
        // A device's reported size is 0: the read itself is capped.
        let e = read_capped(Path::new("/dev/zero"), 1 << 10, "x")
            .unwrap_err()
            .0;
        assert!(e.contains("larger than the 1 KiB limit"), "{e}");
        let e = read_capped(dir.path(), 10, "x").unwrap_err().0;
        assert!(e.contains("folder"), "{e}");
        // Streamed: a parser reading a device that never ends (endless
        // whitespace, as /dev/zero gives endless zeros) stops at the cap.
        #[cfg(unix)]
        {
            let mut child = std::process::Command::new("yes")
                .arg(" ")
                .stdout(std::process::Stdio::piped())
                .spawn()
                .unwrap();
            let fifo = format!("/proc/self/fd/{}", {
                use std::os::fd::AsRawFd;
                child.stdout.as_ref().unwrap().as_raw_fd()
            });
            let mut r = open_capped(Path::new(&fifo), 1 << 20, "stream").unwrap();
            let e = serde_json::from_reader::<_, serde_json::Value>(&mut r).unwrap_err();
            assert!(e.is_io(), "{e}");
            assert!(r.error(e).0.contains("larger than the 1 MiB limit"));
            child.kill().unwrap();
            child.wait().unwrap();
        }
    }

    #[test]
    fn writes_replace_regular_files_only() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("out.json");
        write_atomically(&p, b"one").unwrap();
        write_atomically(&p, b"two").unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"two");
        // Nothing but the file is left beside it.
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
        for refused in ["/dev/null", "/dev/stdout"] {
            let e = write_atomically(Path::new(refused), b"x").unwrap_err().0;
            assert!(e.contains("memeval writes only regular files"), "{e}");
        }
        #[cfg(unix)]
        {
            let link = dir.path().join("link");
            std::os::unix::fs::symlink(&p, &link).unwrap();
            let e = write_atomically(&link, b"x").unwrap_err().0;
            assert!(e.contains("symbolic link"), "{e}");
            assert_eq!(std::fs::read(&p).unwrap(), b"two");
        }
        assert_eq!(Target::parse(Path::new("-")), Target::Stdout);
        assert_eq!(size(512 << 20), "512 MiB");
    }
}
