//! Summaries of timing samples, for guests that measure themselves: no
//! allocation, so a guest keeps its samples in a fixed array.

/// The smallest sample and the median (the lower middle of an even
/// count), sorting `samples` in place; `None` for no samples.
///
/// Both ignore the few samples that a host interrupt, the end of the
/// host's time slice or another vCPU's work lengthened: the minimum is
/// the undisturbed cost, the median what a typical sample costs.
pub fn min_median(samples: &mut [u64]) -> Option<(u64, u64)> {
    if samples.is_empty() {
        return None;
    }
    // Insertion sort: the guests take tens of samples.
    for i in 1..samples.len() {
        let mut j = i;
        while j > 0 && samples[j - 1] > samples[j] {
            samples.swap(j - 1, j);
            j -= 1;
        }
    }
    Some((samples[0], samples[(samples.len() - 1) / 2]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn min_and_median_ignore_outliers() {
        assert_eq!(min_median(&mut []), None);
        assert_eq!(min_median(&mut [7]), Some((7, 7)));
        let mut odd = [300, 290, 9000, 295, 310];
        assert_eq!(min_median(&mut odd), Some((290, 300)));
        assert_eq!(odd, [290, 295, 300, 310, 9000]);
        // Even count: the lower of the two middle samples.
        assert_eq!(min_median(&mut [40, 10, 30, 20]), Some((10, 20)));
        assert_eq!(min_median(&mut [5, 5, 5, 1_000_000]), Some((5, 5)));
    }
}
