//! Size bands for per-connection futures: each tunnel, connection and request holds one for
//! its whole life, so their size is memory per connection. A change that grows one past its
//! band fails every test that opens a connection (in debug builds, where tests run), and the
//! band is then moved on purpose, with the new figure in the commit.

/// Checks that `future` (not yet polled) is between `min` and `max` bytes in debug builds; a
/// no-op in release builds. `min` catches a band left stale after a shrink.
#[track_caller]
#[inline]
pub fn size_between<T>(min: usize, max: usize, future: &T) {
    if cfg!(debug_assertions) {
        let size = std::mem::size_of_val(future);
        assert!(
            (min..=max).contains(&size),
            "{} is {size} bytes, outside its band {min}..={max}: memory per connection changed; \
             move the band if that is intended",
            std::any::type_name::<T>()
        );
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_future_outside_its_band_fails_in_debug_builds() {
        let small = async {};
        super::size_between(0, 64, &small);
        let big = async {
            let buf = [0u8; 4096];
            std::future::ready(()).await;
            buf.len()
        };
        let outside = std::panic::catch_unwind(|| super::size_between(0, 64, &big));
        assert_eq!(outside.is_err(), cfg!(debug_assertions));
    }
}
