//! A webhook's last 24 hours: deliveries succeeded and failed per hour, and response-time
//! percentiles, read through the engine's history pages and drawn as SVG on the server.

use hallway_domain::{AccountId, DurationMs, Timestamp, WebhookId};
use hallway_runtime::{EngineError, EngineHandle};
use hallway_store::DeliveryStatus;
use maud::{html, Markup};

/// Hours shown.
const HOURS: usize = 24;
/// Most deliveries read for the chart, so a busy webhook's page stays fast; the chart says
/// when it stopped short.
pub const MAX_SCANNED: usize = 5_000;
/// Deliveries read per history page.
const PAGE: usize = 500;

/// Counts and percentiles over the window.
#[derive(Clone, Debug, Default)]
pub struct DayStats {
    /// Per hour, oldest first: (succeeded, failed).
    pub hours: Vec<(u32, u32)>,
    /// 50th, 90th and 99th percentile of attempt durations, in ms.
    pub percentiles: Option<[u64; 3]>,
    /// Attempts the percentiles cover.
    pub attempts: usize,
    /// Deliveries read.
    pub scanned: usize,
    /// Whether [`MAX_SCANNED`] stopped the read before the window's start.
    pub capped: bool,
}

/// The nearest-rank percentile `p` (0..=100) of sorted values.
fn percentile(sorted: &[u64], p: u64) -> u64 {
    let rank = (p as usize * sorted.len()).div_ceil(100).max(1);
    sorted[rank.min(sorted.len()) - 1]
}

/// Reads the window's deliveries (newest first, at most [`MAX_SCANNED`]).
pub async fn day_stats(
    engine: &EngineHandle,
    account: &AccountId,
    webhook: &WebhookId,
    now: Timestamp,
) -> Result<DayStats, EngineError> {
    let hour = DurationMs::from_hours(1).0;
    // Bars end at the end of the current hour, so each covers a whole clock hour.
    let end = (now.0 / hour + 1) * hour;
    let start = Timestamp(end.saturating_sub(hour * HOURS as u64));
    let mut stats = DayStats {
        hours: vec![(0, 0); HOURS],
        ..DayStats::default()
    };
    let mut durations = Vec::new();
    let mut cursor: Option<String> = None;
    'pages: loop {
        let page = engine
            .deliveries(account, webhook, PAGE, cursor.as_deref())
            .await?;
        for d in &page.data {
            if d.created_at < start {
                break 'pages;
            }
            if stats.scanned >= MAX_SCANNED {
                stats.capped = true;
                break 'pages;
            }
            stats.scanned += 1;
            let bucket = ((d.created_at.0 - start.0) / hour) as usize;
            if let Some(slot) = stats.hours.get_mut(bucket) {
                match d.status {
                    DeliveryStatus::Succeeded => slot.0 += 1,
                    DeliveryStatus::Failed => slot.1 += 1,
                    DeliveryStatus::Pending
                    | DeliveryStatus::Cancelled
                    | DeliveryStatus::Paused => {}
                }
            }
            durations.extend(d.attempts.iter().map(|a| a.duration_ms));
        }
        match page.next_cursor {
            Some(c) => cursor = Some(c),
            None => break,
        }
    }
    durations.sort_unstable();
    stats.attempts = durations.len();
    if !durations.is_empty() {
        stats.percentiles = Some([50, 90, 99].map(|p| percentile(&durations, p)));
    }
    Ok(stats)
}

/// The per-hour bars: succeeded stacked under failed. The SVG holds only the bars and
/// stretches to the width it is given; the scale and hour labels are HTML text, so they
/// stay readable at any width (360 px included).
pub fn hourly_chart(stats: &DayStats) -> Markup {
    // Each hour is 10 units wide and the tallest bar 100 units high.
    let (slot, bar, height) = (10.0_f64, 7.0_f64, 100.0_f64);
    let max = stats
        .hours
        .iter()
        .map(|(ok, bad)| ok + bad)
        .max()
        .unwrap_or(0)
        .max(1);
    let y = |n: u32| height - height * f64::from(n) / f64::from(max);
    let (ok_total, bad_total) = stats
        .hours
        .iter()
        .fold((0, 0), |(a, b), (ok, bad)| (a + ok, b + bad));
    let summary = format!(
        "Last 24 hours: {ok_total} deliveries succeeded, {bad_total} failed; busiest hour {max}."
    );
    html! {
        figure.chart {
            div.chart-scale aria-hidden="true" { span { (max) } span { "0" } }
            svg.chart viewBox={ "0 0 " (slot * HOURS as f64) " " (height) }
                preserveAspectRatio="none" role="img" aria-label=(summary) {
                title { (summary) }
                @for (i, (ok, bad)) in stats.hours.iter().enumerate() {
                    @let x = slot * i as f64 + (slot - bar) / 2.0;
                    @if *ok > 0 {
                        rect.ok x=(fmt(x)) y=(fmt(y(*ok))) width=(fmt(bar)) height=(fmt(height - y(*ok))) {
                            title { (ok) " succeeded" }
                        }
                    }
                    @if *bad > 0 {
                        rect.bad x=(fmt(x)) y=(fmt(y(ok + bad))) width=(fmt(bar)) height=(fmt(y(*ok) - y(ok + bad))) {
                            title { (bad) " failed" }
                        }
                    }
                }
                line.axis x1="0" y1=(height) x2=(slot * HOURS as f64) y2=(height)
                    vector-effect="non-scaling-stroke" {}
            }
            div.chart-hours aria-hidden="true" {
                @for i in (0..=HOURS).step_by(6) {
                    span { @if i == HOURS { "now" } @else { "−" (HOURS - i) "h" } }
                }
            }
        }
    }
}

fn fmt(v: f64) -> String {
    format!("{v:.1}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_use_the_nearest_rank() {
        let v: Vec<u64> = (1..=100).collect();
        assert_eq!(percentile(&v, 50), 50);
        assert_eq!(percentile(&v, 90), 90);
        assert_eq!(percentile(&v, 99), 99);
        assert_eq!(percentile(&[7], 99), 7);
    }

    #[test]
    fn the_chart_draws_one_bar_per_busy_hour() {
        let mut stats = DayStats {
            hours: vec![(0, 0); HOURS],
            ..DayStats::default()
        };
        stats.hours[3] = (4, 1);
        stats.hours[23] = (2, 0);
        let svg = hourly_chart(&stats).into_string();
        assert_eq!(svg.matches("<rect class=\"ok\"").count(), 2);
        assert_eq!(svg.matches("<rect class=\"bad\"").count(), 1);
        assert!(svg.contains("6 deliveries succeeded, 1 failed"), "{svg}");
    }
}
