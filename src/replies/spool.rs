//! The `file://DIR` transport: each reply becomes `DIR/{id}.eml`, written
//! atomically (hidden temporary file, fsync, rename) so that a reader never
//! sees half a message and a retry after a crash replaces the file instead of
//! adding a second one.

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
