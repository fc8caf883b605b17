//! The `sendmail` transport: the message piped to a sendmail-compatible
//! command with a null envelope sender (`-f <>`), which lettre's own
//! sendmail transport cannot ask for (it passes `-f` only for a real
//! address, and the command would then use the daemon's user).

use std::path::Path;
use std::process::Stdio;

use tokio::io::AsyncWriteExt;
use tokio::process::Command;

use super::error::ReplyError;

/// The most bytes of the command's error output quoted in the error.
const STDERR_BYTES: usize = 300;

/// Runs `command -i -f <> -- to` with `message` on its standard input; a
/// command that cannot be started or exits non-zero is an error (transient:
/// a full queue, a stopped MTA).
pub async fn run(command: &Path, to: &str, message: &[u8]) -> Result<(), ReplyError> {
    let failed =
        |what: String| ReplyError::SendmailCommand(format!("{}: {what}", command.display()));
    let mut child = Command::new(command)
        .args(["-i", "-f", "<>", "--", to])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| failed(format!("cannot run it: {e}")))?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin
            .write_all(message)
            .await
            .map_err(|e| failed(format!("writing the message: {e}")))?;
        // Dropping stdin closes it: the command sees the end of the message.
    }
    let output = child
        .wait_with_output()
        .await
        .map_err(|e| failed(format!("waiting for it: {e}")))?;
    if output.status.success() {
        return Ok(());
    }
    let stderr = String::from_utf8_lossy(&output.stderr[..output.stderr.len().min(STDERR_BYTES)])
        .trim()
        .replace(['\r', '\n'], " ");
    Err(failed(format!("{} ({stderr})", output.status)))
}
