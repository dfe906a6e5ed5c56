//! Start a throwaway server with an `app` database owned by `app_owner`, write its URLs to an
//! env file (DIRECT_URL, ADMIN_URL) and keep running until that file is removed.
//!
//! Used by scripts/test to run the driver tests directly against PostgreSQL when no gateway
//! demo is available. Usage: `localpg-env PATH`.

use std::path::PathBuf;
use std::time::Duration;

use drawbridge_localpg::{random_hex, LocalPg, Options, PasswordStorage};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let path: PathBuf = std::env::args_os()
        .nth(1)
        .map(PathBuf::from)
        .ok_or("usage: localpg-env PATH")?;
    let pg = LocalPg::start(Options::default())?;
    let password = random_hex(12)?;
    pg.create_role("app_owner", &password, PasswordStorage::Scram)?;
    pg.create_database("app", "app_owner", None)?;

    let text = format!(
        "DIRECT_URL={}\nADMIN_URL={}\n",
        pg.url("app_owner", &password, "app"),
        pg.admin_url("app")
    );
    // Write then rename so a watcher never reads a half-written file.
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text)?;
    std::fs::rename(&tmp, &path)?;
    eprintln!(
        "localpg-env: server on port {}, env in {}",
        pg.port(),
        path.display()
    );

    while path.exists() {
        std::thread::sleep(Duration::from_millis(200));
    }
    drop(pg);
    Ok(())
}
