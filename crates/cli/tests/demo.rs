//! `drawbridge demo --no-wait` end to end: the scripted agent session against a real
//! throwaway PostgreSQL, with its own checks that nothing destructive ran.

use std::process::Command;

#[test]
fn demo_blocks_every_destructive_step_and_keeps_the_data() {
    let port = localpg::free_port().expect("free port");
    let out = Command::new(env!("CARGO_BIN_EXE_drawbridge"))
        .args(["demo", "--no-wait", "--no-color", "--port", &port.to_string()])
        .output()
        .expect("run drawbridge demo");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "demo failed\nstdout:\n{stdout}\nstderr:\n{stderr}");

    // Each destructive step was refused at the wire, naming its rule.
    for rule in ["no-truncate", "no-delete-without-where", "row-limit", "no-drop-table"] {
        assert!(stdout.contains(&format!("blocked by rule {rule}")), "no refusal by {rule}:\n{stdout}");
    }
    assert_eq!(stdout.matches("✘ blocked at the wire").count(), 5, "{stdout}");
    assert!(!stdout.contains("! unexpected"), "{stdout}");
    // The data checks the demo makes directly against PostgreSQL.
    assert!(stdout.contains("users still has 50 rows (before: 50)"), "{stdout}");
    // Step 1: emails masked, partially for the column itself, whole for a computed value.
    assert!(stdout.contains("1 | user 1 | *****@example.com"), "{stdout}");
    assert!(!stdout.contains("user1@example.com") && !stdout.contains("USER1@EXAMPLE.COM"), "{stdout}");
    assert!(stdout.contains("a value computed from an email is masked too: [REDACTED]"), "{stdout}");
    assert!(stdout.contains("voided orders: 0 (before: 0)"), "{stdout}");
    assert!(stdout.contains("the users table is still there"), "{stdout}");
    assert!(stdout.contains("Every destructive statement was stopped; the data is intact."), "{stdout}");
    // The migration was held, approved by the operator through the CLI, and ran.
    assert!(stdout.contains("operator> drawbridge approvals approve apr_"), "{stdout}");
    assert!(stdout.contains("the ALTER TABLE ran once approved"), "{stdout}");
    assert!(stdout.contains("orders now has a note column"), "{stdout}");
    // The session replayed from the audit log, and the log verified.
    assert!(stdout.contains("decision: deny by no-truncate"), "{stdout}");
    assert!(stdout.contains("✔ audit verify:"), "{stdout}");
    assert!(stdout.contains(&format!("127.0.0.1:{port}/app")), "{stdout}");
}
