//! Helpers shared by the property tests: cutting a byte stream into chunks.

use proptest::prelude::*;

/// Up to `max` cut positions, given as fractions so they scale to any input.
pub(crate) fn cuts(max: usize) -> impl Strategy<Value = Vec<f64>> {
    prop::collection::vec(0.0..=1.0f64, 0..=max)
}

/// Splits `bytes` at the given fractional positions (sorted, duplicates kept,
/// so empty chunks occur too).
pub(crate) fn split<'a>(bytes: &'a [u8], cuts: &[f64]) -> Vec<&'a [u8]> {
    let mut positions: Vec<usize> = cuts
        .iter()
        .map(|f| ((bytes.len() as f64) * f) as usize)
        .map(|p| p.min(bytes.len()))
        .collect();
    positions.sort_unstable();
    let mut chunks = Vec::with_capacity(positions.len() + 1);
    let mut start = 0;
    for pos in positions {
        chunks.push(&bytes[start..pos]);
        start = pos;
    }
    chunks.push(&bytes[start..]);
    chunks
}
