//! Builders for the messages the gateway writes itself. Anything it relays is forwarded
//! as the original bytes, never rebuilt here.

use crate::frontend::{CANCEL_REQUEST, PROTOCOL_3_0};

/// Builds whole frames into a `Vec<u8>`.
pub struct Builder {
    buf: Vec<u8>,
    start: usize,
}

impl Builder {
    fn tagged(tag: u8) -> Builder {
        let mut b = Builder { buf: Vec::with_capacity(64), start: 0 };
        b.begin(tag);
        b
    }

    fn begin(&mut self, tag: u8) {
        self.buf.push(tag);
        self.start = self.buf.len();
        self.buf.extend_from_slice(&[0; 4]);
    }

    fn finish(mut self) -> Vec<u8> {
        self.patch();
        self.buf
    }

    fn patch(&mut self) {
        let len = (self.buf.len() - self.start) as i32;
        self.buf[self.start..self.start + 4].copy_from_slice(&len.to_be_bytes());
    }

    fn cstr(&mut self, s: &[u8]) -> &mut Self {
        self.buf.extend_from_slice(s);
        self.buf.push(0);
        self
    }

    fn i32(&mut self, v: i32) -> &mut Self {
        self.buf.extend_from_slice(&v.to_be_bytes());
        self
    }

    fn i16(&mut self, v: i16) -> &mut Self {
        self.buf.extend_from_slice(&v.to_be_bytes());
        self
    }

    fn untagged() -> Builder {
        Builder { buf: vec![0; 4], start: 0 }
    }

    // --- backend messages ---

    /// ErrorResponse (severity "ERROR" or "FATAL") with SQLSTATE, message and optional hint.
    pub fn error(severity: &str, code: &str, message: &str, hint: Option<&str>) -> Vec<u8> {
        let mut b = Builder::tagged(b'E');
        b.buf.push(b'S');
        b.cstr(severity.as_bytes());
        b.buf.push(b'V');
        b.cstr(severity.as_bytes());
        b.buf.push(b'C');
        b.cstr(code.as_bytes());
        b.buf.push(b'M');
        b.cstr(message.as_bytes());
        if let Some(h) = hint {
            b.buf.push(b'H');
            b.cstr(h.as_bytes());
        }
        b.buf.push(0);
        b.finish()
    }

    /// NoticeResponse with severity NOTICE.
    pub fn notice(message: &str, hint: Option<&str>) -> Vec<u8> {
        let mut b = Builder::tagged(b'N');
        for (field, value) in [(b'S', "NOTICE"), (b'V', "NOTICE"), (b'C', "00000"), (b'M', message)] {
            b.buf.push(field);
            b.cstr(value.as_bytes());
        }
        if let Some(h) = hint {
            b.buf.push(b'H');
            b.cstr(h.as_bytes());
        }
        b.buf.push(0);
        b.finish()
    }

    pub fn ready_for_query(status: u8) -> Vec<u8> {
        vec![b'Z', 0, 0, 0, 5, status]
    }

    pub fn auth_ok() -> Vec<u8> {
        Builder::auth(crate::backend::AUTH_OK, &[])
    }

    pub fn auth_sasl(mechanisms: &[&str]) -> Vec<u8> {
        let mut data = Vec::new();
        for m in mechanisms {
            data.extend_from_slice(m.as_bytes());
            data.push(0);
        }
        data.push(0);
        Builder::auth(crate::backend::AUTH_SASL, &data)
    }

    pub fn auth_sasl_continue(data: &[u8]) -> Vec<u8> {
        Builder::auth(crate::backend::AUTH_SASL_CONTINUE, data)
    }

    pub fn auth_sasl_final(data: &[u8]) -> Vec<u8> {
        Builder::auth(crate::backend::AUTH_SASL_FINAL, data)
    }

    fn auth(code: i32, data: &[u8]) -> Vec<u8> {
        let mut b = Builder::tagged(b'R');
        b.i32(code);
        b.buf.extend_from_slice(data);
        b.finish()
    }

    pub fn backend_key_data(pid: i32, key: i32) -> Vec<u8> {
        let mut b = Builder::tagged(b'K');
        b.i32(pid).i32(key);
        b.finish()
    }

    pub fn parameter_status(name: &[u8], value: &[u8]) -> Vec<u8> {
        let mut b = Builder::tagged(b'S');
        b.cstr(name).cstr(value);
        b.finish()
    }

    // --- frontend messages ---

    pub fn startup(params: &[(&str, &str)]) -> Vec<u8> {
        let mut b = Builder::untagged();
        b.i32(PROTOCOL_3_0);
        for (k, v) in params {
            b.cstr(k.as_bytes()).cstr(v.as_bytes());
        }
        b.buf.push(0);
        b.finish()
    }

    pub fn ssl_request() -> Vec<u8> {
        let mut b = Builder::untagged();
        b.i32(crate::frontend::SSL_REQUEST);
        b.finish()
    }

    pub fn cancel_request(pid: i32, key: i32) -> Vec<u8> {
        let mut b = Builder::untagged();
        b.i32(CANCEL_REQUEST).i32(pid).i32(key);
        b.finish()
    }

    pub fn query(text: &str) -> Vec<u8> {
        let mut b = Builder::tagged(b'Q');
        b.cstr(text.as_bytes());
        b.finish()
    }

    pub fn parse(name: &[u8], text: &str, types: &[i32]) -> Vec<u8> {
        let mut b = Builder::tagged(b'P');
        b.cstr(name).cstr(text.as_bytes());
        b.i16(types.len() as i16);
        for t in types {
            b.i32(*t);
        }
        b.finish()
    }

    /// Describe of a portal (`P`) or prepared statement (`S`).
    pub fn describe(kind: u8, name: &[u8]) -> Vec<u8> {
        let mut b = Builder::tagged(b'D');
        b.buf.push(kind);
        b.cstr(name);
        b.finish()
    }

    pub fn sync() -> Vec<u8> {
        vec![b'S', 0, 0, 0, 4]
    }

    pub fn flush() -> Vec<u8> {
        vec![b'H', 0, 0, 0, 4]
    }

    pub fn terminate() -> Vec<u8> {
        vec![b'X', 0, 0, 0, 4]
    }

    pub fn password(secret: &[u8]) -> Vec<u8> {
        let mut b = Builder::tagged(b'p');
        b.cstr(secret);
        b.finish()
    }

    pub fn sasl_initial(mechanism: &str, data: &[u8]) -> Vec<u8> {
        let mut b = Builder::tagged(b'p');
        b.cstr(mechanism.as_bytes());
        b.i32(data.len() as i32);
        b.buf.extend_from_slice(data);
        b.finish()
    }

    pub fn sasl_response(data: &[u8]) -> Vec<u8> {
        let mut b = Builder::tagged(b'p');
        b.buf.extend_from_slice(data);
        b.finish()
    }
}
