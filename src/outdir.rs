//! Output folders: which folder a command may fill or replace, the lock
//! that keeps two commands out of one folder, and the staging folder beside
//! it that moves into place only when complete.
//!
//! The rules, checked before anything is written:
//! - never the root, the home folder, the working folder or one of its
//!   ancestors (`.`, `..`), nor a folder that holds an input of the command
//!   (or an ancestor of one);
//! - an existing folder is filled only when empty, and replaced (with
//!   `--force`) only when memeval wrote it: every folder memeval publishes
//!   holds the marker file [`MARKER`];
//! - a symbolic link or a file in the folder's place is refused;
//! - while a command works, `.NAME.lock` beside the folder is locked and
//!   holds its pid: a second command into the same folder is refused with
//!   that pid, and the lock goes with the process however it ends.

use std::path::{Component, Path, PathBuf};

/// The file that marks a folder as memeval's output, in every folder that
/// memeval publishes.
pub const MARKER: &str = ".memeval-output";

const MARKER_TEXT: &str = "This folder was written by memeval; `--force` may replace it.\n";

/// Why an output folder cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum OutError {
    /// Refused before anything was written (exit 2).
    #[error("{0}")]
    Refused(String),
    /// Writing or moving failed (exit 3).
    #[error("{0}")]
    Io(String),
}

fn io_error(what: &str, path: &Path, e: std::io::Error) -> OutError {
    OutError::Io(format!("{what} {}: {e}", path.display()))
}

/// A folder memeval may write, locked for this process until dropped.
#[derive(Debug)]
pub struct Claim {
    out: PathBuf,
    _lock: Lock,
}

impl Claim {
    /// The folder as the user named it.
    pub fn path(&self) -> &Path {
        &self.out
    }

    /// Runs `work` in a staging folder beside the output folder, then
    /// moves it into place only when `work` succeeds, so a failed or
    /// interrupted command leaves no half-written outputs. For commands
    /// that cannot be resumed, only redone: the staging folder is this
    /// process's own, and those of killed commands are removed.
    pub fn publish_staged<T, E: From<OutError>>(
        &self,
        work: impl FnOnce(&Path) -> Result<T, E>,
    ) -> Result<T, E> {
        let prefix = staging_of(&self.out).into_os_string();
        remove_orphans(Path::new(&prefix));
        let mut staging = prefix;
        staging.push(format!("-{}", std::process::id()));
        let staging = PathBuf::from(staging);
        if staging.exists() {
            std::fs::remove_dir_all(&staging)
                .map_err(|e| io_error("cannot remove", &staging, e))?;
        }
        std::fs::create_dir_all(&staging).map_err(|e| io_error("cannot create", &staging, e))?;
        let value = match work(&staging) {
            Ok(v) => v,
            Err(e) => {
                let _ = std::fs::remove_dir_all(&staging);
                return Err(e);
            }
        };
        publish(&staging, &self.out)?;
        Ok(value)
    }
}

/// Claims `out` for a command that fills it: checks it against the rules
/// (see the module's documentation), then locks it. `inputs` are the
/// files and folders the command reads.
pub fn claim(out: &Path, force: bool, inputs: &[PathBuf]) -> Result<Claim, OutError> {
    check_place(out, inputs)?;
    let lock = lock(out)?;
    check_occupant(out, force)?;
    Ok(Claim {
        out: out.to_path_buf(),
        _lock: lock,
    })
}

/// Claims `out` to continue the run interrupted there: locked, its place
/// checked, its contents left as they are.
pub fn claim_existing(out: &Path) -> Result<Claim, OutError> {
    check_place(out, &[])?;
    Ok(Claim {
        out: out.to_path_buf(),
        _lock: lock(out)?,
    })
}

/// `path` made absolute, with the part of it that exists resolved through
/// its links and the rest (which cannot hold a link) taken as written.
fn resolve(path: &Path) -> Result<PathBuf, OutError> {
    let cwd =
        std::env::current_dir().map_err(|e| OutError::Io(format!("the working folder: {e}")))?;
    let abs = cwd.join(path);
    let parts: Vec<Component> = abs.components().collect();
    for i in (1..=parts.len()).rev() {
        let prefix: PathBuf = parts[..i].iter().collect();
        let Ok(mut out) = prefix.canonicalize() else {
            continue;
        };
        for c in &parts[i..] {
            match c {
                Component::ParentDir => {
                    out.pop();
                }
                Component::Normal(n) => out.push(n),
                _ => {}
            }
        }
        return Ok(out);
    }
    Ok(abs)
}

/// Refuses the places no output may go, whatever is in them.
fn check_place(out: &Path, inputs: &[PathBuf]) -> Result<(), OutError> {
    let refuse = |why: String| {
        Err(OutError::Refused(format!(
            "error: --out {}: {why}; nothing was written",
            out.display()
        )))
    };
    if out.as_os_str().is_empty() {
        return refuse("an empty path names no folder".into());
    }
    let target = resolve(out)?;
    if target.parent().is_none() {
        return refuse("is the root folder".into());
    }
    let cwd = resolve(Path::new("."))?;
    if cwd.starts_with(&target) {
        return refuse("is the working folder or one of its ancestors".into());
    }
    if let Some(home) = std::env::var_os("HOME").filter(|h| !h.is_empty())
        && resolve(Path::new(&home))? == target
    {
        return refuse("is the home folder".into());
    }
    for input in inputs {
        if resolve(input)?.starts_with(&target) {
            return refuse(format!(
                "holds {}, an input of this command",
                input.display()
            ));
        }
    }
    Ok(())
}

/// Refuses an occupied `out` that memeval may not replace.
fn check_occupant(out: &Path, force: bool) -> Result<(), OutError> {
    let meta = match std::fs::symlink_metadata(out) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(io_error("cannot read", out, e)),
        Ok(m) => m,
    };
    let refuse = |why: &str| {
        Err(OutError::Refused(format!(
            "error: --out {}: {why}; nothing was written",
            out.display()
        )))
    };
    if meta.file_type().is_symlink() {
        return refuse("is a symbolic link: name the folder itself");
    }
    if !meta.is_dir() {
        return refuse("is a file, not a folder");
    }
    let mut entries = std::fs::read_dir(out).map_err(|e| io_error("cannot read", out, e))?;
    if entries.next().is_none() {
        return Ok(());
    }
    if !is_marked(out) {
        return refuse(
            "is not empty, and memeval did not write it (no .memeval-output in it): \
             --force replaces only folders memeval wrote; choose another folder",
        );
    }
    if !force {
        return refuse(
            "already holds memeval's outputs (an earlier run); pass --force to replace them",
        );
    }
    Ok(())
}

/// Whether memeval wrote the folder `dir` (it holds the marker, a file).
fn is_marked(dir: &Path) -> bool {
    std::fs::symlink_metadata(dir.join(MARKER)).is_ok_and(|m| m.is_file())
}

/// A name beside `out`: `.NAME<suffix>` in its folder.
fn beside(out: &Path, suffix: &str) -> PathBuf {
    let parent = out
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let name = out
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "out".into());
    parent.join(format!(".{name}{suffix}"))
}

/// The folder a command works in until it is complete: beside `out`,
/// named after it, the same on every attempt so that `--resume` finds it.
pub fn staging_of(out: &Path) -> PathBuf {
    beside(out, ".partial")
}

/// Moves a complete staging folder to `out`, marked as memeval's. What
/// `out` held (memeval's outputs, or nothing: see [`claim`]) is moved aside
/// first and removed last, so a kill at any moment leaves a complete set
/// of outputs in one of the two places.
pub fn publish(staging: &Path, out: &Path) -> Result<(), OutError> {
    std::fs::write(staging.join(MARKER), MARKER_TEXT)
        .map_err(|e| io_error("cannot write to", staging, e))?;
    let old = match std::fs::symlink_metadata(out) {
        Ok(m) if m.is_dir() && (is_marked(out) || is_empty(out)) => {
            let old = beside(out, &format!(".old-{}", std::process::id()));
            std::fs::rename(out, &old).map_err(|e| io_error("cannot replace", out, e))?;
            Some(old)
        }
        Ok(_) => {
            return Err(OutError::Refused(format!(
                "error: {} was filled by something else while memeval worked; the outputs are in {}",
                out.display(),
                staging.display()
            )));
        }
        Err(_) => None,
    };
    if let Some(parent) = out.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).map_err(|e| io_error("cannot create", parent, e))?;
    }
    std::fs::rename(staging, out).map_err(|e| io_error("cannot move outputs to", out, e))?;
    if let Some(old) = old {
        let _ = std::fs::remove_dir_all(old);
    }
    Ok(())
}

fn is_empty(dir: &Path) -> bool {
    std::fs::read_dir(dir).is_ok_and(|mut d| d.next().is_none())
}

/// Removes what killed commands left beside `PREFIX`'s folder: staging
/// folders `PREFIX-PID` and replaced outputs `.NAME.old-PID` whose process
/// is gone (a live one may be another command at work).
fn remove_orphans(prefix: &Path) {
    let (Some(parent), Some(name)) = (prefix.parent(), prefix.file_name()) else {
        return;
    };
    let name = name.to_string_lossy();
    let staged = format!("{name}-");
    let old = format!("{}.old-", name.trim_end_matches(".partial"));
    let Ok(entries) = std::fs::read_dir(if parent.as_os_str().is_empty() {
        Path::new(".")
    } else {
        parent
    }) else {
        return;
    };
    for e in entries.flatten() {
        let file = e.file_name();
        let Some(pid) = file
            .to_str()
            .and_then(|f| f.strip_prefix(&staged).or_else(|| f.strip_prefix(&old)))
            .and_then(|p| p.parse::<u32>().ok())
        else {
            continue;
        };
        if !process_alive(pid) {
            let _ = std::fs::remove_dir_all(e.path());
        }
    }
}

/// Whether process `pid` exists (where that cannot be known: yes).
fn process_alive(pid: u32) -> bool {
    #[cfg(unix)]
    {
        let Ok(pid) = libc::pid_t::try_from(pid) else {
            return false;
        };
        // SAFETY: signal 0 only checks that the process exists.
        let r = unsafe { libc::kill(pid, 0) };
        r == 0 || std::io::Error::last_os_error().raw_os_error() != Some(libc::ESRCH)
    }
    #[cfg(not(unix))]
    {
        let _ = pid;
        true
    }
}

/// The default output folder: `reports/<prefix><timestamp>`, made unique.
pub fn default_dir(prefix: &str) -> PathBuf {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64);
    let stamp = format!("{prefix}{}", crate::clock::folder_stamp(now));
    let mut dir = PathBuf::from("reports").join(&stamp);
    let mut n = 2;
    while dir.exists() {
        dir = PathBuf::from("reports").join(format!("{stamp}-{n}"));
        n += 1;
    }
    dir
}

/// Points `reports/latest` at the run just written (a symlink where the
/// platform has them, else a text file holding the folder name).
pub fn point_latest(out: &Path) {
    let Some(parent) = out.parent() else { return };
    let Some(name) = out.file_name() else { return };
    let latest = parent.join("latest");
    let _ = std::fs::remove_file(&latest);
    #[cfg(unix)]
    let ok = std::os::unix::fs::symlink(name, &latest).is_ok();
    #[cfg(not(unix))]
    let ok = false;
    if !ok {
        let _ = std::fs::write(&latest, name.to_string_lossy().as_bytes());
    }
}

/// The lock on an output folder: `.NAME.lock` beside it, locked (flock)
/// and holding this process's pid. The kernel releases it when the
/// process ends, however it ends; the file goes when the lock is dropped.
#[derive(Debug)]
pub struct Lock {
    #[cfg(unix)]
    file: std::fs::File,
    path: PathBuf,
}

/// Locks `out` for this process, or says which process holds it.
pub fn lock(out: &Path) -> Result<Lock, OutError> {
    let path = beside(out, ".lock");
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(|e| io_error("cannot create", parent, e))?;
    }
    #[cfg(unix)]
    {
        use std::io::{Read, Seek, Write};
        use std::os::unix::fs::MetadataExt;
        use std::os::unix::io::AsRawFd;
        loop {
            let mut file = std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(false)
                .open(&path)
                .map_err(|e| io_error("cannot create", &path, e))?;
            // SAFETY: flock on a descriptor this function owns.
            if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
                let mut pid = String::new();
                let _ = file.read_to_string(&mut pid);
                let pid = pid.trim();
                return Err(OutError::Refused(format!(
                    "error: {} is in use by pid {}: another memeval command is writing there; wait for it, or choose another folder",
                    out.display(),
                    if pid.is_empty() { "?" } else { pid }
                )));
            }
            // The holder before may have removed the file between our open
            // and our lock: then the lock is on a file no one else sees.
            let same = std::fs::metadata(&path).is_ok_and(|m| {
                file.metadata()
                    .is_ok_and(|f| f.ino() == m.ino() && f.dev() == m.dev())
            });
            if !same {
                continue;
            }
            file.set_len(0)
                .and_then(|()| file.rewind())
                .and_then(|()| writeln!(file, "{}", std::process::id()))
                .map_err(|e| io_error("cannot write to", &path, e))?;
            return Ok(Lock { file, path });
        }
    }
    #[cfg(not(unix))]
    {
        Ok(Lock { path })
    }
}

impl Drop for Lock {
    fn drop(&mut self) {
        // Removed while still held, so no one locks a file about to vanish.
        let _ = std::fs::remove_file(&self.path);
        #[cfg(unix)]
        let _ = &self.file;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused(r: Result<Claim, OutError>) -> String {
        match r {
            Err(OutError::Refused(m)) => m,
            other => panic!("not refused: {other:?}"),
        }
    }

    #[test]
    fn places_no_output_may_go() {
        let dir = tempfile::tempdir().unwrap();
        let input = dir.path().join("in/s.json");
        std::fs::create_dir_all(input.parent().unwrap()).unwrap();
        std::fs::write(&input, "{}").unwrap();
        let inputs = [input.clone()];
        for (out, why) in [
            (PathBuf::from("/"), "root"),
            (PathBuf::from("."), "working folder"),
            (PathBuf::from(".."), "working folder"),
            (dir.path().join("in"), "an input"),
            (dir.path().to_path_buf(), "an input"),
            (input.clone(), "an input"),
            (dir.path().join("in/../in/."), "an input"),
        ] {
            let m = refused(claim(&out, true, &inputs));
            assert!(m.contains(why), "{}: {m}", out.display());
        }
        // Nothing was written: no lock file, no folder.
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn force_replaces_only_memevals_folders() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("out");
        // Missing, then empty: fine.
        drop(claim(&out, false, &[]).unwrap());
        std::fs::create_dir(&out).unwrap();
        drop(claim(&out, false, &[]).unwrap());
        // Someone's files: refused even with --force.
        std::fs::write(out.join("notes.txt"), "mine").unwrap();
        assert!(refused(claim(&out, true, &[])).contains("did not write it"));
        // memeval's: with --force only.
        std::fs::remove_file(out.join("notes.txt")).unwrap();
        let claimed = claim(&out, false, &[]).unwrap();
        claimed
            .publish_staged(|s| std::fs::write(s.join("a"), "1").map_err(|e| io_error("", s, e)))
            .unwrap();
        drop(claimed);
        assert!(refused(claim(&out, false, &[])).contains("--force"));
        let claimed = claim(&out, true, &[]).unwrap();
        claimed
            .publish_staged(|s| std::fs::write(s.join("b"), "2").map_err(|e| io_error("", s, e)))
            .unwrap();
        drop(claimed);
        assert!(out.join("b").is_file() && !out.join("a").exists());
        // Only the output folder is left: no staging, no lock, no old copy.
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["out"]);
    }

    #[test]
    fn a_locked_folder_names_its_holder() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("out");
        let held = claim(&out, false, &[]).unwrap();
        let m = refused(claim(&out, true, &[]));
        assert!(
            m.contains(&format!("in use by pid {}", std::process::id())),
            "{m}"
        );
        drop(held);
        drop(claim(&out, false, &[]).unwrap());
    }

    #[test]
    fn links_and_files_in_the_place_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("file");
        std::fs::write(&file, "x").unwrap();
        assert!(refused(claim(&file, true, &[])).contains("is a file"));
        #[cfg(unix)]
        {
            let link = dir.path().join("link");
            std::os::unix::fs::symlink(dir.path().join("elsewhere"), &link).unwrap();
            std::fs::create_dir(dir.path().join("elsewhere")).unwrap();
            std::fs::write(dir.path().join("elsewhere/k"), "x").unwrap();
            assert!(refused(claim(&link, true, &[])).contains("symbolic link"));
        }
    }
}
