mod common;
use common::{key, mask1, mask1_with, s};
use drawbridge_mask::{oid, ColumnMask, Detectors, Format, HashKey, SemanticType, Strategy};

fn col(strategy: Strategy, type_oid: u32) -> ColumnMask {
    ColumnMask::new(strategy, type_oid, -1, Format::Text)
}

fn bin(strategy: Strategy, type_oid: u32) -> ColumnMask {
    ColumnMask::new(strategy, type_oid, -1, Format::Binary)
}

fn hash(n: usize) -> Strategy {
    Strategy::hash(n).unwrap()
}

#[test]
fn text_strategies() {
    assert_eq!(
        s(mask1(
            col(Strategy::redact(), oid::TEXT),
            b"alice@example.com"
        )),
        "[REDACTED]"
    );
    assert_eq!(
        s(mask1(
            col(Strategy::partial(4), oid::TEXT),
            b"4242424242424242"
        )),
        "************4242"
    );
    assert_eq!(
        s(mask1(
            col(Strategy::partial(2), oid::TEXT),
            "héllo".as_bytes()
        )),
        "***lo"
    );
    // Too short to reveal anything.
    assert_eq!(
        s(mask1(col(Strategy::partial(4), oid::TEXT), b"abc")),
        "***"
    );
    let custom = Strategy::Partial {
        keep: 1, mask: '•'
    };
    assert_eq!(s(mask1(col(custom, oid::TEXT), b"abc")), "••c");
    let h = s(mask1(col(hash(16), oid::TEXT), b"alice@example.com"));
    assert_eq!(h.len(), 16);
    assert!(h
        .bytes()
        .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase()));
    assert_eq!(mask1(col(Strategy::Null, oid::TEXT), b"x"), None);
    assert!(Strategy::hash(0).is_err() && Strategy::hash(65).is_err());
}

#[test]
fn hash_is_deterministic_and_keyed() {
    let a = mask1(col(hash(64), oid::TEXT), b"alice@example.com");
    let b = mask1(col(hash(64), oid::VARCHAR), b"alice@example.com");
    assert_eq!(a, b, "same input, same output across text-like types");
    let c = mask1(col(hash(64), oid::TEXT), b"alice@example.org");
    assert_ne!(a, c);
    let other = mask1_with(
        HashKey::new(b"another key").unwrap(),
        col(hash(64), oid::TEXT),
        b"alice@example.com",
    );
    assert_ne!(a, other, "the key changes the output");
    let short = s(mask1(col(hash(7), oid::TEXT), b"alice@example.com"));
    assert_eq!(short.len(), 7);
    assert!(s(a).starts_with(&short));
    // Binary text equals text: a client's result format does not change pseudonyms.
    assert_eq!(
        mask1(bin(hash(64), oid::TEXT), b"alice@example.com"),
        mask1(col(hash(64), oid::TEXT), b"alice@example.com")
    );
}

#[test]
fn length_limited_text_types() {
    // varchar(5): typmod 9.
    let v5 = ColumnMask::new(Strategy::redact(), oid::VARCHAR, 9, Format::Text);
    assert_eq!(s(mask1(v5, b"secret")), "[REDA");
    // char(12): exactly 12, trailing blanks of the input ignored.
    let c12 = |st| ColumnMask::new(st, oid::BPCHAR, 16, Format::Text);
    assert_eq!(s(mask1(c12(hash(8)), b"abc         ")).len(), 12);
    assert_eq!(
        mask1(c12(hash(8)), b"abc         "),
        mask1(c12(hash(8)), b"abc")
    );
    assert_eq!(
        s(mask1(c12(Strategy::partial(2)), b"abcd        ")),
        "**cd        "
    );
    let n = s(mask1(col(hash(64), oid::NAME), b"x"));
    assert_eq!(n.len(), 63);
}

#[test]
fn json_and_jsonb() {
    let out = s(mask1(col(Strategy::redact(), oid::JSON), br#"{"a":1}"#));
    assert_eq!(serde_json::from_str::<String>(&out).unwrap(), "[REDACTED]");
    // A JSON string is masked by its contents.
    let out = s(mask1(
        col(Strategy::partial(3), oid::JSONB),
        br#""alice@x.com""#,
    ));
    assert_eq!(out, r#""********com""#);
    let hashed_json = s(mask1(col(hash(12), oid::JSON), br#""alice@x.com""#));
    let hashed_text = s(mask1(col(hash(12), oid::TEXT), b"alice@x.com"));
    assert_eq!(hashed_json, format!("\"{hashed_text}\""));
    // Placeholders that need escaping stay valid JSON.
    let tricky = Strategy::Redact {
        placeholder: "a\"b\\c\n".into(),
    };
    let out = s(mask1(col(tricky, oid::JSON), b"1"));
    assert_eq!(serde_json::from_str::<String>(&out).unwrap(), "a\"b\\c\n");
    // Binary jsonb: version byte, then text.
    let mut v = vec![1u8];
    v.extend_from_slice(br#"{"k":"v"}"#);
    let out = mask1(bin(Strategy::redact(), oid::JSONB), &v).unwrap();
    assert_eq!(out[0], 1);
    assert_eq!(
        serde_json::from_slice::<String>(&out[1..]).unwrap(),
        "[REDACTED]"
    );
    // Binary json has no version byte.
    let out = mask1(bin(Strategy::redact(), oid::JSON), b"{}").unwrap();
    assert_eq!(out, br#""[REDACTED]""#);
    // An unknown jsonb version cannot be read: NULL rather than guess.
    assert_eq!(mask1(bin(Strategy::redact(), oid::JSONB), b"\x02{}"), None);
}

fn is_uuid(t: &str) -> bool {
    t.len() == 36
        && t.char_indices().all(|(i, c)| {
            if matches!(i, 8 | 13 | 18 | 23) {
                c == '-'
            } else {
                c.is_ascii_hexdigit()
            }
        })
}

#[test]
fn uuid() {
    let text = b"a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11";
    let raw: Vec<u8> = (0..16)
        .map(|i| {
            let hex: String = std::str::from_utf8(text).unwrap().replace('-', "");
            u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).unwrap()
        })
        .collect();
    let t = s(mask1(col(hash(8), oid::UUID), text));
    assert!(is_uuid(&t), "{t}");
    assert_ne!(t.as_bytes(), text);
    let b = mask1(bin(hash(8), oid::UUID), &raw).unwrap();
    assert_eq!(b.len(), 16);
    assert_eq!(
        t.replace('-', ""),
        b.iter().map(|x| format!("{x:02x}")).collect::<String>(),
        "same pseudonym in both formats"
    );
    assert_eq!(&t[14..15], "8", "version nibble");
    for st in [Strategy::redact(), Strategy::partial(4), Strategy::Null] {
        assert_eq!(mask1(col(st, oid::UUID), text), None);
    }
    assert_eq!(mask1(bin(hash(8), oid::UUID), b"short"), None);
}

#[test]
fn integers_hash_or_null() {
    let t = s(mask1(col(hash(8), oid::INT4), b"42"));
    let n: i32 = t.parse().unwrap();
    assert!(n >= 0);
    let b = mask1(bin(hash(8), oid::INT4), &42i32.to_be_bytes()).unwrap();
    assert_eq!(
        i32::from_be_bytes(b.try_into().unwrap()),
        n,
        "same pseudonym in both formats"
    );
    let b8 = mask1(bin(hash(8), oid::INT8), &(-7i64).to_be_bytes()).unwrap();
    assert_eq!(b8.len(), 8);
    let t8: i64 = s(mask1(col(hash(8), oid::INT8), b"-7")).parse().unwrap();
    assert_eq!(i64::from_be_bytes(b8.try_into().unwrap()), t8);
    let t2: i16 = s(mask1(col(hash(8), oid::INT2), b"7")).parse().unwrap();
    assert!(t2 >= 0);
    assert_ne!(
        mask1(col(hash(8), oid::INT4), b"42"),
        mask1(col(hash(8), oid::INT4), b"43")
    );
    assert_eq!(mask1(col(Strategy::redact(), oid::INT4), b"42"), None);
    assert_eq!(mask1(col(Strategy::partial(2), oid::INT8), b"42"), None);
    assert_eq!(
        mask1(bin(hash(8), oid::INT4), b"\0\0"),
        None,
        "wrong binary width"
    );
}

#[test]
fn other_types_become_null() {
    for (t, v) in [
        (oid::NUMERIC, &b"12.50"[..]),
        (oid::DATE, b"2024-01-01"),
        (oid::TIMESTAMPTZ, b"2024-01-01 00:00:00+00"),
        (oid::BOOL, b"t"),
        (1009, b"{a@b.com}"), // text[]
    ] {
        for st in [Strategy::redact(), hash(8), Strategy::partial(4)] {
            assert_eq!(mask1(col(st.clone(), t), v), None, "oid {t}");
            assert_eq!(mask1(bin(st, t), v), None, "oid {t} binary");
        }
    }
}

#[test]
fn inet_and_cidr() {
    let t = s(mask1(col(hash(8), oid::INET), b"192.168.1.7"));
    let a: std::net::Ipv4Addr = t.parse().unwrap();
    assert_eq!(a.octets()[0], 10);
    assert_eq!(
        mask1(col(hash(8), oid::INET), b"192.168.1.7"),
        mask1(col(hash(8), oid::INET), b"192.168.1.7")
    );
    let c = s(mask1(col(hash(8), oid::CIDR), b"192.168.1.0/24"));
    assert!(c.starts_with("10.") && c.ends_with("/32"), "{c}");
    assert_eq!(
        mask1(col(Strategy::redact(), oid::INET), b"192.168.1.7"),
        None
    );
    assert_eq!(
        mask1(bin(hash(8), oid::INET), &[2, 32, 0, 4, 192, 168, 1, 7]),
        None
    );
}

#[test]
fn bytea_both_formats() {
    let out = s(mask1(col(Strategy::redact(), oid::BYTEA), b"\\x0102"));
    assert_eq!(out, format!("\\x{}", hex("[REDACTED]".as_bytes())));
    let h_text = s(mask1(col(hash(8), oid::BYTEA), b"\\x0102ff"));
    let h_bin = mask1(bin(hash(8), oid::BYTEA), &[1, 2, 0xff]).unwrap();
    assert_eq!(
        h_text,
        format!("\\x{}", hex(&h_bin)),
        "same pseudonym in both formats"
    );
    assert_eq!(
        mask1(bin(Strategy::partial(1), oid::BYTEA), &[1, 2, 3]).unwrap(),
        b"**\x03"
    );
    assert_eq!(
        mask1(col(Strategy::redact(), oid::BYTEA), b"\\x0"),
        None,
        "odd hex"
    );
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

#[test]
fn invalid_utf8_text_becomes_null() {
    assert_eq!(mask1(col(Strategy::partial(2), oid::TEXT), b"ab\xff"), None);
    assert_eq!(
        mask1(
            col(Strategy::redact(), oid::TEXT).scanning(Detectors::ALL),
            b"ab\xff"
        ),
        None
    );
}

fn scan(st: Strategy, t: u32) -> ColumnMask {
    col(st, t).scanning(Detectors::ALL)
}

#[test]
fn scanning_text() {
    let note = b"Customer alice@example.com paid 4242 4242 4242 4242; ssn 123-45-6789.";
    assert_eq!(
        s(mask1(scan(Strategy::redact(), oid::TEXT), note)),
        "Customer [REDACTED] paid [REDACTED]; ssn [REDACTED]."
    );
    assert_eq!(
        s(mask1(
            scan(Strategy::partial(4), oid::TEXT),
            b"card 4242424242424242 ok"
        )),
        "card ************4242 ok"
    );
    let h = s(mask1(scan(hash(10), oid::TEXT), b"to bob@example.com"));
    let whole = s(mask1(col(hash(10), oid::TEXT), b"bob@example.com"));
    assert_eq!(
        h,
        format!("to {whole}"),
        "a finding hashes like the whole value"
    );
    assert_eq!(mask1(scan(Strategy::Null, oid::TEXT), note), None);
    let only_ssn = col(Strategy::redact(), oid::TEXT).scanning(Detectors::of(&[SemanticType::Ssn]));
    assert_eq!(
        s(mask1(only_ssn, note)),
        "Customer alice@example.com paid 4242 4242 4242 4242; ssn [REDACTED]."
    );
    let v20 = ColumnMask::new(Strategy::redact(), oid::VARCHAR, 24, Format::Text)
        .scanning(Detectors::ALL);
    assert_eq!(
        s(mask1(v20, b"mail alice@example.com please")),
        "mail [REDACTED] plea",
        "varchar(20) limit"
    );
}

#[test]
fn scanning_json() {
    let doc = br#"{"note": "mail alice@example.com", "n": 1}"#;
    let out = s(mask1(scan(Strategy::redact(), oid::JSONB), doc));
    assert_eq!(out, r#"{"note": "mail [REDACTED]", "n": 1}"#);
    // A card stored as a JSON number: the whole document is replaced instead.
    let out = s(mask1(
        scan(Strategy::redact(), oid::JSON),
        br#"{"card": 4242424242424242}"#,
    ));
    assert_eq!(serde_json::from_str::<String>(&out).unwrap(), "[REDACTED]");
    // A finding right after an escape cannot be spliced; the result stays valid JSON.
    let esc = br#"{"u": "\u00e9abc@example.com"}"#;
    let out = s(mask1(scan(Strategy::redact(), oid::JSON), esc));
    assert!(
        serde_json::from_str::<serde_json::Value>(&out).is_ok(),
        "{out}"
    );
    assert!(!out.contains("example.com"));
    // A replacement with quotes is escaped in place.
    let quote = Strategy::Redact {
        placeholder: "\"x\"".into(),
    };
    let out = s(mask1(scan(quote, oid::JSON), br#"["bob@example.com"]"#));
    assert_eq!(
        serde_json::from_str::<Vec<String>>(&out).unwrap(),
        vec!["\"x\""]
    );
    let mut v = vec![1u8];
    v.extend_from_slice(br#"{"ip": "10.1.2.3"}"#);
    let out = mask1(
        bin(Strategy::redact(), oid::JSONB).scanning(Detectors::ALL),
        &v,
    )
    .unwrap();
    assert_eq!(out, b"\x01{\"ip\": \"[REDACTED]\"}");
}

#[test]
fn scanning_leaves_clean_values_alone() {
    let plan_col = scan(Strategy::redact(), oid::TEXT);
    assert_eq!(s(mask1(plan_col, b"nothing to see")), "nothing to see");
    assert_eq!(s(mask1(scan(Strategy::redact(), oid::INT4), b"42")), "42");
    // Binary values of other types cannot be inspected: masked whole.
    assert_eq!(
        mask1(
            bin(Strategy::redact(), oid::INT4).scanning(Detectors::ALL),
            &42i32.to_be_bytes()
        ),
        None
    );
    assert_eq!(
        mask1(scan(Strategy::redact(), oid::INET), b"10.1.2.3"),
        None
    );
    assert_eq!(
        s(mask1(scan(hash(8), oid::INET), b"10.1.2.3"))
            .split('.')
            .count(),
        4
    );
    // bytea hides content from detectors, so it is always masked whole.
    assert!(mask1(scan(Strategy::redact(), oid::BYTEA), b"\\x00")
        .unwrap()
        .starts_with(b"\\x"));
    let _ = key();
}
