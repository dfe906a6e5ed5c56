//! Locating the PostgreSQL server programs.

use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// Debian installs each major version under its own directory; there is no `initdb` on PATH.
const DEBIAN_ROOT: &str = "/usr/lib/postgresql";

/// Environment variable naming a directory that holds initdb, pg_ctl and postgres.
pub const BIN_DIR_ENV: &str = "DRAWBRIDGE_PG_BIN";

const REQUIRED: [&str; 3] = ["initdb", "pg_ctl", "postgres"];

fn has_server_programs(dir: &Path) -> bool {
    REQUIRED.iter().all(|p| dir.join(p).is_file())
}

/// Major version from a directory name such as "15" or "9.6"; non-numeric names sort first.
fn version_key(name: &str) -> Vec<u32> {
    name.split('.').map(|p| p.parse().unwrap_or(0)).collect()
}

/// The directory holding the newest installed server programs.
pub fn find_bin_dir(explicit: Option<&Path>) -> Result<PathBuf> {
    if let Some(dir) = explicit {
        return checked(dir.to_path_buf());
    }
    if let Some(dir) = std::env::var_os(BIN_DIR_ENV) {
        return checked(PathBuf::from(dir));
    }
    let mut versions: Vec<(Vec<u32>, PathBuf)> = std::fs::read_dir(DEBIAN_ROOT)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| {
            let bin = entry.path().join("bin");
            let name = entry.file_name().to_string_lossy().into_owned();
            has_server_programs(&bin).then(|| (version_key(&name), bin))
        })
        .collect();
    versions.sort();
    versions
        .pop()
        .map(|(_, bin)| bin)
        .ok_or_else(|| Error::NotInstalled {
            searched: format!("{DEBIAN_ROOT}/*/bin"),
        })
}

fn checked(dir: PathBuf) -> Result<PathBuf> {
    if has_server_programs(&dir) {
        Ok(dir)
    } else {
        Err(Error::NotInstalled {
            searched: dir.display().to_string(),
        })
    }
}

/// The psql next to the server programs, else the one on PATH.
pub fn psql_path(bin_dir: &Path) -> PathBuf {
    let local = bin_dir.join("psql");
    if local.is_file() {
        local
    } else {
        PathBuf::from("psql")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_sort_numerically() {
        let mut v = [version_key("9.6"), version_key("15"), version_key("10")];
        v.sort();
        assert_eq!(v.last(), Some(&version_key("15")));
        assert!(version_key("9.6") < version_key("10"));
    }

    #[test]
    fn explicit_dir_without_programs_is_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        let err = find_bin_dir(Some(dir.path())).unwrap_err();
        assert!(
            err.to_string().contains("apt-get install -y postgresql"),
            "{err}"
        );
    }
}
