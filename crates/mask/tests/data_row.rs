mod common;
use common::{frame, key, parse};
use drawbridge_mask::{
    oid, rewrite_data_row, rewrite_data_row_tally, ColumnMask, Error, Format, Plan, Strategy, Tally,
};

fn row() -> Vec<Option<&'static [u8]>> {
    vec![
        Some(b"1001"),
        Some(b"Alice Smith"),
        Some(b"alice@example.com"),
        None,
        Some(b"4242424242424242"),
        Some(b"2024-01-01"),
        Some(b""),
        Some(b"123-45-6789"),
        Some(b"note"),
        None,
    ]
}

fn plan() -> Plan {
    let mut cols: Vec<Option<ColumnMask>> = vec![None; 10];
    cols[2] = Some(ColumnMask::new(
        Strategy::hash(12).unwrap(),
        oid::TEXT,
        -1,
        Format::Text,
    ));
    cols[3] = Some(ColumnMask::new(
        Strategy::redact(),
        oid::TEXT,
        -1,
        Format::Text,
    ));
    cols[4] = Some(ColumnMask::new(
        Strategy::partial(4),
        oid::VARCHAR,
        -1,
        Format::Text,
    ));
    cols[7] = Some(ColumnMask::new(
        Strategy::Null,
        oid::BPCHAR,
        15,
        Format::Text,
    ));
    Plan::new(cols, key())
}

#[test]
fn round_trip_keeps_unmasked_columns_byte_identical() {
    let input = row();
    let f = frame(&input);
    let mut out = b"prefix".to_vec();
    let stats = rewrite_data_row(&plan(), &f, &mut out).unwrap();
    assert_eq!(&out[..6], b"prefix", "appends, never clobbers");
    let got = parse(&out[6..]);
    assert_eq!(got.len(), 10);
    for i in [0, 1, 5, 6, 8, 9] {
        assert_eq!(got[i].as_deref(), input[i], "column {i}");
    }
    assert_eq!(got[2].as_ref().unwrap().len(), 12);
    assert_eq!(got[3], None, "NULL stays NULL");
    assert_eq!(got[4].as_deref(), Some(&b"************4242"[..]));
    assert_eq!(got[7], None);
    assert_eq!(stats.masked, 3);
    assert_eq!(stats.nulled, 1);
    assert!(stats.changed());
}

#[test]
fn passthrough_plan_copies_exactly() {
    let f = frame(&row());
    let p = Plan::new(vec![None; 10], key());
    assert!(p.is_passthrough());
    let mut out = Vec::new();
    let stats = rewrite_data_row(&p, &f, &mut out).unwrap();
    assert_eq!(out, f);
    assert!(!stats.changed());
}

#[test]
fn growing_and_shrinking_values_fix_the_length() {
    let cols = vec![
        Some(ColumnMask::new(
            Strategy::Redact {
                placeholder: "x".repeat(1000).into(),
            },
            oid::TEXT,
            -1,
            Format::Text,
        )),
        Some(ColumnMask::new(
            Strategy::Redact {
                placeholder: "".into(),
            },
            oid::TEXT,
            -1,
            Format::Text,
        )),
    ];
    let p = Plan::new(cols, key());
    let mut out = Vec::new();
    rewrite_data_row(
        &p,
        &frame(&[Some(b"a"), Some(b"a long value here")]),
        &mut out,
    )
    .unwrap();
    let got = parse(&out);
    assert_eq!(got[0].as_ref().unwrap().len(), 1000);
    assert_eq!(got[1].as_deref(), Some(&b""[..]));
}

#[test]
fn tally_counts_per_column() {
    let mut tally = Tally::new(10);
    let p = plan();
    let mut out = Vec::new();
    for _ in 0..3 {
        out.clear();
        rewrite_data_row_tally(&p, &frame(&row()), &mut out, &mut tally).unwrap();
    }
    assert_eq!(tally.rows, 3);
    assert_eq!(tally.per_column, vec![0, 0, 3, 0, 3, 0, 0, 3, 0, 0]);
}

#[test]
fn malformed_frames_are_errors_and_append_nothing() {
    let p = Plan::new(
        vec![
            Some(ColumnMask::new(
                Strategy::redact(),
                oid::TEXT,
                -1,
                Format::Text,
            )),
            None,
        ],
        key(),
    );
    let good = frame(&[Some(b"abc"), Some(b"de")]);
    let mut cases: Vec<(Vec<u8>, &str)> = Vec::new();
    let mut wrong_tag = good.clone();
    wrong_tag[0] = b'T';
    cases.push((wrong_tag, "tag"));
    cases.push((good[..good.len() - 1].to_vec(), "short by one"));
    let mut long_len = good.clone();
    long_len[4] += 1;
    cases.push((long_len, "length field too big"));
    let mut extra = good.clone();
    extra.push(0);
    cases.push((extra, "trailing byte without length update"));
    let mut trailing = good.clone();
    trailing.push(0);
    let l = (trailing.len() - 1) as i32;
    trailing[1..5].copy_from_slice(&l.to_be_bytes());
    cases.push((trailing, "trailing byte"));
    let mut neg = frame(&[Some(b"abc"), Some(b"de")]);
    neg[7..11].copy_from_slice(&(-2i32).to_be_bytes());
    cases.push((neg, "negative value length"));
    let mut past = frame(&[Some(b"abc"), Some(b"de")]);
    past[7..11].copy_from_slice(&100i32.to_be_bytes());
    cases.push((past, "value past end"));
    let mut negcols = good.clone();
    negcols[5..7].copy_from_slice(&(-1i16).to_be_bytes());
    cases.push((negcols, "negative column count"));
    cases.push((vec![b'D', 0, 0, 0, 6, 0], "tiny"));
    cases.push((Vec::new(), "empty"));
    for (f, what) in cases {
        let mut out = b"keep".to_vec();
        assert!(rewrite_data_row(&p, &f, &mut out).is_err(), "{what}");
        assert_eq!(out, b"keep", "{what}: nothing appended");
    }
    let mut out = Vec::new();
    let three = frame(&[Some(b"a"), Some(b"b"), Some(b"c")]);
    assert_eq!(
        rewrite_data_row(&p, &three, &mut out),
        Err(Error::ColumnCount {
            expected: 2,
            found: 3
        })
    );
}

#[test]
fn binary_columns_in_a_row() {
    let cols = vec![
        Some(ColumnMask::new(
            Strategy::hash(8).unwrap(),
            oid::INT8,
            -1,
            Format::Binary,
        )),
        None,
        Some(ColumnMask::new(
            Strategy::redact(),
            oid::TIMESTAMPTZ,
            -1,
            Format::Binary,
        )),
    ];
    let p = Plan::new(cols, key());
    let mut out = Vec::new();
    let f = frame(&[
        Some(&7i64.to_be_bytes()),
        Some(b"\x00\x01"),
        Some(&[0u8; 8]),
    ]);
    let stats = rewrite_data_row(&p, &f, &mut out).unwrap();
    let got = parse(&out);
    assert_eq!(got[0].as_ref().unwrap().len(), 8);
    assert_ne!(got[0].as_deref(), Some(&7i64.to_be_bytes()[..]));
    assert_eq!(got[1].as_deref(), Some(&b"\x00\x01"[..]));
    assert_eq!(got[2], None);
    assert_eq!((stats.masked, stats.nulled), (2, 1));
}
