//! Plain Rust loops compiled for the widest vector unit the CPU has.
//!
//! The default x86-64 target gives the compiler SSE2 only: 4 lanes, and every
//! `f32::mul_add` a call into libm. [`widest!`] defines a function whose body
//! is compiled three times — for AVX-512, for AVX2 + FMA and for the baseline —
//! and picks one at run time. The body is ordinary safe Rust: vectorising it
//! never reorders floating-point operations (Rust does not contract or
//! reassociate), so each version returns the same bits, which the LLM's
//! exact-order kernels rely on.

/// `widest!(pub(crate) fn name(arg: Type, …) -> Ret => body_expr);`
/// Callees of the body should be `#[inline(always)]` so they are compiled
/// with the body's features too.
macro_rules! widest {
    ($vis:vis fn $name:ident($($arg:ident: $ty:ty),* $(,)?) $(-> $ret:ty)? => $body:expr) => {
        $vis fn $name($($arg: $ty),*) $(-> $ret)? {
            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx512f,avx512vl,avx2,fma,f16c")]
                fn avx512($($arg: $ty),*) $(-> $ret)? { $body }
                #[target_feature(enable = "avx2,fma,f16c")]
                fn avx2($($arg: $ty),*) $(-> $ret)? { $body }
                match $crate::simd::level() {
                    // SAFETY: `level` reports only features this CPU has.
                    #[allow(unsafe_code)]
                    $crate::simd::Level::Avx512 => return unsafe { avx512($($arg),*) },
                    #[allow(unsafe_code)]
                    $crate::simd::Level::Avx2 => return unsafe { avx2($($arg),*) },
                    $crate::simd::Level::Baseline => {}
                }
            }
            $body
        }
    };
}
pub(crate) use widest;

/// The vector extensions [`widest!`] can use on this CPU.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Level {
    Avx512,
    Avx2,
    Baseline,
}

/// Detected once per process. `SWITCHYARD_SIMD=avx2|baseline` caps it, so
/// tests and benchmarks can run the narrower paths on a wider CPU.
pub(crate) fn level() -> Level {
    use std::sync::OnceLock;
    static LEVEL: OnceLock<Level> = OnceLock::new();
    *LEVEL.get_or_init(|| {
        let cap = std::env::var("SWITCHYARD_SIMD").unwrap_or_default();
        detect(&cap)
    })
}

fn detect(cap: &str) -> Level {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::is_x86_feature_detected as has;
        let avx2 = has!("avx2") && has!("fma") && has!("f16c");
        if cap != "avx2" && cap != "baseline" && avx2 && has!("avx512f") && has!("avx512vl") {
            return Level::Avx512;
        }
        if cap != "baseline" && avx2 {
            return Level::Avx2;
        }
    }
    let _ = cap;
    Level::Baseline
}

#[cfg(test)]
mod tests {
    use super::*;

    widest!(fn fused(a: &[f32], b: &[f32], out: &mut [f32]) => {
        for ((o, x), y) in out.iter_mut().zip(a).zip(b) {
            *o = x.mul_add(*y, *o);
        }
    });

    #[test]
    fn every_level_gives_the_same_bits() {
        let a: Vec<f32> = (0..1000).map(|i| (i as f32 * 0.731).sin() * 1e3).collect();
        let b: Vec<f32> = (0..1000).map(|i| (i as f32 * 0.377).cos() / 7.0).collect();
        let mut fast = vec![0.1f32; 1000];
        fused(&a, &b, &mut fast);
        let slow: Vec<f32> = a.iter().zip(&b).map(|(x, y)| x.mul_add(*y, 0.1)).collect();
        assert_eq!(fast, slow);
        assert_eq!(detect("baseline"), Level::Baseline);
        assert_ne!(detect("avx2"), Level::Avx512);
    }
}
