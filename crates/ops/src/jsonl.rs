//! Append-only logs of one JSON object per line, each starting with its UTC time in `ts`
//! (`2025-03-01T09:30:00.250Z`: always milliseconds and `Z`, so the text order of two
//! timestamps is their time order), and the time arithmetic to read them back.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::Serialize;

/// A log file opened for appending. Each record is written with one `write` of a whole line,
/// so concurrent writers never interleave within a line.
pub struct JsonLines {
    path: PathBuf,
    file: Mutex<std::fs::File>,
}

#[derive(Serialize)]
struct Line<'a, T> {
    ts: String,
    #[serde(flatten)]
    record: &'a T,
}

fn open_append(path: &Path) -> std::io::Result<std::fs::File> {
    let mut options = std::fs::OpenOptions::new();
    options.create(true).append(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o640);
    }
    options.open(path)
}

/// Check, at start, that the log `path` (named by the setting `field`) can be created: its
/// directory exists.
pub fn check_directory(field: &str, path: &Path) -> Result<(), String> {
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    if dir.is_dir() {
        Ok(())
    } else {
        Err(format!(
            "{field} {}: the directory {} does not exist",
            path.display(),
            dir.display()
        ))
    }
}

impl JsonLines {
    /// Open (creating if need be) `path` for appending; its directory must exist.
    pub fn open(path: &Path) -> std::io::Result<Self> {
        Ok(Self {
            path: path.to_owned(),
            file: Mutex::new(open_append(path)?),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Open the file anew (after a log rotation moved it away); on error the old one stays.
    pub fn reopen(&self) -> std::io::Result<()> {
        let file = open_append(&self.path)?;
        *self.file.lock().unwrap_or_else(|e| e.into_inner()) = file;
        Ok(())
    }

    /// Append `record` (a struct serializing to a JSON object) with the current time as `ts`.
    /// A write that fails is reported in the process log; the caller goes on.
    pub fn append<T: Serialize>(&self, record: &T) {
        let line = Line {
            ts: timestamp(SystemTime::now()),
            record,
        };
        let mut bytes = match serde_json::to_vec(&line) {
            Ok(bytes) => bytes,
            Err(e) => {
                tracing::error!(error = %e, "a log record does not serialize");
                return;
            }
        };
        bytes.push(b'\n');
        let mut file = self.file.lock().unwrap_or_else(|e| e.into_inner());
        if let Err(e) = file.write_all(&bytes) {
            tracing::error!(path = %self.path.display(), error = %e, "cannot append to the log");
        }
    }
}

/// `t` as `YYYY-MM-DDTHH:MM:SS.mmmZ` in UTC.
pub fn timestamp(t: SystemTime) -> String {
    let since = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = since.as_secs() as i64;
    let (days, rest) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{:03}Z",
        rest / 3600,
        rest % 3600 / 60,
        rest % 60,
        since.subsec_millis()
    )
}

/// The timestamp from which `--since TEXT` reads, at `now`: a duration back (`90s`, `15m`,
/// `1h`, `7d`, or several, `1h30m`) or a UTC time (`2025-03-01`, `2025-03-01T09:30:00Z`,
/// with optional milliseconds).
pub fn since(text: &str, now: SystemTime) -> Result<String, String> {
    let text = text.trim();
    if let Some(span) = parse_span(text) {
        return Ok(timestamp(now.checked_sub(span).unwrap_or(UNIX_EPOCH)));
    }
    parse_utc(text).map(timestamp).ok_or_else(|| {
        format!("{text:?} is neither a duration (90s, 15m, 1h, 7d, 1h30m) nor a UTC time (2025-03-01T09:30:00Z)")
    })
}

fn parse_span(text: &str) -> Option<Duration> {
    if text.is_empty() {
        return None;
    }
    let mut total = 0u64;
    let mut digits = String::new();
    for c in text.chars() {
        if c.is_ascii_digit() {
            digits.push(c);
            continue;
        }
        let n: u64 = digits.parse().ok()?;
        digits.clear();
        let unit = match c {
            's' => 1,
            'm' => 60,
            'h' => 3600,
            'd' => 86_400,
            _ => return None,
        };
        total = total.checked_add(n.checked_mul(unit)?)?;
    }
    digits.is_empty().then_some(Duration::from_secs(total))
}

fn parse_utc(text: &str) -> Option<SystemTime> {
    let (date, time) = match text.split_once('T') {
        Some((date, time)) => (date, Some(time.strip_suffix('Z')?)),
        None => (text, None),
    };
    let mut parts = date.splitn(3, '-');
    let y: i64 = parts.next()?.parse().ok()?;
    let m: u32 = parts.next()?.parse().ok()?;
    let d: u32 = parts.next()?.parse().ok()?;
    if !(1..=12).contains(&m) || !(1..=31).contains(&d) || date.len() != 10 {
        return None;
    }
    let (mut secs, mut millis) = (0u64, 0u64);
    if let Some(time) = time {
        let (hms, frac) = time.split_once('.').unwrap_or((time, ""));
        let fields: Vec<u64> = hms
            .split(':')
            .map(|f| f.parse().ok())
            .collect::<Option<_>>()?;
        let [h, min, s] = fields[..] else {
            return None;
        };
        if h > 23 || min > 59 || s > 60 {
            return None;
        }
        secs = h * 3600 + min * 60 + s;
        if !frac.is_empty() {
            let digits: String = frac.chars().take(3).collect();
            millis = format!("{digits:0<3}").parse().ok()?;
        }
    }
    let days = days_from_civil(y, m, d);
    let total = days.checked_mul(86_400)?.checked_add(secs as i64)?;
    let total = u64::try_from(total).ok()?;
    UNIX_EPOCH.checked_add(Duration::from_secs(total) + Duration::from_millis(millis))
}

/// Days since 1970-01-01 → (year, month, day), proleptic Gregorian (H. Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = y - i64::from(m <= 2);
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let m = i64::from(m);
    let mp = if m > 2 { m - 3 } else { m + 9 };
    let doy = (153 * mp + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(secs: u64, millis: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(secs) + Duration::from_millis(millis)
    }

    #[test]
    fn timestamps_are_fixed_width_utc() {
        assert_eq!(timestamp(at(0, 0)), "1970-01-01T00:00:00.000Z");
        // 2000-02-29 (a leap day) 23:59:59.999
        assert_eq!(timestamp(at(951_868_799, 999)), "2000-02-29T23:59:59.999Z");
        assert_eq!(
            timestamp(at(1_740_821_400, 250)),
            "2025-03-01T09:30:00.250Z"
        );
    }

    #[test]
    fn since_takes_spans_and_times() {
        let now = at(1_740_821_400, 250);
        assert_eq!(since("1h", now).unwrap(), "2025-03-01T08:30:00.250Z");
        assert_eq!(since("1h30m", now).unwrap(), "2025-03-01T08:00:00.250Z");
        assert_eq!(since("2d", now).unwrap(), "2025-02-27T09:30:00.250Z");
        assert_eq!(
            since("2025-02-28", now).unwrap(),
            "2025-02-28T00:00:00.000Z"
        );
        assert_eq!(
            since("2025-02-28T10:11:12.5Z", now).unwrap(),
            "2025-02-28T10:11:12.500Z"
        );
        for bad in [
            "",
            "1x",
            "h",
            "2025-13-01",
            "2025-02-28T10:11Z",
            "yesterday",
        ] {
            assert!(since(bad, now).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn days_round_trip() {
        for days in [-800_000, -1, 0, 59, 60, 11_016, 20_000, 2_932_896] {
            let (y, m, d) = civil_from_days(days);
            assert_eq!(days_from_civil(y, m, d), days, "{y}-{m}-{d}");
        }
    }

    #[test]
    fn appends_whole_lines_with_a_timestamp_first() {
        let dir = std::env::temp_dir().join(format!("sallyport-jsonl-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("log.jsonl");
        let log = JsonLines::open(&path).unwrap();
        log.append(&serde_json::json!({"event": "a"}));
        std::fs::rename(&path, dir.join("log.jsonl.1")).unwrap();
        log.reopen().unwrap();
        log.append(&serde_json::json!({"event": "b"}));
        let old = std::fs::read_to_string(dir.join("log.jsonl.1")).unwrap();
        let new = std::fs::read_to_string(&path).unwrap();
        assert!(
            old.starts_with("{\"ts\":\"") && old.ends_with("\"event\":\"a\"}\n"),
            "{old}"
        );
        assert!(
            new.ends_with("\"event\":\"b\"}\n") && new.lines().count() == 1,
            "{new}"
        );
        let _ = std::fs::remove_dir_all(dir);
    }
}
