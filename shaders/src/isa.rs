//! Which instruction set the kernels run on this machine.
//!
//! Detected once per process. `DSI_KERNELS=portable` forces the portable
//! path (to test it, or to compare), which every machine runs; results
//! then differ from the vector path's in the last bits (no fused
//! multiply-add), but one process always takes one path.

use std::sync::OnceLock;

/// An instruction set the kernels have a path for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Isa {
    /// Plain Rust, no fused multiply-add: every machine.
    Portable,
    /// x86-64 AVX2 with FMA and F16C (f16 widening).
    Avx2,
}

impl Isa {
    /// The path this process takes: the best the CPU has, unless
    /// `DSI_KERNELS=portable`.
    pub fn active() -> Isa {
        static ACTIVE: OnceLock<Isa> = OnceLock::new();
        *ACTIVE.get_or_init(|| {
            if std::env::var("DSI_KERNELS").is_ok_and(|v| v == "portable") {
                Isa::Portable
            } else {
                Isa::best()
            }
        })
    }

    /// Every path this CPU can run, portable first.
    pub fn available() -> Vec<Isa> {
        let mut all = vec![Isa::Portable];
        if Isa::best() != Isa::Portable {
            all.push(Isa::best());
        }
        all
    }

    fn best() -> Isa {
        #[cfg(target_arch = "x86_64")]
        if std::arch::is_x86_feature_detected!("avx2")
            && std::arch::is_x86_feature_detected!("fma")
            && std::arch::is_x86_feature_detected!("f16c")
        {
            return Isa::Avx2;
        }
        Isa::Portable
    }
}

impl std::fmt::Display for Isa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Isa::Portable => "portable",
            Isa::Avx2 => "avx2+fma+f16c",
        })
    }
}
