//! PostgreSQL types as the masker sees them: which ones take an arbitrary string, which
//! ones it can synthesize a valid value for, and which can only become NULL.

/// Type OIDs from `pg_type` that the masker knows.
pub mod oid {
    pub const BOOL: u32 = 16;
    pub const BYTEA: u32 = 17;
    pub const NAME: u32 = 19;
    pub const INT8: u32 = 20;
    pub const INT2: u32 = 21;
    pub const INT4: u32 = 23;
    pub const TEXT: u32 = 25;
    pub const JSON: u32 = 114;
    pub const CIDR: u32 = 650;
    pub const UNKNOWN: u32 = 705;
    pub const INET: u32 = 869;
    pub const BPCHAR: u32 = 1042;
    pub const VARCHAR: u32 = 1043;
    pub const DATE: u32 = 1082;
    pub const TIMESTAMP: u32 = 1114;
    pub const TIMESTAMPTZ: u32 = 1184;
    pub const NUMERIC: u32 = 1700;
    pub const UUID: u32 = 2950;
    pub const JSONB: u32 = 3802;
}

/// How a type's values can be replaced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Class {
    /// Any UTF-8 string, within an optional length limit.
    Text(TextLimit),
    Json,
    Jsonb,
    Bytea,
    Uuid,
    /// Two's-complement integer of this many bytes.
    Int(u8),
    Inet {
        cidr: bool,
    },
    /// Everything else: only NULL is known to be valid.
    Opaque,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TextLimit {
    None,
    /// varchar(n): at most n characters.
    MaxChars(usize),
    /// char(n): exactly n characters, blank-padded.
    Exact(usize),
    /// name: at most 63 bytes.
    MaxBytes(usize),
}

/// varchar(n) and char(n) carry `n + 4` in the type modifier; -1 means unconstrained.
fn char_limit(typmod: i32) -> Option<usize> {
    usize::try_from(typmod)
        .ok()
        .filter(|&t| t >= 4)
        .map(|t| t - 4)
}

impl Class {
    pub(crate) fn of(type_oid: u32, typmod: i32) -> Class {
        match type_oid {
            oid::TEXT | oid::UNKNOWN => Class::Text(TextLimit::None),
            oid::VARCHAR => {
                Class::Text(char_limit(typmod).map_or(TextLimit::None, TextLimit::MaxChars))
            }
            oid::BPCHAR => {
                Class::Text(char_limit(typmod).map_or(TextLimit::None, TextLimit::Exact))
            }
            oid::NAME => Class::Text(TextLimit::MaxBytes(63)),
            oid::JSON => Class::Json,
            oid::JSONB => Class::Jsonb,
            oid::BYTEA => Class::Bytea,
            oid::UUID => Class::Uuid,
            oid::INT2 => Class::Int(2),
            oid::INT4 => Class::Int(4),
            oid::INT8 => Class::Int(8),
            oid::INET => Class::Inet { cidr: false },
            oid::CIDR => Class::Inet { cidr: true },
            _ => Class::Opaque,
        }
    }
}
