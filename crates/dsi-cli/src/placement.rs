//! Where a worker runs: a device of this process, or a `dsi worker` in
//! another process reached over gRPC.

use crate::model_args::parse_device;
use dsi_models::device::DeviceSpec;
use std::fmt;

/// One entry of `--target-devices` or `--drafter-device`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Placement {
    /// A device of this process.
    Local(DeviceSpec),
    /// A worker process at `grpc://HOST:PORT` (or `grpcs://`).
    Remote(String),
}

impl fmt::Display for Placement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Placement::Local(device) => device.fmt(f),
            Placement::Remote(url) => f.write_str(url),
        }
    }
}

/// clap parser for a device or a worker's address.
pub(crate) fn parse_placement(s: &str) -> Result<Placement, String> {
    if dsi_remote::is_remote(s) {
        Ok(Placement::Remote(s.to_owned()))
    } else {
        parse_device(s)
            .map(Placement::Local)
            .map_err(|e| format!("{e}, or a worker's address grpc://HOST:PORT"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn devices_and_addresses_parse() {
        assert_eq!(
            parse_placement("cpu"),
            Ok(Placement::Local(DeviceSpec::Cpu))
        );
        assert_eq!(
            parse_placement("grpc://10.0.0.2:50051"),
            Ok(Placement::Remote("grpc://10.0.0.2:50051".into()))
        );
        let err = parse_placement("tpu").expect_err("unknown");
        assert!(err.contains("grpc://HOST:PORT"), "{err}");
    }
}
