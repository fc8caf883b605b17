//! The `file://DIR` transport: each reply becomes `DIR/{id}.eml`, written
//! atomically (hidden temporary file, fsync, rename) so that a reader never
//! sees half a message and a retry after a crash replaces the file instead of
//! adding a second one. A crash between the temporary file's creation and
//! its rename leaves it behind: [`remove_temp_files`] clears them at start.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use tokio::io::AsyncWriteExt;

use super::error::ReplyError;

/// Distinguishes the temporary files of concurrent writes of the same id
/// within this process (the pid distinguishes processes).
static TEMP_COUNTER: AtomicU64 = AtomicU64::new(0);

/// Writes `contents` to `dir/{name}.eml`, creating `dir` if needed.
/// Returns the final path.
pub async fn write_eml(dir: &Path, name: &str, contents: &[u8]) -> Result<PathBuf, ReplyError> {
    let io_err = |path: &Path| {
        let path = path.to_owned();
        move |source| ReplyError::File { path, source }
    };
    tokio::fs::create_dir_all(dir).await.map_err(io_err(dir))?;
    let target = dir.join(format!("{name}.eml"));
    let temp = dir.join(format!(
        ".{name}.{}.{}.tmp",
        std::process::id(),
        TEMP_COUNTER.fetch_add(1, Ordering::Relaxed)
    ));
    let written = async {
        let mut file = tokio::fs::File::create(&temp).await?;
        file.write_all(contents).await?;
        file.sync_all().await?;
        drop(file);
        tokio::fs::rename(&temp, &target).await
    }
    .await;
    if let Err(source) = written {
        // Best effort: the temporary file is hidden and useless now.
        let _ = tokio::fs::remove_file(&temp).await;
        return Err(ReplyError::File {
            path: target,
            source,
        });
    }
    Ok(target)
}

/// Removes every leftover temporary file (`.*.tmp`) of `dir`, as writes
/// interrupted by a crash leave them (issue 8); returns how many were
/// removed. A missing directory has none. Only the daemon that sends
/// replies calls it, at start, before any write of its own.
pub async fn remove_temp_files(dir: &Path) -> Result<usize, ReplyError> {
    let io_err = |path: &Path| {
        let path = path.to_owned();
        move |source| ReplyError::File { path, source }
    };
    let mut entries = match tokio::fs::read_dir(dir).await {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(io_err(dir)(e)),
    };
    let mut removed = 0;
    while let Some(entry) = entries.next_entry().await.map_err(io_err(dir))? {
        if !is_temp_name(&entry.file_name()) {
            continue;
        }
        let path = entry.path();
        match tokio::fs::remove_file(&path).await {
            Ok(()) => removed += 1,
            // Another starting daemon on the same directory got it first.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io_err(&path)(e)),
        }
    }
    Ok(removed)
}

/// Whether `name` has the form of [`write_eml`]'s temporary files: hidden
/// (a leading `.`) and ending with `.tmp`.
fn is_temp_name(name: &OsStr) -> bool {
    name.to_str()
        .is_some_and(|n| n.len() > ".tmp".len() && n.starts_with('.') && n.ends_with(".tmp"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn creates_the_directory_and_overwrites() {
        let root = tempfile::tempdir().expect("tempdir");
        let dir = root.path().join("a").join("b");
        let path = write_eml(&dir, "r1", b"first").await.expect("write");
        assert_eq!(path, dir.join("r1.eml"));
        write_eml(&dir, "r1", b"second").await.expect("rewrite");
        assert_eq!(std::fs::read(&path).expect("read"), b"second");
        let names: Vec<_> = std::fs::read_dir(&dir)
            .expect("list")
            .map(|e| e.expect("entry").file_name())
            .collect();
        assert_eq!(names, ["r1.eml"], "no temporary file left behind");
    }

    /// Issue 8: temporary files left by crashed writes are removed, and
    /// nothing else is.
    #[tokio::test]
    async fn leftover_temp_files_are_removed() {
        let root = tempfile::tempdir().expect("tempdir");
        let dir = root.path();
        let leftovers = [".1700000000000.7.4242.0.tmp", ".x.tmp", "..tmp"];
        let kept = [
            "1700000000000.7.eml",
            "a.tmp",
            ".tmp",
            ".hidden",
            ".x.tmp.eml",
        ];
        for name in leftovers.iter().chain(&kept) {
            std::fs::write(dir.join(name), b"x").expect("write");
        }
        assert_eq!(remove_temp_files(dir).await.expect("clean"), 3);
        let mut names: Vec<_> = std::fs::read_dir(dir)
            .expect("list")
            .map(|e| e.expect("entry").file_name().into_string().expect("utf-8"))
            .collect();
        names.sort();
        let mut expected = kept.map(String::from).to_vec();
        expected.sort();
        assert_eq!(names, expected);
        assert_eq!(remove_temp_files(dir).await.expect("again"), 0);
        let missing = dir.join("missing");
        assert_eq!(remove_temp_files(&missing).await.expect("missing"), 0);
    }

    #[tokio::test]
    async fn io_errors_are_transient() {
        let root = tempfile::tempdir().expect("tempdir");
        let file = root.path().join("plain-file");
        std::fs::write(&file, b"x").expect("write");
        // A directory that cannot be created: its parent is a file.
        let err = write_eml(&file.join("sub"), "r1", b"x")
            .await
            .expect_err("not a directory");
        assert!(err.is_transient(), "{err}");
    }
}
