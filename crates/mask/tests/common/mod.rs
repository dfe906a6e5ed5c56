#![allow(dead_code)]
use drawbridge_mask::{rewrite_data_row, ColumnMask, HashKey, Plan};

pub fn key() -> HashKey {
    HashKey::new(b"test key").unwrap()
}

/// Builds a DataRow message.
pub fn frame(values: &[Option<&[u8]>]) -> Vec<u8> {
    let mut f = vec![b'D', 0, 0, 0, 0];
    f.extend_from_slice(&(values.len() as i16).to_be_bytes());
    for v in values {
        match v {
            None => f.extend_from_slice(&(-1i32).to_be_bytes()),
            Some(b) => {
                f.extend_from_slice(&(b.len() as i32).to_be_bytes());
                f.extend_from_slice(b);
            }
        }
    }
    let len = (f.len() - 1) as i32;
    f[1..5].copy_from_slice(&len.to_be_bytes());
    f
}

/// Parses a DataRow message strictly, checking its length field.
pub fn parse(f: &[u8]) -> Vec<Option<Vec<u8>>> {
    assert_eq!(f[0], b'D');
    let len = i32::from_be_bytes(f[1..5].try_into().unwrap()) as usize;
    assert_eq!(len + 1, f.len(), "length field");
    let n = i16::from_be_bytes(f[5..7].try_into().unwrap()) as usize;
    let mut pos = 7;
    let mut out = Vec::new();
    for _ in 0..n {
        let l = i32::from_be_bytes(f[pos..pos + 4].try_into().unwrap());
        pos += 4;
        if l < 0 {
            out.push(None);
        } else {
            out.push(Some(f[pos..pos + l as usize].to_vec()));
            pos += l as usize;
        }
    }
    assert_eq!(pos, f.len(), "no trailing bytes");
    out
}

/// Masks one value through a one-column DataRow.
pub fn mask1_with(key: HashKey, cm: ColumnMask, v: &[u8]) -> Option<Vec<u8>> {
    let plan = Plan::new(vec![Some(cm)], key);
    let mut out = Vec::new();
    rewrite_data_row(&plan, &frame(&[Some(v)]), &mut out).unwrap();
    parse(&out).pop().unwrap()
}

pub fn mask1(cm: ColumnMask, v: &[u8]) -> Option<Vec<u8>> {
    mask1_with(key(), cm, v)
}

pub fn s(v: Option<Vec<u8>>) -> String {
    String::from_utf8(v.expect("not NULL")).unwrap()
}
