//! Typed views of what a client (frontend) sends.

use crate::{Error, Reader, Result};

pub const SSL_REQUEST: i32 = 80877103;
pub const GSSENC_REQUEST: i32 = 80877104;
pub const CANCEL_REQUEST: i32 = 80877102;
pub const PROTOCOL_3_0: i32 = 196608;

pub const QUERY: u8 = b'Q';
pub const PARSE: u8 = b'P';
pub const BIND: u8 = b'B';
pub const EXECUTE: u8 = b'E';
pub const DESCRIBE: u8 = b'D';
pub const CLOSE: u8 = b'C';
pub const SYNC: u8 = b'S';
pub const FLUSH: u8 = b'H';
pub const TERMINATE: u8 = b'X';
pub const COPY_DATA: u8 = b'd';
pub const COPY_DONE: u8 = b'c';
pub const COPY_FAIL: u8 = b'f';
pub const FUNCTION_CALL: u8 = b'F';
/// PasswordMessage, SASLInitialResponse and SASLResponse share this tag.
pub const PASSWORD: u8 = b'p';

/// An untagged startup-phase packet (its whole bytes, length word included).
#[derive(Debug, PartialEq, Eq)]
pub enum Startup {
    Ssl,
    GssEnc,
    Cancel { pid: i32, key: i32 },
    Params(Vec<(String, String)>),
}

impl Startup {
    pub fn parse(packet: &[u8]) -> Result<Startup> {
        let mut r = Reader::new(packet, "startup");
        let _len = r.i32()?;
        let code = r.i32()?;
        match code {
            SSL_REQUEST => Ok(Startup::Ssl),
            GSSENC_REQUEST => Ok(Startup::GssEnc),
            CANCEL_REQUEST => {
                let pid = r.i32()?;
                let key = r.i32()?;
                Ok(Startup::Cancel { pid, key })
            }
            PROTOCOL_3_0 => {
                let mut params = Vec::new();
                loop {
                    let k = r.cstr()?;
                    if k.is_empty() {
                        break;
                    }
                    let v = r.cstr()?;
                    let text = |b: &[u8]| {
                        String::from_utf8(b.to_vec()).map_err(|_| Error::Malformed("startup"))
                    };
                    params.push((text(k)?, text(v)?));
                }
                Ok(Startup::Params(params))
            }
            other => Err(Error::UnsupportedVersion((other >> 16) as u16, (other & 0xffff) as u16)),
        }
    }
}

/// Query: the SQL text of a simple-protocol message, as bytes in the client's encoding.
pub fn query(body: &[u8]) -> Result<&[u8]> {
    let mut r = Reader::new(body, "Query");
    r.cstr()
}

pub struct Parse<'a> {
    pub name: &'a [u8],
    pub query: &'a [u8],
    /// Declared parameter type OIDs, four bytes each (0: let the server infer it).
    param_types: &'a [u8],
}

impl Parse<'_> {
    pub fn param_types(&self) -> impl Iterator<Item = u32> + '_ {
        self.param_types.chunks_exact(4).map(|c| u32::from_be_bytes([c[0], c[1], c[2], c[3]]))
    }
}

pub fn parse(body: &[u8]) -> Result<Parse<'_>> {
    let mut r = Reader::new(body, "Parse");
    let name = r.cstr()?;
    let query = r.cstr()?;
    let n = r.i16()?;
    if n < 0 {
        return Err(Error::Malformed("Parse"));
    }
    let param_types = r.bytes(n as usize * 4)?;
    Ok(Parse { name, query, param_types })
}

pub struct Bind<'a> {
    pub portal: &'a [u8],
    pub statement: &'a [u8],
}

/// Bind: only the names; parameters are forwarded untouched.
pub fn bind(body: &[u8]) -> Result<Bind<'_>> {
    let mut r = Reader::new(body, "Bind");
    let portal = r.cstr()?;
    let statement = r.cstr()?;
    Ok(Bind { portal, statement })
}

pub struct Execute<'a> {
    pub portal: &'a [u8],
    pub max_rows: i32,
}

pub fn execute(body: &[u8]) -> Result<Execute<'_>> {
    let mut r = Reader::new(body, "Execute");
    let portal = r.cstr()?;
    let max_rows = r.i32()?;
    Ok(Execute { portal, max_rows })
}

/// Describe and Close: 'S' for a statement or 'P' for a portal, and its name.
pub fn target<'a>(body: &'a [u8], what: &'static str) -> Result<(u8, &'a [u8])> {
    let mut r = Reader::new(body, what);
    let kind = r.u8()?;
    if kind != b'S' && kind != b'P' {
        return Err(Error::Malformed(what));
    }
    Ok((kind, r.cstr()?))
}

/// SASLInitialResponse: mechanism and client-first-message.
pub fn sasl_initial(body: &[u8]) -> Result<(&[u8], &[u8])> {
    let mut r = Reader::new(body, "SASLInitialResponse");
    let mech = r.cstr()?;
    let len = r.i32()?;
    if len < 0 {
        return Err(Error::Malformed("SASLInitialResponse"));
    }
    let data = r.bytes(len as usize)?;
    Ok((mech, data))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Builder;

    #[test]
    fn startup_params_round_trip() {
        let pkt = Builder::startup(&[("user", "agent"), ("database", "app")]);
        assert_eq!(
            Startup::parse(&pkt).unwrap(),
            Startup::Params(vec![("user".into(), "agent".into()), ("database".into(), "app".into())])
        );
        let mut bad = pkt.clone();
        bad.truncate(bad.len() - 2);
        assert!(Startup::parse(&bad).is_err());
    }

    #[test]
    fn parse_and_bind_views() {
        let p = Builder::parse(b"s1", "SELECT $1", &[23]);
        let h = crate::peek(&p, 1000).unwrap().unwrap();
        let v = parse(h.body(&p)).unwrap();
        assert_eq!((v.name, v.query), (&b"s1"[..], &b"SELECT $1"[..]));
        assert_eq!(v.param_types().collect::<Vec<_>>(), [23]);
        assert!(parse(b"s1\0SELECT").is_err());
        assert!(bind(b"portal\0").is_err());
        assert_eq!(bind(b"p\0s\0\0\0").unwrap().statement, b"s");
        assert_eq!(execute(b"\0\0\0\0\x05").unwrap().max_rows, 5);
        assert!(target(b"X\0", "Close").is_err());
    }
}
