mod common;
use common::{frame, key, parse};
use drawbridge_mask::{
    oid, rewrite_copy_line, rewrite_data_row, ColumnMask, CopyFormat, Detectors, Format, Plan,
    Strategy as Mask,
};
use proptest::prelude::*;

const OIDS: [u32; 12] = [
    oid::TEXT,
    oid::VARCHAR,
    oid::BPCHAR,
    oid::NAME,
    oid::JSON,
    oid::JSONB,
    oid::UUID,
    oid::INT4,
    oid::INT8,
    oid::INET,
    oid::BYTEA,
    oid::NUMERIC,
];

fn strategy() -> impl Strategy<Value = Mask> {
    prop_oneof![
        Just(Mask::redact()),
        (0usize..6).prop_map(Mask::partial),
        (1usize..=64).prop_map(|n| Mask::Hash { hex_len: n }),
        Just(Mask::Null),
    ]
}

fn column() -> impl Strategy<Value = Option<ColumnMask>> {
    prop_oneof![
        Just(None),
        (
            strategy(),
            0usize..OIDS.len(),
            -1i32..30,
            any::<bool>(),
            any::<bool>()
        )
            .prop_map(|(s, o, typmod, bin, scan)| {
                let fmt = if bin { Format::Binary } else { Format::Text };
                let m = ColumnMask::new(s, OIDS[o], typmod, fmt);
                Some(if scan { m.scanning(Detectors::ALL) } else { m })
            }),
    ]
}

fn value() -> impl Strategy<Value = Option<Vec<u8>>> {
    prop_oneof![
        Just(None),
        proptest::collection::vec(any::<u8>(), 0..40).prop_map(Some),
        "[ -~]{0,40}".prop_map(|s| Some(s.into_bytes())),
        Just(Some(
            b"mail alice@example.com card 4242424242424242".to_vec()
        )),
        Just(Some(
            br#"{"a": "10.0.0.1", "b": 4242424242424242}"#.to_vec()
        )),
    ]
}

proptest! {
    #[test]
    fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..64), cols in proptest::collection::vec(column(), 0..4)) {
        let plan = Plan::new(cols, key());
        let mut out = Vec::new();
        let mut f = bytes.clone();
        let _ = rewrite_data_row(&plan, &f, &mut out);
        // Also with a plausible header in front.
        f.splice(0..0, [b'D', 0, 0, 0, 0]);
        let l = (f.len() - 1) as i32;
        f[1..5].copy_from_slice(&l.to_be_bytes());
        let _ = rewrite_data_row(&plan, &f, &mut out);
        let _ = rewrite_copy_line(&plan, &CopyFormat::text(), &bytes, &mut out);
        let _ = rewrite_copy_line(&plan, &CopyFormat::csv(), &bytes, &mut out);
    }

    #[test]
    fn valid_frames_round_trip(rows in proptest::collection::vec((column(), value()), 0..12)) {
        let (cols, vals): (Vec<_>, Vec<_>) = rows.into_iter().unzip();
        let plan = Plan::new(cols.clone(), key());
        let refs: Vec<Option<&[u8]>> = vals.iter().map(|v| v.as_deref()).collect();
        let f = frame(&refs);
        let mut out = Vec::new();
        let stats = rewrite_data_row(&plan, &f, &mut out).unwrap();
        let got = parse(&out);
        prop_assert_eq!(got.len(), vals.len());
        let mut changed = 0;
        for (i, (c, v)) in cols.iter().zip(&vals).enumerate() {
            if c.is_none() || v.is_none() {
                prop_assert_eq!(&got[i], v, "column {} must be untouched", i);
            }
            if &got[i] != v {
                changed += 1;
            }
        }
        prop_assert!(changed <= stats.masked as usize);
        // Masking is deterministic.
        let mut again = Vec::new();
        rewrite_data_row(&plan, &f, &mut again).unwrap();
        prop_assert_eq!(out, again);
    }

    #[test]
    fn masked_text_is_valid_for_its_type(v in "[ -~]{0,60}", s in strategy(), typmod in 5i32..20, o in 0usize..6, scan in any::<bool>()) {
        let m = ColumnMask::new(s, OIDS[o], typmod, Format::Text);
        let m = if scan { m.scanning(Detectors::ALL) } else { m };
        let plan = Plan::new(vec![Some(m)], key());
        let mut out = Vec::new();
        rewrite_data_row(&plan, &frame(&[Some(v.as_bytes())]), &mut out).unwrap();
        // A value left unchanged came from the server and is valid already.
        if let Some(got) = parse(&out).pop().unwrap().filter(|g| g.as_slice() != v.as_bytes()) {
            let text = String::from_utf8(got).unwrap();
            let n = (typmod - 4) as usize;
            match OIDS[o] {
                oid::VARCHAR => prop_assert!(text.chars().count() <= n),
                oid::BPCHAR => prop_assert_eq!(text.chars().count(), n),
                oid::NAME => prop_assert!(text.len() <= 63),
                oid::JSON | oid::JSONB if !scan => {
                    prop_assert!(serde_json::from_str::<serde_json::Value>(&text).is_ok(), "{}", text);
                }
                _ => {}
            }
        }
    }

    #[test]
    fn copy_text_round_trips_unmasked(fields in proptest::collection::vec("[ -~\t\n\\\\]{0,12}", 1..6)) {
        // Encode arbitrary values the way the server does, then rewrite with an empty plan.
        let mut line = Vec::new();
        for (i, f) in fields.iter().enumerate() {
            if i > 0 { line.push(b'\t'); }
            for c in f.bytes() {
                match c {
                    b'\\' => line.extend_from_slice(b"\\\\"),
                    b'\t' => line.extend_from_slice(b"\\t"),
                    b'\n' => line.extend_from_slice(b"\\n"),
                    c => line.push(c),
                }
            }
        }
        line.push(b'\n');
        let plan = Plan::new(vec![None; fields.len()], key());
        let mut out = Vec::new();
        rewrite_copy_line(&plan, &CopyFormat::text(), &line, &mut out).unwrap();
        prop_assert_eq!(&out, &line);
        // Redacting every field yields the same number of fields.
        let cols = (0..fields.len()).map(|_| Some(ColumnMask::new(Mask::redact(), oid::TEXT, -1, Format::Text))).collect();
        let plan = Plan::new(cols, key());
        out.clear();
        rewrite_copy_line(&plan, &CopyFormat::text(), &line, &mut out).unwrap();
        prop_assert_eq!(out.iter().filter(|&&c| c == b'\t').count(), fields.len() - 1);
    }
}
