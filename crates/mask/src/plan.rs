//! The per-result masking plan the gateway builds from RowDescription and policy.

use crate::detect::Detectors;
use crate::strategy::{HashKey, Strategy};

/// Wire format of a column's values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Text,
    Binary,
}

impl Format {
    /// From a RowDescription / Bind format code.
    pub fn from_code(code: i16) -> Result<Self, crate::Error> {
        match code {
            0 => Ok(Format::Text),
            1 => Ok(Format::Binary),
            other => Err(crate::Error::BadFormat(other)),
        }
    }
}

/// How one result column is masked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ColumnMask {
    pub strategy: Strategy,
    /// false: every non-NULL value is replaced whole. true: only substrings found by
    /// `detectors` are replaced; values the masker cannot read as text are replaced whole.
    pub scan: bool,
    pub detectors: Detectors,
    /// From RowDescription: type OID, type modifier and format code.
    pub type_oid: u32,
    pub typmod: i32,
    pub format: Format,
}

impl ColumnMask {
    /// Whole-value masking.
    pub fn new(strategy: Strategy, type_oid: u32, typmod: i32, format: Format) -> Self {
        ColumnMask {
            strategy,
            scan: false,
            detectors: Detectors::ALL,
            type_oid,
            typmod,
            format,
        }
    }

    /// Content scanning with the given detectors.
    pub fn scanning(mut self, detectors: Detectors) -> Self {
        self.scan = true;
        self.detectors = detectors;
        self
    }
}

/// Masking for every column of one result set, plus the hash key.
#[derive(Debug, Clone)]
pub struct Plan {
    pub(crate) columns: Vec<Option<ColumnMask>>,
    pub(crate) key: HashKey,
}

impl Plan {
    pub fn new(columns: Vec<Option<ColumnMask>>, key: HashKey) -> Self {
        Plan { columns, key }
    }

    pub fn columns(&self) -> &[Option<ColumnMask>] {
        &self.columns
    }

    /// True when no column is masked: the gateway can forward rows untouched.
    pub fn is_passthrough(&self) -> bool {
        self.columns.iter().all(Option::is_none)
    }
}
