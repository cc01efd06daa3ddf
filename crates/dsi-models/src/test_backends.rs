//! Which backends the test suites run on, chosen in one place.
//!
//! `DSI_TEST_BACKENDS=cpu,ndarray,wgpu` names them (`cpu`, `ndarray`,
//! `wgpu`, `cuda`); unset, the suites run on every backend this build has.
//! A test written for one backend starts with [`runs_on`]:
//!
//! - a backend left out of the list is not run: `runs_on` is false and the
//!   test returns at once (`scripts/test.sh` prints which backends ran);
//! - a backend in the list that cannot start on this machine (no wgpu
//!   adapter, a build without its feature) fails the test with one line that
//!   says what to install, before burn gets a chance to panic inside cubecl.
//!   A missing driver never passes silently.

use crate::ModelError;
use crate::device::{DeviceSpec, probe};
use std::sync::OnceLock;

/// The environment variable that lists the backends.
pub const VAR: &str = "DSI_TEST_BACKENDS";

/// The backends this build has, which the suites run on by default.
pub fn built() -> Vec<DeviceSpec> {
    let mut all = vec![DeviceSpec::Cpu, DeviceSpec::Ndarray];
    if cfg!(feature = "wgpu") {
        all.push(DeviceSpec::Wgpu(None));
    }
    if cfg!(feature = "cuda") {
        all.push(DeviceSpec::Cuda(0));
    }
    all
}

/// Parses a `DSI_TEST_BACKENDS` value: backend names separated by commas.
pub fn parse(list: &str) -> Result<Vec<DeviceSpec>, String> {
    let mut selected = Vec::new();
    for name in list.split(',').map(str::trim).filter(|n| !n.is_empty()) {
        let spec = match name {
            "cpu" => DeviceSpec::Cpu,
            "ndarray" => DeviceSpec::Ndarray,
            "wgpu" => DeviceSpec::Wgpu(None),
            "cuda" => DeviceSpec::Cuda(0),
            other => {
                return Err(format!(
                    "{VAR}: unknown backend {other:?}; expected a comma-separated list of \
                     cpu, ndarray, wgpu, cuda"
                ));
            }
        };
        if !selected.contains(&spec) {
            selected.push(spec);
        }
    }
    if selected.is_empty() {
        return Err(format!("{VAR} is set but names no backend"));
    }
    Ok(selected)
}

/// The backends the suites run on: `DSI_TEST_BACKENDS`, else [`built`].
///
/// # Panics
/// When the variable does not parse: a test run with a typo in its backend
/// list must fail, not run nothing.
pub fn selected() -> &'static [DeviceSpec] {
    static SELECTED: OnceLock<Vec<DeviceSpec>> = OnceLock::new();
    SELECTED.get_or_init(|| match std::env::var(VAR) {
        Ok(list) => parse(&list).unwrap_or_else(|err| panic!("{err}")),
        Err(_) => built(),
    })
}

/// Whether a test for `spec`'s backend should run: false when the backend
/// is left out, true when it is selected and can start.
///
/// # Panics
/// When the backend is selected but cannot start here, with one line that
/// names what to install or to leave the backend out.
#[track_caller]
pub fn runs_on(spec: DeviceSpec) -> bool {
    if !selected().contains(&spec) {
        return false;
    }
    if let Err(err) = available(spec) {
        panic!("{err}");
    }
    true
}

/// Probes `spec`: the device it runs on, or the line that says what to
/// install (or to leave the backend out).
pub fn available(spec: DeviceSpec) -> Result<String, String> {
    let leave_out = format!(
        "or leave {} out of {VAR} (e.g. {VAR}=cpu,ndarray)",
        spec.kind()
    );
    match probe(spec) {
        Ok(device) => Ok(device),
        Err(ModelError::Unavailable {
            backend,
            reason,
            install,
        }) => Err(format!(
            "{backend} tests cannot run: {reason}; install {install}, {leave_out}"
        )),
        Err(other) => Err(format!("{spec} tests cannot run: {other}; {leave_out}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_backend_lists() {
        assert_eq!(
            parse("cpu, wgpu,cpu").unwrap(),
            vec![DeviceSpec::Cpu, DeviceSpec::Wgpu(None)]
        );
        assert_eq!(parse("cuda").unwrap(), vec![DeviceSpec::Cuda(0)]);
        assert!(parse("cpu,tpu").unwrap_err().contains("\"tpu\""));
        assert!(parse(" , ").unwrap_err().contains("names no backend"));
    }

    #[test]
    fn the_cpu_backends_are_always_built() {
        assert!(built().starts_with(&[DeviceSpec::Cpu, DeviceSpec::Ndarray]));
        assert_eq!(
            built().contains(&DeviceSpec::Wgpu(None)),
            cfg!(feature = "wgpu")
        );
    }
}
