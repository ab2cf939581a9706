//! Rollup: turns a job's points into its performance record (peak, average and minimum speed,
//! duration, bytes, and a speed curve reduced by largest-triangle-three-buckets that always keeps
//! the first, last and peak point), and the compact encoding stored on the job row, which never
//! exceeds `RECORD_BUDGET_BYTES` however long the job ran.

use super::{duration, Millis, Point};
use crate::proto;
use prost::Message;

/// Version of the stored record layout.
pub const FORMAT_VERSION: u32 = 1;
/// Most points a curve keeps: a chart's worth, whatever the job's length.
pub const MAX_CURVE_POINTS: usize = 150;
/// Most bytes a stored record may take; the curve is thinned until it fits.
pub const RECORD_BUDGET_BYTES: usize = 4096;

/// What the rollup needs besides the stored points.
#[derive(Debug, Clone)]
pub struct RollupInput<'a> {
    pub started_at: Millis,
    pub ended_at: Millis,
    pub bytes_transferred: u64,
    /// Highest speed of every accepted report, stored or not.
    pub peak_speed_bps: u64,
    /// Lowest measured speed of every accepted report, when known.
    pub min_speed_bps: Option<u64>,
    /// Stored points in `sampled_at` order, the final one included.
    pub points: &'a [Point],
}

/// Builds the performance record; its curve fits the storage budget.
pub fn rollup(input: &RollupInput<'_>) -> proto::PerformanceRecord {
    let points = input.points;
    let duration_ms = (input.ended_at - input.started_at).max(0);
    let curve_peak = points.iter().map(|p| p.speed_bps).max().unwrap_or(0);
    let last = points.len().saturating_sub(1);
    // Zero readings before the first byte or in a final report are no measurement.
    let curve_min = points
        .iter()
        .enumerate()
        .filter(|(i, p)| p.speed_bps > 0 || (*i != 0 && *i != last))
        .map(|(_, p)| p.speed_bps)
        .min();
    let min_speed = match (input.min_speed_bps, curve_min) {
        (Some(a), Some(b)) => a.min(b),
        (a, b) => a.or(b).unwrap_or(0),
    };
    let average = if duration_ms > 0 {
        (input.bytes_transferred as f64 * 1000.0 / duration_ms as f64).round() as u64
    } else {
        0
    };
    let all: Vec<proto::SpeedPoint> = points
        .iter()
        .map(|p| p.to_proto(input.started_at))
        .collect();
    let mut record = proto::PerformanceRecord {
        format_version: FORMAT_VERSION,
        peak_speed_bps: input.peak_speed_bps.max(curve_peak),
        average_speed_bps: average,
        min_speed_bps: min_speed,
        duration: Some(duration(duration_ms)),
        bytes_transferred: input.bytes_transferred,
        snapshot_count: points.len().min(u32::MAX as usize) as u32,
        points: Vec::new(),
    };
    let mut budget = MAX_CURVE_POINTS;
    loop {
        record.points = downsample(&all, budget);
        if encode_record(&record).len() <= RECORD_BUDGET_BYTES || budget <= 3 {
            return record;
        }
        budget = budget * 3 / 4;
    }
}

/// Reduces a curve to at most `max_points` (≥ 3) with largest-triangle-three-buckets, keeping the
/// first, the last and the (first) peak point.
pub fn downsample(points: &[proto::SpeedPoint], max_points: usize) -> Vec<proto::SpeedPoint> {
    let max_points = max_points.max(3);
    if points.len() <= max_points {
        return points.to_vec();
    }
    let peak = points
        .iter()
        .enumerate()
        .max_by(|(ia, a), (ib, b)| a.speed_bps.cmp(&b.speed_bps).then(ib.cmp(ia)))
        .map(|(i, _)| i)
        .unwrap_or(0);
    let last = points.len() - 1;
    let indices = if peak == 0 || peak == last {
        lttb(points, max_points)
    } else {
        // Split at the peak so both halves keep it as an end point.
        let left_share = ((max_points as f64) * peak as f64 / last as f64).round() as usize;
        let left_n = left_share.clamp(2, (peak + 1).min(max_points - 1));
        let right_n = (max_points + 1 - left_n).clamp(2, last - peak + 1);
        let mut idx = lttb(&points[..=peak], left_n);
        idx.extend(
            lttb(&points[peak..], right_n)
                .into_iter()
                .skip(1)
                .map(|i| i + peak),
        );
        idx
    };
    indices.into_iter().map(|i| points[i].clone()).collect()
}

/// Indices chosen by largest-triangle-three-buckets; always the first and last.
fn lttb(points: &[proto::SpeedPoint], threshold: usize) -> Vec<usize> {
    let n = points.len();
    if threshold >= n || threshold < 3 {
        return if threshold < 3 && n > 2 {
            vec![0, n - 1]
        } else {
            (0..n).collect()
        };
    }
    let xy = |i: usize| (points[i].elapsed_seconds, points[i].speed_bps as f64);
    let every = (n - 2) as f64 / (threshold - 2) as f64;
    let mut out = Vec::with_capacity(threshold);
    let mut a = 0usize;
    out.push(0);
    for bucket in 0..threshold - 2 {
        let start = (bucket as f64 * every) as usize + 1;
        let end = (((bucket + 1) as f64 * every) as usize + 1).min(n - 1);
        let next_start = end;
        let next_end = (((bucket + 2) as f64 * every) as usize + 1).min(n);
        let span = (next_end - next_start).max(1) as f64;
        let (mut ax, mut ay) = (0.0, 0.0);
        for i in next_start..next_end.max(next_start + 1).min(n) {
            let (x, y) = xy(i);
            ax += x;
            ay += y;
        }
        ax /= span;
        ay /= span;
        let (px, py) = xy(a);
        let mut best = start;
        let mut best_area = -1.0;
        for i in start..end.max(start + 1) {
            let (x, y) = xy(i);
            let area = ((px - ax) * (y - py) - (px - x) * (ay - py)).abs();
            if area > best_area {
                best_area = area;
                best = i;
            }
        }
        out.push(best);
        a = best;
    }
    out.push(n - 1);
    out
}

/// The stored form: the record with each point's phase left empty when it repeats the
/// previous point's, which keeps long single-phase curves small.
pub fn encode_record(record: &proto::PerformanceRecord) -> Vec<u8> {
    let mut compact = record.clone();
    let mut previous = String::new();
    for p in &mut compact.points {
        if p.phase == previous {
            p.phase.clear();
        } else {
            previous.clone_from(&p.phase);
        }
    }
    compact.encode_to_vec()
}

/// Reads the stored form back, restoring each point's phase.
pub fn decode_record(bytes: &[u8]) -> Result<proto::PerformanceRecord, prost::DecodeError> {
    let mut record = proto::PerformanceRecord::decode(bytes)?;
    let mut previous = String::new();
    for p in &mut record.points {
        if p.phase.is_empty() {
            p.phase.clone_from(&previous);
        } else {
            previous.clone_from(&p.phase);
        }
    }
    Ok(record)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn points(speeds: &[u64], step_ms: Millis) -> Vec<Point> {
        let mut bytes = 0;
        speeds
            .iter()
            .enumerate()
            .map(|(i, &s)| {
                if i > 0 {
                    bytes += s * step_ms as u64 / 1000;
                }
                Point {
                    sequence: i as u64 + 1,
                    sampled_at: i as Millis * step_ms,
                    bytes_transferred: bytes,
                    speed_bps: s,
                    progress_percent: 0.0,
                    phase: if i % 500 < 250 {
                        "transfer".into()
                    } else {
                        "verify".into()
                    },
                }
            })
            .collect()
    }

    fn record_of(pts: &[Point]) -> proto::PerformanceRecord {
        rollup(&RollupInput {
            started_at: 0,
            ended_at: pts.last().map_or(0, |p| p.sampled_at),
            bytes_transferred: pts.last().map_or(0, |p| p.bytes_transferred),
            peak_speed_bps: 0,
            min_speed_bps: None,
            points: pts,
        })
    }

    #[test]
    fn a_day_long_job_fits_the_budget_and_keeps_first_last_and_peak() {
        let speeds: Vec<u64> = (0..2880u64)
            .map(|i| 50_000_000 + (i * 7919 % 40_000_000))
            .collect();
        let mut speeds = speeds;
        speeds[1234] = 999_000_000;
        let pts = points(&speeds, 30_000);
        let record = record_of(&pts);
        assert!(encode_record(&record).len() <= RECORD_BUDGET_BYTES);
        assert!(record.points.len() <= MAX_CURVE_POINTS);
        assert_eq!(record.points.first().unwrap().elapsed_seconds, 0.0);
        assert_eq!(record.points.last().unwrap().elapsed_seconds, 2879.0 * 30.0);
        assert!(record.points.iter().any(|p| p.speed_bps == 999_000_000));
        assert_eq!(record.peak_speed_bps, 999_000_000);
        assert_eq!(record.snapshot_count, 2880);
        assert_eq!(decode_record(&encode_record(&record)).unwrap(), record);
    }

    #[test]
    fn the_tracked_peak_and_minimum_count_even_when_not_stored() {
        let pts = points(&[0, 100, 100, 100], 30_000);
        let record = rollup(&RollupInput {
            started_at: 0,
            ended_at: 90_000,
            bytes_transferred: 9_000,
            peak_speed_bps: 500,
            min_speed_bps: Some(40),
            points: &pts,
        });
        assert_eq!(record.peak_speed_bps, 500);
        assert_eq!(record.min_speed_bps, 40);
        assert_eq!(record.average_speed_bps, 100);
    }

    proptest! {
        #[test]
        fn downsampling_keeps_peak_ends_and_bound(
            speeds in proptest::collection::vec(0u64..1_000_000_000, 1..3000),
            max_points in 3usize..200,
        ) {
            let pts: Vec<proto::SpeedPoint> = points(&speeds, 3000).iter().map(|p| p.to_proto(0)).collect();
            let out = downsample(&pts, max_points);
            prop_assert!(out.len() <= max_points.max(3));
            prop_assert_eq!(out.first(), pts.first());
            prop_assert_eq!(out.last(), pts.last());
            let peak = speeds.iter().max().unwrap();
            prop_assert!(out.iter().any(|p| p.speed_bps == *peak));
            prop_assert!(out.windows(2).all(|w| w[0].elapsed_seconds < w[1].elapsed_seconds));
        }

        #[test]
        fn records_keep_min_le_avg_le_peak_and_fit_the_budget(
            speeds in proptest::collection::vec(1u64..2_000_000_000, 2..3000),
            phase_len in 0usize..64,
        ) {
            // Consistent input: bytes grow by speed × time between points.
            let mut pts = points(&speeds, 30_000);
            for (i, p) in pts.iter_mut().enumerate() {
                p.phase = format!("{:>width$}", i % 7, width = phase_len);
            }
            let record = record_of(&pts);
            prop_assert!(record.min_speed_bps <= record.average_speed_bps + 1);
            prop_assert!(record.average_speed_bps <= record.peak_speed_bps);
            prop_assert!(encode_record(&record).len() <= RECORD_BUDGET_BYTES);
        }
    }
}
