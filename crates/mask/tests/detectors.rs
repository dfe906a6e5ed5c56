use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use drawbridge_mask::detect::{card, email, iban, ip, jwt, phone, secret, ssn};
use drawbridge_mask::{Detectors, SemanticType};

fn found(f: fn(&str) -> Vec<std::ops::Range<usize>>, text: &str) -> Vec<&str> {
    f(text).into_iter().map(|r| &text[r]).collect()
}

#[test]
fn cards_valid_luhn_and_issuer() {
    for n in [
        "4242424242424242",
        "4111 1111 1111 1111",
        "4111-1111-1111-1111",
        "378282246310005",
        "5555555555554444",
        "2223003122003222",
        "6011111111111117",
        "3530111333300000",
        "30569309025904",
        "6200000000000005",
    ] {
        assert_eq!(
            found(card::find, &format!("paid with {n}, thanks")),
            vec![n],
            "{n}"
        );
    }
}

#[test]
fn cards_rejected() {
    for text in [
        "4242424242424241", // Luhn off by one
        "4242424242424243",
        "1234567812345670",     // Luhn-valid, no issuer starts with 1
        "4111 1111-1111 1111",  // mixed separators
        "42424242424242424242", // 20 digits
        "x4242424242424242",    // glued to a word
        "4242424242424242abc",
        "order 987654321",
        "424242424242", // 12 digits
    ] {
        assert!(card::find(text).is_empty(), "{text}");
    }
}

#[test]
fn card_hidden_in_run_of_numbers() {
    let t = "ids 17 4242424242424242 end";
    assert_eq!(found(card::find, t), vec!["4242424242424242"]);
}

#[test]
fn ssn_valid_and_impossible() {
    assert_eq!(found(ssn::find, "ssn: 123-45-6789."), vec!["123-45-6789"]);
    assert_eq!(found(ssn::find, "ssn 123 45 6789"), vec!["123 45 6789"]);
    for bad in [
        "000-12-3456",
        "666-12-3456",
        "900-12-3456",
        "999-12-3456",
        "123-00-4567",
        "123-45-0000",
        "078-05-1120",
        "123456789",
        "123-45 6789",
        "1123-45-6789",
        "123-45-67890",
        "123-45-6789-1",
        "555-123-4567",
    ] {
        assert!(ssn::find(bad).is_empty(), "{bad}");
    }
}

#[test]
fn iban_several_countries() {
    for v in [
        "DE89 3704 0044 0532 0130 00",
        "DE89370400440532013000",
        "GB82WEST12345698765432",
        "GB82 WEST 1234 5698 7654 32",
        "FR1420041010050500013M02606",
        "NL91ABNA0417164300",
        "BE68539007547034",
        "CH9300762011623852957",
        "ES9121000418450200051332",
        "NO9386011117947",
    ] {
        assert_eq!(found(iban::find, &format!("account {v}.")), vec![v], "{v}");
    }
}

#[test]
fn iban_rejected() {
    for bad in [
        "DE89370400440532013001",  // checksum broken
        "DE88370400440532013000",  // check digits altered
        "GB82WEST1234569876543",   // one short
        "GB82WEST123456987654321", // one long
        "XX89370400440532013000",  // no such country
        "de89370400440532013000",  // lower case
        "DE89 3704 0044 0532 0130 01",
    ] {
        assert!(iban::find(bad).is_empty(), "{bad}");
    }
}

#[test]
fn emails_in_text() {
    let t = "Write to alice.smith+tag@example.co.uk. Or bob@ex-ample.com, not me.";
    assert_eq!(
        found(email::find, t),
        vec!["alice.smith+tag@example.co.uk", "bob@ex-ample.com"]
    );
    for bad in [
        "not@valid",
        "a@b.c",
        "x@@y.com",
        "@example.com",
        "user@-bad.com",
        "user@exa..mple.com",
        "a..b@example.com",
        "user@example.c0m",
    ] {
        assert!(email::find(bad).is_empty(), "{bad}");
    }
}

fn b64(s: &str) -> String {
    URL_SAFE_NO_PAD.encode(s)
}

#[test]
fn jwt_versus_random_dots() {
    let token = format!(
        "{}.{}.SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c",
        b64(r#"{"alg":"HS256","typ":"JWT"}"#),
        b64(r#"{"sub":"1234567890","iat":1516239022}"#)
    );
    let text = format!("Authorization: Bearer {token} end");
    assert_eq!(found(jwt::find, &text), vec![token.as_str()]);
    let unsecured = format!("{}.{}.", b64(r#"{"alg":"none"}"#), b64(r#"{"a":1}"#));
    assert_eq!(found(jwt::find, &unsecured), vec![unsecured.as_str()]);

    let no_alg = format!("{}.{}.sig", b64(r#"{"typ":"JWT"}"#), b64(r#"{"a":1}"#));
    let not_json = format!("eyJub3QganNvbg.{}.sig", b64(r#"{"a":1}"#));
    let payload_not_object = format!("{}.{}.sig", b64(r#"{"alg":"HS256"}"#), b64("hello"));
    for bad in [
        no_alg.as_str(),
        not_json.as_str(),
        payload_not_object.as_str(),
        "www.example.com",
        "a.b.c",
        "eyJhbGciOiJIUzI1NiJ9.eyJ",
    ] {
        assert!(jwt::find(bad).is_empty(), "{bad}");
    }
}

#[test]
fn phones_conservative() {
    for p in [
        "+1 (415) 555-2671",
        "415-555-2671",
        "(415) 555-2671",
        "415.555.2671",
        "1-800-555-0199",
        "+44 20 7946 0958",
        "+14155552671",
        "+33 1 23 45 67 89",
    ] {
        assert_eq!(
            found(phone::find, &format!("call {p} today")),
            vec![p],
            "{p}"
        );
    }
    for bad in [
        "123-456-7890",
        "415-155-2671",
        "2024-01-15",
        "4155552671",
        "version 1.2.3",
        "555-0123",
        "415-555.2671",
        "+123",
        "415-555-2671-99",
        "+1234567890123456",
    ] {
        assert!(phone::find(bad).is_empty(), "{bad}");
    }
}

#[test]
fn ip_addresses() {
    assert_eq!(
        found(ip::find, "from 192.168.1.10, then 10.0.0.1."),
        vec!["192.168.1.10", "10.0.0.1"]
    );
    assert_eq!(
        found(ip::find, "v6 2001:db8::1 and fe80::1%eth0"),
        vec!["2001:db8::1", "fe80::1"]
    );
    assert_eq!(
        found(ip::find, "mapped ::ffff:192.0.2.1 ok"),
        vec!["::ffff:192.0.2.1"]
    );
    for bad in [
        "10.0.0.256",
        "1.2.3",
        "1.2.3.4.5",
        "01.2.3.4",
        "at 12:30:45",
        "std::vector",
        "v1.2.3.4a",
    ] {
        assert!(ip::find(bad).is_empty(), "{bad}");
    }
}

#[test]
fn secrets_known_prefixes() {
    let gh = format!("ghp_{}", "a1B2c3D4e5".repeat(3) + "F6g7H8");
    let cases = [
        "AKIAIOSFODNN7EXAMPLE".to_string(),
        gh.clone(),
        "sk_live_4eC39HqLyjWDarjtT1zdp7dc".to_string(),
        "xoxb-123456789012-abcdefghij".to_string(),
        "glpat-abcdefghij0123456789".to_string(),
    ];
    for c in &cases {
        assert_eq!(
            found(secret::find, &format!("key={c};")),
            vec![c.as_str()],
            "{c}"
        );
    }
    let pem =
        "-----BEGIN RSA PRIVATE KEY-----\nMIIBOgIBAAJBAKj34GkxFhD9\n-----END RSA PRIVATE KEY-----";
    let t = format!("cfg: {pem}\nmore");
    assert_eq!(found(secret::find, &t), vec![pem]);
    // A truncated key is masked to the end of the value.
    let cut = "x -----BEGIN PRIVATE KEY-----\nMIIBOgIBAAJB";
    assert_eq!(found(secret::find, cut), vec![&cut[2..]]);
    for bad in [
        "AKIAIOSFODNN7EXAMPL", // 15
        "AKIAIOSFODNN7EXAMPLEX",
        "XAKIAIOSFODNN7EXAMPLE",
        "sk_live_short",
        "ghp_tooShort123",
        "-----BEGIN PUBLIC KEY-----\nabc\n-----END PUBLIC KEY-----",
        "-----BEGIN CERTIFICATE-----",
    ] {
        assert!(secret::find(bad).is_empty(), "{bad}");
    }
}

#[test]
fn detector_sets_merge_findings() {
    let t = "mail alice@example.com card 4242424242424242 ip 10.1.2.3";
    let all = Detectors::ALL.find(t);
    let got: Vec<&str> = all.iter().map(|r| &t[r.clone()]).collect();
    assert_eq!(
        got,
        vec!["alice@example.com", "4242424242424242", "10.1.2.3"]
    );
    let only_email = Detectors::of(&[SemanticType::Email]).find(t);
    assert_eq!(only_email.len(), 1);
    assert!(Detectors::NONE.find(t).is_empty());
    assert_eq!(SemanticType::Secret.find("AKIAIOSFODNN7EXAMPLE").len(), 1);
}

#[test]
fn plain_prose_has_no_findings() {
    let t = "The meeting on 2024-03-15 at 10:30 moved to room 4B; budget 1,250,000 (v2.1.0). \
             See section 3.2.1 and call the front desk ext. 5521. Order #98765432101.";
    assert!(
        Detectors::ALL.find(t).is_empty(),
        "{:?}",
        Detectors::ALL.find(t)
    );
}
