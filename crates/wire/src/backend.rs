//! Typed views of what the server (backend) sends.

use crate::{Error, Reader, Result};

pub const AUTHENTICATION: u8 = b'R';
pub const BACKEND_KEY_DATA: u8 = b'K';
pub const PARAMETER_STATUS: u8 = b'S';
pub const READY_FOR_QUERY: u8 = b'Z';
pub const COMMAND_COMPLETE: u8 = b'C';
pub const ERROR_RESPONSE: u8 = b'E';
pub const NOTICE_RESPONSE: u8 = b'N';
pub const EMPTY_QUERY: u8 = b'I';
pub const PORTAL_SUSPENDED: u8 = b's';
pub const ROW_DESCRIPTION: u8 = b'T';
pub const DATA_ROW: u8 = b'D';
pub const COPY_IN_RESPONSE: u8 = b'G';
pub const COPY_OUT_RESPONSE: u8 = b'H';
pub const COPY_BOTH_RESPONSE: u8 = b'W';
pub const NEGOTIATE_PROTOCOL_VERSION: u8 = b'v';

pub const AUTH_OK: i32 = 0;
pub const AUTH_CLEARTEXT: i32 = 3;
pub const AUTH_MD5: i32 = 5;
pub const AUTH_SASL: i32 = 10;
pub const AUTH_SASL_CONTINUE: i32 = 11;
pub const AUTH_SASL_FINAL: i32 = 12;

#[derive(Debug, PartialEq, Eq)]
pub enum Authentication<'a> {
    Ok,
    Cleartext,
    Md5([u8; 4]),
    Sasl(Vec<&'a [u8]>),
    SaslContinue(&'a [u8]),
    SaslFinal(&'a [u8]),
    Other(i32),
}

pub fn authentication(body: &[u8]) -> Result<Authentication<'_>> {
    let mut r = Reader::new(body, "Authentication");
    Ok(match r.i32()? {
        AUTH_OK => Authentication::Ok,
        AUTH_CLEARTEXT => Authentication::Cleartext,
        AUTH_MD5 => {
            let s = r.bytes(4)?;
            Authentication::Md5([s[0], s[1], s[2], s[3]])
        }
        AUTH_SASL => {
            let mut mechs = Vec::new();
            loop {
                let m = r.cstr()?;
                if m.is_empty() {
                    break;
                }
                mechs.push(m);
            }
            Authentication::Sasl(mechs)
        }
        AUTH_SASL_CONTINUE => Authentication::SaslContinue(r.rest()),
        AUTH_SASL_FINAL => Authentication::SaslFinal(r.rest()),
        other => Authentication::Other(other),
    })
}

pub fn backend_key_data(body: &[u8]) -> Result<(i32, i32)> {
    let mut r = Reader::new(body, "BackendKeyData");
    Ok((r.i32()?, r.i32()?))
}

/// Transaction status of ReadyForQuery: b'I' idle, b'T' in a transaction, b'E' failed.
pub fn ready_for_query(body: &[u8]) -> Result<u8> {
    match body {
        [s @ (b'I' | b'T' | b'E')] => Ok(*s),
        _ => Err(Error::Malformed("ReadyForQuery")),
    }
}

/// The command tag of CommandComplete, e.g. "UPDATE 12".
pub fn command_tag(body: &[u8]) -> Result<&str> {
    let mut r = Reader::new(body, "CommandComplete");
    std::str::from_utf8(r.cstr()?).map_err(|_| Error::Malformed("CommandComplete"))
}

/// Rows a command tag reports as affected or returned ("INSERT 0 5" → 5); None for tags
/// without a count.
pub fn tag_rows(tag: &str) -> Option<u64> {
    let (_, last) = tag.rsplit_once(' ')?;
    last.parse().ok()
}

/// Fields of an ErrorResponse or NoticeResponse, by field code.
pub fn fields(body: &[u8]) -> Result<Vec<(u8, &[u8])>> {
    let mut r = Reader::new(body, "ErrorResponse");
    let mut out = Vec::new();
    loop {
        let code = r.u8()?;
        if code == 0 {
            break;
        }
        out.push((code, r.cstr()?));
    }
    if !r.is_empty() {
        return Err(Error::Malformed("ErrorResponse"));
    }
    Ok(out)
}

pub fn field<'a>(fields: &[(u8, &'a [u8])], code: u8) -> Option<&'a [u8]> {
    fields.iter().find(|(c, _)| *c == code).map(|(_, v)| *v)
}

pub fn parameter_status(body: &[u8]) -> Result<(&[u8], &[u8])> {
    let mut r = Reader::new(body, "ParameterStatus");
    Ok((r.cstr()?, r.cstr()?))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Builder;

    #[test]
    fn tags() {
        assert_eq!(tag_rows("UPDATE 12"), Some(12));
        assert_eq!(tag_rows("INSERT 0 5"), Some(5));
        assert_eq!(tag_rows("BEGIN"), None);
        assert_eq!(command_tag(b"DELETE 3\0").unwrap(), "DELETE 3");
    }

    #[test]
    fn error_fields_round_trip() {
        let e = Builder::error("ERROR", "42501", "drawbridge: no", None);
        let h = crate::peek(&e, 1000).unwrap().unwrap();
        let f = fields(h.body(&e)).unwrap();
        assert_eq!(field(&f, b'C'), Some(&b"42501"[..]));
        assert_eq!(field(&f, b'M'), Some(&b"drawbridge: no"[..]));
        assert!(fields(b"Cabc").is_err());
    }

    #[test]
    fn auth_views() {
        assert_eq!(authentication(b"\0\0\0\0").unwrap(), Authentication::Ok);
        assert_eq!(
            authentication(b"\0\0\0\x0aSCRAM-SHA-256\0\0").unwrap(),
            Authentication::Sasl(vec![&b"SCRAM-SHA-256"[..]])
        );
        assert!(authentication(b"\0\0\0\x05ab").is_err());
        assert_eq!(ready_for_query(b"T").unwrap(), b'T');
        assert!(ready_for_query(b"X").is_err());
    }
}

/// One column of a RowDescription.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Field<'a> {
    pub name: &'a [u8],
    /// OID of the table the column comes from, 0 when it is not a plain table column.
    pub table_oid: u32,
    pub attnum: i16,
    pub type_oid: u32,
    pub type_size: i16,
    pub typmod: i32,
    /// 0 text, 1 binary.
    pub format: i16,
}

pub fn row_description(body: &[u8]) -> Result<Vec<Field<'_>>> {
    let mut r = Reader::new(body, "RowDescription");
    let n = usize::try_from(r.i16()?).map_err(|_| Error::Malformed("RowDescription"))?;
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        out.push(Field {
            name: r.cstr()?,
            table_oid: r.i32()? as u32,
            attnum: r.i16()?,
            type_oid: r.i32()? as u32,
            type_size: r.i16()?,
            typmod: r.i32()?,
            format: r.i16()?,
        });
    }
    if !r.is_empty() {
        return Err(Error::Malformed("RowDescription"));
    }
    Ok(out)
}

/// CopyOutResponse: the overall format (0 text, 1 binary) and each column's format.
pub fn copy_out_response(body: &[u8]) -> Result<(i8, Vec<i16>)> {
    let mut r = Reader::new(body, "CopyOutResponse");
    let format = r.u8()? as i8;
    let n = usize::try_from(r.i16()?).map_err(|_| Error::Malformed("CopyOutResponse"))?;
    let mut cols = Vec::with_capacity(n);
    for _ in 0..n {
        cols.push(r.i16()?);
    }
    if !r.is_empty() {
        return Err(Error::Malformed("CopyOutResponse"));
    }
    Ok((format, cols))
}

#[cfg(test)]
mod result_tests {
    use super::*;

    #[test]
    fn row_description_round_trip_and_truncation() {
        let mut body = vec![0, 1];
        body.extend_from_slice(b"email\0");
        body.extend_from_slice(&16384i32.to_be_bytes());
        body.extend_from_slice(&3i16.to_be_bytes());
        body.extend_from_slice(&25i32.to_be_bytes());
        body.extend_from_slice(&(-1i16).to_be_bytes());
        body.extend_from_slice(&(-1i32).to_be_bytes());
        body.extend_from_slice(&1i16.to_be_bytes());
        let f = row_description(&body).unwrap();
        assert_eq!(f.len(), 1);
        assert_eq!((f[0].name, f[0].table_oid, f[0].attnum, f[0].type_oid, f[0].format), (&b"email"[..], 16384, 3, 25, 1));
        assert!(row_description(&body[..body.len() - 1]).is_err());
        body.push(0);
        assert!(row_description(&body).is_err());
        assert!(row_description(&[0xff, 0xff]).is_err());
    }

    #[test]
    fn copy_out_response_reads_formats() {
        assert_eq!(copy_out_response(&[0, 0, 2, 0, 0, 0, 0]).unwrap(), (0, vec![0, 0]));
        assert_eq!(copy_out_response(&[1, 0, 1, 0, 1]).unwrap(), (1, vec![1]));
        assert!(copy_out_response(&[0, 0, 2, 0, 0]).is_err());
    }
}
