//! A launch's timeline drawn as text, for a terminal: one line per checkpoint with its step
//! and total, and a bar from the previous checkpoint to its own on one time axis scaled to the
//! width given. What `sallyport timeline FILE` prints; the app draws the same bars.

use crate::checkpoint::{names, Checkpoint};

/// The narrowest drawing: below this many columns the bars would say nothing.
pub const MIN_WIDTH: usize = 60;
const NUMBERS: usize = 24;

/// The checkpoints (in time order) as lines no wider than `width` (at least [`MIN_WIDTH`]).
pub fn draw(checkpoints: &[Checkpoint], width: usize) -> String {
    let width = width.max(MIN_WIDTH);
    let mut cps: Vec<&Checkpoint> = checkpoints.iter().collect();
    cps.sort_by(|a, b| a.total_ms.total_cmp(&b.total_ms));
    let label = cps
        .iter()
        .map(|c| c.phase.len())
        .max()
        .unwrap_or(5)
        .clamp(5, 44)
        .min(width / 3);
    let bar_width = width.saturating_sub(label + NUMBERS + 2).max(10);
    let axis = cps.iter().map(|c| c.total_ms).fold(0.0_f64, f64::max);
    let column = |ms: f64| {
        if axis > 0.0 {
            ((ms / axis) * bar_width as f64).round() as usize
        } else {
            0
        }
    };
    let mut out = String::new();
    let right = format!("{:.1} ms", axis);
    out.push_str(&format!(
        "{:<label$} {:>11} {:>11}  0 ms{:>pad$}\n",
        "phase",
        "step",
        "total",
        right,
        pad = bar_width.saturating_sub(4)
    ));
    let mut previous = 0.0_f64;
    for c in cps {
        let from = column(previous.min(c.total_ms)).min(bar_width.saturating_sub(1));
        let to = column(c.total_ms).clamp(from + 1, bar_width);
        let glyph = match c.phase.as_str() {
            names::FAILED => '×',
            names::GATEWAY_OFFER_BACKEND_CATCHUP_DELAY_START
            | names::GATEWAY_OFFER_BACKEND_CATCHUP_DELAY_DONE => '░',
            p if p.starts_with(names::GATEWAY_OFFER_HTTP_ATTEMPT_PREFIX)
                && c.attempt.unwrap_or(1) > 1 =>
            {
                '▒'
            }
            _ => '█',
        };
        let bar: String = std::iter::repeat_n(' ', from)
            .chain(std::iter::repeat_n(glyph, to - from))
            .collect();
        out.push_str(&format!(
            "{:<label$} {:>11} {:>11}  {}\n",
            shorten(&c.phase, label),
            format!("+{:.1} ms", c.step_ms),
            format!("{:.1} ms", c.total_ms),
            bar.trim_end()
        ));
        previous = previous.max(c.total_ms);
    }
    out
}

/// `text` cut to `max` characters, marked with `…` when cut.
fn shorten(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_owned();
    }
    let mut cut: String = text.chars().take(max.saturating_sub(1)).collect();
    cut.push('…');
    cut
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cp(phase: &str, step: f64, total: f64) -> Checkpoint {
        Checkpoint {
            launch_id: "l".into(),
            resource: "r".into(),
            phase: phase.into(),
            step_ms: step,
            total_ms: total,
            attempt: None,
            detail: None,
            error: None,
            at_unix_ms: 0,
        }
    }

    #[test]
    fn bars_follow_the_time_axis_and_fit_the_width() {
        let cps = [
            cp("resource_resolved", 10.0, 10.0),
            cp("create_tube_ok", 30.0, 40.0),
            cp("ready", 60.0, 100.0),
        ];
        for width in [60, 100, 200] {
            let text = draw(&cps, width);
            let lines: Vec<&str> = text.lines().collect();
            assert_eq!(lines.len(), 4, "{text}");
            assert!(lines.iter().all(|l| l.chars().count() <= width), "{text}");
            let bars: Vec<(usize, usize)> = lines[1..]
                .iter()
                .map(|l| {
                    let start = l.chars().position(|c| c == '█').unwrap();
                    (start, l.chars().filter(|&c| c == '█').count())
                })
                .collect();
            // Each bar begins where the previous one ended; widths follow the steps.
            assert_eq!(bars[1].0, bars[0].0 + bars[0].1, "{text}");
            assert_eq!(bars[2].0, bars[1].0 + bars[1].1, "{text}");
            assert!(bars[2].1 > bars[1].1 && bars[1].1 > bars[0].1, "{text}");
            assert!(lines[3].contains("+60.0 ms") && lines[3].contains("100.0 ms"));
        }
        // A wider terminal draws longer bars.
        let narrow = draw(&cps, 60).matches('█').count();
        let wide = draw(&cps, 200).matches('█').count();
        assert!(wide > narrow);
    }

    #[test]
    fn a_failure_and_an_empty_launch_still_draw() {
        let text = draw(&[cp("failed", 0.0, 0.0)], 80);
        assert!(text.contains('×'), "{text}");
        assert_eq!(draw(&[], 80).lines().count(), 1);
    }
}
