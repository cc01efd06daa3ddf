//! The shared secret a worker may require: sent by the coordinator as
//! `authorization: Bearer <token>` on every call, compared in constant time.

use subtle::ConstantTimeEq;
use tonic::metadata::MetadataValue;
use tonic::{Request, Status};

/// A shared secret; its Debug output never shows it.
#[derive(Clone)]
pub struct AuthToken(String);

impl std::fmt::Debug for AuthToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AuthToken(..)")
    }
}

impl AuthToken {
    /// A token from a file's first non-empty line (surrounding whitespace
    /// dropped).
    pub fn from_file_contents(contents: &str) -> Option<Self> {
        contents
            .lines()
            .map(str::trim)
            .find(|line| !line.is_empty())
            .map(|line| Self(line.to_owned()))
    }

    /// A token as given.
    pub fn new(token: impl Into<String>) -> Option<Self> {
        let token = token.into();
        (!token.trim().is_empty()).then(|| Self(token.trim().to_owned()))
    }

    fn header(&self) -> Result<MetadataValue<tonic::metadata::Ascii>, Status> {
        format!("Bearer {}", self.0)
            .parse()
            .map_err(|_| Status::invalid_argument("the auth token is not printable ASCII"))
    }

    /// Adds the token to an outgoing call.
    pub(crate) fn attach<T>(&self, mut request: Request<T>) -> Result<Request<T>, Status> {
        request
            .metadata_mut()
            .insert("authorization", self.header()?);
        Ok(request)
    }

    /// Checks an incoming call.
    pub(crate) fn check<T>(&self, request: Request<T>) -> Result<Request<T>, Status> {
        let expected = format!("Bearer {}", self.0);
        let given = request
            .metadata()
            .get("authorization")
            .map(|v| v.as_bytes())
            .unwrap_or_default();
        if bool::from(given.ct_eq(expected.as_bytes())) {
            Ok(request)
        } else {
            Err(Status::unauthenticated(
                "missing or wrong auth token: give the coordinator the worker's token \
                 (--worker-token-file)",
            ))
        }
    }
}
