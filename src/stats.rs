//! Statistics shared by the aggregates, the report and the gate: means,
//! nearest-rank percentiles, rounding for stable outputs, and Welch's
//! confidence interval for the difference of two means.

/// Nearest-rank percentile of unsorted values (0 for none).
pub fn percentile(values: &[u64], p: f64) -> u64 {
    if values.is_empty() {
        return 0;
    }
    let mut v = values.to_vec();
    v.sort_unstable();
    let rank = ((p / 100.0) * v.len() as f64).ceil() as usize;
    v[rank.clamp(1, v.len()) - 1]
}

/// Rounds to 6 decimals, so outputs stay readable and stable.
pub fn round6(x: f64) -> f64 {
    // + 0.0 turns -0.0 (an empty float sum) into 0.
    (x * 1e6).round() / 1e6 + 0.0
}

pub fn mean(values: impl IntoIterator<Item = f64>) -> Option<f64> {
    let (sum, n) = values
        .into_iter()
        .fold((0.0, 0usize), |(s, n), v| (s + v, n + 1));
    (n > 0).then(|| sum / n as f64)
}

/// Two-sided 95% quantile of Student's t.
fn t95(df: f64) -> f64 {
    const T: [f64; 30] = [
        12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160,
        2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056,
        2.052, 2.048, 2.045, 2.042,
    ];
    let d = df.floor().max(1.0) as usize;
    match d {
        1..=30 => T[d - 1],
        31..=40 => 2.021,
        41..=60 => 2.000,
        61..=120 => 1.980,
        _ => 1.960,
    }
}

fn variance(x: &[f64]) -> Option<f64> {
    if x.len() < 2 {
        return None;
    }
    let m = x.iter().sum::<f64>() / x.len() as f64;
    Some(x.iter().map(|v| (v - m).powi(2)).sum::<f64>() / (x.len() - 1) as f64)
}

/// Half-width of the 95% confidence interval of mean(cur) - mean(base)
/// (Welch). Where a side has a single replay, the other side's variance
/// stands in for it; with no variance anywhere the runs are exact: 0.
pub fn welch_half_width(base: &[f64], cur: &[f64]) -> f64 {
    let (vb, vc) = match (variance(base), variance(cur)) {
        (None, None) => return 0.0,
        (Some(b), None) => (b, b),
        (None, Some(c)) => (c, c),
        (Some(b), Some(c)) => (b, c),
    };
    let (nb, nc) = (base.len() as f64, cur.len() as f64);
    let (sb, sc) = (vb / nb, vc / nc);
    let se2 = sb + sc;
    if se2 == 0.0 {
        return 0.0;
    }
    let df = se2 * se2 / (sb * sb / (nb - 1.0).max(1.0) + sc * sc / (nc - 1.0).max(1.0));
    t95(df) * se2.sqrt()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_nearest_rank() {
        let v: Vec<u64> = (1..=100).collect();
        assert_eq!(percentile(&v, 50.0), 50);
        assert_eq!(percentile(&v, 95.0), 95);
        assert_eq!(percentile(&v, 99.0), 99);
        assert_eq!(percentile(&[7], 95.0), 7);
        assert_eq!(percentile(&[], 95.0), 0);
    }

    #[test]
    fn mean_of_nothing_is_none() {
        assert_eq!(mean([]), None);
        assert_eq!(mean([1.0, 2.0]), Some(1.5));
    }
}
