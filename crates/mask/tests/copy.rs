mod common;
use common::key;
use drawbridge_mask::{
    oid, rewrite_copy_line, ColumnMask, CopyFormat, CopyRewriter, Detectors, Error, Format, Plan,
    Strategy,
};

fn text_col(st: Strategy) -> Option<ColumnMask> {
    Some(ColumnMask::new(st, oid::TEXT, -1, Format::Text))
}

fn run(plan: &Plan, fmt: &CopyFormat, line: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    rewrite_copy_line(plan, fmt, line, &mut out).unwrap();
    out
}

#[test]
fn text_format_escapes_and_nulls() {
    let plan = Plan::new(
        vec![
            None,
            text_col(Strategy::partial(3)),
            text_col(Strategy::redact()),
            None,
        ],
        key(),
    );
    let f = CopyFormat::text();
    // Unmasked fields with escapes pass byte for byte; masked ones are decoded first.
    let line = b"1\ta\\tb\\\\c\\nxyz\t\\N\tx\\ty\n";
    let out = run(&plan, &f, line);
    // The masked field decodes to 9 characters: 6 hidden, "xyz" kept.
    assert_eq!(out, b"1\t******xyz\t\\N\tx\\ty\n");
    // A masked value containing special characters is escaped on the way out.
    let plan = Plan::new(
        vec![text_col(Strategy::Redact {
            placeholder: "a\tb\\c\nd".into(),
        })],
        key(),
    );
    assert_eq!(run(&plan, &f, b"secret\n"), b"a\\tb\\\\c\\nd\n");
    let plan = Plan::new(vec![text_col(Strategy::Null), None], key());
    assert_eq!(run(&plan, &f, b"secret\tkeep\n"), b"\\N\tkeep\n");
}

#[test]
fn text_format_custom_delimiter_and_null() {
    let f = CopyFormat::Text {
        delimiter: b'|',
        null: b"NULL".as_slice().into(),
        header: false,
    };
    let plan = Plan::new(
        vec![
            text_col(Strategy::Redact {
                placeholder: "a|b".into(),
            }),
            text_col(Strategy::Null),
        ],
        key(),
    );
    assert_eq!(run(&plan, &f, b"x\\|y|z\n"), b"a\\|b|NULL\n");
}

#[test]
fn text_format_scanning() {
    let scan =
        ColumnMask::new(Strategy::redact(), oid::TEXT, -1, Format::Text).scanning(Detectors::ALL);
    let plan = Plan::new(vec![None, Some(scan)], key());
    let f = CopyFormat::text();
    assert_eq!(
        run(&plan, &f, b"7\tmail\\tbob@example.com now\n"),
        b"7\tmail\\t[REDACTED] now\n"
    );
    let clean = b"7\tnothing\\there\n";
    assert_eq!(
        run(&plan, &f, clean),
        clean,
        "clean value kept byte for byte"
    );
}

#[test]
fn csv_quotes_commas_newlines_nulls() {
    let plan = Plan::new(
        vec![
            None,
            text_col(Strategy::partial(2)),
            None,
            text_col(Strategy::redact()),
            text_col(Strategy::Null),
        ],
        key(),
    );
    let f = CopyFormat::csv();
    let line = b"1,\"he said \"\"hi\"\", ok\",\"multi\nline, \"\"q\"\"\",,\"x\"\n";
    let out = run(&plan, &f, line);
    // Field 1 decodes to `he said "hi", ok` (16 chars): 14 hidden.
    let expected = b"1,\"**************ok\",\"multi\nline, \"\"q\"\"\",,\n".to_vec();
    assert_eq!(
        String::from_utf8_lossy(&out),
        String::from_utf8_lossy(&expected)
    );
    // The empty unquoted field 3 was NULL and stays NULL; the quoted empty string is a value.
    let out = run(&plan, &f, b"1,\"\",2,\"\",\"\"\n");
    assert_eq!(out, b"1,\"\",2,\"[REDACTED]\",\n");
    // Masked values with quotes are quoted and escaped.
    let plan = Plan::new(
        vec![text_col(Strategy::Redact {
            placeholder: "a\"b,c".into(),
        })],
        key(),
    );
    assert_eq!(run(&plan, &f, b"v\n"), b"\"a\"\"b,c\"\n");
}

#[test]
fn csv_custom_escape_and_null() {
    let f = CopyFormat::Csv {
        delimiter: b';',
        quote: b'\'',
        escape: b'\\',
        null: b"NULL".as_slice().into(),
        header: false,
    };
    let plan = Plan::new(
        vec![
            text_col(Strategy::partial(3)),
            text_col(Strategy::Redact {
                placeholder: "it's".into(),
            }),
            None,
        ],
        key(),
    );
    let out = run(&plan, &f, b"'a\\'b;c\\\\d';x;NULL\n");
    // Field 0 decodes to `a'b;c\d` (7 chars).
    assert_eq!(out, b"'****c\\\\d';'it\\'s';NULL\n");
}

#[test]
fn csv_header_passes_through_rewriter() {
    let plan = Plan::new(vec![None, text_col(Strategy::redact())], key());
    let mut fmt = CopyFormat::csv();
    if let CopyFormat::Csv { header, .. } = &mut fmt {
        *header = true;
    }
    let mut rw = CopyRewriter::new(plan, fmt);
    let mut out = Vec::new();
    rw.rewrite(b"id,email\n", &mut out).unwrap();
    rw.rewrite(b"1,a@example.com\n", &mut out).unwrap();
    rw.rewrite(b"2,b@example.com\n", &mut out).unwrap();
    assert_eq!(out, b"id,email\n1,\"[REDACTED]\"\n2,\"[REDACTED]\"\n");
}

#[test]
fn malformed_copy_lines() {
    let plan = Plan::new(vec![text_col(Strategy::redact()), None], key());
    let mut out = b"keep".to_vec();
    assert_eq!(
        rewrite_copy_line(&plan, &CopyFormat::text(), b"only one\n", &mut out),
        Err(Error::FieldCount {
            expected: 2,
            found: 1
        })
    );
    assert!(rewrite_copy_line(&plan, &CopyFormat::text(), b"a\tb\tc\n", &mut out).is_err());
    assert!(rewrite_copy_line(&plan, &CopyFormat::text(), b"a\tb\\", &mut out).is_err());
    assert!(rewrite_copy_line(&plan, &CopyFormat::csv(), b"\"open,b\n", &mut out).is_err());
    assert!(rewrite_copy_line(&plan, &CopyFormat::csv(), b"\"a\"x,b\n", &mut out).is_err());
    assert_eq!(out, b"keep");
}
