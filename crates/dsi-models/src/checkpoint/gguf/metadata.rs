//! GGUF metadata values and typed look-ups that name the key at fault.

use std::collections::HashMap;

/// One metadata value (integers widened to 32 or 64 bits).
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// u8, u16, u32.
    U32(u32),
    /// i8, i16, i32.
    I32(i32),
    /// u64.
    U64(u64),
    /// i64.
    I64(i64),
    /// f32.
    F32(f32),
    /// f64.
    F64(f64),
    /// bool.
    Bool(bool),
    /// A UTF-8 string.
    String(String),
    /// An array of strings (the vocabulary, the merges).
    Strings(Vec<String>),
    /// An array of anything else.
    Array(Vec<Value>),
}

impl Value {
    /// The value as a non-negative integer.
    pub fn as_u64(&self) -> Option<u64> {
        match *self {
            Value::U32(v) => Some(u64::from(v)),
            Value::U64(v) => Some(v),
            Value::I32(v) => u64::try_from(v).ok(),
            Value::I64(v) => u64::try_from(v).ok(),
            _ => None,
        }
    }

    /// The value as an integer of any sign.
    pub fn as_i64(&self) -> Option<i64> {
        match *self {
            Value::U32(v) => Some(i64::from(v)),
            Value::I32(v) => Some(i64::from(v)),
            Value::U64(v) => i64::try_from(v).ok(),
            Value::I64(v) => Some(v),
            _ => None,
        }
    }

    /// The value as a float (integers too).
    pub fn as_f64(&self) -> Option<f64> {
        match *self {
            Value::F32(v) => Some(f64::from(v)),
            Value::F64(v) => Some(v),
            _ => self.as_i64().map(|v| v as f64),
        }
    }
}

/// Typed reads of the metadata, each error naming its key.
pub(super) struct Metadata<'a>(pub(super) &'a HashMap<String, Value>);

impl<'a> Metadata<'a> {
    /// A string, if present (an error when it is another type).
    pub(super) fn string(&self, key: &str) -> Result<Option<&'a str>, String> {
        match self.0.get(key) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s)),
            Some(other) => Err(format!("{key} is {other:?}, not a string")),
        }
    }

    /// A required string.
    pub(super) fn required_string(&self, key: &str) -> Result<&'a str, String> {
        self.string(key)?
            .ok_or_else(|| format!("the metadata key {key} is missing"))
    }

    /// A non-negative integer, if present.
    pub(super) fn usize(&self, key: &str) -> Result<Option<usize>, String> {
        match self.0.get(key) {
            None => Ok(None),
            Some(v) => v
                .as_u64()
                .map(|v| Some(v as usize))
                .ok_or_else(|| format!("{key} is {v:?}, not a non-negative integer")),
        }
    }

    /// A required non-negative integer.
    pub(super) fn required_usize(&self, key: &str) -> Result<usize, String> {
        self.usize(key)?
            .ok_or_else(|| format!("the metadata key {key} is missing"))
    }

    /// A float, if present.
    pub(super) fn f64(&self, key: &str) -> Result<Option<f64>, String> {
        match self.0.get(key) {
            None => Ok(None),
            Some(v) => v
                .as_f64()
                .map(Some)
                .ok_or_else(|| format!("{key} is {v:?}, not a number")),
        }
    }

    /// A boolean, if present.
    pub(super) fn bool(&self, key: &str) -> Result<Option<bool>, String> {
        match self.0.get(key) {
            None => Ok(None),
            Some(Value::Bool(b)) => Ok(Some(*b)),
            Some(other) => Err(format!("{key} is {other:?}, not a boolean")),
        }
    }

    /// An array of strings, if present.
    pub(super) fn strings(&self, key: &str) -> Result<Option<&'a [String]>, String> {
        match self.0.get(key) {
            None => Ok(None),
            Some(Value::Strings(items)) => Ok(Some(items)),
            Some(Value::Array(items)) if items.is_empty() => Ok(Some(&[])),
            Some(_) => Err(format!("{key} is not an array of strings")),
        }
    }

    /// An array of numbers as f64, if present.
    pub(super) fn numbers(&self, key: &str) -> Result<Option<Vec<f64>>, String> {
        match self.0.get(key) {
            None => Ok(None),
            Some(Value::Array(items)) => items
                .iter()
                .map(|v| {
                    v.as_f64()
                        .ok_or_else(|| format!("{key} holds {v:?}, not a number"))
                })
                .collect::<Result<Vec<_>, _>>()
                .map(Some),
            Some(_) => Err(format!("{key} is not an array of numbers")),
        }
    }
}
