//! Randomness supplied by the caller, so that every decision is reproducible in tests.

/// A source of uniformly distributed `u64`s for weighted backend choice and percentage sampling.
///
/// Any `FnMut() -> u64` closure is one. [`SplitMix64`] is a small, fast default for callers that
/// have no generator of their own; seed it per thread (for example from the thread id and the
/// clock).
pub trait Rng {
    /// The next uniformly distributed value.
    fn next_u64(&mut self) -> u64;
}

impl<F: FnMut() -> u64> Rng for F {
    fn next_u64(&mut self) -> u64 {
        self()
    }
}

/// SplitMix64 (Steele, Lea and Flood, 2014): one `u64` of state, every seed is usable, and
/// statistically good enough for traffic splitting (it passes BigCrush). Not cryptographic.
#[derive(Debug, Clone)]
pub struct SplitMix64 {
    state: u64,
}

impl SplitMix64 {
    /// A generator whose sequence is fully determined by `seed`.
    pub fn new(seed: u64) -> Self {
        Self { state: seed }
    }
}

impl Rng for SplitMix64 {
    fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
}

/// A uniform value in `0..n` from one draw (Lemire's multiply-shift: no division, and a bias of
/// at most n / 2^64).
pub(crate) fn below<R: Rng + ?Sized>(rng: &mut R, n: u64) -> u64 {
    ((u128::from(rng.next_u64()) * u128::from(n)) >> 64) as u64
}

/// A probability `num / den`. Certain outcomes (0 and 1) draw nothing from the generator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Fraction {
    num: u64,
    den: u64,
}

// === impl Fraction ===

impl Fraction {
    /// Every time.
    pub(crate) const ALWAYS: Fraction = Fraction { num: 1, den: 1 };

    /// `num / den`, clamped to 0..=1; a zero denominator means never.
    pub(crate) fn new(num: u64, den: u64) -> Self {
        if den == 0 {
            return Fraction { num: 0, den: 1 };
        }
        Fraction {
            num: num.min(den),
            den,
        }
    }

    /// A percentage with up to four decimals (Istio's `Percent`: parts per million).
    pub(crate) fn from_percent(percent: f64) -> Self {
        let ppm = (percent.clamp(0.0, 100.0) * 10_000.0).round() as u64;
        Fraction::new(ppm, 1_000_000)
    }

    pub(crate) fn sample<R: Rng + ?Sized>(self, rng: &mut R) -> bool {
        if self.num == 0 {
            false
        } else if self.num >= self.den {
            true
        } else {
            below(rng, self.den) < self.num
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn certain_fractions_draw_nothing() {
        let mut draws = 0;
        let mut rng = || {
            draws += 1;
            0u64
        };
        assert!(Fraction::ALWAYS.sample(&mut rng));
        assert!(!Fraction::new(0, 100).sample(&mut rng));
        assert!(Fraction::new(7, 5).sample(&mut rng), "clamped to 1");
        assert_eq!(draws, 0);
    }

    #[test]
    fn below_spans_the_range() {
        assert_eq!(below(&mut || 0u64, 10), 0);
        assert_eq!(below(&mut || u64::MAX, 10), 9);
        assert_eq!(below(&mut || u64::MAX / 2 + 1, 10), 5);
    }

    #[test]
    fn percent_is_parts_per_million() {
        assert_eq!(
            Fraction::from_percent(12.5),
            Fraction::new(125_000, 1_000_000)
        );
        assert_eq!(
            Fraction::from_percent(250.0),
            Fraction::new(1_000_000, 1_000_000)
        );
    }

    #[test]
    fn splitmix_is_deterministic() {
        let mut a = SplitMix64::new(42);
        let mut b = SplitMix64::new(42);
        for _ in 0..100 {
            assert_eq!(a.next_u64(), b.next_u64());
        }
        // First output for seed 0 from the reference implementation.
        assert_eq!(SplitMix64::new(0).next_u64(), 0xE220_A839_7B1D_CDAF);
    }
}
