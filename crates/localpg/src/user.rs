//! Running the server as the `postgres` user when we are root (initdb refuses root).

use std::path::Path;
use std::process::Command;

use crate::error::{Error, Result};

/// The account the server runs as when the caller is root.
const SERVER_USER: &str = "postgres";

/// Who runs the server programs.
#[derive(Debug, Clone)]
pub enum RunAs {
    /// The current (non-root) user.
    Current,
    /// Root delegating to another account.
    User { name: String, uid: u32, gid: u32 },
}

impl RunAs {
    pub fn detect() -> Result<Self> {
        if effective_uid() != Some(0) {
            return Ok(RunAs::Current);
        }
        let (uid, gid) = lookup_user(SERVER_USER).ok_or(Error::NoPostgresUser)?;
        Ok(RunAs::User {
            name: SERVER_USER.to_owned(),
            uid,
            gid,
        })
    }

    /// A command for `program`, wrapped in runuser when needed.
    pub fn command(&self, program: &Path) -> Command {
        match self {
            RunAs::Current => Command::new(program),
            RunAs::User { name, .. } => {
                let mut cmd = Command::new("runuser");
                cmd.args(["-u", name, "--"]).arg(program);
                cmd
            }
        }
    }

    /// Give `path` (recursively) to the server user so it can read and write it.
    pub fn give(&self, path: &Path) -> Result<()> {
        let RunAs::User { uid, gid, .. } = self else {
            return Ok(());
        };
        chown_tree(path, *uid, *gid)
    }
}

fn chown_tree(path: &Path, uid: u32, gid: u32) -> Result<()> {
    std::os::unix::fs::lchown(path, Some(uid), Some(gid))
        .map_err(|e| Error::io(format!("chown {}", path.display()), e))?;
    let meta = std::fs::symlink_metadata(path)
        .map_err(|e| Error::io(format!("stat {}", path.display()), e))?;
    if meta.is_dir() {
        let entries = std::fs::read_dir(path)
            .map_err(|e| Error::io(format!("read {}", path.display()), e))?;
        for entry in entries {
            let entry = entry.map_err(|e| Error::io(format!("read {}", path.display()), e))?;
            chown_tree(&entry.path(), uid, gid)?;
        }
    }
    Ok(())
}

/// Effective uid from /proc, avoiding unsafe libc calls.
fn effective_uid() -> Option<u32> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    parse_effective_uid(&status)
}

fn parse_effective_uid(status: &str) -> Option<u32> {
    let line = status.lines().find(|l| l.starts_with("Uid:"))?;
    // Fields: real, effective, saved, filesystem.
    line.split_whitespace().nth(2)?.parse().ok()
}

fn lookup_user(name: &str) -> Option<(u32, u32)> {
    let passwd = std::fs::read_to_string("/etc/passwd").ok()?;
    parse_passwd(&passwd, name)
}

fn parse_passwd(passwd: &str, name: &str) -> Option<(u32, u32)> {
    passwd.lines().find_map(|line| {
        let mut fields = line.split(':');
        if fields.next()? != name {
            return None;
        }
        let _password = fields.next()?;
        let uid = fields.next()?.parse().ok()?;
        let gid = fields.next()?.parse().ok()?;
        Some((uid, gid))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_effective_uid() {
        let status = "Name:\tx\nUid:\t1000\t0\t0\t0\nGid:\t1\t1\t1\t1\n";
        assert_eq!(parse_effective_uid(status), Some(0));
    }

    #[test]
    fn parses_passwd_entry() {
        let passwd =
            "root:x:0:0:root:/root:/bin/bash\npostgres:x:105:111::/var/lib/postgresql:/bin/bash\n";
        assert_eq!(parse_passwd(passwd, "postgres"), Some((105, 111)));
        assert_eq!(parse_passwd(passwd, "nobody"), None);
    }
}
