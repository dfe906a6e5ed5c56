//! The checkpoint signing key: created once, kept in a 0600 file, public half beside it.

use std::io::Write as _;
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Path, PathBuf};

use ed25519_dalek::{SigningKey, VerifyingKey};

use crate::error::{Error, Result};

fn key_error(path: &Path, reason: impl Into<String>) -> Error {
    Error::Key {
        path: path.to_path_buf(),
        reason: reason.into(),
    }
}

/// `audit.key` → `audit.key.pub`.
pub fn public_path(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(".pub");
    PathBuf::from(name)
}

/// Loads the key, creating it (and its `.pub`) on first start.
pub fn load_or_create(path: &Path) -> Result<SigningKey> {
    match std::fs::read_to_string(path) {
        Ok(text) => return parse_secret(path, &text),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(Error::io("reading audit key", path, e)),
    }
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|e| Error::io("creating directory", dir, e))?;
    }
    let key = SigningKey::from_bytes(&rand::random::<[u8; 32]>());
    // Written aside, then linked into place: a concurrent starter sees no key or a whole one.
    let tmp = PathBuf::from(format!("{}.tmp-{}", path.display(), hex::encode(rand::random::<[u8; 6]>())));
    let written = write_new(&tmp, &format!("{}\n", hex::encode(key.to_bytes())));
    let linked = written.and_then(|()| std::fs::hard_link(&tmp, path));
    let _ = std::fs::remove_file(&tmp);
    match linked {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            let text = std::fs::read_to_string(path).map_err(|e| Error::io("reading audit key", path, e))?;
            return parse_secret(path, &text);
        }
        Err(e) => return Err(Error::io("creating audit key", path, e)),
    }
    let public = public_path(path);
    let tmp = PathBuf::from(format!("{}.tmp-{}", public.display(), hex::encode(rand::random::<[u8; 6]>())));
    std::fs::write(&tmp, format!("{}\n", hex::encode(key.verifying_key().as_bytes())))
        .and_then(|()| std::fs::rename(&tmp, &public))
        .map_err(|e| Error::io("writing audit public key", &public, e))?;
    Ok(key)
}

fn write_new(path: &Path, text: &str) -> std::io::Result<()> {
    let mut file = std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(path)?;
    file.write_all(text.as_bytes())?;
    file.sync_all()
}

fn parse_secret(path: &Path, text: &str) -> Result<SigningKey> {
    let mut bytes = [0u8; 32];
    hex::decode_to_slice(text.trim(), &mut bytes).map_err(|e| key_error(path, format!("not 32 hex bytes: {e}")))?;
    Ok(SigningKey::from_bytes(&bytes))
}

/// A hex ed25519 public key.
pub fn parse_public(text: &str) -> Result<VerifyingKey> {
    let mut bytes = [0u8; 32];
    hex::decode_to_slice(text.trim(), &mut bytes)
        .map_err(|e| Error::Config(format!("public key {text:?} is not 32 hex bytes: {e}")))?;
    VerifyingKey::from_bytes(&bytes).map_err(|e| Error::Config(format!("public key {text:?}: {e}")))
}

/// The public key of a key file without needing the secret: the `.pub` file if present.
pub fn load_public(path: &Path) -> Result<Option<VerifyingKey>> {
    match std::fs::read_to_string(public_path(path)) {
        Ok(text) => return parse_public(&text).map(Some),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(Error::io("reading audit public key", public_path(path), e)),
    }
    match std::fs::read_to_string(path) {
        Ok(text) => Ok(Some(parse_secret(path, &text)?.verifying_key())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(Error::io("reading audit key", path, e)),
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt as _;

    use super::*;

    #[test]
    fn created_once_private_and_stable() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("k/audit.key");
        let a = load_or_create(&path).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let b = load_or_create(&path).unwrap();
        assert_eq!(a.to_bytes(), b.to_bytes());
        assert_eq!(load_public(&path).unwrap(), Some(a.verifying_key()));
    }
}
